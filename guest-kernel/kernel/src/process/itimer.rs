//! Per-process interval timers (`alarm`, `setitimer`/`getitimer` with ITIMER_REAL): SIGALRM
//! when the deadline passes, then again every interval. Checked after timer ticks from
//! process context (the idle loop and returns to user mode), so the resolution is the tick.

use crate::arch::sync::IrqMutex;
use crate::process::sched::{self, Pid};
use alloc::collections::BTreeMap;
use umlvm_kcore::errno::{Errno, KResult};

/// (deadline ns since boot, interval ns) per process.
static TIMERS: IrqMutex<BTreeMap<Pid, (u64, u64)>> = IrqMutex::new(BTreeMap::new());

/// ITIMER_REAL.
pub const ITIMER_REAL: u32 = 0;

/// Sets the real-time timer of the current process: first expiry `value` ns from now (0
/// disarms), then every `interval` ns. Returns the previous (remaining, interval).
pub fn set(value: u64, interval: u64) -> (u64, u64) {
    let me = sched::current().pid;
    let now = crate::time::now_ns();
    let mut t = TIMERS.lock();
    let prev = t.remove(&me).map_or((0, 0), |(d, i)| (d.saturating_sub(now).max(1), i));
    if value > 0 {
        t.insert(me, (now + value, interval));
    }
    prev
}

/// The current process's (remaining, interval).
pub fn get() -> (u64, u64) {
    let me = sched::current().pid;
    let now = crate::time::now_ns();
    TIMERS.lock().get(&me).map_or((0, 0), |&(d, i)| (d.saturating_sub(now).max(1), i))
}

/// `alarm(secs)`: returns the seconds left of the previous alarm (rounded up).
pub fn alarm(secs: u64) -> KResult<u64> {
    let (left, _) = set(secs.saturating_mul(1_000_000_000), 0);
    Ok(left.div_ceil(1_000_000_000))
}

/// Fires due timers (called from process context after ticks).
pub fn run_due() {
    let now = crate::time::now_ns();
    let due: alloc::vec::Vec<Pid> = {
        let mut t = TIMERS.lock();
        if t.is_empty() {
            return;
        }
        let due: alloc::vec::Vec<Pid> = t.iter().filter(|&(_, &(d, _))| d <= now).map(|(&p, _)| p).collect();
        for p in &due {
            let (d, i) = t[p];
            if i > 0 {
                // Skip missed periods rather than firing a burst.
                let periods = (now - d).checked_div(i).unwrap_or(0) + 1;
                t.insert(*p, (d + periods * i, i));
            } else {
                t.remove(p);
            }
        }
        due
    };
    for p in due {
        match sched::task(p) {
            Some(t) => crate::process::signal::send(
                &t,
                umlvm_kcore::signal::SIGALRM,
                umlvm_kcore::signal::SI_KERNEL,
                0,
            ),
            None => {
                TIMERS.lock().remove(&p);
            }
        }
    }
}

/// Forgets the timer of an exiting process.
pub fn exited(pid: Pid) {
    TIMERS.lock().remove(&pid);
}

/// Validates a `which` argument.
pub fn check_which(which: u32) -> KResult<()> {
    match which {
        ITIMER_REAL => Ok(()),
        // ITIMER_VIRTUAL and ITIMER_PROF would need CPU-time accounting per tick.
        1 | 2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    }
}
