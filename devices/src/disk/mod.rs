//! The disk stack: small layers behind one [`Disk`] trait.

pub mod cow;
pub mod raw;

use std::io;

/// Size of a disk sector.
pub const SECTOR_SIZE: u64 = 512;

/// A random-access disk image.
pub trait Disk: Send {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from byte `offset`. Reads past the end are an error.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes `buf` at byte `offset`. Writes past the end are an error.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn flush(&mut self) -> io::Result<()>;
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
}

/// Checks that `[offset, offset + len)` lies within `size`.
pub fn check_range(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("access at {offset} + {len} beyond disk size {size}"),
        )),
    }
}

/// The error a read-only disk returns for writes.
pub fn read_only_error() -> io::Error {
    io::Error::from_raw_os_error(libc::EROFS)
}
