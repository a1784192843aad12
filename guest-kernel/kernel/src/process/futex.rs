//! `futex` wait and wake: enough for glibc's locks and `CLONE_CHILD_CLEARTID` (no priority
//! inheritance, no requeue).

use crate::process::sched;
use crate::syscall::User;
use umlvm_kcore::errno::{Errno, KResult};

const FUTEX_WAIT: u32 = 0;
const FUTEX_WAKE: u32 = 1;
const FUTEX_WAIT_BITSET: u32 = 9;
const FUTEX_WAKE_BITSET: u32 = 10;
const FUTEX_CMD_MASK: u32 = 0x7f;

/// The sleep channel of a futex word in the current address space.
fn chan(uaddr: u64) -> u64 {
    let mm = sched::current().proc.mm().map_or(0, |m| alloc::sync::Arc::as_ptr(&m) as u64);
    0x7c00_0000_0000_0000 ^ mm.rotate_left(17) ^ uaddr
}

/// Wakes waiters on `uaddr` (all of them: waiters re-check their word, so extra wakeups are
/// harmless).
pub fn wake(uaddr: u64, _count: u32) -> u64 {
    sched::wake_all(chan(uaddr));
    1
}

/// The `futex` syscall.
pub fn futex(uaddr: u64, op: u32, val: u32, timeout: u64) -> KResult<u64> {
    if !uaddr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    match op & FUTEX_CMD_MASK {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let user = User::current()?;
            let deadline = if timeout == 0 {
                None
            } else {
                let sec = user.read_u64(timeout)?;
                let nsec = user.read_u64(timeout + 8)?;
                let rel = sec.saturating_mul(1_000_000_000).saturating_add(nsec);
                // WAIT takes a relative timeout, WAIT_BITSET an absolute CLOCK_MONOTONIC one.
                Some(if op & FUTEX_CMD_MASK == FUTEX_WAIT {
                    crate::time::now_ns().saturating_add(rel)
                } else {
                    rel
                })
            };
            if user.read_i32(uaddr)? as u32 != val {
                return Err(Errno::EAGAIN);
            }
            let c = chan(uaddr);
            let mut first = true;
            let r = sched::wait_event(c, true, deadline, || {
                if first {
                    first = false;
                    None
                } else {
                    Some(())
                }
            });
            match r {
                Ok(()) => Ok(0),
                Err(sched::Interrupted::Timeout) => Err(Errno::ETIMEDOUT),
                Err(sched::Interrupted::Signal) => Err(Errno::EINTR),
            }
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => Ok(wake(uaddr, val)),
        _ => Err(Errno::ENOSYS),
    }
}
