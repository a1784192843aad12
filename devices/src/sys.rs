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

/// `pread` straight into guest memory (no bounce buffer), until `slice` is full.
pub fn pread_volatile<B: vm_memory::bitmap::BitmapSlice>(
    file: &std::fs::File,
    slice: &vm_memory::VolatileSlice<'_, B>,
    offset: u64,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let guard = slice.ptr_guard_mut();
    let (ptr, len) = (guard.as_ptr(), slice.len());
    let mut done = 0usize;
    while done < len {
        // SAFETY: `ptr..ptr+len` is guest memory the slice (and its guard) keep mapped; the
        // kernel writes at most `len - done` bytes at `ptr + done`.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                ptr.add(done).cast(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
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
    let mut done = 0usize;
    while done < len {
        // SAFETY: `ptr..ptr+len` is guest memory the slice (and its guard) keep mapped; the
        // kernel only reads from it.
        let n = unsafe {
            libc::pwrite(
                file.as_raw_fd(),
                ptr.add(done).cast(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            n if n > 0 => done += n as usize,
            0 => return Err(io::Error::from(io::ErrorKind::WriteZero)),
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
