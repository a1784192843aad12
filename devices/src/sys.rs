//! The few raw system calls the device backends need.

use std::io;
use std::os::fd::RawFd;

/// `flock(fd, op)`.
pub fn flock(fd: RawFd, op: i32) -> io::Result<()> {
    // SAFETY: flock only takes an fd and flags; an invalid fd yields EBADF, not UB.
    let rc = unsafe { libc::flock(fd, op) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether `fd` is a terminal.
#[allow(dead_code, reason = "used by the moo progress bar")]
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}
