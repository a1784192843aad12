//! The few raw system calls the device backends need.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

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

/// `pread` straight into guest memory (no bounce buffer), until `slice` is full.
pub fn pread_volatile<B: vm_memory::bitmap::BitmapSlice>(
    file: &std::fs::File,
    slice: &vm_memory::VolatileSlice<'_, B>,
    offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let guard = slice.ptr_guard_mut();
    let (ptr, len) = (guard.as_ptr(), slice.len());
    positional_loop(len, offset, io::ErrorKind::UnexpectedEof, |done, at| {
        // SAFETY: `ptr..ptr+len` is guest memory the slice (and its guard) keep mapped; the
        // kernel writes at most `len - done` bytes at `ptr + done`.
        unsafe { libc::pread(file.as_raw_fd(), ptr.add(done).cast(), len - done, at) }
    })?;
    slice.bitmap().mark_dirty(0, len);
    Ok(())
}

/// `pwrite` straight from guest memory, until all of `slice` is written.
pub fn pwrite_volatile<B: vm_memory::bitmap::BitmapSlice>(
    file: &std::fs::File,
    slice: &vm_memory::VolatileSlice<'_, B>,
    offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let guard = slice.ptr_guard();
    let (ptr, len) = (guard.as_ptr(), slice.len());
    positional_loop(len, offset, io::ErrorKind::WriteZero, |done, at| {
        // SAFETY: `ptr..ptr+len` is guest memory the slice (and its guard) keep mapped; the
        // kernel only reads from it.
        unsafe { libc::pwrite(file.as_raw_fd(), ptr.add(done).cast(), len - done, at) }
    })
}

/// Repeats a positional transfer `op(done, file_offset)` until `len` bytes have moved,
/// retrying on EINTR; a transfer of zero bytes is an error of kind `zero`.
fn positional_loop(
    len: usize,
    offset: u64,
    zero: io::ErrorKind,
    mut op: impl FnMut(usize, libc::off_t) -> isize,
) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        match op(done, (offset + done as u64) as libc::off_t) {
            n if n > 0 => done += n as usize,
            0 => return Err(io::Error::from(zero)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Duplicates `fd` (close-on-exec). The duplicate stays blocking: the event loop reads it
/// only when epoll says it is readable (setting O_NONBLOCK would change the caller's
/// terminal too, as the flag lives in the shared open file).
pub fn dup(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor or -1; on success we own it.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(new) })
}

/// Allocates a Unix98 pseudo-terminal: the master (close-on-exec, non-blocking) and the
/// slave's path. The slave is put in raw mode so guest output passes unchanged.
pub fn open_pty() -> io::Result<(std::os::fd::OwnedFd, String)> {
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt returns a new descriptor or -1.
    let master =
        unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: we own the new descriptor.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(master) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt take the master fd; ptsname_r writes a NUL-terminated path of
    // at most `name.len()` bytes into our buffer.
    unsafe {
        if libc::grantpt(master) != 0
            || libc::unlockpt(master) != 0
            || libc::ptsname_r(master, name.as_mut_ptr(), name.len()) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: ptsname_r NUL-terminated the buffer.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned();
    // Raw mode on the slave side.
    if let Ok(slave) =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&path)
    {
        let _ = make_raw(slave.as_raw_fd());
    }
    Ok((owned, path))
}

/// Puts the terminal `fd` in raw mode; returns the previous settings.
pub fn make_raw(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw edits it, tcsetattr reads it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        let old = t;
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// Restores terminal settings saved by [`make_raw`] (async-signal-safe).
pub fn restore_terminal(fd: RawFd, t: &libc::termios) {
    // SAFETY: tcsetattr reads the struct; it is async-signal-safe.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) };
}
