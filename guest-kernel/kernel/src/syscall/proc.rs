//! Process syscalls: clone/fork/vfork, execve, wait, kill, signals, ids, limits, system info.

use super::User;
use crate::arch::trap::TrapFrame;
use crate::process;
use crate::process::sched::{self, Pid};
use alloc::vec::Vec;
use umlvm_kcore::abi;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::signal::{self as ks, SigAction, SigInfo, SigSet};

pub fn clone(frame: &TrapFrame, flags: u64, stack: u64, ptid: u64, ctid: u64, tls: u64) -> KResult<u64> {
    process::clone(frame, flags, stack, ptid, ctid, tls).map(u64::from)
}

/// Resolves an executable: follows `#!` (one level of interpreter, as Linux allows several,
/// up to 4) and returns (path, inode, argv).
pub fn execve(frame: &mut TrapFrame, dirfd: i32, path: u64, argv: u64, envp: u64) -> KResult<u64> {
    let user = User::current()?;
    let mut path = user.cstr(path)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let mut args = user.cstr_array(argv)?;
    let envs = user.cstr_array(envp)?;
    drop(user);
    let _ = dirfd;
    let (path, inode, args) =
        crate::process::exec::resolve(core::mem::take(&mut path), core::mem::take(&mut args))?;
    process::exec(frame, &path, inode, args, envs)?;
    Ok(frame.rax)
}

pub fn wait4(pid: i64, status_addr: u64, options: u64, rusage_addr: u64) -> KResult<u64> {
    if options
        & !(process::WNOHANG
            | process::WUNTRACED
            | process::WCONTINUED
            | 0x4000_0000
            | 0x8000_0000
            | 0x2000_0000)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    match process::wait4(pid, options)? {
        None => Ok(0),
        Some((child, status, ut, st)) => {
            let user = User::current()?;
            if status_addr != 0 {
                user.write_i32(status_addr, status)?;
            }
            if rusage_addr != 0 {
                let ru = rusage(ut, st);
                user.write(rusage_addr, &abi::encode_rusage(&ru))?;
            }
            Ok(u64::from(child))
        }
    }
}

pub fn waitid(idtype: u32, id: u32, infop: u64, options: u32) -> KResult<u64> {
    const WEXITED: u32 = 4;
    let which: i64 = match idtype {
        0 => -1,
        1 => i64::from(id),
        2 => -i64::from(id),
        _ => return Err(Errno::EINVAL),
    };
    let mut opts = u64::from(options & 1);
    if options & 2 != 0 {
        opts |= process::WUNTRACED;
    }
    if options & 8 != 0 {
        opts |= process::WCONTINUED;
    }
    if options & (WEXITED | 2 | 8) == 0 {
        return Err(Errno::EINVAL);
    }
    match process::wait4(which, opts)? {
        None => {
            if infop != 0 {
                User::current()?.write(infop, &[0u8; 128])?;
            }
            Ok(0)
        }
        Some((child, status, _, _)) => {
            let (code, st) = if status & 0x7f == 0 {
                (ks::CLD_EXITED, (status >> 8) & 0xff)
            } else if status & 0xff == 0x7f {
                (ks::CLD_STOPPED, (status >> 8) & 0xff)
            } else if status == 0xffff {
                (ks::CLD_CONTINUED, ks::SIGCONT as i32)
            } else if status & 0x80 != 0 {
                (ks::CLD_DUMPED, status & 0x7f)
            } else {
                (ks::CLD_KILLED, status & 0x7f)
            };
            if infop != 0 {
                let info = SigInfo::child(code, child, 0, st, 0, 0);
                User::current()?.write(infop, &info.encode())?;
            }
            Ok(0)
        }
    }
}

pub fn kill(pid: i64, sig: u32) -> KResult<u64> {
    if sig > 64 {
        return Err(Errno::EINVAL);
    }
    let me = sched::current();
    let targets: Vec<_> = match pid {
        p if p > 0 => sched::task(p as Pid)
            .into_iter()
            .filter(|t| t.state() != sched::State::Zombie || sig == 0)
            .collect(),
        0 => {
            let pg = me.proc.inner.lock().pgid;
            sched::all_tasks().into_iter().filter(|t| t.pid != 0 && t.proc.inner.lock().pgid == pg).collect()
        }
        -1 => sched::all_tasks().into_iter().filter(|t| t.pid > 1 && t.pid != me.pid).collect(),
        p => sched::all_tasks()
            .into_iter()
            .filter(|t| t.pid != 0 && i64::from(t.proc.inner.lock().pgid) == -p)
            .collect(),
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig != 0 {
        for t in targets {
            // Init gets only the signals it handles or blocks (to wait for them with
            // sigtimedwait, as busybox init does), as on Linux; SIGKILL/SIGSTOP never.
            let init_ignores = || {
                !t.proc.handler_table().lock()[(sig - 1) as usize].has_handler()
                    && (!t.proc.inner.lock().blocked.contains(sig)
                        || sig == ks::SIGKILL
                        || sig == ks::SIGSTOP)
            };
            if t.pid == 1 && !crate::init::command_mode() && init_ignores() {
                continue;
            }
            crate::process::signal::send(&t, sig, ks::SI_USER, me.pid);
        }
    }
    Ok(0)
}

pub fn rt_sigaction(sig: u64, act: u64, old: u64, size: u64) -> KResult<u64> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let sig = sig as u32;
    ks::check_sigaction(sig, act != 0)?;
    let user = User::current()?;
    let new = if act != 0 { Some(SigAction::decode(&user.read(act, SigAction::SIZE)?)?) } else { None };
    let table = sched::current().proc.handler_table();
    let prev = {
        let mut h = table.lock();
        let prev = h[(sig - 1) as usize];
        if let Some(n) = new {
            h[(sig - 1) as usize] = n;
        }
        prev
    };
    if let Some(n) = new {
        // Setting SIG_IGN (or default-ignore) discards what is pending.
        if n.handler == ks::SIG_IGN
            || (n.handler == ks::SIG_DFL && ks::default_action(sig) == ks::DefaultAction::Ignore)
        {
            sched::current().proc.inner.lock().pending.discard(sig);
        }
    }
    if old != 0 {
        user.write(old, &prev.encode())?;
    }
    Ok(0)
}

pub fn rt_sigprocmask(how: u64, set: u64, old: u64, size: u64) -> KResult<u64> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let me = sched::current();
    let prev = me.proc.inner.lock().blocked;
    if set != 0 {
        let s = SigSet::decode(&user.read(set, 8)?)?;
        let new = match how {
            0 => prev.union(s),
            1 => prev.difference(s),
            2 => s,
            _ => return Err(Errno::EINVAL),
        };
        me.proc.inner.lock().blocked = new.sanitized();
    }
    if old != 0 {
        user.write(old, &prev.encode())?;
    }
    Ok(0)
}

pub fn rt_sigreturn(frame: &mut TrapFrame) -> KResult<u64> {
    crate::process::signal::sigreturn(frame)
}

pub fn rt_sigpending(addr: u64) -> KResult<u64> {
    let me = sched::current();
    let set = {
        let i = me.proc.inner.lock();
        i.pending.set().intersection(i.blocked)
    };
    User::current()?.write(addr, &set.encode())?;
    Ok(0)
}

pub fn rt_sigsuspend(mask: u64, size: u64) -> KResult<u64> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let new = SigSet::decode(&User::current()?.read(mask, 8)?)?.sanitized();
    let me = sched::current();
    let old = core::mem::replace(&mut me.proc.inner.lock().blocked, new);
    let _ = sched::wait_event(0x7a00_0000_0000 | u64::from(me.pid), true, None, || None::<()>);
    me.proc.inner.lock().saved_mask = Some(old);
    Err(Errno::EINTR)
}

pub fn rt_sigtimedwait(set: u64, info: u64, timeout: u64, size: u64) -> KResult<u64> {
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let set = SigSet::decode(&user.read(set, 8)?)?;
    let deadline = if timeout == 0 {
        None
    } else {
        let sec = user.read_u64(timeout)?;
        let nsec = user.read_u64(timeout + 8)?;
        if nsec >= 1_000_000_000 {
            return Err(Errno::EINVAL);
        }
        Some(crate::time::now_ns().saturating_add(sec.saturating_mul(1_000_000_000)).saturating_add(nsec))
    };
    let (sig, si) = crate::process::signal::timed_wait(set, deadline)?;
    if info != 0 {
        user.write(info, &si.encode())?;
    }
    Ok(u64::from(sig))
}

pub fn pause() -> KResult<u64> {
    let me = sched::current();
    let _ = sched::wait_event(0x7a00_0000_0000 | u64::from(me.pid), true, None, || None::<()>);
    Err(Errno::EINTR)
}

pub fn sigaltstack(new: u64, old: u64) -> KResult<u64> {
    let user = User::current()?;
    let me = sched::current();
    let (sp, size, flags) = me.proc.inner.lock().altstack;
    let cur = ks::AltStack { sp, size, flags };
    if old != 0 {
        let mut reported = cur;
        reported.flags = cur.reported_flags(0);
        user.write(old, &reported.encode())?;
    }
    if new != 0 {
        let n = ks::AltStack::decode(&user.read(new, ks::AltStack::SIZE)?)?;
        if n.flags & !(ks::SS_DISABLE | ks::SS_AUTODISARM) != 0 {
            return Err(Errno::EINVAL);
        }
        if n.flags & ks::SS_DISABLE == 0 && n.size < ks::MINSIGSTKSZ {
            return Err(Errno::ENOMEM);
        }
        me.proc.inner.lock().altstack = (n.sp, n.size, n.flags);
    }
    Ok(0)
}

pub fn alarm(secs: u64) -> KResult<u64> {
    crate::process::itimer::alarm(secs)
}

pub fn uname(addr: u64) -> KResult<u64> {
    let host = crate::sysinfo::hostname();
    let version = crate::sysinfo::version_string();
    let u = abi::Utsname {
        sysname: b"Linux",
        nodename: &host,
        release: crate::sysinfo::RELEASE.as_bytes(),
        version: version.as_bytes(),
        machine: b"x86_64",
        domainname: b"(none)",
    };
    User::current()?.write(addr, &abi::encode_utsname(&u))?;
    Ok(0)
}

pub fn sethostname(addr: u64, len: u64) -> KResult<u64> {
    let name = super::fs::user_bytes(addr, len)?;
    crate::sysinfo::set_hostname(&name);
    Ok(0)
}

pub fn umask(mask: u32) -> KResult<u64> {
    let fs = sched::current().proc.fs_context();
    let mut f = fs.lock();
    let old = f.umask;
    f.umask = mask & 0o777;
    Ok(u64::from(old))
}

pub fn setid(nr: u64, a: super::Args) -> KResult<u64> {
    let me = sched::current();
    let mut i = me.proc.inner.lock();
    let keep = |v: u64, cur: u32| if v as u32 == u32::MAX { cur } else { v as u32 };
    match nr {
        105 => {
            let (u, e) = (keep(a[0], i.uid), keep(a[0], i.euid));
            i.uid = u;
            i.euid = e;
        }
        106 => {
            i.gid = keep(a[0], i.gid);
            i.egid = keep(a[0], i.egid);
        }
        113 | 117 => {
            i.uid = keep(a[0], i.uid);
            i.euid = keep(a[1], i.euid);
        }
        114 | 119 => {
            i.gid = keep(a[0], i.gid);
            i.egid = keep(a[1], i.egid);
        }
        _ => return Err(Errno::ENOSYS),
    }
    Ok(0)
}

pub fn getresid(nr: u64, r: u64, e: u64, s: u64) -> KResult<u64> {
    let me = sched::current();
    let (a, b) = {
        let i = me.proc.inner.lock();
        if nr == 118 { (i.uid, i.euid) } else { (i.gid, i.egid) }
    };
    let user = User::current()?;
    user.write(r, &a.to_le_bytes())?;
    user.write(e, &b.to_le_bytes())?;
    user.write(s, &b.to_le_bytes())?;
    Ok(0)
}

pub fn getgroups(size: i32, addr: u64) -> KResult<u64> {
    let groups = sched::current().proc.inner.lock().groups.clone();
    if size == 0 {
        return Ok(groups.len() as u64);
    }
    if (size as usize) < groups.len() {
        return Err(Errno::EINVAL);
    }
    let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    User::current()?.write(addr, &bytes)?;
    Ok(groups.len() as u64)
}

pub fn setgroups(n: usize, addr: u64) -> KResult<u64> {
    if n > 65536 {
        return Err(Errno::EINVAL);
    }
    let b = User::current()?.read(addr, 4 * n)?;
    let groups = b.chunks(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    sched::current().proc.inner.lock().groups = groups;
    Ok(0)
}

pub fn setpgid(pid: u32, pgid: u32) -> KResult<u64> {
    let me = sched::current();
    let target = if pid == 0 { me.clone() } else { sched::task(pid).ok_or(Errno::ESRCH)? };
    if target.pid != me.pid && target.proc.inner.lock().ppid != me.pid {
        return Err(Errno::ESRCH);
    }
    let pgid = if pgid == 0 { target.pid } else { pgid };
    let mut i = target.proc.inner.lock();
    if i.sid == target.pid {
        return Err(Errno::EPERM);
    }
    i.pgid = pgid;
    Ok(0)
}

pub fn getpgid(pid: u32) -> KResult<u64> {
    let t = if pid == 0 { sched::current() } else { sched::task(pid).ok_or(Errno::ESRCH)? };
    Ok(u64::from(t.proc.inner.lock().pgid))
}

pub fn getsid(pid: u32) -> KResult<u64> {
    let t = if pid == 0 { sched::current() } else { sched::task(pid).ok_or(Errno::ESRCH)? };
    Ok(u64::from(t.proc.inner.lock().sid))
}

pub fn setsid() -> KResult<u64> {
    let me = sched::current();
    let leader = sched::all_tasks().iter().any(|t| t.pid != me.pid && t.proc.inner.lock().pgid == me.pid);
    let mut i = me.proc.inner.lock();
    if i.pgid == me.pid || leader {
        return Err(Errno::EPERM);
    }
    i.sid = me.pid;
    i.pgid = me.pid;
    i.ctty = None;
    Ok(u64::from(me.pid))
}

pub fn prlimit(pid: u32, resource: u32, new: u64, old: u64) -> KResult<u64> {
    if resource >= 16 {
        return Err(Errno::EINVAL);
    }
    let t = if pid == 0 { sched::current() } else { sched::task(pid).ok_or(Errno::ESRCH)? };
    let user = User::current()?;
    let cur = t.proc.inner.lock().rlimits[resource as usize];
    if old != 0 {
        user.write(old, &abi::encode_rlimit(abi::Rlimit { cur: cur.0, max: cur.1 }))?;
    }
    if new != 0 {
        let r = abi::decode_rlimit(&user.read(new, 16)?)?;
        let (soft, hard) = (r.cur, r.max);
        t.proc.inner.lock().rlimits[resource as usize] = (soft, hard);
    }
    Ok(0)
}

pub fn getrusage(who: i32, addr: u64) -> KResult<u64> {
    let me = sched::current();
    let (ut, st) = match who {
        0 => (
            me.utime.load(core::sync::atomic::Ordering::Relaxed),
            me.stime.load(core::sync::atomic::Ordering::Relaxed),
        ),
        -1 => {
            let i = me.proc.inner.lock();
            (i.cutime, i.cstime)
        }
        _ => return Err(Errno::EINVAL),
    };
    let ru = rusage(ut, st);
    User::current()?.write(addr, &abi::encode_rusage(&ru))?;
    Ok(0)
}

pub fn times(addr: u64) -> KResult<u64> {
    let me = sched::current();
    let (cu, cs) = {
        let i = me.proc.inner.lock();
        (i.cutime, i.cstime)
    };
    let t = abi::Tms {
        utime: me.utime.load(core::sync::atomic::Ordering::Relaxed) as i64,
        stime: me.stime.load(core::sync::atomic::Ordering::Relaxed) as i64,
        cutime: cu as i64,
        cstime: cs as i64,
    };
    if addr != 0 {
        User::current()?.write(addr, &abi::encode_tms(&t))?;
    }
    Ok(crate::time::now_ns() / (1_000_000_000 / sched::HZ))
}

pub fn sysinfo(addr: u64) -> KResult<u64> {
    let s = crate::sysinfo::sysinfo();
    User::current()?.write(addr, &abi::encode_sysinfo(&s))?;
    Ok(0)
}

pub fn prctl(option: u64, arg: u64) -> KResult<u64> {
    const PR_SET_PDEATHSIG: u64 = 1;
    const PR_GET_DUMPABLE: u64 = 3;
    const PR_SET_DUMPABLE: u64 = 4;
    const PR_SET_NAME: u64 = 15;
    const PR_GET_NAME: u64 = 16;
    let me = sched::current();
    match option {
        PR_SET_NAME => {
            let mut name = User::current()?.read(arg, 16)?;
            if let Some(n) = name.iter().position(|&b| b == 0) {
                name.truncate(n);
            }
            name.truncate(15);
            me.proc.inner.lock().comm = name;
            Ok(0)
        }
        PR_GET_NAME => {
            let mut name = me.proc.inner.lock().comm.clone();
            name.resize(16, 0);
            User::current()?.write(arg, &name)?;
            Ok(0)
        }
        PR_SET_PDEATHSIG | PR_SET_DUMPABLE => Ok(0),
        PR_GET_DUMPABLE => Ok(1),
        _ => Err(Errno::EINVAL),
    }
}

pub fn arch_prctl(code: u64, addr: u64) -> KResult<u64> {
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    const ARCH_GET_GS: u64 = 0x1004;
    let me = sched::current();
    match code {
        ARCH_SET_FS => {
            if addr >= 0x0000_8000_0000_0000 {
                return Err(Errno::EPERM);
            }
            me.proc.set_fs_base(addr);
            Ok(0)
        }
        ARCH_GET_FS => {
            User::current()?.write_u64(addr, crate::arch::context::fs_base())?;
            Ok(0)
        }
        ARCH_SET_GS | ARCH_GET_GS => Err(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

pub fn sched_getaffinity(len: u64, addr: u64) -> KResult<u64> {
    if len < 8 {
        return Err(Errno::EINVAL);
    }
    User::current()?.write_u64(addr, 1)?;
    Ok(8)
}

pub fn getrandom(addr: u64, len: u64) -> KResult<u64> {
    let n = (len as usize).min(1 << 20);
    let mut buf = alloc::vec![0u8; n];
    crate::dev::random::fill(&mut buf);
    User::current()?.write(addr, &buf)?;
    Ok(n as u64)
}

pub fn reboot(magic1: u32, magic2: u32, cmd: u32) -> KResult<u64> {
    const MAGIC1: u32 = 0xfee1_dead;
    const CMD_RESTART: u32 = 0x0123_4567;
    const CMD_HALT: u32 = 0xcdef_0123;
    const CMD_POWER_OFF: u32 = 0x4321_fedc;
    const CMD_CAD_ON: u32 = 0x89ab_cdef;
    const CMD_CAD_OFF: u32 = 0;
    if magic1 != MAGIC1 || !matches!(magic2, 672_274_793 | 85_072_278 | 369_367_448 | 537_993_216) {
        return Err(Errno::EINVAL);
    }
    match cmd {
        CMD_RESTART => crate::init::shutdown(true, 0),
        CMD_HALT | CMD_POWER_OFF => crate::init::shutdown(false, 0),
        CMD_CAD_ON | CMD_CAD_OFF => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

fn rusage(ticks_user: u64, ticks_sys: u64) -> abi::Rusage {
    let tv = |t: u64| {
        let us = t * (1_000_000 / sched::HZ);
        abi::Timeval { sec: (us / 1_000_000) as i64, usec: (us % 1_000_000) as i64 }
    };
    abi::Rusage { utime: tv(ticks_user), stime: tv(ticks_sys), ..abi::Rusage::default() }
}
