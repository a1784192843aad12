//! The virtual file system contract: what every file system (tmpfs, ext2, devfs, procfs)
//! provides, and the types the syscall layer sees.
//!
//! A file system hands out inodes as `Arc<dyn Inode>`. Directory operations take names (one
//! path component, never containing `/`, never empty, never `.` or `..` — the path walker
//! handles those); the walker and the mount table are in `mount`. Special files (devices,
//! fifos) are plain inodes here: their metadata carries the type and `rdev`, and the kernel
//! routes opens of them to its drivers. All methods take `&self`: inodes lock internally.

use crate::errno::{Errno, KResult};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicU64, Ordering};

pub mod mount;
pub mod tmpfs;

/// Longest path component.
pub const NAME_MAX: usize = 255;
/// Longest path.
pub const PATH_MAX: usize = 4096;

/// The type of a file (the `S_IFMT` part of a mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// `S_IFMT`.
pub const S_IFMT: u32 = 0o170000;

impl FileType {
    /// The `S_IFxxx` bits.
    pub const fn mode_bits(self) -> u32 {
        match self {
            Self::Socket => 0o140000,
            Self::Symlink => 0o120000,
            Self::Regular => 0o100000,
            Self::BlockDevice => 0o060000,
            Self::Directory => 0o040000,
            Self::CharDevice => 0o020000,
            Self::Fifo => 0o010000,
        }
    }

    /// The type in a full mode, if it is a valid one.
    pub const fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & S_IFMT {
            0o140000 => Self::Socket,
            0o120000 => Self::Symlink,
            0o100000 => Self::Regular,
            0o060000 => Self::BlockDevice,
            0o040000 => Self::Directory,
            0o020000 => Self::CharDevice,
            0o010000 => Self::Fifo,
            _ => return None,
        })
    }

    /// The `d_type` of `linux_dirent64` (`DT_xxx`).
    pub const fn dirent_type(self) -> u8 {
        match self {
            Self::Fifo => 1,
            Self::CharDevice => 2,
            Self::Directory => 4,
            Self::BlockDevice => 6,
            Self::Regular => 8,
            Self::Symlink => 10,
            Self::Socket => 12,
        }
    }
}

/// A point in time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds, below 1e9.
    pub nsec: u32,
}

/// Linux's device-number encoding (`makedev`): major 12 bits, minor 20 bits, as `st_rdev`.
pub const fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xfffff000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffffff00) << 12) | (mi & 0xff)
}

/// The major number of an encoded device number.
pub const fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xfffff000) | ((dev >> 8) & 0xfff)) as u32
}

/// The minor number of an encoded device number.
pub const fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffffff00) | (dev & 0xff)) as u32
}

/// What `stat` reports about an inode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Inode number (unique within its file system).
    pub ino: u64,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (symlinks: target length).
    pub size: u64,
    /// Allocated space in 512-byte units.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Device number, for device inodes (see [`makedev`]).
    pub rdev: u64,
    /// Last access.
    pub atime: Timespec,
    /// Last data change.
    pub mtime: Timespec,
    /// Last status change.
    pub ctime: Timespec,
}

impl Metadata {
    /// The file type (regular if the mode is damaged).
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode).unwrap_or(FileType::Regular)
    }
}

/// Attribute changes (`chmod`, `chown`, `truncate`, `utimensat`); `None` leaves a field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (the low 12 bits of the mode; the type never changes).
    pub perm: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (regular files): truncates or extends with zeros.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<Timespec>,
    /// New modification time.
    pub mtime: Option<Timespec>,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Type.
    pub kind: FileType,
    /// Name (no `/`).
    pub name: Vec<u8>,
}

/// What a new inode is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewInode {
    /// Type.
    pub kind: FileType,
    /// Permission bits (low 12 bits; the caller applied the umask).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number for device inodes, else 0.
    pub rdev: u64,
    /// Creation time (all three times).
    pub time: Timespec,
}

/// File-system usage, for `statfs`/`df`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    /// `f_type` magic (tmpfs 0x01021994, ext2 0xEF53, proc 0x9fa0).
    pub magic: u64,
    /// Block size.
    pub block_size: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub blocks_free: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
    /// Longest name.
    pub name_max: u64,
}

/// An inode of some file system. Unsupported operations return the errno Linux would:
/// directory operations on a non-directory `ENOTDIR`, data operations on a directory
/// `EISDIR`, anything on a read-only file system `EROFS`, an operation the file system does
/// not support `EPERM` (or `EINVAL` for `readlink` on a non-symlink).
pub trait Inode: Send + Sync {
    /// Current metadata.
    fn metadata(&self) -> Metadata;

    /// Changes attributes (sets ctime; `size` only for regular files, else `EISDIR`/`EINVAL`).
    fn setattr(&self, attr: &SetAttr) -> KResult<()>;

    /// Reads file data at `offset`; returns the bytes read (0 at or past the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> KResult<usize>;

    /// Writes file data at `offset` (extending the file, holes read as zeros); returns the
    /// bytes written.
    fn write_at(&self, offset: u64, buf: &[u8]) -> KResult<usize>;

    /// Finds `name` in this directory (`ENOENT` if absent).
    fn lookup(&self, name: &[u8]) -> KResult<Arc<dyn Inode>>;

    /// Creates `name` in this directory (`EEXIST` if present). Symlinks use [`Self::symlink`].
    fn create(&self, name: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>>;

    /// Creates symlink `name` pointing at `target`.
    fn symlink(&self, name: &[u8], target: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>>;

    /// Adds hard link `name` to `target` (same file system, else `EXDEV`; directories `EPERM`).
    fn link(&self, name: &[u8], target: &Arc<dyn Inode>) -> KResult<()>;

    /// Removes non-directory `name` (`EISDIR` for a directory). The inode lives on while
    /// open (callers hold an `Arc`).
    fn unlink(&self, name: &[u8]) -> KResult<()>;

    /// Removes empty directory `name` (`ENOTEMPTY`, `ENOTDIR`).
    fn rmdir(&self, name: &[u8]) -> KResult<()>;

    /// Moves `old` in this directory to `new` in `new_dir` (same file system, else `EXDEV`),
    /// replacing a compatible existing target as `rename(2)` does.
    fn rename(&self, old: &[u8], new_dir: &Arc<dyn Inode>, new: &[u8]) -> KResult<()>;

    /// The target of a symlink.
    fn readlink(&self) -> KResult<Vec<u8>>;

    /// The directory entry at `cursor` (0 = first; `.` and `..` come first) and the cursor of
    /// the next one, or `None` at the end. Cursors are stable while entries are added or
    /// removed elsewhere in the directory (no entry is returned twice).
    fn read_dir(&self, cursor: u64) -> KResult<Option<(DirEntry, u64)>>;

    /// The inode of this directory's parent within its file system (the root is its own
    /// parent).
    fn parent(&self) -> KResult<Arc<dyn Inode>>;

    /// The file system's identity (unique per mounted instance): hard links and renames
    /// across different ids are `EXDEV`, and the mount table keys on it.
    fn fs_id(&self) -> u64;

    /// Writes this inode's dirty data and metadata to its device.
    fn sync(&self) -> KResult<()> {
        Ok(())
    }

    /// For downcasts to the concrete type inside one file system.
    fn as_any(&self) -> &dyn Any;
}

/// A mounted (or mountable) file system.
pub trait FileSystem: Send + Sync {
    /// The root directory.
    fn root(&self) -> Arc<dyn Inode>;
    /// Type name for `/proc/mounts` (`tmpfs`, `ext2`, `proc`, `devtmpfs`).
    fn name(&self) -> &'static str;
    /// Usage figures.
    fn statfs(&self) -> StatFs;
    /// Writes everything dirty to the device.
    fn sync(&self) -> KResult<()> {
        Ok(())
    }
    /// Switches between read-write and read-only (`mount -o remount,ro`).
    fn set_readonly(&self, readonly: bool) -> KResult<()> {
        if readonly { Ok(()) } else { Err(Errno::EROFS) }
    }
    /// Whether it is read-only now.
    fn readonly(&self) -> bool {
        false
    }
    /// Called once when it is unmounted: flush and mark clean.
    fn unmount(&self) -> KResult<()> {
        self.sync()
    }
}

/// A fresh file-system identity for [`Inode::fs_id`], unique among all instances of all file
/// system types (one counter, so a tmpfs and an ext2 never share an id).
pub fn next_fs_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether two inodes are the same (same file system and inode number).
pub fn same_inode(a: &dyn Inode, b: &dyn Inode) -> bool {
    a.fs_id() == b.fs_id() && a.metadata().ino == b.metadata().ino
}

/// Validates one path component for creation: not empty, no `/`, not `.`/`..`, at most
/// [`NAME_MAX`] bytes.
pub fn check_name(name: &[u8]) -> KResult<()> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_round_trip() {
        for (ma, mi) in [(0, 0), (4, 64), (98, 16), (4095, 255), (5000, 70000)] {
            let d = makedev(ma, mi);
            assert_eq!((major(d), minor(d)), (ma, mi));
        }
        assert_eq!(makedev(4, 1), 0x401);
    }

    #[test]
    fn modes_map_to_types() {
        for t in [
            FileType::Regular,
            FileType::Directory,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::BlockDevice,
            FileType::Fifo,
            FileType::Socket,
        ] {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), Some(t));
        }
        assert_eq!(FileType::from_mode(0o644), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name(b"a").is_ok());
        assert_eq!(check_name(b""), Err(Errno::EINVAL));
        assert_eq!(check_name(b".."), Err(Errno::EINVAL));
        assert_eq!(check_name(b"a/b"), Err(Errno::EINVAL));
        assert_eq!(check_name(&[b'x'; 256]), Err(Errno::ENAMETOOLONG));
    }
}
