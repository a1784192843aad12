//! The Linux x86-64 system-call interface (the beginning of it).
//!
//! Numbers and conventions are Linux's: number in rax, arguments in rdi, rsi, rdx, r10, r8,
//! r9, result (or -errno) in rax. Unknown calls return -ENOSYS and are logged once each.

use crate::arch::trap::TrapFrame;
use crate::arch::uspace;
use crate::task::Task;
use core::sync::atomic::{AtomicU64, Ordering};
use umlvm_kcore::errno::Errno;

/// What the kernel does after a syscall.
pub enum Outcome {
    /// Return this value in rax.
    Return(u64),
    /// End the task with this status.
    Exit(i32),
}

const SYS_WRITE: u64 = 1;
const SYS_SCHED_YIELD: u64 = 24;
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SYS_EXIT_GROUP: u64 = 231;

/// Bitmap of unknown syscall numbers already logged (0..512).
static LOGGED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Handles the syscall in `frame` for `task`.
pub fn dispatch(task: &mut Task, frame: &TrapFrame) -> Outcome {
    let (nr, a0, a1, a2) = (frame.rax, frame.rdi, frame.rsi, frame.rdx);
    match nr {
        SYS_GETPID => Outcome::Return(1),
        SYS_SCHED_YIELD => Outcome::Return(0),
        SYS_WRITE => Outcome::Return(write(task, a0, a1, a2).unwrap_or_else(Errno::as_syscall_return)),
        SYS_EXIT | SYS_EXIT_GROUP => Outcome::Exit(a0 as i32),
        _ => {
            if nr < 512 {
                let bit = 1u64 << (nr % 64);
                if LOGGED[(nr / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    log::warn!("unknown syscall {nr} (returning ENOSYS)");
                }
            }
            Outcome::Return(Errno::ENOSYS.as_syscall_return())
        }
    }
}

/// write(fd, buf, len) to the console for fds 1 and 2.
fn write(task: &Task, fd: u64, buf: u64, len: u64) -> Result<u64, Errno> {
    if fd != 1 && fd != 2 {
        return Err(Errno::EBADF);
    }
    let len = len.min(1 << 20);
    let mut chunk = [0u8; 256];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(chunk.len() as u64) as usize;
        let addr = buf.checked_add(done).ok_or(Errno::EFAULT)?;
        if uspace::copy_from_user(&task.space, addr, &mut chunk[..n]).is_err() {
            return if done == 0 { Err(Errno::EFAULT) } else { Ok(done) };
        }
        crate::console::write_bytes(&chunk[..n]);
        done += n as u64;
    }
    Ok(done)
}
