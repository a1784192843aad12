//! Linux signal bookkeeping for x86-64, as pure logic: signal numbers and sets, `sigaction`,
//! default actions, pending-signal queues, `siginfo_t`, `stack_t`, and the `rt_sigframe` that
//! signal delivery pushes on the user stack and `rt_sigreturn` reads back.
//!
//! Everything here encodes the x86-64 kernel ABI (what the syscalls copy, which is not always
//! what glibc's headers show: the kernel's `sigset_t` is 8 bytes and its `struct sigaction` is
//! 32). The kernel crate does the user-memory copies, the process-group fan-out and the FPU
//! save/restore; this module says which bytes go where.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use crate::errno::{Errno, KResult};

// ---- signal numbers ----
/// Hangup.
pub const SIGHUP: u32 = 1;
/// Interrupt (^C).
pub const SIGINT: u32 = 2;
/// Quit (^\).
pub const SIGQUIT: u32 = 3;
/// Illegal instruction.
pub const SIGILL: u32 = 4;
/// Trace/breakpoint trap.
pub const SIGTRAP: u32 = 5;
/// Abort.
pub const SIGABRT: u32 = 6;
/// Bus error.
pub const SIGBUS: u32 = 7;
/// Arithmetic exception.
pub const SIGFPE: u32 = 8;
/// Kill (cannot be caught, blocked or ignored).
pub const SIGKILL: u32 = 9;
/// User-defined signal 1.
pub const SIGUSR1: u32 = 10;
/// Invalid memory reference.
pub const SIGSEGV: u32 = 11;
/// User-defined signal 2.
pub const SIGUSR2: u32 = 12;
/// Write to a pipe without readers.
pub const SIGPIPE: u32 = 13;
/// Timer (alarm).
pub const SIGALRM: u32 = 14;
/// Termination request.
pub const SIGTERM: u32 = 15;
/// Coprocessor stack fault (unused).
pub const SIGSTKFLT: u32 = 16;
/// Child stopped, continued or terminated.
pub const SIGCHLD: u32 = 17;
/// Continue if stopped.
pub const SIGCONT: u32 = 18;
/// Stop (cannot be caught, blocked or ignored).
pub const SIGSTOP: u32 = 19;
/// Terminal stop (^Z).
pub const SIGTSTP: u32 = 20;
/// Background read from the terminal.
pub const SIGTTIN: u32 = 21;
/// Background write to the terminal.
pub const SIGTTOU: u32 = 22;
/// Urgent socket data.
pub const SIGURG: u32 = 23;
/// CPU time limit exceeded.
pub const SIGXCPU: u32 = 24;
/// File size limit exceeded.
pub const SIGXFSZ: u32 = 25;
/// Virtual timer.
pub const SIGVTALRM: u32 = 26;
/// Profiling timer.
pub const SIGPROF: u32 = 27;
/// Window size changed.
pub const SIGWINCH: u32 = 28;
/// I/O possible (also `SIGPOLL`).
pub const SIGIO: u32 = 29;
/// Power failure.
pub const SIGPWR: u32 = 30;
/// Bad system call.
pub const SIGSYS: u32 = 31;
/// The first real-time signal as the kernel numbers it (glibc reserves 32 and 33).
pub const SIGRTMIN: u32 = 32;
/// The last real-time signal.
pub const SIGRTMAX: u32 = 64;
/// Number of signals (valid numbers are `1..=NSIG`).
pub const NSIG: u32 = 64;

/// Whether `sig` is a signal number (`1..=64`).
pub const fn is_valid(sig: u32) -> bool {
    sig >= 1 && sig <= NSIG
}

/// Whether `sig` is a real-time (queued, non-coalescing) signal.
pub const fn is_realtime(sig: u32) -> bool {
    sig >= SIGRTMIN && sig <= SIGRTMAX
}

const NAMES: [&str; 64] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
    "SIGRTMIN",
    "SIGRTMIN+1",
    "SIGRTMIN+2",
    "SIGRTMIN+3",
    "SIGRTMIN+4",
    "SIGRTMIN+5",
    "SIGRTMIN+6",
    "SIGRTMIN+7",
    "SIGRTMIN+8",
    "SIGRTMIN+9",
    "SIGRTMIN+10",
    "SIGRTMIN+11",
    "SIGRTMIN+12",
    "SIGRTMIN+13",
    "SIGRTMIN+14",
    "SIGRTMIN+15",
    "SIGRTMIN+16",
    "SIGRTMIN+17",
    "SIGRTMIN+18",
    "SIGRTMIN+19",
    "SIGRTMIN+20",
    "SIGRTMIN+21",
    "SIGRTMIN+22",
    "SIGRTMIN+23",
    "SIGRTMIN+24",
    "SIGRTMIN+25",
    "SIGRTMIN+26",
    "SIGRTMIN+27",
    "SIGRTMIN+28",
    "SIGRTMIN+29",
    "SIGRTMIN+30",
    "SIGRTMIN+31",
    "SIGRTMAX",
];

/// The symbolic name of a signal (`"SIGINT"`; real-time ones relative to the kernel's
/// `SIGRTMIN` = 32), or `None` for a number outside `1..=64`.
pub fn name(sig: u32) -> Option<&'static str> {
    if is_valid(sig) { Some(NAMES[sig as usize - 1]) } else { None }
}

/// A set of signals, as the kernel's 64-bit `sigset_t`: bit `n - 1` stands for signal `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SigSet(pub u64);

impl SigSet {
    /// No signals.
    pub const EMPTY: Self = Self(0);
    /// Every signal.
    pub const ALL: Self = Self(!0);
    /// The signals that can be neither blocked nor caught: `SIGKILL` and `SIGSTOP`.
    pub const UNBLOCKABLE: Self = Self(1 << (SIGKILL - 1) | 1 << (SIGSTOP - 1));
    /// The stop signals (`SIGSTOP`, `SIGTSTP`, `SIGTTIN`, `SIGTTOU`).
    pub const STOP: Self =
        Self(1 << (SIGSTOP - 1) | 1 << (SIGTSTP - 1) | 1 << (SIGTTIN - 1) | 1 << (SIGTTOU - 1));
    /// The synchronous fault signals Linux delivers before others.
    pub const SYNCHRONOUS: Self = Self(
        1 << (SIGSEGV - 1)
            | 1 << (SIGBUS - 1)
            | 1 << (SIGILL - 1)
            | 1 << (SIGTRAP - 1)
            | 1 << (SIGFPE - 1)
            | 1 << (SIGSYS - 1),
    );
    /// Size of the kernel's `sigset_t` in bytes (the `sigsetsize` syscalls require).
    pub const SIZE: usize = 8;

    /// The set holding just `sig` (empty for an invalid number).
    pub const fn of(sig: u32) -> Self {
        if is_valid(sig) { Self(1 << (sig - 1)) } else { Self(0) }
    }

    /// Adds `sig` (ignored when invalid).
    pub fn add(&mut self, sig: u32) {
        self.0 |= Self::of(sig).0;
    }

    /// Removes `sig`.
    pub fn remove(&mut self, sig: u32) {
        self.0 &= !Self::of(sig).0;
    }

    /// Whether `sig` is in the set.
    pub const fn contains(self, sig: u32) -> bool {
        self.0 & Self::of(sig).0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Signals in either set.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Signals in both sets.
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Signals in `self` but not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The set without `SIGKILL` and `SIGSTOP`: what a blocked mask or a handler mask may hold.
    pub const fn sanitized(self) -> Self {
        self.difference(Self::UNBLOCKABLE)
    }

    /// The lowest-numbered signal in the set.
    pub const fn lowest(self) -> Option<u32> {
        if self.0 == 0 { None } else { Some(self.0.trailing_zeros() + 1) }
    }

    /// The signals in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = u32> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let sig = bits.trailing_zeros() + 1;
            bits &= bits - 1;
            Some(sig)
        })
    }

    /// The set as user space sees it.
    pub const fn encode(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// Reads a set from user bytes; `EFAULT` when fewer than 8 bytes.
    pub fn decode(bytes: &[u8]) -> KResult<Self> {
        Ok(Self(read_u64(bytes, 0)?))
    }
}

fn read_u64(bytes: &[u8], off: usize) -> KResult<u64> {
    let b = bytes.get(off..off + 8).ok_or(Errno::EFAULT)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_le_bytes(a))
}

fn read_u32(bytes: &[u8], off: usize) -> KResult<u32> {
    let b = bytes.get(off..off + 4).ok_or(Errno::EFAULT)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    buf[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

// ---- sigaction ----
/// `sa_handler` value: the default action.
pub const SIG_DFL: u64 = 0;
/// `sa_handler` value: ignore the signal.
pub const SIG_IGN: u64 = 1;
/// Do not send SIGCHLD when children stop or continue.
pub const SA_NOCLDSTOP: u64 = 0x0000_0001;
/// Do not turn terminated children into zombies.
pub const SA_NOCLDWAIT: u64 = 0x0000_0002;
/// The handler takes `(sig, siginfo_t *, ucontext *)`.
pub const SA_SIGINFO: u64 = 0x0000_0004;
/// `sa_restorer` is valid (x86-64 requires it: the handler returns there).
pub const SA_RESTORER: u64 = 0x0400_0000;
/// Run the handler on the alternate signal stack.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// Restart interrupted system calls.
pub const SA_RESTART: u64 = 0x1000_0000;
/// Do not block the signal while its handler runs.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// Reset the handler to `SIG_DFL` on delivery.
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// A signal's disposition: the kernel's `struct sigaction` as `rt_sigaction` copies it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    /// `SIG_DFL`, `SIG_IGN`, or the handler's address.
    pub handler: u64,
    /// `SA_*` flags.
    pub flags: u64,
    /// Where the handler returns to (a stub calling `rt_sigreturn`), with `SA_RESTORER`.
    pub restorer: u64,
    /// Signals blocked while the handler runs (besides the signal itself).
    pub mask: SigSet,
}

impl SigAction {
    /// Size of the ABI structure in bytes.
    pub const SIZE: usize = 32;
    /// Byte offset of `sa_handler`.
    pub const OFF_HANDLER: usize = 0;
    /// Byte offset of `sa_flags`.
    pub const OFF_FLAGS: usize = 8;
    /// Byte offset of `sa_restorer`.
    pub const OFF_RESTORER: usize = 16;
    /// Byte offset of `sa_mask`.
    pub const OFF_MASK: usize = 24;

    /// The structure as user space sees it.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, Self::OFF_HANDLER, self.handler);
        put_u64(&mut b, Self::OFF_FLAGS, self.flags);
        put_u64(&mut b, Self::OFF_RESTORER, self.restorer);
        put_u64(&mut b, Self::OFF_MASK, self.mask.0);
        b
    }

    /// Reads the structure from user bytes; `EFAULT` when short. The mask is stored
    /// [`SigSet::sanitized`], as Linux does.
    pub fn decode(bytes: &[u8]) -> KResult<Self> {
        if bytes.len() < Self::SIZE {
            return Err(Errno::EFAULT);
        }
        Ok(Self {
            handler: read_u64(bytes, Self::OFF_HANDLER)?,
            flags: read_u64(bytes, Self::OFF_FLAGS)?,
            restorer: read_u64(bytes, Self::OFF_RESTORER)?,
            mask: SigSet(read_u64(bytes, Self::OFF_MASK)?).sanitized(),
        })
    }

    /// Whether the signal is discarded on arrival: `SIG_IGN`, or `SIG_DFL` with an ignoring
    /// default action.
    pub fn ignores(&self, sig: u32) -> bool {
        self.handler == SIG_IGN || (self.handler == SIG_DFL && default_action(sig) == DefaultAction::Ignore)
    }

    /// Whether a user handler runs for the signal.
    pub fn has_handler(&self) -> bool {
        self.handler != SIG_DFL && self.handler != SIG_IGN
    }

    /// The blocked mask while the handler for `sig` runs: `blocked` plus `sa_mask`, plus `sig`
    /// itself unless `SA_NODEFER`, never `SIGKILL`/`SIGSTOP`.
    pub fn blocked_during_handler(&self, sig: u32, blocked: SigSet) -> SigSet {
        let mut set = blocked.union(self.mask);
        if self.flags & SA_NODEFER == 0 {
            set.add(sig);
        }
        set.sanitized()
    }

    /// The disposition after delivering to the handler: with `SA_RESETHAND` the handler
    /// becomes `SIG_DFL` (the flags stay, as in Linux).
    pub fn after_delivery(&self) -> Self {
        if self.flags & SA_RESETHAND != 0 { Self { handler: SIG_DFL, ..*self } } else { *self }
    }
}

/// Checks an `rt_sigaction` request: `EINVAL` for an invalid signal, or for a new action on
/// `SIGKILL`/`SIGSTOP` (`setting` true). Reading their action is allowed.
pub fn check_sigaction(sig: u32, setting: bool) -> KResult<()> {
    if !is_valid(sig) || (setting && SigSet::UNBLOCKABLE.contains(sig)) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// What happens to a process for a signal with `SIG_DFL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminate the process.
    Terminate,
    /// Terminate with a core dump (the wait status has bit 0x80).
    CoreDump,
    /// Discard the signal.
    Ignore,
    /// Stop the process (job control).
    Stop,
    /// Continue a stopped process (and otherwise ignore).
    Continue,
}

/// Linux's default action for `sig` (real-time and unknown signals terminate).
pub const fn default_action(sig: u32) -> DefaultAction {
    match sig {
        SIGCHLD | SIGURG | SIGWINCH => DefaultAction::Ignore,
        SIGCONT => DefaultAction::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => DefaultAction::Stop,
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | SIGXCPU | SIGXFSZ | SIGSYS => {
            DefaultAction::CoreDump
        }
        _ => DefaultAction::Terminate,
    }
}

// ---- siginfo ----
/// `si_code`: sent by `kill`.
pub const SI_USER: i32 = 0;
/// `si_code`: sent by the kernel.
pub const SI_KERNEL: i32 = 0x80;
/// `si_code`: sent by `sigqueue`.
pub const SI_QUEUE: i32 = -1;
/// `si_code`: a POSIX timer expired.
pub const SI_TIMER: i32 = -2;
/// `si_code`: a POSIX message queue changed state.
pub const SI_MESGQ: i32 = -3;
/// `si_code`: asynchronous I/O completed.
pub const SI_ASYNCIO: i32 = -4;
/// `si_code`: queued SIGIO.
pub const SI_SIGIO: i32 = -5;
/// `si_code`: sent by `tkill`/`tgkill`.
pub const SI_TKILL: i32 = -6;
/// SIGCHLD `si_code`: the child exited.
pub const CLD_EXITED: i32 = 1;
/// SIGCHLD `si_code`: the child was killed.
pub const CLD_KILLED: i32 = 2;
/// SIGCHLD `si_code`: the child was killed and dumped core.
pub const CLD_DUMPED: i32 = 3;
/// SIGCHLD `si_code`: a traced child trapped.
pub const CLD_TRAPPED: i32 = 4;
/// SIGCHLD `si_code`: the child stopped.
pub const CLD_STOPPED: i32 = 5;
/// SIGCHLD `si_code`: the stopped child continued.
pub const CLD_CONTINUED: i32 = 6;
/// SIGSEGV `si_code`: address not mapped.
pub const SEGV_MAPERR: i32 = 1;
/// SIGSEGV `si_code`: no permission for the access.
pub const SEGV_ACCERR: i32 = 2;
/// SIGBUS `si_code`: misaligned address.
pub const BUS_ADRALN: i32 = 1;
/// SIGBUS `si_code`: nonexistent physical address (e.g. beyond the end of a mapped file).
pub const BUS_ADRERR: i32 = 2;
/// SIGILL `si_code`: illegal opcode.
pub const ILL_ILLOPC: i32 = 1;
/// SIGFPE `si_code`: integer divide by zero.
pub const FPE_INTDIV: i32 = 1;
/// SIGTRAP `si_code`: breakpoint.
pub const TRAP_BRKPT: i32 = 1;
/// SIGTRAP `si_code`: single step.
pub const TRAP_TRACE: i32 = 2;

/// The information delivered with a signal. The fields that apply depend on the signal and
/// `code` (see [`SigInfo::encode`]); the others stay zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    /// Signal number.
    pub signo: u32,
    /// An errno value (usually 0).
    pub errno: i32,
    /// Why the signal was sent (`SI_*`, `CLD_*`, `SEGV_*`...).
    pub code: i32,
    /// Sending process (kill, queue) or child (SIGCHLD).
    pub pid: u32,
    /// Real user id of the sender or child.
    pub uid: u32,
    /// SIGCHLD: exit code, or the signal that killed, stopped or continued the child.
    pub status: i32,
    /// SIGCHLD: user CPU time of the child, in clock ticks.
    pub utime: u64,
    /// SIGCHLD: system CPU time of the child, in clock ticks.
    pub stime: u64,
    /// Fault signals: the faulting address.
    pub addr: u64,
    /// `sigqueue`/timers: the `sigval` passed along.
    pub value: u64,
}

/// Size of `siginfo_t` in bytes.
pub const SIGINFO_SIZE: usize = 128;

impl SigInfo {
    /// A signal sent by `kill` from process `pid`, user `uid`.
    pub fn user(signo: u32, pid: u32, uid: u32) -> Self {
        Self { signo, code: SI_USER, pid, uid, ..Self::default() }
    }

    /// A signal sent by `tkill`/`tgkill`.
    pub fn tkill(signo: u32, pid: u32, uid: u32) -> Self {
        Self { signo, code: SI_TKILL, pid, uid, ..Self::default() }
    }

    /// A signal the kernel raises on its own (a tty's SIGINT, SIGPIPE...).
    pub fn kernel(signo: u32) -> Self {
        Self { signo, code: SI_KERNEL, ..Self::default() }
    }

    /// SIGCHLD about child `pid`: `code` is a `CLD_*` value, `status` the exit code or signal.
    pub fn child(code: i32, pid: u32, uid: u32, status: i32, utime: u64, stime: u64) -> Self {
        Self { signo: SIGCHLD, code, pid, uid, status, utime, stime, ..Self::default() }
    }

    /// A fault signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP) at `addr`.
    pub fn fault(signo: u32, code: i32, addr: u64) -> Self {
        Self { signo, code, addr, ..Self::default() }
    }

    fn is_fault(&self) -> bool {
        matches!(self.signo, SIGILL | SIGFPE | SIGSEGV | SIGBUS | SIGTRAP)
    }

    /// The 128-byte `siginfo_t`: `si_signo`, `si_errno`, `si_code` at 0, 4 and 8, then the
    /// union at 16 laid out as Linux's `siginfo_layout` picks: SIGCHLD with a positive code:
    /// pid, uid, status (24), utime (32), stime (40); a fault signal with a positive kernel
    /// code: the address (16); a negative code (queue, tkill, timers): pid, uid, value (24);
    /// otherwise (`SI_USER`, `SI_KERNEL`): pid, uid.
    pub fn encode(&self) -> [u8; SIGINFO_SIZE] {
        let mut b = [0u8; SIGINFO_SIZE];
        put_u32(&mut b, 0, self.signo);
        put_u32(&mut b, 4, self.errno as u32);
        put_u32(&mut b, 8, self.code as u32);
        let kernel_code = self.code > SI_USER && self.code < SI_KERNEL;
        if kernel_code && self.signo == SIGCHLD {
            put_u32(&mut b, 16, self.pid);
            put_u32(&mut b, 20, self.uid);
            put_u32(&mut b, 24, self.status as u32);
            put_u64(&mut b, 32, self.utime);
            put_u64(&mut b, 40, self.stime);
        } else if kernel_code && self.is_fault() {
            put_u64(&mut b, 16, self.addr);
        } else {
            put_u32(&mut b, 16, self.pid);
            put_u32(&mut b, 20, self.uid);
            if self.code < 0 {
                put_u64(&mut b, 24, self.value);
            }
        }
        b
    }
}

// ---- pending signals ----
/// Most real-time signals queued at once in one [`SigPending`] (Linux's `RLIMIT_SIGPENDING`
/// is per user and larger; a queue this long means a runaway sender).
pub const MAX_QUEUED: usize = 1024;

/// Signals pending for a thread or a process, with their information.
#[derive(Clone, Debug, Default)]
pub struct SigPending {
    set: SigSet,
    queue: VecDeque<SigInfo>,
}

impl SigPending {
    /// Nothing pending.
    pub const fn new() -> Self {
        Self { set: SigSet::EMPTY, queue: VecDeque::new() }
    }

    /// The pending signals (for `rt_sigpending`).
    pub fn set(&self) -> SigSet {
        self.set
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Queues a signal. Standard signals coalesce: one already pending keeps its first
    /// information and this one is dropped. Real-time signals queue every instance (up to
    /// [`MAX_QUEUED`]). Like Linux's `prepare_signal`, SIGCONT discards pending stop signals and
    /// a stop signal discards a pending SIGCONT; the kernel must apply the same to the other
    /// pending queues of the process. Whether an ignored signal should be posted at all is the
    /// caller's decision ([`SigAction::ignores`]). Returns whether the signal was queued.
    pub fn post(&mut self, info: SigInfo) -> bool {
        let sig = info.signo;
        if !is_valid(sig) {
            return false;
        }
        if sig == SIGCONT {
            self.discard_set(SigSet::STOP);
        } else if SigSet::STOP.contains(sig) {
            self.discard(SIGCONT);
        }
        if self.set.contains(sig) && (!is_realtime(sig) || self.queue.len() >= MAX_QUEUED) {
            return false;
        }
        self.set.add(sig);
        self.queue.push_back(info);
        true
    }

    /// Whether a signal not in `blocked` is pending (`SIGKILL`/`SIGSTOP` are never blocked).
    pub fn has_deliverable(&self, blocked: SigSet) -> bool {
        !self.set.difference(blocked.sanitized()).is_empty()
    }

    /// The signal the next delivery would take, without dequeuing it.
    pub fn peek(&self, blocked: SigSet) -> Option<u32> {
        let ready = self.set.difference(blocked.sanitized());
        let sync = ready.intersection(SigSet::SYNCHRONOUS);
        if sync.is_empty() { ready.lowest() } else { sync.lowest() }
    }

    /// Dequeues the next signal not in `blocked`: synchronous fault signals first, then the
    /// lowest number, as Linux's `next_signal`. A real-time signal with more instances queued
    /// stays pending.
    pub fn next_deliverable(&mut self, blocked: SigSet) -> Option<(u32, SigInfo)> {
        let sig = self.peek(blocked)?;
        let pos = self.queue.iter().position(|i| i.signo == sig);
        let info = match pos {
            Some(p) => self.queue.remove(p).unwrap_or_default(),
            None => SigInfo::kernel(sig),
        };
        if !self.queue.iter().any(|i| i.signo == sig) {
            self.set.remove(sig);
        }
        Some((sig, info))
    }

    /// Drops every pending instance of `sig` (it became ignored, or job control cancelled it).
    pub fn discard(&mut self, sig: u32) {
        self.discard_set(SigSet::of(sig));
    }

    /// Drops every pending instance of the signals in `set`.
    pub fn discard_set(&mut self, set: SigSet) {
        if self.set.intersection(set).is_empty() {
            return;
        }
        self.set = self.set.difference(set);
        self.queue.retain(|i| !set.contains(i.signo));
    }
}

// ---- alternate signal stack ----
/// `ss_flags`: currently running on the alternate stack (as `sigaltstack` reports).
pub const SS_ONSTACK: u32 = 1;
/// `ss_flags`: the alternate stack is disabled.
pub const SS_DISABLE: u32 = 2;
/// `ss_flags`: disarm the alternate stack while a handler runs on it.
pub const SS_AUTODISARM: u32 = 1 << 31;
/// Smallest alternate stack `sigaltstack` accepts.
pub const MINSIGSTKSZ: u64 = 2048;

/// An alternate signal stack, as `stack_t` (`ss_sp` at 0, `ss_flags` at 8, `ss_size` at 16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    /// Lowest address of the stack.
    pub sp: u64,
    /// Mode flags as set by the program (`SS_DISABLE`, `SS_AUTODISARM`, or 0).
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
}

impl AltStack {
    /// Size of `stack_t` in bytes.
    pub const SIZE: usize = 24;

    /// No alternate stack (what a new thread has).
    pub const DISABLED: Self = Self { sp: 0, flags: SS_DISABLE, size: 0 };

    /// Whether the stack is set up.
    pub fn is_enabled(&self) -> bool {
        self.flags & SS_DISABLE == 0 && self.size != 0
    }

    /// Whether `sp` lies on the stack (Linux's `__on_sig_stack`: above the base, at most at the
    /// top).
    pub fn contains(&self, sp: u64) -> bool {
        self.is_enabled() && sp > self.sp && sp - self.sp <= self.size
    }

    /// Linux's `on_sig_stack`: like [`Self::contains`], but never with `SS_AUTODISARM`.
    pub fn on_stack(&self, sp: u64) -> bool {
        self.flags & SS_AUTODISARM == 0 && self.contains(sp)
    }

    /// The `ss_flags` value `sigaltstack` reports for a thread running at `sp`.
    pub fn reported_flags(&self, sp: u64) -> u32 {
        if !self.is_enabled() {
            SS_DISABLE
        } else if self.on_stack(sp) {
            SS_ONSTACK | (self.flags & SS_AUTODISARM)
        } else {
            self.flags & SS_AUTODISARM
        }
    }

    /// The structure as user space sees it.
    pub fn encode(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put_u64(&mut b, 0, self.sp);
        put_u32(&mut b, 8, self.flags);
        put_u64(&mut b, 16, self.size);
        b
    }

    /// Reads a `stack_t`; `EFAULT` when short.
    pub fn decode(bytes: &[u8]) -> KResult<Self> {
        Ok(Self { sp: read_u64(bytes, 0)?, flags: read_u32(bytes, 8)?, size: read_u64(bytes, 16)? })
    }
}

// ---- signal frame ----
/// The user registers signal delivery saves and `rt_sigreturn` restores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UserRegs {
    /// `r15`.
    pub r15: u64,
    /// `r14`.
    pub r14: u64,
    /// `r13`.
    pub r13: u64,
    /// `r12`.
    pub r12: u64,
    /// `r11`.
    pub r11: u64,
    /// `r10`.
    pub r10: u64,
    /// `r9`.
    pub r9: u64,
    /// `r8`.
    pub r8: u64,
    /// `rbp`.
    pub rbp: u64,
    /// `rdi`.
    pub rdi: u64,
    /// `rsi`.
    pub rsi: u64,
    /// `rdx`.
    pub rdx: u64,
    /// `rcx`.
    pub rcx: u64,
    /// `rbx`.
    pub rbx: u64,
    /// `rax`.
    pub rax: u64,
    /// `rip` — Instruction pointer.
    pub rip: u64,
    /// `cs` — Code segment selector.
    pub cs: u64,
    /// `rflags` — Flags register.
    pub rflags: u64,
    /// `rsp` — Stack pointer.
    pub rsp: u64,
    /// `ss` — Stack segment selector.
    pub ss: u64,
}

/// RFLAGS carry flag.
pub const RFLAGS_CF: u64 = 1 << 0;
/// RFLAGS bit 1, always set.
pub const RFLAGS_FIXED: u64 = 1 << 1;
/// RFLAGS parity flag.
pub const RFLAGS_PF: u64 = 1 << 2;
/// RFLAGS adjust flag.
pub const RFLAGS_AF: u64 = 1 << 4;
/// RFLAGS zero flag.
pub const RFLAGS_ZF: u64 = 1 << 6;
/// RFLAGS sign flag.
pub const RFLAGS_SF: u64 = 1 << 7;
/// RFLAGS trap (single-step) flag.
pub const RFLAGS_TF: u64 = 1 << 8;
/// RFLAGS interrupt enable.
pub const RFLAGS_IF: u64 = 1 << 9;
/// RFLAGS direction flag.
pub const RFLAGS_DF: u64 = 1 << 10;
/// RFLAGS overflow flag.
pub const RFLAGS_OF: u64 = 1 << 11;
/// RFLAGS resume flag.
pub const RFLAGS_RF: u64 = 1 << 16;
/// RFLAGS alignment check.
pub const RFLAGS_AC: u64 = 1 << 18;
/// The RFLAGS bits `rt_sigreturn` takes from the frame (Linux's `FIX_EFLAGS`).
pub const RFLAGS_USER_MASK: u64 = RFLAGS_AC
    | RFLAGS_OF
    | RFLAGS_DF
    | RFLAGS_TF
    | RFLAGS_SF
    | RFLAGS_ZF
    | RFLAGS_AF
    | RFLAGS_PF
    | RFLAGS_CF
    | RFLAGS_RF;

/// `uc_flags`: the fpstate has the xsave format (magic words present).
pub const UC_FP_XSTATE: u64 = 1;
/// `uc_flags`: `sigcontext.ss` holds the saved SS.
pub const UC_SIGCONTEXT_SS: u64 = 2;
/// `uc_flags`: sigreturn restores SS exactly.
pub const UC_STRICT_RESTORE_SS: u64 = 4;

/// `_fpx_sw_bytes.magic1`, at offset 464 of the fxsave area when the xsave format is used.
pub const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
/// The word after the xsave area when the xsave format is used.
pub const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Size of the legacy fxsave area.
pub const FXSAVE_SIZE: usize = 512;
/// Offset of `sw_reserved` (`struct _fpx_sw_bytes`) in the fxsave area.
pub const FX_SW_BYTES_OFFSET: usize = 464;
/// Bytes of red zone below the user stack pointer that delivery skips.
pub const RED_ZONE: u64 = 128;

/// Size of the kernel's `struct ucontext`.
pub const UCONTEXT_SIZE: usize = 304;
/// Size of `struct sigcontext`.
pub const SIGCONTEXT_SIZE: usize = 256;
/// Size of `struct rt_sigframe`: `pretcode`, `uc`, `info`.
pub const RT_SIGFRAME_SIZE: usize = 8 + UCONTEXT_SIZE + SIGINFO_SIZE;
/// Offset of `pretcode` in `rt_sigframe`.
pub const FRAME_PRETCODE: usize = 0;
/// Offset of `uc` in `rt_sigframe`.
pub const FRAME_UC: usize = 8;
/// Offset of `info` in `rt_sigframe`.
pub const FRAME_INFO: usize = FRAME_UC + UCONTEXT_SIZE;
/// Offset of `uc_flags` in `ucontext`.
pub const UC_FLAGS: usize = 0;
/// Offset of `uc_link` in `ucontext`.
pub const UC_LINK: usize = 8;
/// Offset of `uc_stack` (a `stack_t`) in `ucontext`.
pub const UC_STACK: usize = 16;
/// Offset of `uc_mcontext` (a `struct sigcontext`) in `ucontext`.
pub const UC_MCONTEXT: usize = 40;
/// Offset of `uc_sigmask` in `ucontext`.
pub const UC_SIGMASK: usize = UC_MCONTEXT + SIGCONTEXT_SIZE;

/// Offsets of the `struct sigcontext` fields.
pub mod sc {
    /// Offset of `r8`.
    pub const R8: usize = 0;
    /// Offset of `r9`.
    pub const R9: usize = 8;
    /// Offset of `r10`.
    pub const R10: usize = 16;
    /// Offset of `r11`.
    pub const R11: usize = 24;
    /// Offset of `r12`.
    pub const R12: usize = 32;
    /// Offset of `r13`.
    pub const R13: usize = 40;
    /// Offset of `r14`.
    pub const R14: usize = 48;
    /// Offset of `r15`.
    pub const R15: usize = 56;
    /// Offset of `rdi`.
    pub const RDI: usize = 64;
    /// Offset of `rsi`.
    pub const RSI: usize = 72;
    /// Offset of `rbp`.
    pub const RBP: usize = 80;
    /// Offset of `rbx`.
    pub const RBX: usize = 88;
    /// Offset of `rdx`.
    pub const RDX: usize = 96;
    /// Offset of `rax`.
    pub const RAX: usize = 104;
    /// Offset of `rcx`.
    pub const RCX: usize = 112;
    /// Offset of `rsp`.
    pub const RSP: usize = 120;
    /// Offset of `rip`.
    pub const RIP: usize = 128;
    /// Offset of `eflags`.
    pub const EFLAGS: usize = 136;
    /// Offset of `cs`.
    pub const CS: usize = 144;
    /// Offset of `gs`.
    pub const GS: usize = 146;
    /// Offset of `fs`.
    pub const FS: usize = 148;
    /// Offset of `ss`.
    pub const SS: usize = 150;
    /// Offset of `err`.
    pub const ERR: usize = 152;
    /// Offset of `trapno`.
    pub const TRAPNO: usize = 160;
    /// Offset of `oldmask`.
    pub const OLDMASK: usize = 168;
    /// Offset of `cr2`.
    pub const CR2: usize = 176;
    /// Offset of `fpstate`.
    pub const FPSTATE: usize = 184;
    /// Offset of `reserved1`.
    pub const RESERVED1: usize = 192;
}

/// The address of the `ucontext` that `rt_sigreturn` reads, given the user `rsp` at the
/// syscall: the handler's `ret` popped `pretcode`, so the frame is at `rsp - 8` and its `uc`
/// at `rsp - 8 + FRAME_UC`, i.e. `rsp` itself. Read [`UCONTEXT_SIZE`] bytes there.
pub const fn sigreturn_ucontext_addr(rsp: u64) -> u64 {
    rsp.wrapping_sub(8).wrapping_add(FRAME_UC as u64)
}

/// The FPU/SSE state image to save in the frame, as the CPU wrote it.
#[derive(Clone, Copy, Debug)]
pub enum FpImage<'a> {
    /// A 512-byte `fxsave` image: saved without the software magic words.
    Fxsave(&'a [u8]),
    /// An `xsave` image (512-byte legacy area, 64-byte header, extended state) with the user
    /// feature mask (XCR0) it was saved under: saved with `_fpx_sw_bytes` and the second magic.
    Xsave {
        /// The image.
        image: &'a [u8],
        /// The enabled user xfeatures (XCR0).
        xcr0: u64,
    },
}

/// Exception details recorded in `sigcontext` (zero for signals that are not faults).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultContext {
    /// The exception vector (14 for a page fault).
    pub trapno: u64,
    /// The exception error code.
    pub err: u64,
    /// The faulting address of a page fault.
    pub cr2: u64,
}

/// Everything signal delivery needs to build a frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameRequest<'a> {
    /// The interrupted user registers (their `rsp` is where the frame goes below).
    pub regs: &'a UserRegs,
    /// The signal and its information (`info.signo` is the signal number).
    pub info: &'a SigInfo,
    /// The handler's disposition (`SA_RESTORER` is required, as on Linux x86-64).
    pub action: &'a SigAction,
    /// The mask to restore on return (the blocked set before delivery, or the one a
    /// `sigsuspend` saved).
    pub blocked: SigSet,
    /// The FPU state to save.
    pub fp: FpImage<'a>,
    /// The thread's alternate stack, if any.
    pub altstack: Option<AltStack>,
    /// Exception details for fault signals.
    pub fault: FaultContext,
}

/// A built signal frame: write `bytes` at `frame_addr` in user memory, then enter the handler
/// with `new_regs` and a reset FPU state (Linux's `fpu__clear_user_states`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigFrame {
    /// The frame, the gap, and the FPU state area up to its end.
    pub bytes: Vec<u8>,
    /// User address of `bytes[0]` (`struct rt_sigframe`); the handler's `rsp`.
    pub frame_addr: u64,
    /// User address of the saved FPU state (64-byte aligned).
    pub fpstate_addr: u64,
    /// Registers for the handler.
    pub new_regs: UserRegs,
}

/// Builds Linux's x86-64 `rt_sigframe` for delivering `req.info.signo` to a handler.
///
/// Layout, from the top: the 128-byte red zone is skipped below `rsp` (unless the frame moves
/// to the alternate stack, which happens with `SA_ONSTACK` when not already on it); the FPU
/// state, 64-byte aligned (xsave: `_fpx_sw_bytes` at 464 and `FP_XSTATE_MAGIC2` after the
/// image; fxsave: bytes 464..512 zeroed); then `struct rt_sigframe` (`pretcode` =
/// `sa_restorer`, `ucontext`, `siginfo` when `SA_SIGINFO`) at an address `≡ 8 (mod 16)`.
/// The handler gets `rdi` = signal, `rsi` = `&info`, `rdx` = `&uc`, `rax` = 0, `rsp` = frame,
/// `rip` = handler, with DF, TF and RF cleared.
///
/// Errors: `EFAULT` without `SA_RESTORER`, when the frame would overflow the alternate stack,
/// or when the stack pointer is too low (Linux then forces SIGSEGV); `EINVAL` for an FPU
/// image of the wrong size.
pub fn build_rt_sigframe(req: &FrameRequest<'_>) -> KResult<SigFrame> {
    let regs = req.regs;
    let action = req.action;
    if action.flags & SA_RESTORER == 0 {
        return Err(Errno::EFAULT);
    }
    let (image, xsave) = match req.fp {
        FpImage::Fxsave(image) if image.len() == FXSAVE_SIZE => (image, None),
        FpImage::Xsave { image, xcr0 } if image.len() >= FXSAVE_SIZE + 64 => (image, Some(xcr0)),
        _ => return Err(Errno::EINVAL),
    };
    let alt = req.altstack.filter(AltStack::is_enabled);
    let nested = alt.is_some_and(|a| a.on_stack(regs.rsp));
    let mut sp = regs.rsp.checked_sub(RED_ZONE).ok_or(Errno::EFAULT)?;
    let mut entering = false;
    if action.flags & SA_ONSTACK != 0
        && let Some(a) = alt
        && !a.on_stack(sp)
    {
        sp = a.sp.checked_add(a.size).ok_or(Errno::EFAULT)?;
        entering = true;
    }
    let fp_size = image.len() + if xsave.is_some() { 4 } else { 0 };
    let fp_addr = sp.checked_sub(fp_size as u64).ok_or(Errno::EFAULT)? & !63;
    let frame_addr = (fp_addr.checked_sub(RT_SIGFRAME_SIZE as u64).ok_or(Errno::EFAULT)? & !15)
        .checked_sub(8)
        .ok_or(Errno::EFAULT)?;
    if (nested || entering) && !alt.is_some_and(|a| a.contains(frame_addr)) {
        return Err(Errno::EFAULT);
    }

    let total = (fp_addr - frame_addr) as usize + fp_size;
    let mut b = vec![0u8; total];
    put_u64(&mut b, FRAME_PRETCODE, action.restorer);

    let uc = FRAME_UC;
    let uc_flags = UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS | if xsave.is_some() { UC_FP_XSTATE } else { 0 };
    put_u64(&mut b, uc + UC_FLAGS, uc_flags);
    put_u64(&mut b, uc + UC_LINK, 0);
    let saved_stack = req.altstack.unwrap_or(AltStack::DISABLED);
    b[uc + UC_STACK..uc + UC_STACK + AltStack::SIZE].copy_from_slice(&saved_stack.encode());

    let m = uc + UC_MCONTEXT;
    for (off, v) in [
        (sc::R8, regs.r8),
        (sc::R9, regs.r9),
        (sc::R10, regs.r10),
        (sc::R11, regs.r11),
        (sc::R12, regs.r12),
        (sc::R13, regs.r13),
        (sc::R14, regs.r14),
        (sc::R15, regs.r15),
        (sc::RDI, regs.rdi),
        (sc::RSI, regs.rsi),
        (sc::RBP, regs.rbp),
        (sc::RBX, regs.rbx),
        (sc::RDX, regs.rdx),
        (sc::RAX, regs.rax),
        (sc::RCX, regs.rcx),
        (sc::RSP, regs.rsp),
        (sc::RIP, regs.rip),
        (sc::EFLAGS, regs.rflags),
        (sc::ERR, req.fault.err),
        (sc::TRAPNO, req.fault.trapno),
        (sc::OLDMASK, req.blocked.0),
        (sc::CR2, req.fault.cr2),
        (sc::FPSTATE, fp_addr),
    ] {
        put_u64(&mut b, m + off, v);
    }
    put_u16(&mut b, m + sc::CS, regs.cs as u16);
    put_u16(&mut b, m + sc::GS, 0);
    put_u16(&mut b, m + sc::FS, 0);
    put_u16(&mut b, m + sc::SS, regs.ss as u16);
    put_u64(&mut b, uc + UC_SIGMASK, req.blocked.0);

    if action.flags & SA_SIGINFO != 0 {
        b[FRAME_INFO..FRAME_INFO + SIGINFO_SIZE].copy_from_slice(&req.info.encode());
    }

    let fp = (fp_addr - frame_addr) as usize;
    b[fp..fp + image.len()].copy_from_slice(image);
    let sw = fp + FX_SW_BYTES_OFFSET;
    b[sw..fp + FXSAVE_SIZE].fill(0);
    if let Some(xcr0) = xsave {
        put_u32(&mut b, sw, FP_XSTATE_MAGIC1);
        put_u32(&mut b, sw + 4, (image.len() + 4) as u32);
        put_u64(&mut b, sw + 8, xcr0);
        put_u32(&mut b, sw + 16, image.len() as u32);
        put_u32(&mut b, fp + image.len(), FP_XSTATE_MAGIC2);
        // Legacy programs that edit only the fxsave area still get x87/SSE restored.
        let hdr = fp + FXSAVE_SIZE;
        let xstate_bv = read_u64(&b, hdr)? | 3;
        put_u64(&mut b, hdr, xstate_bv);
    }

    let mut new_regs = *regs;
    new_regs.rip = action.handler;
    new_regs.rdi = u64::from(req.info.signo);
    new_regs.rsi = frame_addr + FRAME_INFO as u64;
    new_regs.rdx = frame_addr + FRAME_UC as u64;
    new_regs.rax = 0;
    new_regs.rsp = frame_addr;
    new_regs.rflags &= !(RFLAGS_DF | RFLAGS_TF | RFLAGS_RF);
    Ok(SigFrame { bytes: b, frame_addr, fpstate_addr: fp_addr, new_regs })
}

/// What `rt_sigreturn` restores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigReturn {
    /// The registers to return to user space with (`rax` included: the syscall returns it).
    pub regs: UserRegs,
    /// The new blocked mask (without `SIGKILL`/`SIGSTOP`).
    pub blocked: SigSet,
    /// User address of the FPU state to restore: 0 means reset the FPU to its initial state;
    /// otherwise the kernel validates it (64-byte aligned, readable, [`FxSwBytes`] for the
    /// xsave format, MXCSR reserved bits clear) and restores it, or sends SIGSEGV.
    pub fpstate: u64,
    /// The saved `uc_stack`, to apply like `sigaltstack` would (errors ignored, as Linux's
    /// `restore_altstack`, except that a fault is a bad frame).
    pub altstack: AltStack,
    /// The saved `uc_flags`.
    pub uc_flags: u64,
}

/// Parses the `ucontext` `rt_sigreturn` reads: [`UCONTEXT_SIZE`] bytes at
/// [`sigreturn_ucontext_addr`]`(rsp)`. The general registers come back as saved; RFLAGS keeps
/// only [`RFLAGS_USER_MASK`] from the frame, with IF and bit 1 set; CS and SS become
/// `user_cs` and `user_ss` (this kernel runs only 64-bit user code). `EFAULT` when short.
pub fn parse_rt_sigframe(uc: &[u8], user_cs: u64, user_ss: u64) -> KResult<SigReturn> {
    if uc.len() < UCONTEXT_SIZE {
        return Err(Errno::EFAULT);
    }
    let m = UC_MCONTEXT;
    let r = |off: usize| read_u64(uc, m + off);
    let regs = UserRegs {
        r15: r(sc::R15)?,
        r14: r(sc::R14)?,
        r13: r(sc::R13)?,
        r12: r(sc::R12)?,
        r11: r(sc::R11)?,
        r10: r(sc::R10)?,
        r9: r(sc::R9)?,
        r8: r(sc::R8)?,
        rbp: r(sc::RBP)?,
        rdi: r(sc::RDI)?,
        rsi: r(sc::RSI)?,
        rdx: r(sc::RDX)?,
        rcx: r(sc::RCX)?,
        rbx: r(sc::RBX)?,
        rax: r(sc::RAX)?,
        rip: r(sc::RIP)?,
        cs: user_cs,
        rflags: (r(sc::EFLAGS)? & RFLAGS_USER_MASK) | RFLAGS_IF | RFLAGS_FIXED,
        rsp: r(sc::RSP)?,
        ss: user_ss,
    };
    Ok(SigReturn {
        regs,
        blocked: SigSet(read_u64(uc, UC_SIGMASK)?).sanitized(),
        fpstate: r(sc::FPSTATE)?,
        altstack: AltStack::decode(&uc[UC_STACK..UC_STACK + AltStack::SIZE])?,
        uc_flags: read_u64(uc, UC_FLAGS)?,
    })
}

/// The software bytes (`struct _fpx_sw_bytes`) at offset 464 of a saved fxsave area, which
/// mark the xsave format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FxSwBytes {
    /// Size of the whole saved state including the trailing magic2.
    pub extended_size: u32,
    /// The xfeatures saved.
    pub xfeatures: u64,
    /// Size of the xsave image (magic2 follows it).
    pub xstate_size: u32,
}

impl FxSwBytes {
    /// Reads the software bytes from the first 512 bytes of a saved FPU state: `None` when
    /// `magic1` is absent (plain fxsave format, restore with `fxrstor`) or the sizes are
    /// inconsistent (`xstate_size` below 576 or above `max_xstate_size`, or `extended_size`
    /// not `xstate_size + 4`), which Linux also treats as fxsave-only. When `Some`, the kernel
    /// must still find [`FP_XSTATE_MAGIC2`] at `fpstate + xstate_size` before using `xrstor`
    /// with `xfeatures & XCR0`.
    pub fn parse(fx_area: &[u8], max_xstate_size: u32) -> Option<Self> {
        let magic1 = read_u32(fx_area, FX_SW_BYTES_OFFSET).ok()?;
        if magic1 != FP_XSTATE_MAGIC1 {
            return None;
        }
        let s = Self {
            extended_size: read_u32(fx_area, FX_SW_BYTES_OFFSET + 4).ok()?,
            xfeatures: read_u64(fx_area, FX_SW_BYTES_OFFSET + 8).ok()?,
            xstate_size: read_u32(fx_area, FX_SW_BYTES_OFFSET + 16).ok()?,
        };
        let ok = s.xstate_size as usize >= FXSAVE_SIZE + 64
            && s.xstate_size <= max_xstate_size
            && s.extended_size == s.xstate_size + 4;
        ok.then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER_CS: u64 = 0x33;
    const USER_SS: u64 = 0x2b;

    fn regs() -> UserRegs {
        UserRegs {
            r15: 15,
            r14: 14,
            r13: 13,
            r12: 12,
            r11: 11,
            r10: 10,
            r9: 9,
            r8: 8,
            rbp: 0x1bb,
            rdi: 0x1d1,
            rsi: 0x151,
            rdx: 0x1dd,
            rcx: 0x1cc,
            rbx: 0x1b0,
            rax: 0x1aa,
            rip: 0x40_1234,
            cs: USER_CS,
            rflags: RFLAGS_FIXED | RFLAGS_IF | RFLAGS_DF | RFLAGS_TF | RFLAGS_CF | RFLAGS_ZF,
            rsp: 0x7fff_f000_0123,
            ss: USER_SS,
        }
    }

    fn action(flags: u64) -> SigAction {
        SigAction {
            handler: 0x40_5000,
            flags: SA_RESTORER | SA_SIGINFO | flags,
            restorer: 0x40_6000,
            mask: SigSet::of(SIGUSR2),
        }
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        read_u64(b, off).unwrap()
    }

    #[test]
    fn numbers_names_and_sets() {
        assert_eq!(name(SIGINT), Some("SIGINT"));
        assert_eq!(name(SIGSYS), Some("SIGSYS"));
        assert_eq!(name(32), Some("SIGRTMIN"));
        assert_eq!(name(40), Some("SIGRTMIN+8"));
        assert_eq!(name(64), Some("SIGRTMAX"));
        assert_eq!(name(0), None);
        assert_eq!(name(65), None);
        let mut s = SigSet::EMPTY;
        s.add(SIGINT);
        s.add(SIGCHLD);
        s.add(64);
        s.add(0);
        s.add(65);
        assert_eq!(s.0, 1 << 1 | 1 << 16 | 1 << 63);
        assert!(s.contains(SIGCHLD) && !s.contains(SIGTERM));
        assert_eq!(s.iter().collect::<Vec<_>>(), [2, 17, 64]);
        s.remove(SIGCHLD);
        assert_eq!(s.lowest(), Some(SIGINT));
        assert!(!SigSet::ALL.sanitized().contains(SIGKILL));
        assert!(!SigSet::ALL.sanitized().contains(SIGSTOP));
        assert_eq!(SigSet::ALL.sanitized().iter().count(), 62);
        assert_eq!(SigSet::decode(&s.encode()), Ok(s));
        assert_eq!(SigSet::decode(&[0; 7]), Err(Errno::EFAULT));
    }

    #[test]
    fn default_actions() {
        use DefaultAction::*;
        for (sig, want) in [
            (SIGHUP, Terminate),
            (SIGINT, Terminate),
            (SIGQUIT, CoreDump),
            (SIGILL, CoreDump),
            (SIGTRAP, CoreDump),
            (SIGABRT, CoreDump),
            (SIGBUS, CoreDump),
            (SIGFPE, CoreDump),
            (SIGKILL, Terminate),
            (SIGSEGV, CoreDump),
            (SIGPIPE, Terminate),
            (SIGALRM, Terminate),
            (SIGTERM, Terminate),
            (SIGCHLD, Ignore),
            (SIGCONT, Continue),
            (SIGSTOP, Stop),
            (SIGTSTP, Stop),
            (SIGTTIN, Stop),
            (SIGTTOU, Stop),
            (SIGURG, Ignore),
            (SIGXCPU, CoreDump),
            (SIGXFSZ, CoreDump),
            (SIGWINCH, Ignore),
            (SIGSYS, CoreDump),
            (SIGRTMIN, Terminate),
            (SIGRTMAX, Terminate),
        ] {
            assert_eq!(default_action(sig), want, "{:?}", name(sig));
        }
        assert!(SigAction::default().ignores(SIGCHLD));
        assert!(!SigAction::default().ignores(SIGINT));
        assert!(SigAction { handler: SIG_IGN, ..SigAction::default() }.ignores(SIGINT));
    }

    #[test]
    fn sigaction_abi() {
        let a = SigAction {
            handler: 0x1111,
            flags: SA_RESTORER | SA_RESTART,
            restorer: 0x2222,
            mask: SigSet(0x30),
        };
        let b = a.encode();
        assert_eq!(b.len(), 32);
        assert_eq!(u64_at(&b, 0), 0x1111);
        assert_eq!(u64_at(&b, 8), 0x1400_0000);
        assert_eq!(u64_at(&b, 16), 0x2222);
        assert_eq!(u64_at(&b, 24), 0x30);
        assert_eq!(SigAction::decode(&b), Ok(a));
        // SIGKILL and SIGSTOP cannot be in a handler mask.
        let mut raw = b;
        raw[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(SigAction::decode(&raw).unwrap().mask, SigSet::ALL.sanitized());
        assert_eq!(SigAction::decode(&b[..31]), Err(Errno::EFAULT));
        assert_eq!(check_sigaction(SIGKILL, true), Err(Errno::EINVAL));
        assert_eq!(check_sigaction(SIGSTOP, true), Err(Errno::EINVAL));
        assert_eq!(check_sigaction(SIGKILL, false), Ok(()));
        assert_eq!(check_sigaction(0, false), Err(Errno::EINVAL));
        assert_eq!(check_sigaction(65, false), Err(Errno::EINVAL));
        assert_eq!(check_sigaction(SIGINT, true), Ok(()));

        let act = action(0);
        let during = act.blocked_during_handler(SIGINT, SigSet::of(SIGKILL));
        assert_eq!(during, SigSet::of(SIGINT).union(SigSet::of(SIGUSR2)));
        let nodefer = action(SA_NODEFER).blocked_during_handler(SIGINT, SigSet::EMPTY);
        assert_eq!(nodefer, SigSet::of(SIGUSR2));
        assert_eq!(action(SA_RESETHAND).after_delivery().handler, SIG_DFL);
        assert_eq!(action(0).after_delivery(), action(0));
    }

    #[test]
    fn siginfo_layouts() {
        let b = SigInfo::user(SIGTERM, 42, 1000).encode();
        assert_eq!(b.len(), 128);
        assert_eq!(read_u32(&b, 0), Ok(SIGTERM));
        assert_eq!(read_u32(&b, 4), Ok(0));
        assert_eq!(read_u32(&b, 8), Ok(SI_USER as u32));
        assert_eq!(read_u32(&b, 16), Ok(42));
        assert_eq!(read_u32(&b, 20), Ok(1000));

        let b = SigInfo::child(CLD_EXITED, 77, 0, 3, 10, 20).encode();
        assert_eq!(read_u32(&b, 0), Ok(SIGCHLD));
        assert_eq!(read_u32(&b, 8), Ok(1));
        assert_eq!(read_u32(&b, 16), Ok(77));
        assert_eq!(read_u32(&b, 24), Ok(3));
        assert_eq!(u64_at(&b, 32), 10);
        assert_eq!(u64_at(&b, 40), 20);

        let b = SigInfo::fault(SIGSEGV, SEGV_MAPERR, 0xdead_0000).encode();
        assert_eq!(read_u32(&b, 8), Ok(1));
        assert_eq!(u64_at(&b, 16), 0xdead_0000);

        let b = SigInfo::tkill(SIGABRT, 5, 6).encode();
        assert_eq!(read_u32(&b, 8), Ok(SI_TKILL as u32));
        assert_eq!((read_u32(&b, 16), read_u32(&b, 20)), (Ok(5), Ok(6)));

        let b = SigInfo::kernel(SIGINT).encode();
        assert_eq!(read_u32(&b, 8), Ok(0x80));
        assert!(b[12..].iter().all(|&x| x == 0));
    }

    #[test]
    fn pending_order_and_coalescing() {
        let mut p = SigPending::new();
        assert!(p.post(SigInfo::user(SIGTERM, 1, 0)));
        assert!(!p.post(SigInfo::user(SIGTERM, 2, 0)), "standard signals coalesce");
        assert!(p.post(SigInfo::user(SIGINT, 3, 0)));
        assert!(p.post(SigInfo::fault(SIGSEGV, SEGV_ACCERR, 0x1000)));
        assert!(p.post(SigInfo::user(40, 4, 0)));
        assert!(p.post(SigInfo::user(40, 5, 0)), "real-time signals queue");
        assert_eq!(p.set().iter().collect::<Vec<_>>(), [SIGINT, SIGSEGV, SIGTERM, 40]);
        assert!(p.has_deliverable(SigSet::EMPTY));

        // Synchronous faults first, then lowest numbers; blocked ones stay.
        let blocked = SigSet::of(SIGINT);
        let (sig, info) = p.next_deliverable(blocked).unwrap();
        assert_eq!((sig, info.code, info.addr), (SIGSEGV, SEGV_ACCERR, 0x1000));
        let (sig, info) = p.next_deliverable(blocked).unwrap();
        assert_eq!((sig, info.pid), (SIGTERM, 1), "the first instance's information is kept");
        assert_eq!(p.next_deliverable(blocked).map(|(s, i)| (s, i.pid)), Some((40, 4)));
        assert!(p.set().contains(40), "a second instance is queued");
        assert_eq!(p.next_deliverable(blocked).map(|(s, i)| (s, i.pid)), Some((40, 5)));
        assert_eq!(p.next_deliverable(blocked), None);
        assert!(!p.has_deliverable(blocked));
        assert_eq!(p.peek(SigSet::EMPTY), Some(SIGINT));
        assert_eq!(p.next_deliverable(SigSet::EMPTY).map(|(s, _)| s), Some(SIGINT));
        assert!(p.is_empty());

        // SIGKILL cannot be blocked.
        p.post(SigInfo::user(SIGKILL, 1, 0));
        assert_eq!(p.next_deliverable(SigSet::ALL).map(|(s, _)| s), Some(SIGKILL));

        // SIGCONT cancels pending stops and a stop cancels SIGCONT.
        p.post(SigInfo::kernel(SIGTSTP));
        p.post(SigInfo::kernel(SIGTTOU));
        p.post(SigInfo::user(SIGCONT, 1, 0));
        assert_eq!(p.set(), SigSet::of(SIGCONT));
        p.post(SigInfo::user(SIGSTOP, 1, 0));
        assert_eq!(p.set(), SigSet::of(SIGSTOP));
        p.discard(SIGSTOP);
        assert!(p.is_empty());
    }

    #[test]
    fn frame_layout_offsets() {
        assert_eq!(UC_MCONTEXT, 40);
        assert_eq!(SIGCONTEXT_SIZE, 256);
        assert_eq!(UC_SIGMASK, 296);
        assert_eq!(UCONTEXT_SIZE, 304);
        assert_eq!((FRAME_PRETCODE, FRAME_UC, FRAME_INFO), (0, 8, 312));
        assert_eq!(RT_SIGFRAME_SIZE, 440);
        let offsets = [
            sc::R8,
            sc::R9,
            sc::R10,
            sc::R11,
            sc::R12,
            sc::R13,
            sc::R14,
            sc::R15,
            sc::RDI,
            sc::RSI,
            sc::RBP,
            sc::RBX,
            sc::RDX,
            sc::RAX,
            sc::RCX,
            sc::RSP,
            sc::RIP,
            sc::EFLAGS,
        ];
        for (i, off) in offsets.iter().enumerate() {
            assert_eq!(*off, i * 8);
        }
        assert_eq!((sc::CS, sc::GS, sc::FS, sc::SS), (144, 146, 148, 150));
        assert_eq!((sc::ERR, sc::TRAPNO, sc::OLDMASK, sc::CR2, sc::FPSTATE), (152, 160, 168, 176, 184));
        assert_eq!(sc::RESERVED1 + 64, SIGCONTEXT_SIZE);
        assert_eq!(RFLAGS_USER_MASK, 0x50dd5);
        assert_eq!(sigreturn_ucontext_addr(0x7000_0008), 0x7000_0008);
    }

    fn fx_image() -> Vec<u8> {
        let mut fx = vec![0xa5u8; FXSAVE_SIZE];
        fx[FX_SW_BYTES_OFFSET..].fill(0xee); // junk the CPU leaves alone
        fx
    }

    #[test]
    fn build_fxsave_frame() {
        let r = regs();
        let info = SigInfo::user(SIGINT, 9, 0);
        let act = action(0);
        let fx = fx_image();
        let blocked = SigSet::of(SIGUSR1);
        let fault = FaultContext { trapno: 14, err: 6, cr2: 0xbad };
        let req = FrameRequest {
            regs: &r,
            info: &info,
            action: &act,
            blocked,
            fp: FpImage::Fxsave(&fx),
            altstack: None,
            fault,
        };
        let f = build_rt_sigframe(&req).unwrap();
        // Below the red zone, fpstate 64-aligned, the frame just below it, rsp ≡ 8 (mod 16).
        assert_eq!(f.fpstate_addr % 64, 0);
        assert!(f.fpstate_addr + FXSAVE_SIZE as u64 <= r.rsp - RED_ZONE);
        assert!(f.fpstate_addr + FXSAVE_SIZE as u64 > r.rsp - RED_ZONE - 64);
        assert_eq!((f.frame_addr + 8) % 16, 0);
        assert!(f.frame_addr + RT_SIGFRAME_SIZE as u64 <= f.fpstate_addr);
        assert_eq!(f.frame_addr, ((f.fpstate_addr - RT_SIGFRAME_SIZE as u64) & !15) - 8);
        assert_eq!(f.bytes.len() as u64, f.fpstate_addr + FXSAVE_SIZE as u64 - f.frame_addr);

        let b = &f.bytes;
        assert_eq!(u64_at(b, FRAME_PRETCODE), act.restorer);
        let uc = FRAME_UC;
        assert_eq!(u64_at(b, uc + UC_FLAGS), UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
        assert_eq!(u64_at(b, uc + UC_LINK), 0);
        assert_eq!(AltStack::decode(&b[uc + UC_STACK..]).unwrap(), AltStack::DISABLED);
        let m = uc + UC_MCONTEXT;
        assert_eq!(u64_at(b, m + sc::R8), 8);
        assert_eq!(u64_at(b, m + sc::R15), 15);
        assert_eq!(u64_at(b, m + sc::RDI), r.rdi);
        assert_eq!(u64_at(b, m + sc::RAX), r.rax);
        assert_eq!(u64_at(b, m + sc::RSP), r.rsp);
        assert_eq!(u64_at(b, m + sc::RIP), r.rip);
        assert_eq!(u64_at(b, m + sc::EFLAGS), r.rflags);
        assert_eq!(&b[m + sc::CS..m + sc::CS + 8], &[0x33, 0, 0, 0, 0, 0, 0x2b, 0]);
        assert_eq!(u64_at(b, m + sc::ERR), 6);
        assert_eq!(u64_at(b, m + sc::TRAPNO), 14);
        assert_eq!(u64_at(b, m + sc::OLDMASK), blocked.0);
        assert_eq!(u64_at(b, m + sc::CR2), 0xbad);
        assert_eq!(u64_at(b, m + sc::FPSTATE), f.fpstate_addr);
        assert_eq!(u64_at(b, uc + UC_SIGMASK), blocked.0);
        assert_eq!(&b[FRAME_INFO..FRAME_INFO + SIGINFO_SIZE], &info.encode());
        let fp = (f.fpstate_addr - f.frame_addr) as usize;
        assert_eq!(&b[fp..fp + FX_SW_BYTES_OFFSET], &fx[..FX_SW_BYTES_OFFSET]);
        assert!(b[fp + FX_SW_BYTES_OFFSET..fp + FXSAVE_SIZE].iter().all(|&x| x == 0), "no magic1");
        assert_eq!(FxSwBytes::parse(&b[fp..], 4096), None);

        let n = f.new_regs;
        assert_eq!(n.rip, act.handler);
        assert_eq!(n.rdi, u64::from(SIGINT));
        assert_eq!(n.rsi, f.frame_addr + FRAME_INFO as u64);
        assert_eq!(n.rdx, f.frame_addr + FRAME_UC as u64);
        assert_eq!(n.rax, 0);
        assert_eq!(n.rsp, f.frame_addr);
        assert_eq!((n.cs, n.ss), (USER_CS, USER_SS));
        assert_eq!(n.rflags, RFLAGS_FIXED | RFLAGS_IF | RFLAGS_CF | RFLAGS_ZF, "DF and TF cleared");
        assert_eq!((n.rbx, n.r12), (r.rbx, r.r12), "other registers kept");

        // Without SA_SIGINFO the info area is left empty.
        let plain = SigAction { flags: SA_RESTORER, ..act };
        let f2 = build_rt_sigframe(&FrameRequest { action: &plain, ..req }).unwrap();
        assert!(f2.bytes[FRAME_INFO..FRAME_INFO + SIGINFO_SIZE].iter().all(|&x| x == 0));
        // Without SA_RESTORER there is nowhere to return: a bad frame.
        let bare = SigAction { flags: SA_SIGINFO, ..act };
        assert_eq!(build_rt_sigframe(&FrameRequest { action: &bare, ..req }), Err(Errno::EFAULT));
        assert_eq!(
            build_rt_sigframe(&FrameRequest { fp: FpImage::Fxsave(&fx[..511]), ..req }),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn build_xsave_frame_and_round_trip() {
        let mut r = regs();
        r.rsp = 0x7fff_ffff_e000; // already aligned: the red zone alone moves it
        let info = SigInfo::fault(SIGSEGV, SEGV_MAPERR, 0x10);
        let act = action(0);
        let mut xs = vec![0x5au8; 832];
        xs[FXSAVE_SIZE..FXSAVE_SIZE + 8].copy_from_slice(&4u64.to_le_bytes()); // XSTATE_BV: AVX only
        let blocked = SigSet::of(SIGUSR1).union(SigSet::of(SIGRTMIN));
        let req = FrameRequest {
            regs: &r,
            info: &info,
            action: &act,
            blocked,
            fp: FpImage::Xsave { image: &xs, xcr0: 7 },
            altstack: None,
            fault: FaultContext::default(),
        };
        let f = build_rt_sigframe(&req).unwrap();
        assert_eq!(f.fpstate_addr, (r.rsp - RED_ZONE - 836) & !63);
        assert_eq!(f.frame_addr, ((f.fpstate_addr - 440) & !15) - 8);
        let b = &f.bytes;
        assert_eq!(u64_at(b, FRAME_UC + UC_FLAGS), UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS);
        let fp = (f.fpstate_addr - f.frame_addr) as usize;
        assert_eq!(read_u32(b, fp + 464), Ok(FP_XSTATE_MAGIC1));
        assert_eq!(read_u32(b, fp + 468), Ok(836), "extended_size");
        assert_eq!(u64_at(b, fp + 472), 7, "xfeatures");
        assert_eq!(read_u32(b, fp + 480), Ok(832), "xstate_size");
        assert_eq!(read_u32(b, fp + 832), Ok(FP_XSTATE_MAGIC2));
        assert_eq!(u64_at(b, fp + 512), 7, "x87 and SSE always marked present");
        assert_eq!(b.len(), fp + 836);
        assert_eq!(
            FxSwBytes::parse(&b[fp..], 832),
            Some(FxSwBytes { extended_size: 836, xfeatures: 7, xstate_size: 832 })
        );
        assert_eq!(FxSwBytes::parse(&b[fp..], 831), None, "larger than the kernel's state");

        // The handler returns: rsp is frame + 8, and the ucontext is right there.
        let ret_rsp = f.frame_addr + 8;
        let uc_addr = sigreturn_ucontext_addr(ret_rsp);
        let off = (uc_addr - f.frame_addr) as usize;
        let back = parse_rt_sigframe(&b[off..off + UCONTEXT_SIZE], USER_CS, USER_SS).unwrap();
        let mut want = r;
        want.rflags = r.rflags; // DF/TF/CF/ZF are all user-changeable and come back
        assert_eq!(back.regs, want);
        assert_eq!(back.blocked, blocked);
        assert_eq!(back.fpstate, f.fpstate_addr);
        assert_eq!(back.altstack, AltStack::DISABLED);
        assert_eq!(parse_rt_sigframe(&b[off..off + UCONTEXT_SIZE - 1], USER_CS, USER_SS), Err(Errno::EFAULT));
    }

    #[test]
    fn sigreturn_sanitises() {
        let mut uc = vec![0u8; UCONTEXT_SIZE];
        put_u64(&mut uc, UC_MCONTEXT + sc::EFLAGS, u64::MAX); // IOPL, VM, NT, IF... all set
        put_u16(&mut uc, UC_MCONTEXT + sc::CS, 0x08); // a kernel selector
        put_u16(&mut uc, UC_MCONTEXT + sc::SS, 0x10);
        put_u64(&mut uc, UC_SIGMASK, u64::MAX);
        put_u64(&mut uc, UC_MCONTEXT + sc::RIP, 0x1234);
        let back = parse_rt_sigframe(&uc, USER_CS, USER_SS).unwrap();
        assert_eq!(back.regs.rflags, RFLAGS_USER_MASK | RFLAGS_IF | RFLAGS_FIXED);
        assert_eq!((back.regs.cs, back.regs.ss), (USER_CS, USER_SS));
        assert_eq!(back.blocked, SigSet::ALL.sanitized());
        assert_eq!(back.regs.rip, 0x1234);
        let mut quiet = uc.clone();
        put_u64(&mut quiet, UC_MCONTEXT + sc::EFLAGS, 0);
        assert_eq!(parse_rt_sigframe(&quiet, USER_CS, USER_SS).unwrap().regs.rflags, 0x202);
    }

    #[test]
    fn altstack_selection() {
        let r = regs();
        let info = SigInfo::user(SIGUSR1, 1, 0);
        let fx = fx_image();
        let alt = AltStack { sp: 0x10_0000, flags: 0, size: 0x4000 };
        let onstack = action(SA_ONSTACK);
        let req = FrameRequest {
            regs: &r,
            info: &info,
            action: &onstack,
            blocked: SigSet::EMPTY,
            fp: FpImage::Fxsave(&fx),
            altstack: Some(alt),
            fault: FaultContext::default(),
        };
        // Entering the alternate stack: from its top, no red zone.
        let f = build_rt_sigframe(&req).unwrap();
        assert_eq!(f.fpstate_addr, 0x10_4000 - 512);
        assert!(alt.contains(f.frame_addr));
        assert_eq!(AltStack::decode(&f.bytes[FRAME_UC + UC_STACK..]).unwrap(), alt);
        // Without SA_ONSTACK the normal stack is used.
        let normal = action(0);
        let f = build_rt_sigframe(&FrameRequest { action: &normal, ..req }).unwrap();
        assert!(f.frame_addr > 0x7fff_0000_0000);
        // Nested: already on the alternate stack, continue below the red zone there.
        let mut inner = r;
        inner.rsp = 0x10_3000;
        let f = build_rt_sigframe(&FrameRequest { regs: &inner, ..req }).unwrap();
        assert_eq!(f.fpstate_addr, (0x10_3000 - 128 - 512) & !63);
        // ... but never off its bottom.
        inner.rsp = 0x10_0400;
        assert_eq!(build_rt_sigframe(&FrameRequest { regs: &inner, ..req }), Err(Errno::EFAULT));
        // A disabled alternate stack is not used.
        let off = AltStack { flags: SS_DISABLE, ..alt };
        let f = build_rt_sigframe(&FrameRequest { altstack: Some(off), ..req }).unwrap();
        assert!(f.frame_addr > 0x7fff_0000_0000);
        // SS_AUTODISARM: being on it does not count, so delivery starts at its top again.
        let auto = AltStack { flags: SS_AUTODISARM, ..alt };
        inner.rsp = 0x10_3000;
        let f = build_rt_sigframe(&FrameRequest { regs: &inner, altstack: Some(auto), ..req }).unwrap();
        assert_eq!(f.fpstate_addr, 0x10_4000 - 512);
        assert_eq!(auto.reported_flags(0x10_3000), SS_AUTODISARM);
        assert_eq!(alt.reported_flags(0x10_3000), SS_ONSTACK);
        assert_eq!(alt.reported_flags(0x20_0000), 0);
        assert_eq!(AltStack::DISABLED.reported_flags(0), SS_DISABLE);
        assert_eq!(AltStack::decode(&alt.encode()), Ok(alt));
        assert_eq!(alt.encode()[8..12], [0, 0, 0, 0]);
    }
}
