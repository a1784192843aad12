//! Time syscalls: clocks, sleeps.

use super::User;
use crate::process::sched;
use umlvm_kcore::errno::{Errno, KResult};

const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u32 = 2;
const CLOCK_THREAD_CPUTIME_ID: u32 = 3;
const CLOCK_MONOTONIC_RAW: u32 = 4;
const CLOCK_REALTIME_COARSE: u32 = 5;
const CLOCK_MONOTONIC_COARSE: u32 = 6;
const CLOCK_BOOTTIME: u32 = 7;

fn clock_ns(clock: u32) -> KResult<u64> {
    match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Ok(crate::time::unix_ns()),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => {
            Ok(crate::time::now_ns())
        }
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => {
            let me = sched::current();
            let t = me.utime.load(core::sync::atomic::Ordering::Relaxed)
                + me.stime.load(core::sync::atomic::Ordering::Relaxed);
            Ok(t * (1_000_000_000 / sched::HZ))
        }
        _ => Err(Errno::EINVAL),
    }
}

fn write_ts(addr: u64, ns: u64) -> KResult<()> {
    let user = User::current()?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
    b[8..].copy_from_slice(&(ns % 1_000_000_000).to_le_bytes());
    user.write(addr, &b)
}

fn read_ts(addr: u64) -> KResult<u64> {
    let user = User::current()?;
    let sec = user.read_u64(addr)?;
    let nsec = user.read_u64(addr + 8)?;
    if nsec >= 1_000_000_000 || (sec as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(sec.saturating_mul(1_000_000_000).saturating_add(nsec))
}

pub fn clock_gettime(clock: u32, addr: u64) -> KResult<u64> {
    let ns = clock_ns(clock)?;
    write_ts(addr, ns)?;
    Ok(0)
}

pub fn clock_getres(clock: u32, addr: u64) -> KResult<u64> {
    clock_ns(clock)?;
    if addr != 0 {
        write_ts(addr, 1)?;
    }
    Ok(0)
}

pub fn gettimeofday(addr: u64) -> KResult<u64> {
    if addr != 0 {
        let ns = crate::time::unix_ns();
        let user = User::current()?;
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[8..].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
        user.write(addr, &b)?;
    }
    Ok(0)
}

pub fn time(addr: u64) -> KResult<u64> {
    let s = crate::time::unix_ns() / 1_000_000_000;
    if addr != 0 {
        User::current()?.write_u64(addr, s)?;
    }
    Ok(s)
}

/// Sleeps until monotonic `deadline`; on a signal, returns the time left.
fn sleep_until(deadline: u64) -> Result<(), u64> {
    let me = sched::current();
    let r = sched::wait_event(0x7900_0000_0000 | u64::from(me.pid), true, Some(deadline), || {
        (crate::time::now_ns() >= deadline).then_some(())
    });
    match r {
        Ok(()) | Err(sched::Interrupted::Timeout) => Ok(()),
        Err(sched::Interrupted::Signal) => Err(deadline.saturating_sub(crate::time::now_ns())),
    }
}

pub fn nanosleep(req: u64, rem: u64) -> KResult<u64> {
    let ns = read_ts(req)?;
    match sleep_until(crate::time::now_ns().saturating_add(ns)) {
        Ok(()) => Ok(0),
        Err(left) => {
            if rem != 0 {
                write_ts(rem, left)?;
            }
            Err(Errno::EINTR)
        }
    }
}

pub fn clock_nanosleep(clock: u32, flags: u32, req: u64, rem: u64) -> KResult<u64> {
    const TIMER_ABSTIME: u32 = 1;
    let now_clock = clock_ns(clock)?;
    let ns = read_ts(req)?;
    let rel = if flags & TIMER_ABSTIME != 0 { ns.saturating_sub(now_clock) } else { ns };
    match sleep_until(crate::time::now_ns().saturating_add(rel)) {
        Ok(()) => Ok(0),
        Err(left) => {
            if rem != 0 && flags & TIMER_ABSTIME == 0 {
                write_ts(rem, left)?;
            }
            Err(Errno::EINTR)
        }
    }
}

fn read_timeval(user: &User, addr: u64) -> KResult<u64> {
    let sec = user.read_u64(addr)?;
    let usec = user.read_u64(addr + 8)?;
    if usec >= 1_000_000 || (sec as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(sec.saturating_mul(1_000_000_000).saturating_add(usec * 1000))
}

fn write_itimerval(user: &User, addr: u64, (value, interval): (u64, u64)) -> KResult<()> {
    let mut b = [0u8; 32];
    for (i, ns) in [interval, value].into_iter().enumerate() {
        b[16 * i..16 * i + 8].copy_from_slice(&(ns / 1_000_000_000).to_le_bytes());
        b[16 * i + 8..16 * i + 16].copy_from_slice(&((ns % 1_000_000_000) / 1000).to_le_bytes());
    }
    user.write(addr, &b)
}

pub fn setitimer(which: u32, new: u64, old: u64) -> KResult<u64> {
    crate::process::itimer::check_which(which)?;
    let user = User::current()?;
    let (interval, value) =
        if new != 0 { (read_timeval(&user, new)?, read_timeval(&user, new + 16)?) } else { (0, 0) };
    let prev = crate::process::itimer::set(value, interval);
    if old != 0 {
        write_itimerval(&user, old, prev)?;
    }
    Ok(0)
}

pub fn getitimer(which: u32, addr: u64) -> KResult<u64> {
    crate::process::itimer::check_which(which)?;
    write_itimerval(&User::current()?, addr, crate::process::itimer::get())?;
    Ok(0)
}
