//! Signals: sending, default actions (terminate, core, stop, continue, ignore), delivery to
//! handlers through Linux's `rt_sigframe` on the return to user mode, `rt_sigreturn`, and
//! restarting interrupted system calls.

use crate::arch::context;
use crate::arch::trap::TrapFrame;
use crate::process::sched::{self, Pid, Task};
use crate::syscall::User;
use umlvm_boot::x86::{USER_CS, USER_DS};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::signal::{
    self as ks, DefaultAction, FaultContext, FpImage, FrameRequest, SIG_DFL, SIG_IGN, SigInfo, SigSet,
    UserRegs,
};

const ERESTARTSYS: u64 = Errno::ERESTARTSYS.as_syscall_return();

fn regs_of(f: &TrapFrame) -> UserRegs {
    UserRegs {
        r15: f.r15,
        r14: f.r14,
        r13: f.r13,
        r12: f.r12,
        r11: f.r11,
        r10: f.r10,
        r9: f.r9,
        r8: f.r8,
        rbp: f.rbp,
        rdi: f.rdi,
        rsi: f.rsi,
        rdx: f.rdx,
        rcx: f.rcx,
        rbx: f.rbx,
        rax: f.rax,
        rip: f.rip,
        cs: f.cs,
        rflags: f.rflags,
        rsp: f.rsp,
        ss: f.ss,
    }
}

fn set_regs(f: &mut TrapFrame, r: &UserRegs) {
    f.r15 = r.r15;
    f.r14 = r.r14;
    f.r13 = r.r13;
    f.r12 = r.r12;
    f.r11 = r.r11;
    f.r10 = r.r10;
    f.r9 = r.r9;
    f.r8 = r.r8;
    f.rbp = r.rbp;
    f.rdi = r.rdi;
    f.rsi = r.rsi;
    f.rdx = r.rdx;
    f.rcx = r.rcx;
    f.rbx = r.rbx;
    f.rax = r.rax;
    f.rip = r.rip;
    f.cs = u64::from(USER_CS);
    f.rflags = r.rflags | 0x202;
    f.rsp = r.rsp;
    f.ss = u64::from(USER_DS);
}

/// Whether `task` has a signal it would act on now (interrupts sleeps).
pub fn has_pending(task: &Task) -> bool {
    let i = task.proc.inner.lock();
    i.pending.has_deliverable(i.blocked)
}

/// Whether `sig` is ignored or blocked by `task` (background reads get EIO then).
pub fn ignored_or_blocked(task: &Task, sig: u32) -> bool {
    let blocked = task.proc.inner.lock().blocked.contains(sig);
    let handler = task.proc.handler_table().lock()[(sig - 1) as usize].handler;
    blocked || handler == SIG_IGN
}

/// Posts `info` to `task`, with Linux's side effects: SIGKILL and SIGCONT resume a stopped
/// task, ignored signals are dropped, and an unblocked signal interrupts a sleep.
pub fn post(task: &Task, info: SigInfo) {
    let sig = info.signo;
    if !ks::is_valid(sig) || task.state() == sched::State::Zombie {
        return;
    }
    let action = task.proc.handler_table().lock()[(sig - 1) as usize];
    if (sig == ks::SIGCONT || sig == ks::SIGKILL) && task.state() == sched::State::Stopped {
        sched::wake_task(task, true);
        if sig == ks::SIGCONT {
            crate::process::notify_parent_stop(task, 0xffff);
        }
    }
    // A blocked signal is always queued (it may be unblocked or waited for with
    // sigtimedwait); an unblocked one that would be ignored is dropped now, as Linux does.
    let blocked = task.proc.inner.lock().blocked.contains(sig);
    let ignored = !blocked
        && (action.handler == SIG_IGN
            || (action.handler == SIG_DFL && ks::default_action(sig) == DefaultAction::Ignore)
            || (action.handler == SIG_DFL && sig == ks::SIGCONT));
    if ignored && sig != ks::SIGKILL && sig != ks::SIGSTOP {
        if sig == ks::SIGCONT {
            task.proc.inner.lock().pending.discard_set(SigSet::STOP);
        }
        return;
    }
    let wake = {
        let mut i = task.proc.inner.lock();
        i.pending.post(info);
        !i.blocked.contains(sig) || sig == ks::SIGKILL || i.waiting_for.contains(sig)
    };
    if wake {
        sched::interrupt_sleep(task);
    }
}

/// Sends `sig` from the kernel or another process (`code`: SI_USER etc., `pid` the sender).
pub fn send(task: &Task, sig: u32, code: i32, pid: Pid) {
    let mut info = SigInfo::kernel(sig);
    if code != ks::SI_KERNEL {
        info = SigInfo::user(sig, pid, 0);
        info.code = code;
    }
    post(task, info);
}

/// Sends `sig` to every process in group `pgrp` (terminal signals).
pub fn send_group(pgrp: Pid, sig: u32) {
    for t in sched::all_tasks() {
        if t.pid != 0 && t.proc.inner.lock().pgid == pgrp {
            post(&t, SigInfo::kernel(sig));
        }
    }
}

/// SIGCHLD (or the child's exit signal) to `parent` about `child`.
pub fn send_child_signal(parent: &Task, sig: u32, child: Pid, code: i32, status: i32) {
    post(parent, SigInfo::child(code, child, 0, status, 0, 0));
    let _ = sig;
}

/// A fault signal that must not be ignored or blocked (Linux's `force_sig`): the handler is
/// reset to the default if the signal is blocked or ignored.
pub fn force(task: &Task, sig: u32, code: i32, addr: u64) {
    {
        let table = task.proc.handler_table();
        let mut h = table.lock();
        let blocked = task.proc.inner.lock().blocked.contains(sig);
        let a = &mut h[(sig - 1) as usize];
        if a.handler == SIG_IGN || blocked {
            a.handler = SIG_DFL;
        }
    }
    task.proc.inner.lock().blocked.remove(sig);
    post(task, SigInfo::fault(sig, code, addr));
}

/// A CPU exception in user mode.
pub fn fault_signal(frame: &mut TrapFrame) {
    let (sig, code) = match frame.vector {
        0 => (ks::SIGFPE, ks::FPE_INTDIV),
        16 | 19 => (ks::SIGFPE, 0),
        1 => (ks::SIGTRAP, ks::TRAP_TRACE),
        3 => (ks::SIGTRAP, ks::TRAP_BRKPT),
        6 => (ks::SIGILL, ks::ILL_ILLOPC),
        17 => (ks::SIGBUS, ks::BUS_ADRALN),
        _ => (ks::SIGSEGV, ks::SI_KERNEL),
    };
    let me = sched::current();
    force_fault(&me, frame, sig, code, 0);
}

/// Forces a fault signal and logs the fault if the process has no handler for it.
pub fn force_fault(task: &Task, frame: &TrapFrame, sig: u32, code: i32, addr: u64) {
    let has_handler = task.proc.handler_table().lock()[(sig - 1) as usize].has_handler();
    if !has_handler {
        let (mnemonic, what) = umlvm_kcore::exception::name(frame.vector);
        let comm = alloc::string::String::from_utf8_lossy(&task.proc.inner.lock().comm).into_owned();
        let name = ks::name(sig).unwrap_or("?");
        if frame.vector == 14 {
            log::warn!(
                "{comm}[{}]: killed by signal {sig} ({name}): {mnemonic} {what} at rip {:#x}, address {addr:#x} ({})",
                task.pid,
                frame.rip,
                umlvm_kcore::exception::PageFaultCode(frame.error_code)
            );
        } else {
            log::warn!(
                "{comm}[{}]: killed by signal {sig} ({name}): {mnemonic} {what} at rip {:#x}",
                task.pid,
                frame.rip
            );
        }
    }
    {
        let mut i = task.proc.inner.lock();
        i.fault = FaultContext { trapno: frame.vector, err: frame.error_code, cr2: addr };
        i.fault_rip = frame.rip;
    }
    force(task, sig, code, addr);
}

/// Rewrites an interrupted syscall's result: restart it (the same syscall runs again) or
/// fail it with EINTR.
fn fix_restart(frame: &mut TrapFrame, restart: bool) {
    if frame.rax == ERESTARTSYS {
        if restart {
            let orig = sched::current().proc.inner.lock().orig_rax;
            frame.rax = orig as u64;
            frame.rip -= 2;
        } else {
            frame.rax = Errno::EINTR.as_syscall_return();
        }
    }
}

/// Delivers one pending signal before returning to user mode; false when nothing was done.
pub fn deliver(frame: &mut TrapFrame) -> bool {
    let me = sched::current();
    let next = {
        let mut i = me.proc.inner.lock();
        let blocked = i.blocked;
        i.pending.next_deliverable(blocked)
    };
    let Some((sig, info)) = next else {
        fix_restart(frame, true);
        // rt_sigsuspend's mask is restored once no handler ran.
        let mut i = me.proc.inner.lock();
        if let Some(m) = i.saved_mask.take() {
            i.blocked = m;
        }
        return false;
    };
    let table = me.proc.handler_table();
    let action = table.lock()[(sig - 1) as usize];
    if action.handler == SIG_IGN {
        return true;
    }
    if action.handler == SIG_DFL {
        match ks::default_action(sig) {
            DefaultAction::Ignore | DefaultAction::Continue => return true,
            DefaultAction::Stop => {
                crate::process::notify_parent_stop(&me, ((sig as i32) << 8) | 0x7f);
                sched::stop_current();
                return true;
            }
            DefaultAction::Terminate => crate::process::exit(sig as i32),
            DefaultAction::CoreDump => crate::process::exit(sig as i32 | 0x80),
        }
    }
    fix_restart(frame, action.flags & ks::SA_RESTART != 0);
    if setup_frame(&me, frame, sig, &info, &action).is_err() {
        log::warn!("pid {}: cannot build a frame for {}; killed", me.pid, ks::name(sig).unwrap_or("?"));
        crate::process::exit(ks::SIGSEGV as i32);
    }
    let mut h = table.lock();
    h[(sig - 1) as usize] = action.after_delivery();
    true
}

fn setup_frame(
    me: &Task,
    frame: &mut TrapFrame,
    sig: u32,
    info: &SigInfo,
    action: &ks::SigAction,
) -> KResult<()> {
    let regs = regs_of(frame);
    let (blocked, altstack, fault) = {
        let mut i = me.proc.inner.lock();
        let blocked = i.saved_mask.take().unwrap_or(i.blocked);
        let (sp, size, flags) = i.altstack;
        let alt = ks::AltStack { sp, size, flags };
        let fault = core::mem::take(&mut i.fault);
        (blocked, alt.is_enabled().then_some(alt), fault)
    };
    crate::process::sync_fpu(me);
    let built = me.proc.with_fpu(|fpu| {
        let image = fpu.image();
        let fp = if context::uses_xsave() {
            FpImage::Xsave { image, xcr0: context::xsave_mask() }
        } else {
            FpImage::Fxsave(&image[..512])
        };
        ks::build_rt_sigframe(&FrameRequest { regs: &regs, info, action, blocked, fp, altstack, fault })
    })?;
    User::current()?.write(built.frame_addr, &built.bytes)?;
    set_regs(frame, &built.new_regs);
    {
        let mut i = me.proc.inner.lock();
        i.blocked = action.blocked_during_handler(sig, blocked).sanitized();
        if let Some(alt) = altstack
            && alt.flags & ks::SS_AUTODISARM != 0
        {
            i.altstack = (0, 0, ks::SS_DISABLE);
        }
    }
    // The handler starts with a clean FPU, as on Linux.
    me.proc.with_fpu(|f| *f = *context::FpuState::new_initial());
    crate::process::reload_fpu(me);
    Ok(())
}

/// `rt_sigreturn`: restores the registers, mask and FPU state the frame saved.
pub fn sigreturn(frame: &mut TrapFrame) -> KResult<u64> {
    let me = sched::current();
    let user = User::current()?;
    let at = ks::sigreturn_ucontext_addr(frame.rsp);
    let uc = match user.read(at, ks::UCONTEXT_SIZE) {
        Ok(b) => b,
        Err(_) => bad_frame(&me),
    };
    let Ok(r) = ks::parse_rt_sigframe(&uc, u64::from(USER_CS), u64::from(USER_DS)) else { bad_frame(&me) };
    // FPU state.
    if r.fpstate == 0 {
        me.proc.with_fpu(|f| *f = *context::FpuState::new_initial());
    } else {
        let Ok(legacy) = user.read(r.fpstate, 512) else { bad_frame(&me) };
        let max = context::fpu_area_bytes() as u32;
        let image = match ks::FxSwBytes::parse(&legacy, max) {
            Some(sw) if context::uses_xsave() => {
                let Ok(img) = user.read(r.fpstate, sw.xstate_size as usize + 4) else { bad_frame(&me) };
                let magic2 = u32::from_le_bytes(img[sw.xstate_size as usize..].try_into().unwrap_or([0; 4]));
                if magic2 == ks::FP_XSTATE_MAGIC2 { img[..sw.xstate_size as usize].to_vec() } else { legacy }
            }
            _ => legacy,
        };
        me.proc.with_fpu(|f| f.load_image(&image));
    }
    crate::process::reload_fpu(&me);
    {
        let mut i = me.proc.inner.lock();
        i.blocked = r.blocked;
        i.altstack = (r.altstack.sp, r.altstack.size, r.altstack.flags);
        i.orig_rax = -1;
    }
    set_regs(frame, &r.regs);
    Ok(r.regs.rax)
}

fn bad_frame(me: &Task) -> ! {
    log::warn!("pid {}: bad signal frame in rt_sigreturn; killed with SIGSEGV", me.pid);
    crate::process::exit(ks::SIGSEGV as i32)
}

/// `rt_sigtimedwait`: takes a pending signal of `set` (normally blocked by the caller),
/// waiting up to `deadline`; returns it and its information.
pub fn timed_wait(set: SigSet, deadline: Option<u64>) -> KResult<(u32, SigInfo)> {
    let me = sched::current();
    let set = set.sanitized();
    let take = || {
        let mut i = me.proc.inner.lock();
        i.pending.next_deliverable(SigSet::ALL.difference(set))
    };
    if let Some(found) = take() {
        return Ok(found);
    }
    if deadline.is_some_and(|d| d <= crate::time::now_ns()) {
        return Err(Errno::EAGAIN);
    }
    me.proc.inner.lock().waiting_for = set;
    let chan = 0x7a00_0000_0000 | u64::from(me.pid);
    let r = sched::wait_event(chan, true, deadline, take);
    me.proc.inner.lock().waiting_for = SigSet::EMPTY;
    match r {
        Ok(found) => Ok(found),
        Err(sched::Interrupted::Timeout) => Err(Errno::EAGAIN),
        Err(sched::Interrupted::Signal) => Err(Errno::EINTR),
    }
}

/// ppoll/pselect: installs the mask at `mask_addr` for the call; returns the old one.
pub fn swap_mask_from_user(user: &User, mask_addr: u64) -> KResult<SigSet> {
    let b = user.read(mask_addr, 8)?;
    let new = SigSet::decode(&b)?.sanitized();
    let me = sched::current();
    let mut i = me.proc.inner.lock();
    Ok(core::mem::replace(&mut i.blocked, new))
}

/// After ppoll/pselect: if the call was interrupted the old mask comes back after the
/// handler runs (like sigsuspend), else at once.
pub fn restore_mask_after(old: SigSet, interrupted: bool) {
    let me = sched::current();
    let mut i = me.proc.inner.lock();
    if interrupted {
        i.saved_mask = Some(old);
    } else {
        i.blocked = old;
    }
}
