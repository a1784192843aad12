//! The disk stack: small layers behind one [`Disk`] trait.

pub mod cow;
pub mod raw;

use std::io;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

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

    /// Reads `len` bytes at `offset` straight into guest memory at `addr`. The default goes
    /// through a buffer; file-backed disks override it to avoid the extra copy.
    fn read_to_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        self.read_at(&mut buf, offset)?;
        mem.write_slice(&buf, addr).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Writes `len` bytes from guest memory at `addr` to `offset`.
    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; len];
        mem.read_slice(&mut buf, addr).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.write_at(&buf, offset)
    }
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

/// A disk shared between successive machines (a reboot builds a new machine over the same
/// open, locked images).
#[derive(Clone)]
pub struct SharedDisk(std::sync::Arc<std::sync::Mutex<Box<dyn Disk>>>);

impl SharedDisk {
    /// Shares `disk`.
    pub fn new(disk: Box<dyn Disk>) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(disk)))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Box<dyn Disk>) -> io::Result<R>) -> io::Result<R> {
        let mut guard = self.0.lock().map_err(|_| io::Error::other("disk lock poisoned"))?;
        f(&mut guard)
    }
}

impl Disk for SharedDisk {
    fn size(&self) -> u64 {
        self.0.lock().map(|d| d.size()).unwrap_or(0)
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|d| d.read_at(buf, offset))
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|d| d.write_at(buf, offset))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.with(|d| d.flush())
    }
    fn read_only(&self) -> bool {
        self.0.lock().map(|d| d.read_only()).unwrap_or(true)
    }
    fn read_to_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        self.with(|d| d.read_to_guest(mem, addr, len, offset))
    }
    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        self.with(|d| d.write_from_guest(mem, addr, len, offset))
    }
}
