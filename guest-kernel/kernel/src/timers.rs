//! Per-process alarms (`alarm`): SIGALRM when the deadline passes, checked on timer ticks.

use crate::sched::{self, Pid};
use crate::sync::IrqMutex;
use alloc::collections::BTreeMap;
use umlvm_kcore::errno::KResult;

static ALARMS: IrqMutex<BTreeMap<Pid, u64>> = IrqMutex::new(BTreeMap::new());

/// `alarm(secs)`: returns the seconds left of the previous alarm.
pub fn alarm(secs: u64) -> KResult<u64> {
    let me = sched::current().pid;
    let now = crate::time::now_ns();
    let mut a = ALARMS.lock();
    let prev = a.remove(&me).map_or(0, |d| d.saturating_sub(now).div_ceil(1_000_000_000));
    if secs > 0 {
        a.insert(me, now + secs * 1_000_000_000);
    }
    Ok(prev)
}

/// Fires due alarms (called from process context after a tick).
pub fn run_due() {
    let now = crate::time::now_ns();
    let due: alloc::vec::Vec<Pid> = {
        let mut a = ALARMS.lock();
        let due: alloc::vec::Vec<Pid> = a.iter().filter(|&(_, &d)| d <= now).map(|(&p, _)| p).collect();
        for p in &due {
            a.remove(p);
        }
        due
    };
    for p in due {
        if let Some(t) = sched::task(p) {
            crate::signal::send(&t, umlvm_kcore::signal::SIGALRM, umlvm_kcore::signal::SI_KERNEL, 0);
        }
    }
}
