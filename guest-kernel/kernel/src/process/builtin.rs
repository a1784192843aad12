//! Built-in user programs (self-checks and benchmarks) run as ordinary processes, started and
//! awaited from the boot context before init exists.

use crate::arch::programs::{CODE_BASE, DATA_BASE, Program};
use crate::arch::trap::TrapFrame;
use crate::mm::vm::{Backing, MemSpace};
use crate::process::Process;
use crate::process::sched::{self, State, Task};
use crate::{mm, process};
use alloc::sync::Arc;
use spinning_top::Spinlock;
use umlvm_kcore::areas::{Access, Area};

/// Size of the data area programs may touch.
pub const DATA_SIZE: u64 = 64 << 20;
/// Top of the user stack.
pub const STACK_TOP: u64 = 0x7fff_0000_0000;
/// Size of the user stack area.
pub const STACK_SIZE: u64 = 1 << 20;

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskExit {
    /// `exit(status)`.
    Exited(i32),
    /// Killed by a signal after a fault.
    Killed {
        /// Signal number (Linux numbering: 11 SIGSEGV, 4 SIGILL, 8 SIGFPE, 5 SIGTRAP, 7 SIGBUS).
        signal: u8,
        /// CPU exception vector.
        vector: u64,
        /// Faulting instruction.
        rip: u64,
        /// Faulting address (page faults).
        addr: u64,
    },
}

/// What a task did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskStats {
    /// System calls made.
    pub syscalls: u64,
    /// Page faults served (demand paging).
    pub page_faults: u64,
    /// Timer interrupts taken while in user mode.
    pub user_ticks: u64,
    /// Other interrupts taken while in user mode.
    pub user_irqs: u64,
}

/// Why a task could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// Out of memory.
    NoMemory,
    /// User mode is unavailable (native mode on a PVM host).
    NoUserMode,
}

/// Whether user programs can run: not in native mode on a PVM host, where `syscall` from
/// user mode is not delivered correctly before the VIF page is registered.
pub fn user_mode_available() -> bool {
    !(crate::arch::mode::pvm_host() && crate::arch::mode::current() == crate::arch::mode::ExecMode::Native)
}

/// Runs built-in `program` with arguments `args` (rdi, rsi, rdx) to completion. `inspect`
/// sees the task after it ended, before its memory is freed.
pub fn run<R>(
    program: Program,
    args: [u64; 3],
    inspect: impl FnOnce(&Task) -> R,
) -> Result<(TaskExit, TaskStats, R), SpawnError> {
    run_with(
        program,
        |f| {
            f.rdi = args[0];
            f.rsi = args[1];
            f.rdx = args[2];
        },
        inspect,
    )
}

fn build_space(program: Program) -> Result<MemSpace, SpawnError> {
    let code = program.code();
    let code_pages = (code.len() as u64).div_ceil(4096).max(1);
    let mut m = MemSpace::new().map_err(|_| SpawnError::NoMemory)?;
    let rx = Access { read: true, write: false, exec: true };
    let rw = Access { read: true, write: true, exec: false };
    let areas = [
        (CODE_BASE, CODE_BASE + code_pages * 4096, rx),
        (DATA_BASE, DATA_BASE + DATA_SIZE, rw),
        (STACK_TOP - STACK_SIZE, STACK_TOP, rw),
    ];
    for (start, end, access) in areas {
        m.map_area(Area { start, end, access, shared: false, backing: Backing::Anon })
            .map_err(|_| SpawnError::NoMemory)?;
    }
    for page in 0..code_pages {
        let frame = mm::alloc_user_page().ok_or(SpawnError::NoMemory)?;
        let chunk = &code[(page * 4096) as usize..code.len().min(((page + 1) * 4096) as usize)];
        crate::arch::uspace::write_frame(frame, 0, chunk);
        // Present, user, not writable, executable.
        let value = frame | umlvm_boot::x86::pte::PRESENT | umlvm_boot::x86::pte::USER;
        mm::with_frames(|f| m.space.map_raw(f, CODE_BASE + page * 4096, value))
            .map_err(|()| SpawnError::NoMemory)?;
    }
    Ok(m)
}

/// Like [`run`], with every initial register set by `regs`.
pub fn run_with<R>(
    program: Program,
    regs: impl FnOnce(&mut TrapFrame),
    inspect: impl FnOnce(&Task) -> R,
) -> Result<(TaskExit, TaskStats, R), SpawnError> {
    if !user_mode_available() {
        return Err(SpawnError::NoUserMode);
    }
    let space = build_space(program)?;
    let mut frame = TrapFrame::default();
    regs(&mut frame);
    frame.rip = CODE_BASE;
    frame.cs = u64::from(umlvm_boot::x86::USER_CS);
    frame.rflags = 0x202;
    frame.rsp = STACK_TOP;
    frame.ss = u64::from(umlvm_boot::x86::USER_DS);
    let pid = sched::alloc_pid();
    let proc = Process::builtin(pid, Arc::new(Spinlock::new(space)), program.name());
    let task = sched::spawn(pid, proc, &frame);
    sched::run_until(|| task.state() == State::Zombie);
    let result = inspect(&task);
    let (status, fault, fault_rip, stats) = {
        let i = task.proc.inner.lock();
        (i.exit_status.unwrap_or(0), i.fault, i.fault_rip, i.stats)
    };
    let exit = if status & 0x7f == 0 {
        TaskExit::Exited((status >> 8) & 0xff)
    } else {
        TaskExit::Killed {
            signal: (status & 0x7f) as u8,
            vector: fault.trapno,
            rip: fault_rip,
            addr: fault.cr2,
        }
    };
    process::release_memory(&task);
    sched::remove(pid);
    Ok((exit, stats, result))
}

/// Reads user memory of an ended task (for benchmark results).
pub fn read_user_u64(task: &Task, addr: u64) -> Option<u64> {
    let mm = task.proc.mm()?;
    let mut b = [0u8; 8];
    mm.lock().read(addr, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}
