//! The benchmark's one call the standard library lacks: wait4 with resource usage.

/// Waits for `pid` and returns (exit status, peak RSS in KiB) from the kernel's accounting.
pub fn wait_with_rusage(pid: u32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; the pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as libc::pid_t, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64)
}
