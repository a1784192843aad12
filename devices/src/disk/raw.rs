//! Raw image files, with `flock` so two machines never write one image.

use super::{Disk, check_range, read_only_error};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// How an image is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and write, exclusively locked.
    ReadWrite,
    /// Read only, share-locked (several readers, no writer).
    ReadOnly,
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file does not exist or cannot be opened.
    #[error("{}: cannot open", .0.display())]
    Open(PathBuf, #[source] io::Error),
    /// A directory or another non-regular file.
    #[error("{}: not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// Another process holds a conflicting lock.
    #[error("{}: in use by another machine (it is locked); two machines writing one image would corrupt it", .0.display())]
    Locked(PathBuf),
}

/// Opens `path` with `access` and takes the matching `flock`.
pub fn open_locked(path: &Path, access: Access) -> Result<File, OpenError> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(OpenError::NotAFile(path.to_path_buf()));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|e| OpenError::Open(path.to_path_buf(), e))?;
    let meta = file.metadata().map_err(|e| OpenError::Open(path.to_path_buf(), e))?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(path.to_path_buf()));
    }
    let op = match access {
        Access::ReadWrite => libc::LOCK_EX,
        Access::ReadOnly => libc::LOCK_SH,
    };
    if crate::sys::flock(file.as_raw_fd(), op | libc::LOCK_NB).is_err() {
        return Err(OpenError::Locked(path.to_path_buf()));
    }
    Ok(file)
}

/// A raw image file.
#[derive(Debug)]
pub struct RawDisk {
    file: File,
    size: u64,
    access: Access,
}

impl RawDisk {
    /// Opens and locks `path`.
    pub fn open(path: &Path, access: Access) -> Result<Self, OpenError> {
        let file = open_locked(path, access)?;
        let size = file.metadata().map_err(|e| OpenError::Open(path.to_path_buf(), e))?.len();
        Ok(Self { file, size, access })
    }
}

impl Disk for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.access == Access::ReadOnly {
            return Err(read_only_error());
        }
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.access == Access::ReadOnly {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn read_only(&self) -> bool {
        self.access == Access::ReadOnly
    }

    fn read_to_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        check_range(offset, len, self.size)?;
        let slice = mem.get_slice(addr, len).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        crate::sys::pread_volatile(&self.file, &slice, offset)
    }

    fn write_from_guest(
        &mut self,
        mem: &GuestMemoryMmap,
        addr: GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        if self.access == Access::ReadOnly {
            return Err(read_only_error());
        }
        check_range(offset, len, self.size)?;
        let slice = mem.get_slice(addr, len).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        crate::sys::pwrite_volatile(&self.file, &slice, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, len: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("umlvm-raw-{}-{name}", std::process::id()));
        let f = File::create(&p).unwrap();
        f.set_len(len).unwrap();
        p
    }

    #[test]
    fn reads_writes_and_bounds() {
        let p = temp("rw", 4096);
        let mut d = RawDisk::open(&p, Access::ReadWrite).unwrap();
        d.write_at(b"hello", 512).unwrap();
        let mut b = [0u8; 5];
        d.read_at(&mut b, 512).unwrap();
        assert_eq!(&b, b"hello");
        assert!(d.read_at(&mut b, 4094).is_err());
        assert!(d.write_at(b"x", u64::MAX).is_err());
        d.flush().unwrap();
        drop(d);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn read_only_refuses_writes_and_locks_conflict() {
        let p = temp("lock", 4096);
        let mut ro = RawDisk::open(&p, Access::ReadOnly).unwrap();
        assert_eq!(ro.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(libc::EROFS));
        // A second reader is fine; a writer is refused while readers hold it.
        let _ro2 = RawDisk::open(&p, Access::ReadOnly).unwrap();
        assert!(matches!(RawDisk::open(&p, Access::ReadWrite), Err(OpenError::Locked(_))));
        drop((ro, _ro2));
        let _rw = RawDisk::open(&p, Access::ReadWrite).unwrap();
        assert!(matches!(RawDisk::open(&p, Access::ReadWrite), Err(OpenError::Locked(_))));
        assert!(matches!(RawDisk::open(&p, Access::ReadOnly), Err(OpenError::Locked(_))));
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn directories_and_missing_files_are_refused() {
        assert!(matches!(
            RawDisk::open(&std::env::temp_dir(), Access::ReadOnly),
            Err(OpenError::NotAFile(_))
        ));
        assert!(matches!(
            RawDisk::open(Path::new("/nonexistent/x"), Access::ReadOnly),
            Err(OpenError::Open(..))
        ));
    }
}
