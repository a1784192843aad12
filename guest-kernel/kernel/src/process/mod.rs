//! Processes: identity, memory, files, credentials and signal state; `fork`/`clone`,
//! `execve`, `exit` and `wait4`.

pub mod builtin;
pub mod exec;
pub mod futex;
pub mod itimer;
pub mod sched;
pub mod signal;

use crate::arch::context::{self, FpuState};
use crate::arch::trap::TrapFrame;
use crate::fs::FsContext;
use crate::fs::file::FdTable;
use crate::mm::vm::{Backing, MemSpace};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use sched::{Pid, State, Task};
use spinning_top::Spinlock;
use umlvm_kcore::areas::{Access, Area};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::signal::{SigAction, SigPending, SigSet};
use umlvm_kcore::vfs::Inode;

/// Signal handlers, shared by `CLONE_SIGHAND` tasks.
pub type Handlers = Arc<Spinlock<[SigAction; 64]>>;

/// Mutable process state.
pub struct ProcInner {
    /// Parent.
    pub ppid: Pid,
    /// Process group.
    pub pgid: Pid,
    /// Session.
    pub sid: Pid,
    /// Children (live and zombie).
    pub children: Vec<Pid>,
    /// Wait status once it exited (Linux encoding).
    pub exit_status: Option<i32>,
    /// Stop/continue events not yet reported to a waiting parent (wait status).
    pub wait_event: Option<i32>,
    /// Signal sent to the parent at exit.
    pub exit_signal: u32,
    /// Command name (`comm`, at most 15 bytes).
    pub comm: Vec<u8>,
    /// Arguments, NUL-separated (/proc/PID/cmdline).
    pub cmdline: Vec<u8>,
    /// Executable path.
    pub exe: Vec<u8>,
    /// `set_tid_address`/`CLONE_CHILD_CLEARTID` pointer.
    pub clear_child_tid: u64,
    /// A vfork parent waiting for exec or exit.
    pub vfork_parent: Option<Pid>,
    /// Real, effective user and group ids.
    pub uid: u32,
    /// Effective uid.
    pub euid: u32,
    /// Real gid.
    pub gid: u32,
    /// Effective gid.
    pub egid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Blocked signals.
    pub blocked: SigSet,
    /// Mask to restore after `rt_sigsuspend`'s handler runs.
    pub saved_mask: Option<SigSet>,
    /// Signals `rt_sigtimedwait` waits for (they wake the task even while blocked).
    pub waiting_for: SigSet,
    /// Pending signals.
    pub pending: SigPending,
    /// Alternate signal stack: (sp, size, flags).
    pub altstack: (u64, u64, u32),
    /// The syscall number being served (for restarts), or -1.
    pub orig_rax: i64,
    /// Nanoseconds since boot when it started.
    pub start_ns: u64,
    /// Children's accumulated user/system ticks (reaped).
    pub cutime: u64,
    /// See `cutime`.
    pub cstime: u64,
    /// Controlling terminal (tty index).
    pub ctty: Option<usize>,
    /// Resource limits (soft, hard) by resource number.
    pub rlimits: [(u64, u64); 16],
    /// The last fault (for the signal frame and built-in task reports).
    pub fault: umlvm_kcore::signal::FaultContext,
    /// Instruction of the last fault.
    pub fault_rip: u64,
    /// Counters.
    pub stats: crate::process::builtin::TaskStats,
    /// Keep the memory after exit (built-in tasks, inspected by the kernel).
    pub keep_mm: bool,
}

/// A process.
pub struct Process {
    /// Mutable state.
    pub inner: Spinlock<ProcInner>,
    mm: Spinlock<Option<Arc<Spinlock<MemSpace>>>>,
    /// Open files.
    pub files: Spinlock<Arc<Spinlock<FdTable>>>,
    /// Root, cwd, umask.
    pub fs: Spinlock<Arc<Spinlock<FsContext>>>,
    /// Signal handlers.
    pub handlers: Spinlock<Handlers>,
    fpu: Spinlock<Box<FpuState>>,
    fs_base: AtomicU64,
}

/// `RLIM_INFINITY`.
pub const RLIM_INFINITY: u64 = u64::MAX;

fn default_rlimits() -> [(u64, u64); 16] {
    let mut r = [(RLIM_INFINITY, RLIM_INFINITY); 16];
    r[3] = (crate::mm::vm::STACK_SIZE, RLIM_INFINITY); // RLIMIT_STACK
    r[4] = (0, RLIM_INFINITY); // RLIMIT_CORE
    r[7] = (1024, 4096); // RLIMIT_NOFILE
    r[8] = (64 << 10, 64 << 10); // RLIMIT_MEMLOCK
    r[6] = (4096, 4096); // RLIMIT_NPROC
    r[11] = (4096, 4096); // RLIMIT_SIGPENDING
    r
}

impl Process {
    fn with(
        inner: ProcInner,
        mm: Option<Arc<Spinlock<MemSpace>>>,
        files: Arc<Spinlock<FdTable>>,
        fs: Arc<Spinlock<FsContext>>,
        handlers: Handlers,
        fpu: Box<FpuState>,
        fs_base: u64,
    ) -> Self {
        Self {
            inner: Spinlock::new(inner),
            mm: Spinlock::new(mm),
            files: Spinlock::new(files),
            fs: Spinlock::new(fs),
            handlers: Spinlock::new(handlers),
            fpu: Spinlock::new(fpu),
            fs_base: AtomicU64::new(fs_base),
        }
    }

    fn blank_inner(ppid: Pid, pid: Pid) -> ProcInner {
        ProcInner {
            ppid,
            pgid: pid,
            sid: pid,
            children: Vec::new(),
            exit_status: None,
            wait_event: None,
            exit_signal: umlvm_kcore::signal::SIGCHLD,
            comm: Vec::new(),
            cmdline: Vec::new(),
            exe: Vec::new(),
            clear_child_tid: 0,
            vfork_parent: None,
            uid: 0,
            euid: 0,
            gid: 0,
            egid: 0,
            groups: Vec::new(),
            blocked: SigSet::EMPTY,
            saved_mask: None,
            waiting_for: SigSet::EMPTY,
            pending: SigPending::new(),
            altstack: (0, 0, 2),
            orig_rax: -1,
            start_ns: crate::time::now_ns(),
            cutime: 0,
            cstime: 0,
            ctty: None,
            rlimits: default_rlimits(),
            fault: umlvm_kcore::signal::FaultContext::default(),
            fault_rip: 0,
            stats: crate::process::builtin::TaskStats::default(),
            keep_mm: false,
        }
    }

    /// A built-in program's process (kernel self-checks): no files, memory kept after exit.
    pub fn builtin(pid: Pid, mm: Arc<Spinlock<MemSpace>>, name: &str) -> Self {
        let mut inner = Self::blank_inner(0, pid);
        inner.comm = name.as_bytes().to_vec();
        inner.keep_mm = true;
        let mut files = FdTable::new();
        let console = crate::fs::file::OpenFile::new(
            crate::fs::file::FileKind::KernelConsole,
            crate::fs::file::oflags::WRONLY,
            None,
        );
        for fd in 1..=2 {
            let _ = files.install_at(fd, console.clone(), false);
        }
        Self::with(
            inner,
            Some(mm),
            Arc::new(Spinlock::new(files)),
            Arc::new(Spinlock::new(FsContext::initial())),
            Arc::new(Spinlock::new([SigAction::default(); 64])),
            FpuState::new_initial(),
            0,
        )
    }

    /// The idle task's (kernel) process.
    pub fn kernel() -> Self {
        let mut inner = Self::blank_inner(0, 0);
        inner.comm = b"swapper".to_vec();
        Self::with(
            inner,
            None,
            Arc::new(Spinlock::new(FdTable::new())),
            Arc::new(Spinlock::new(FsContext::initial())),
            Arc::new(Spinlock::new([SigAction::default(); 64])),
            FpuState::new_initial(),
            0,
        )
    }

    /// Its memory, if it has any.
    pub fn mm(&self) -> Option<Arc<Spinlock<MemSpace>>> {
        self.mm.lock().clone()
    }

    /// The fd table.
    pub fn fd_table(&self) -> Arc<Spinlock<FdTable>> {
        self.files.lock().clone()
    }

    /// Root/cwd/umask.
    pub fn fs_context(&self) -> Arc<Spinlock<FsContext>> {
        self.fs.lock().clone()
    }

    /// Signal handlers.
    pub fn handler_table(&self) -> Handlers {
        self.handlers.lock().clone()
    }

    /// (kernel view root, user view root) of its address space.
    pub fn roots(&self) -> (u64, u64) {
        match self.mm() {
            Some(mm) => {
                let m = mm.lock();
                (m.space.kernel_root(), m.space.user_root())
            }
            None => (crate::arch::uspace::kernel_root(), crate::arch::uspace::kernel_root()),
        }
    }

    /// Saves the CPU's user FPU state and FS base into the process (switching away).
    pub fn save_cpu_state(&self) {
        self.fpu.lock().save();
        self.fs_base.store(context::fs_base(), Ordering::Relaxed);
    }

    /// Loads the process's FPU state and FS base into the CPU (switching to it).
    pub fn restore_cpu_state(&self) {
        self.fpu.lock().restore();
        context::set_fs_base(self.fs_base.load(Ordering::Relaxed));
    }

    /// The FS base (arch_prctl) of the running process.
    pub fn set_fs_base(&self, v: u64) {
        self.fs_base.store(v, Ordering::Relaxed);
        context::set_fs_base(v);
    }

    /// Runs `f` on the saved FPU state (the caller saved the live state first).
    pub fn with_fpu<R>(&self, f: impl FnOnce(&mut FpuState) -> R) -> R {
        f(&mut self.fpu.lock())
    }
}

/// Saves the live FPU state of the running process into its save area.
pub fn sync_fpu(task: &Task) {
    task.proc.fpu.lock().save();
}

/// Loads the saved FPU state of the running process back into the CPU.
pub fn reload_fpu(task: &Task) {
    task.proc.fpu.lock().restore();
}

/// `clone` flags used here.
pub mod clone_flags {
    /// Share memory.
    pub const VM: u64 = 0x100;
    /// Share cwd/root/umask.
    pub const FS: u64 = 0x200;
    /// Share the fd table.
    pub const FILES: u64 = 0x400;
    /// Share signal handlers.
    pub const SIGHAND: u64 = 0x800;
    /// The parent sleeps until the child execs or exits.
    pub const VFORK: u64 = 0x4000;
    /// Same thread group (threads).
    pub const THREAD: u64 = 0x10000;
    /// Set the TLS base.
    pub const SETTLS: u64 = 0x80000;
    /// Write the child's tid at `parent_tid` in the parent.
    pub const PARENT_SETTID: u64 = 0x100000;
    /// Clear (and futex-wake) `child_tid` when the child exits.
    pub const CHILD_CLEARTID: u64 = 0x200000;
    /// Write the child's tid at `child_tid` in the child.
    pub const CHILD_SETTID: u64 = 0x1000000;
}

/// `fork`/`vfork`/`clone` for processes (not threads).
pub fn clone(
    frame: &TrapFrame,
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
) -> KResult<Pid> {
    use clone_flags::*;
    if flags & THREAD != 0 {
        log::warn!("clone: threads (CLONE_THREAD) are not supported yet");
        return Err(Errno::EINVAL);
    }
    let parent = sched::current();
    let pid = sched::alloc_pid();
    let p = &parent.proc;
    let mm = match p.mm() {
        Some(mm) if flags & VM != 0 => Some(mm),
        Some(mm) => Some(Arc::new(Spinlock::new(mm.lock().fork()?))),
        None => None,
    };
    let files = if flags & FILES != 0 {
        p.fd_table()
    } else {
        Arc::new(Spinlock::new(p.fd_table().lock().duplicate()))
    };
    let fs =
        if flags & FS != 0 { p.fs_context() } else { Arc::new(Spinlock::new(p.fs_context().lock().clone())) };
    let handlers = if flags & SIGHAND != 0 {
        p.handler_table()
    } else {
        Arc::new(Spinlock::new(*p.handler_table().lock()))
    };
    let inner = {
        let pi = p.inner.lock();
        let mut c = Process::blank_inner(parent.pid, pid);
        c.pgid = pi.pgid;
        c.sid = pi.sid;
        c.comm = pi.comm.clone();
        c.cmdline = pi.cmdline.clone();
        c.exe = pi.exe.clone();
        c.uid = pi.uid;
        c.euid = pi.euid;
        c.gid = pi.gid;
        c.egid = pi.egid;
        c.groups = pi.groups.clone();
        c.blocked = pi.blocked;
        c.altstack = pi.altstack;
        c.ctty = pi.ctty;
        c.rlimits = pi.rlimits;
        c.exit_signal = (flags & 0xff) as u32;
        if flags & CHILD_CLEARTID != 0 {
            c.clear_child_tid = child_tid;
        }
        if flags & VFORK != 0 {
            c.vfork_parent = Some(parent.pid);
        }
        c
    };
    sync_fpu(&parent);
    let fpu = p.fpu.lock().duplicate();
    let fs_base = if flags & SETTLS != 0 { tls } else { context::fs_base() };
    let proc = Process::with(inner, mm.clone(), files, fs, handlers, fpu, fs_base);
    let mut child_frame = *frame;
    child_frame.rax = 0;
    if stack != 0 {
        child_frame.rsp = stack;
    }
    if flags & PARENT_SETTID != 0
        && let Some(mm) = p.mm()
    {
        let _ = mm.lock().write(parent_tid, &pid.to_le_bytes());
    }
    if flags & CHILD_SETTID != 0
        && let Some(mm) = &mm
    {
        let _ = mm.lock().write(child_tid, &pid.to_le_bytes());
    }
    p.inner.lock().children.push(pid);
    let child = sched::spawn(pid, proc, &child_frame);
    if flags & VFORK != 0 {
        let chan = vfork_chan(pid);
        let _ = sched::wait_event(chan, false, None, || {
            let done = child.proc.inner.lock().vfork_parent.is_none();
            done.then_some(())
        });
    }
    Ok(pid)
}

fn vfork_chan(child: Pid) -> u64 {
    0x7f00_0000_0000 | u64::from(child)
}

fn child_chan(parent: Pid) -> u64 {
    0x7e00_0000_0000 | u64::from(parent)
}

/// Releases a vfork parent (the child exec'ed or exited).
pub fn release_vfork(task: &Task) {
    if task.proc.inner.lock().vfork_parent.take().is_some() {
        sched::wake_all(vfork_chan(task.pid));
    }
}

/// Ends the current process with wait status `status` (Linux encoding).
pub fn exit(status: i32) -> ! {
    let me = sched::current();
    let pid = me.pid;
    if pid == 1 && crate::init::started() {
        crate::init::init_exited(status);
    }
    // Files first (pipes see EOF at once), then memory.
    let files = core::mem::replace(&mut *me.proc.files.lock(), Arc::new(Spinlock::new(FdTable::new())));
    drop(files);
    let (clear_tid, ppid, exit_signal) = {
        let i = me.proc.inner.lock();
        (i.clear_child_tid, i.ppid, i.exit_signal)
    };
    if clear_tid != 0 {
        if let Some(mm) = me.proc.mm() {
            let _ = mm.lock().write(clear_tid, &0u32.to_le_bytes());
        }
        crate::process::futex::wake(clear_tid, 1);
    }
    release_vfork(&me);
    crate::process::itimer::exited(pid);
    // Switch to the kernel root before the address space goes.
    crate::arch::uspace::activate_kernel();
    let keep = me.proc.inner.lock().keep_mm;
    let mm = if keep { None } else { me.proc.mm.lock().take() };
    if let Some(mm) = mm
        && let Some(m) = Arc::into_inner(mm)
    {
        m.into_inner().destroy();
    }
    // Orphans go to init.
    let children = core::mem::take(&mut me.proc.inner.lock().children);
    if !children.is_empty() {
        let init = sched::task(1);
        for c in &children {
            if let Some(t) = sched::task(*c) {
                t.proc.inner.lock().ppid = 1;
            }
        }
        if let Some(init) = init {
            init.proc.inner.lock().children.extend(children);
            sched::wake_all(child_chan(1));
        }
    }
    let sid = me.proc.inner.lock().sid;
    if sid == pid {
        crate::tty::session_ended(sid);
    }
    me.proc.inner.lock().exit_status = Some(status);
    if let Some(parent) = sched::task(ppid) {
        let sig = if exit_signal == 0 { umlvm_kcore::signal::SIGCHLD } else { exit_signal };
        let (code, st) = if status & 0x7f == 0 { (1, (status >> 8) & 0xff) } else { (2, status & 0x7f) };
        crate::process::signal::send_child_signal(&parent, sig, pid, code, st);
        sched::wake_all(child_chan(ppid));
    }
    drop(me);
    sched::exit_current()
}

/// Frees the memory of an ended built-in task.
pub fn release_memory(task: &Task) {
    let mm = task.proc.mm.lock().take();
    if let Some(m) = mm.and_then(Arc::into_inner) {
        m.into_inner().destroy();
    }
}

/// Reports a stop or continue of `task` to its parent.
pub fn notify_parent_stop(task: &Task, status: i32) {
    let ppid = {
        let mut i = task.proc.inner.lock();
        i.wait_event = Some(status);
        i.ppid
    };
    if let Some(parent) = sched::task(ppid) {
        let nocldstop = parent.proc.handler_table().lock()[umlvm_kcore::signal::SIGCHLD as usize - 1].flags
            & umlvm_kcore::signal::SA_NOCLDSTOP
            != 0;
        if !nocldstop {
            let (code, st) = if status == 0xffff { (6, 18) } else { (5, (status >> 8) & 0xff) };
            crate::process::signal::send_child_signal(
                &parent,
                umlvm_kcore::signal::SIGCHLD,
                task.pid,
                code,
                st,
            );
        }
        sched::wake_all(child_chan(ppid));
    }
}

/// wait4 options.
pub const WNOHANG: u64 = 1;
/// Report stopped children.
pub const WUNTRACED: u64 = 2;
/// Report continued children.
pub const WCONTINUED: u64 = 8;

/// `wait4(pid, ..., options)`: (pid, wait status, child user ticks, child system ticks).
pub fn wait4(which: i64, options: u64) -> KResult<Option<(Pid, i32, u64, u64)>> {
    let me = sched::current();
    let chan = child_chan(me.pid);
    let result = sched::wait_event(chan, true, None, || {
        let (children, my_pgid) = {
            let i = me.proc.inner.lock();
            (i.children.clone(), i.pgid)
        };
        let mut any = false;
        for c in children {
            let Some(t) = sched::task(c) else { continue };
            let (pgid, status, event) = {
                let i = t.proc.inner.lock();
                (i.pgid, i.exit_status, i.wait_event)
            };
            let matches = match which {
                -1 => true,
                0 => pgid == my_pgid,
                p if p > 0 => c as i64 == p,
                p => pgid as i64 == -p,
            };
            if !matches {
                continue;
            }
            any = true;
            if let Some(st) = status
                && t.state() == State::Zombie
            {
                return Some(Ok(Some((
                    c,
                    st,
                    t.utime.load(Ordering::Relaxed),
                    t.stime.load(Ordering::Relaxed),
                ))));
            }
            if let Some(ev) = event {
                let stopped = ev & 0xff == 0x7f;
                if (stopped && options & WUNTRACED != 0) || (ev == 0xffff && options & WCONTINUED != 0) {
                    t.proc.inner.lock().wait_event = None;
                    return Some(Ok(Some((c, ev, 0, 0))));
                }
            }
        }
        if !any {
            return Some(Err(Errno::ECHILD));
        }
        if options & WNOHANG != 0 {
            return Some(Ok(None));
        }
        None
    });
    let found = match result {
        Ok(r) => r?,
        Err(_) => return Err(Errno::ERESTARTSYS),
    };
    if let Some((pid, status, ut, st)) = found
        && status & 0x7f != 0x7f
        && status != 0xffff
    {
        reap(&me, pid, ut, st);
    }
    Ok(found)
}

fn reap(parent: &Task, pid: Pid, ut: u64, st: u64) {
    let mut i = parent.proc.inner.lock();
    i.children.retain(|&c| c != pid);
    i.cutime += ut;
    i.cstime += st;
    drop(i);
    sched::remove(pid);
}

/// Replaces the current process's memory with `path` (already resolved to `inode`) run
/// with `args` and `envs`. On success the frame is the new program's initial state.
pub fn exec(
    frame: &mut TrapFrame,
    path: &[u8],
    inode: Arc<dyn Inode>,
    args: Vec<Vec<u8>>,
    envs: Vec<Vec<u8>>,
) -> KResult<()> {
    let me = sched::current();
    let image = crate::process::exec::load(inode, path, &args, &envs)?;
    let (mut mm, entry, sp) = image;
    // Point of no return: install the new memory.
    let old =
        me.proc.mm.lock().replace(Arc::new(Spinlock::new(core::mem::replace(&mut mm, MemSpace::new()?))));
    let (kroot, uroot) = me.proc.roots();
    let top = me.stack_bounds().map_or(0, |b| b.1);
    context::set_user_context(top, kroot, uroot);
    crate::arch::uspace::activate_root(kroot);
    mm.destroy();
    if let Some(old) = old
        && let Some(m) = Arc::into_inner(old)
    {
        m.into_inner().destroy();
    }
    // Close-on-exec files, default handlers for caught signals, fresh FPU state and TLS.
    {
        let table = me.proc.fd_table();
        let unshared = Arc::new(Spinlock::new(table.lock().duplicate()));
        unshared.lock().close_on_exec();
        *me.proc.files.lock() = unshared;
    }
    {
        let old = me.proc.handler_table();
        let mut h = *old.lock();
        for a in h.iter_mut() {
            if a.handler > 1 {
                *a = SigAction::default();
            }
        }
        *me.proc.handlers.lock() = Arc::new(Spinlock::new(h));
    }
    {
        let mut i = me.proc.inner.lock();
        let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        i.comm = name[..name.len().min(15)].to_vec();
        i.cmdline = args.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
        i.exe = path.to_vec();
        i.altstack = (0, 0, 2);
        i.clear_child_tid = 0;
    }
    *me.proc.fpu.lock() = FpuState::new_initial();
    me.proc.fpu.lock().restore();
    me.proc.set_fs_base(0);
    release_vfork(&me);
    *frame = TrapFrame::default();
    frame.rip = entry;
    frame.rsp = sp;
    frame.cs = u64::from(umlvm_boot::x86::USER_CS);
    frame.ss = u64::from(umlvm_boot::x86::USER_DS);
    frame.rflags = 0x202;
    Ok(())
}

/// Starts the first user process (pid 1) from `path`.
pub fn spawn_init(
    path: &[u8],
    inode: Arc<dyn Inode>,
    args: Vec<Vec<u8>>,
    envs: Vec<Vec<u8>>,
    fs: crate::fs::FsContext,
    files: FdTable,
) -> KResult<()> {
    let pid = sched::alloc_pid();
    debug_assert_eq!(pid, 1);
    let (mm, entry, sp) = crate::process::exec::load(inode, path, &args, &envs)?;
    let mut inner = Process::blank_inner(0, pid);
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    inner.comm = name[..name.len().min(15)].to_vec();
    inner.cmdline = args.iter().flat_map(|a| a.iter().copied().chain(core::iter::once(0))).collect();
    inner.exe = path.to_vec();
    inner.ctty = Some(0);
    let proc = Process::with(
        inner,
        Some(Arc::new(Spinlock::new(mm))),
        Arc::new(Spinlock::new(files)),
        Arc::new(Spinlock::new(fs)),
        Arc::new(Spinlock::new([SigAction::default(); 64])),
        FpuState::new_initial(),
        0,
    );
    let frame = TrapFrame {
        rip: entry,
        rsp: sp,
        cs: u64::from(umlvm_boot::x86::USER_CS),
        ss: u64::from(umlvm_boot::x86::USER_DS),
        rflags: 0x202,
        ..TrapFrame::default()
    };
    sched::spawn(pid, proc, &frame);
    Ok(())
}

/// An anonymous read-write area.
pub fn anon_area(start: u64, end: u64) -> Area<Backing> {
    Area {
        start,
        end,
        access: Access { read: true, write: true, exec: false },
        shared: false,
        backing: Backing::Anon,
    }
}
