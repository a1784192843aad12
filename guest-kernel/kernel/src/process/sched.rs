//! The scheduler: the task table, the run queue, sleeping and waking, preemption, and the
//! handling of every trap a task takes in user mode.
//!
//! One CPU, a non-preemptive kernel: a task in the kernel runs until it blocks or returns to
//! user mode, where the timer may preempt it. Tasks sleep on a *channel* (any number naming
//! what they wait for: a pipe, a terminal, a parent's child list) and are woken by channel.
//! Sleeping decisions are made with interrupts off, so a wakeup from an interrupt handler is
//! never lost. The boot context becomes the idle task (pid 0).

use crate::arch::context::{self, KernelContext};
use crate::arch::mode;
use crate::arch::sync::IrqMutex;
use crate::arch::trap::TrapFrame;
use crate::arch::user::SYSCALL_VECTOR;
use crate::process::Process;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// A process id.
pub type Pid = u32;

/// Scheduling state of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Running or ready to run.
    Runnable = 0,
    /// Waiting; woken by its channel or (if interruptible) a signal.
    Sleeping = 1,
    /// Waiting, not interrupted by signals.
    DiskSleep = 2,
    /// Stopped by a signal.
    Stopped = 3,
    /// Exited, not yet reaped.
    Zombie = 4,
}

impl State {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Sleeping,
            2 => Self::DiskSleep,
            3 => Self::Stopped,
            4 => Self::Zombie,
            _ => Self::Runnable,
        }
    }

    /// The letter `ps` shows.
    pub fn letter(self) -> char {
        match self {
            Self::Runnable => 'R',
            Self::Sleeping => 'S',
            Self::DiskSleep => 'D',
            Self::Stopped => 'T',
            Self::Zombie => 'Z',
        }
    }
}

/// A schedulable task (one per process; the kernel has no user threads yet).
pub struct Task {
    /// Process id.
    pub pid: Pid,
    state: AtomicU8,
    chan: AtomicU64,
    /// Its kernel context (stack and saved stack pointer).
    ctx: KernelContext,
    /// Deadline of a timed sleep (ns since boot; 0 = none).
    pub wake_at: AtomicU64,
    /// Timer ticks spent in user mode / in the kernel.
    pub utime: AtomicU64,
    /// Timer ticks spent in the kernel on its behalf.
    pub stime: AtomicU64,
    /// Set when its time slice is used up.
    need_resched: AtomicBool,
    /// Everything about the process.
    pub proc: Process,
}

impl AsRef<KernelContext> for Task {
    fn as_ref(&self) -> &KernelContext {
        &self.ctx
    }
}

impl Task {
    /// Its scheduling state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// What it sleeps on (0 = nothing).
    pub fn channel(&self) -> u64 {
        self.chan.load(Ordering::Relaxed)
    }

    /// Return addresses on its kernel stack while it is switched out (frame-pointer walk from
    /// the registers the context switch saved).
    pub fn kernel_backtrace(&self) -> Vec<u64> {
        let Some(bounds) = self.stack_bounds() else { return Vec::new() };
        let rsp = self.ctx.saved_rsp();
        let read = |a: u64| crate::arch::memory::read_stack_word(a, bounds);
        // Saved by the switch: r15 r14 r13 r12 rbx rbp, then the return address.
        let (Some(rbp), Some(ret)) = (read(rsp + 40), read(rsp + 48)) else { return Vec::new() };
        let mut frames = [0u64; umlvm_kcore::backtrace::MAX_FRAMES];
        let n = umlvm_kcore::backtrace::walk(rbp, bounds, read, &mut frames);
        core::iter::once(ret).chain(frames[..n].iter().copied()).collect()
    }

    /// Bounds of its kernel stack.
    pub fn stack_bounds(&self) -> Option<(u64, u64)> {
        self.ctx.stack().map(|s| s.bounds())
    }
}

struct Sched {
    tasks: BTreeMap<Pid, Arc<Task>>,
    runq: VecDeque<Pid>,
    current: Option<Arc<Task>>,
    idle: Option<Arc<Task>>,
    /// A task that switched away for the last time; freed by the next task to run.
    dead: Option<Arc<Task>>,
}

static SCHED: IrqMutex<Sched> = IrqMutex::new(Sched {
    tasks: BTreeMap::new(),
    runq: VecDeque::new(),
    current: None,
    idle: None,
    dead: None,
});

static NEXT_PID: AtomicU32 = AtomicU32::new(1);
static SWITCHES: AtomicU64 = AtomicU64::new(0);
/// Ticks of the scheduler clock.
static TICKS: AtomicU64 = AtomicU64::new(0);

/// Scheduler clock frequency.
pub const HZ: u64 = 100;
/// Ticks in a time slice.
const SLICE_TICKS: u64 = 2;

/// Makes the boot context the idle task (pid 0) and starts the scheduler clock.
pub fn init() {
    context::fpu_init();
    let idle = Arc::new(Task {
        pid: 0,
        state: AtomicU8::new(State::Runnable as u8),
        chan: AtomicU64::new(0),
        ctx: KernelContext::boot(),
        wake_at: AtomicU64::new(0),
        utime: AtomicU64::new(0),
        stime: AtomicU64::new(0),
        need_resched: AtomicBool::new(false),
        proc: Process::kernel(),
    });
    let mut s = SCHED.lock();
    s.current = Some(idle.clone());
    s.idle = Some(idle);
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// Whether the scheduler clock runs (user processes exist).
pub fn started() -> bool {
    STARTED.load(Ordering::Relaxed)
}

/// Starts the periodic clock that drives preemption and timed sleeps.
pub fn start_clock() {
    STARTED.store(true, Ordering::Relaxed);
    crate::time::start_periodic(HZ);
}

/// A new pid.
pub fn alloc_pid() -> Pid {
    let p = NEXT_PID.fetch_add(1, Ordering::Relaxed);
    LAST_PID.store(p, Ordering::Relaxed);
    p
}

/// The running task.
pub fn current() -> Arc<Task> {
    SCHED.lock().current.clone().expect("scheduler initialised")
}

/// The task with `pid`.
pub fn task(pid: Pid) -> Option<Arc<Task>> {
    SCHED.lock().tasks.get(&pid).cloned()
}

/// Every task (pid order).
pub fn all_tasks() -> Vec<Arc<Task>> {
    SCHED.lock().tasks.values().cloned().collect()
}

/// Context switches so far.
pub fn switches() -> u64 {
    SWITCHES.load(Ordering::Relaxed)
}

/// Adds a new task, ready to run from `frame` in user mode.
pub fn spawn(pid: Pid, proc: Process, frame: &TrapFrame) -> Arc<Task> {
    let task = Arc::new(Task {
        pid,
        state: AtomicU8::new(State::Runnable as u8),
        chan: AtomicU64::new(0),
        ctx: KernelContext::new_user(frame),
        wake_at: AtomicU64::new(0),
        utime: AtomicU64::new(0),
        stime: AtomicU64::new(0),
        need_resched: AtomicBool::new(false),
        proc,
    });
    let mut s = SCHED.lock();
    s.tasks.insert(pid, task.clone());
    s.runq.push_back(pid);
    task
}

/// Removes a reaped task from the table (its memory goes when the last `Arc` does).
pub fn remove(pid: Pid) {
    SCHED.lock().tasks.remove(&pid);
}

/// Makes `task` runnable if it sleeps (any channel) or is stopped and `resume_stopped`.
pub fn wake_task(task: &Task, resume_stopped: bool) {
    let mut s = SCHED.lock();
    let st = task.state();
    if st == State::Sleeping || st == State::DiskSleep || (resume_stopped && st == State::Stopped) {
        task.set_state(State::Runnable);
        task.chan.store(0, Ordering::Relaxed);
        s.runq.push_back(task.pid);
    }
}

/// Interrupts an interruptible sleep (a signal arrived).
pub fn interrupt_sleep(task: &Task) {
    if task.state() == State::Sleeping {
        wake_task(task, false);
    }
}

/// Wakes every task sleeping on `chan`.
pub fn wake_all(chan: u64) {
    let mut s = SCHED.lock();
    let Sched { tasks, runq, .. } = &mut *s;
    for t in tasks.values() {
        let st = t.state();
        let c = t.channel();
        if (st == State::Sleeping || st == State::DiskSleep) && (c == chan || c == crate::fs::poll::POLL_CHAN)
        {
            t.set_state(State::Runnable);
            t.chan.store(0, Ordering::Relaxed);
            runq.push_back(t.pid);
        }
    }
}

/// Stops the current task (a stop signal); it runs again after [`wake_task`] with
/// `resume_stopped`.
pub fn stop_current() {
    let irq = mode::irq_save();
    current().set_state(State::Stopped);
    schedule();
    mode::irq_restore(irq);
}

/// Why a wait ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// A signal is pending.
    Signal,
    /// The deadline passed.
    Timeout,
}

/// Sleeps on `chan` until `cond` returns a value, a signal arrives (if `interruptible`), or
/// the optional deadline (ns since boot) passes.
pub fn wait_event<T>(
    chan: u64,
    interruptible: bool,
    deadline: Option<u64>,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T, Interrupted> {
    loop {
        let irq = mode::irq_save();
        if let Some(v) = cond() {
            mode::irq_restore(irq);
            return Ok(v);
        }
        let me = current();
        if interruptible && crate::process::signal::has_pending(&me) {
            mode::irq_restore(irq);
            return Err(Interrupted::Signal);
        }
        if let Some(d) = deadline {
            if crate::time::now_ns() >= d {
                mode::irq_restore(irq);
                return Err(Interrupted::Timeout);
            }
            me.wake_at.store(d, Ordering::Relaxed);
        }
        me.chan.store(chan, Ordering::Relaxed);
        me.set_state(if interruptible { State::Sleeping } else { State::DiskSleep });
        drop(me);
        schedule();
        current().wake_at.store(0, Ordering::Relaxed);
        mode::irq_restore(irq);
    }
}

/// Ends the current task for good (it is a zombie or gone): switches away and never returns.
pub fn exit_current() -> ! {
    let _ = mode::irq_save();
    {
        let me = current();
        me.set_state(State::Zombie);
    }
    schedule();
    unreachable!("a zombie was scheduled");
}

/// Gives up the CPU if the current task's slice is used up (called before returning to user
/// mode).
fn maybe_preempt() {
    let me = current();
    if me.need_resched.swap(false, Ordering::Relaxed) {
        drop(me);
        yield_now();
    }
}

/// Lets other runnable tasks run.
pub fn yield_now() {
    let irq = mode::irq_save();
    schedule();
    mode::irq_restore(irq);
}

/// Picks the next task and switches to it. Interrupts must be off. The current task keeps
/// its state: runnable tasks go to the back of the queue.
fn schedule() {
    let (prev, next) = {
        let mut s = SCHED.lock();
        let prev = s.current.clone().expect("scheduler initialised");
        if prev.state() == State::Runnable && prev.pid != 0 {
            s.runq.push_back(prev.pid);
        }
        let next = loop {
            match s.runq.pop_front() {
                Some(pid) => match s.tasks.get(&pid) {
                    Some(t) if t.state() == State::Runnable => break t.clone(),
                    _ => continue,
                },
                None => break s.idle.clone().expect("idle task"),
            }
        };
        // Drop duplicate queue entries of the chosen task.
        s.runq.retain(|&p| p != next.pid);
        if Arc::ptr_eq(&prev, &next) {
            return;
        }
        SWITCHES.fetch_add(1, Ordering::Relaxed);
        // Leave prev: save its user FPU state and TLS base.
        if prev.pid != 0 {
            prev.proc.save_cpu_state();
        }
        if prev.state() == State::Zombie && prev.pid != 0 {
            s.dead = Some(prev.clone());
        }
        // Enter next: its address space, kernel stack, FPU state and TLS base.
        if next.pid != 0 {
            let (kroot, uroot) = next.proc.roots();
            let top = next.ctx.stack().expect("user tasks have stacks").top();
            context::set_user_context(top, kroot, uroot);
            crate::arch::uspace::activate_root(kroot);
            next.proc.restore_cpu_state();
        } else {
            // The idle task runs on the kernel-only tables: a halted vCPU whose CR3 is a user
            // address space's (with the host's user-root flip) can miss its wakeup on PVM
            // hosts.
            crate::arch::uspace::activate_root(crate::arch::uspace::kernel_root());
        }
        s.current = Some(next.clone());
        (prev, next)
    };
    // A zombie never resumes: it gives up its references (the task table and `dead` keep
    // it, `current` keeps the next task) so that reaping frees it.
    if prev.state() == State::Zombie && prev.pid != 0 {
        context::switch_final(prev, next);
    }
    context::switch(&prev.ctx, &next.ctx);
    drop((prev, next));
    after_switch();
}

/// Runs on the new task right after a switch: frees a task that left for good.
fn after_switch() {
    let dead = SCHED.lock().dead.take();
    drop(dead);
}

/// The first thing a new task runs (from the arch entry stub).
pub fn on_first_entry(frame: &mut TrapFrame) {
    after_switch();
    return_work(frame);
}

/// Runs tasks from the boot context until `done` holds (built-in programs before init).
pub fn run_until(mut done: impl FnMut() -> bool) {
    loop {
        let irq = mode::irq_save();
        if done() {
            mode::irq_restore(irq);
            return;
        }
        let anything = !SCHED.lock().runq.is_empty();
        if anything {
            schedule();
        } else {
            mode::wait_for_interrupt();
        }
        mode::irq_restore(irq);
    }
}

static IDLE_NS: AtomicU64 = AtomicU64::new(0);
static LAST_PID: AtomicU32 = AtomicU32::new(0);

/// Time spent halted in the idle loop.
pub fn idle_ns() -> u64 {
    IDLE_NS.load(Ordering::Relaxed)
}

/// The most recently allocated pid.
pub fn last_pid() -> Pid {
    LAST_PID.load(Ordering::Relaxed)
}

/// Restarts pid numbering at 1 (before init, once the built-in tasks are gone).
pub fn reset_pids() {
    if SCHED.lock().tasks.is_empty() {
        NEXT_PID.store(1, Ordering::Relaxed);
    }
}

/// The idle loop: runs whatever is runnable, halts when nothing is.
pub fn idle_loop() -> ! {
    loop {
        let irq = mode::irq_save();
        crate::process::itimer::run_due();
        crate::mgmt::retry();
        let anything = !SCHED.lock().runq.is_empty();
        if anything {
            schedule();
            mode::irq_restore(irq);
        } else {
            let t0 = crate::time::now_ns();
            mode::wait_for_interrupt();
            IDLE_NS.fetch_add(crate::time::now_ns() - t0, Ordering::Relaxed);
            mode::irq_restore(irq);
        }
    }
}

/// Set while an interrupt taken in user mode is handled (tick accounting).
static IN_USER: AtomicBool = AtomicBool::new(false);

/// Timer tick (interrupt context): accounting, slice expiry, timed sleeps.
pub fn on_tick() {
    let from_user = IN_USER.load(Ordering::Relaxed);
    let t = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    let now = crate::time::now_ns();
    let mut s = SCHED.lock();
    if let Some(cur) = s.current.clone()
        && cur.pid != 0
    {
        if from_user {
            cur.utime.fetch_add(1, Ordering::Relaxed);
        } else {
            cur.stime.fetch_add(1, Ordering::Relaxed);
        }
        if t.is_multiple_of(SLICE_TICKS) {
            cur.need_resched.store(true, Ordering::Relaxed);
        }
    }
    let Sched { tasks, runq, .. } = &mut *s;
    for task in tasks.values() {
        let at = task.wake_at.load(Ordering::Relaxed);
        if at != 0 && at <= now && matches!(task.state(), State::Sleeping | State::DiskSleep) {
            task.set_state(State::Runnable);
            task.chan.store(0, Ordering::Relaxed);
            runq.push_back(task.pid);
        }
    }
}

/// Every trap taken in user mode lands here (kernel page tables, the task's kernel stack).
pub fn on_user_trap(frame: &mut TrapFrame) {
    match frame.vector {
        SYSCALL_VECTOR => crate::syscall::dispatch(frame),
        14 => crate::mm::vm::user_page_fault(frame),
        v if v < 32 => crate::process::signal::fault_signal(frame),
        v => {
            {
                let me = current();
                let mut i = me.proc.inner.lock();
                if v == u64::from(crate::irq::TIMER_VECTOR) {
                    i.stats.user_ticks += 1;
                } else {
                    i.stats.user_irqs += 1;
                }
            }
            IN_USER.store(true, Ordering::Relaxed);
            crate::irq::handle(v as u8);
            IN_USER.store(false, Ordering::Relaxed);
        }
    }
    return_work(frame);
}

/// Work before returning to user mode: preemption, then signal delivery.
pub fn return_work(frame: &mut TrapFrame) {
    crate::process::itimer::run_due();
    crate::mgmt::retry();
    loop {
        maybe_preempt();
        if !crate::process::signal::deliver(frame) {
            break;
        }
    }
}
