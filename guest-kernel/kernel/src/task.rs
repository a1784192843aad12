//! User tasks: an address space, its areas, and the handling of every trap a task takes.
//!
//! For now one task runs at a time, to completion, from a kernel caller ([`run`]); the
//! scheduler, processes and the ELF loader come with the userland.

use crate::arch::programs::{CODE_BASE, DATA_BASE, Program};
use crate::arch::trap::TrapFrame;
use crate::arch::user::{self, SYSCALL_VECTOR, UserReturn};
use crate::arch::uspace::{self, AddressSpace};
use crate::sync::IrqMutex;
use crate::{irq, mm, syscall};
use umlvm_kcore::exception;
use umlvm_kcore::vma::{FaultVerdict, Prot, VmaList};

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
    /// Killed by the kernel after a fault.
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

/// The running task.
pub struct Task {
    /// Its address space.
    pub space: AddressSpace,
    vmas: VmaList,
    /// Counters.
    pub stats: TaskStats,
    exit: Option<TaskExit>,
}

static CURRENT: IrqMutex<Option<Task>> = IrqMutex::new(None);

/// Why a task could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// Out of memory.
    NoMemory,
    /// User mode is unavailable (native mode on a PVM host).
    NoUserMode,
}

/// Whether a user task is running (for SysRq reports).
pub fn running() -> bool {
    CURRENT.try_lock().is_none_or(|g| g.is_some())
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

/// Like [`run`], with every initial register set by `regs`.
pub fn run_with<R>(
    program: Program,
    regs: impl FnOnce(&mut TrapFrame),
    inspect: impl FnOnce(&Task) -> R,
) -> Result<(TaskExit, TaskStats, R), SpawnError> {
    if !user_mode_available() {
        return Err(SpawnError::NoUserMode);
    }
    let code = program.code();
    let code_pages = (code.len() as u64).div_ceil(4096).max(1);
    let mut space = mm::with_frames(AddressSpace::new).ok_or(SpawnError::NoMemory)?;
    let mut vmas = VmaList::new();
    let areas = [
        (CODE_BASE, CODE_BASE + code_pages * 4096, Prot::READ_EXEC),
        (DATA_BASE, DATA_BASE + DATA_SIZE, Prot::READ_WRITE),
        (STACK_TOP - STACK_SIZE, STACK_TOP, Prot::READ_WRITE),
    ];
    for (start, end, prot) in areas {
        vmas.add(start, end, prot).expect("built-in areas are valid and disjoint");
    }
    for page in 0..code_pages {
        let frame = mm::alloc_frame().ok_or(SpawnError::NoMemory)?;
        let chunk = &code[(page * 4096) as usize..code.len().min(((page + 1) * 4096) as usize)];
        if !frame.is_zero {
            crate::arch::memory::zero_frame(frame.addr);
        }
        uspace::write_frame(frame.addr, 0, chunk);
        mm::with_frames(|f| space.map(f, CODE_BASE + page * 4096, frame.addr, Prot::READ_EXEC))
            .map_err(|_| SpawnError::NoMemory)?;
    }
    let mut frame = TrapFrame::default();
    regs(&mut frame);
    frame.rip = CODE_BASE;
    frame.cs = u64::from(umlvm_boot::x86::USER_CS);
    frame.rflags = 0x202;
    frame.rsp = STACK_TOP;
    frame.ss = u64::from(umlvm_boot::x86::USER_DS);
    let (kernel_root, user_root) = (space.kernel_root(), space.user_root());
    *CURRENT.lock() = Some(Task { space, vmas, stats: TaskStats::default(), exit: None });
    user::run(&frame, kernel_root, user_root);
    uspace::activate_kernel();
    let task = CURRENT.lock().take().expect("the task outlives its run");
    let result = inspect(&task);
    let exit = task.exit.unwrap_or(TaskExit::Exited(-1));
    let stats = task.stats;
    mm::with_frames(|f| task.space.destroy(f));
    Ok((exit, stats, result))
}

/// Every trap taken in user mode lands here (kernel page tables, the task's kernel stack).
pub fn on_user_trap(frame: &mut TrapFrame) -> UserReturn {
    let mut guard = CURRENT.lock();
    let Some(task) = guard.as_mut() else {
        // No task: nothing sane to return to.
        drop(guard);
        panic!("trap from user mode with no current task (vector {})", frame.vector);
    };
    match frame.vector {
        SYSCALL_VECTOR => {
            task.stats.syscalls += 1;
            match syscall::dispatch(task, frame) {
                syscall::Outcome::Return(value) => {
                    frame.rax = value;
                    UserReturn::Resume
                }
                syscall::Outcome::Exit(status) => {
                    task.exit = Some(TaskExit::Exited(status));
                    UserReturn::Exit
                }
            }
        }
        14 => page_fault(task, frame),
        v if v < 32 => kill(task, frame, signal_for(v), 0),
        v => {
            drop(guard);
            irq::handle(v as u8);
            let mut guard = CURRENT.lock();
            if let Some(task) = guard.as_mut() {
                if v as u8 == irq::TIMER_VECTOR {
                    task.stats.user_ticks += 1;
                } else {
                    task.stats.user_irqs += 1;
                }
            }
            UserReturn::Resume
        }
    }
}

fn signal_for(vector: u64) -> u8 {
    match vector {
        0 | 16 | 19 => 8, // SIGFPE
        1 | 3 => 5,       // SIGTRAP
        6 => 4,           // SIGILL
        17 => 7,          // SIGBUS
        _ => 11,          // SIGSEGV
    }
}

fn page_fault(task: &mut Task, frame: &mut TrapFrame) -> UserReturn {
    let addr = crate::arch::mode::fault_address();
    let code = frame.error_code;
    let (present, write, exec) = (code & 1 != 0, code & 2 != 0, code & 16 != 0);
    if present {
        return kill(task, frame, 11, addr);
    }
    let FaultVerdict::Populate(prot) = task.vmas.fault(addr, write, exec) else {
        return kill(task, frame, 11, addr);
    };
    let Some(new) = mm::alloc_frame() else {
        log::warn!("user task out of memory at {addr:#x}");
        return kill(task, frame, 9, addr);
    };
    if !new.is_zero {
        crate::arch::memory::zero_frame(new.addr);
    }
    let page = addr & !0xfff;
    if mm::with_frames(|f| task.space.map(f, page, new.addr, prot)).is_err() {
        mm::free_frame(new.addr);
        return kill(task, frame, 9, addr);
    }
    task.stats.page_faults += 1;
    UserReturn::Resume
}

fn kill(task: &mut Task, frame: &TrapFrame, signal: u8, addr: u64) -> UserReturn {
    let (mnemonic, what) = exception::name(frame.vector);
    if frame.vector == 14 {
        log::warn!(
            "user task killed by signal {signal}: {mnemonic} {what} at rip {:#x}, address {addr:#x} ({})",
            frame.rip,
            exception::PageFaultCode(frame.error_code)
        );
    } else {
        log::warn!("user task killed by signal {signal}: {mnemonic} {what} at rip {:#x}", frame.rip);
    }
    task.exit = Some(TaskExit::Killed { signal, vector: frame.vector, rip: frame.rip, addr });
    UserReturn::Exit
}

/// Reads user memory of an ended task (for benchmark results).
pub fn read_user_u64(task: &Task, addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    uspace::copy_from_user(&task.space, addr, &mut b).ok()?;
    Some(u64::from_le_bytes(b))
}
