//! A read-write ext2 file system (revisions 0 and 1, 1/2/4 KiB blocks), behind the VFS
//! contract of [`crate::vfs`].
//!
//! Layout: [`superblock`] parses and validates the superblock and group descriptors,
//! [`cache`] is the bounded write-back block cache, `bitmap` hands out blocks and inodes from
//! the bitmaps, `inode` maps file blocks (direct, indirect, double and triple indirect) and
//! reads, writes and truncates data, `dir` reads and edits directory blocks, and `vfs` is the
//! [`Inode`](crate::vfs::Inode) glue.
//!
//! All file-system state sits behind one lock (the kernel has one CPU and never enters a file
//! system from an interrupt handler). Free counts in the superblock and the group
//! descriptors are kept exact, so after [`FileSystem::sync`] or
//! [`FileSystem::unmount`] the image passes `e2fsck -f`. Like Linux's ext2, hashed (htree)
//! directories are read linearly, and a modified one loses its index flag; an ext3 journal is
//! left untouched when it is clean.

mod bitmap;
pub(crate) mod cache;
mod dir;
mod inode;
pub(crate) mod superblock;
#[cfg(test)]
mod tests;
mod vfs;

pub use vfs::Ext2Inode;

use crate::errno::{Errno, KResult};
use crate::vfs::{FileSystem, Inode, StatFs, Timespec};
use ::alloc::collections::BTreeMap;
use ::alloc::string::String;
use ::alloc::sync::{Arc, Weak};
use ::alloc::vec::Vec;
use cache::{BlockCache, CACHE_BLOCKS};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use spinning_top::Spinlock;
use superblock::{DESC_SIZE, Geometry, GroupDesc, SB_OFFSET, SB_SIZE, STATE_ERROR, STATE_VALID, Superblock};

/// `statfs` magic of ext2.
pub const EXT2_MAGIC: u64 = 0xEF53;
/// The root directory's inode number.
pub const ROOT_INO: u32 = 2;

/// A disk holding a file system. Offsets and lengths are in bytes; callers use block-aligned
/// I/O.
pub trait BlockDevice: Send + Sync {
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> KResult<()>;
    /// Writes `buf` at `offset`.
    fn write(&self, offset: u64, buf: &[u8]) -> KResult<()>;
    /// Makes earlier writes durable.
    fn flush(&self) -> KResult<()>;
    /// Size of the device in bytes.
    fn size(&self) -> u64;
}

/// Why a mount failed: the errno for `mount(2)` and a message for the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountError {
    /// The errno `mount` returns.
    pub errno: Errno,
    /// What is wrong, for a human.
    pub message: String,
}

impl MountError {
    pub(crate) fn new(errno: Errno, message: String) -> Self {
        Self { errno, message }
    }
}

impl From<Errno> for MountError {
    fn from(errno: Errno) -> Self {
        Self::new(errno, ::alloc::format!("I/O error while reading the file system ({})", errno.name()))
    }
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ext2: {} ({})", self.message, self.errno.name())
    }
}

pub(crate) fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub(crate) fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Everything mutable, behind the file system's lock.
pub(crate) struct State {
    pub(crate) geo: Geometry,
    pub(crate) sb: Superblock,
    pub(crate) groups: Vec<GroupDesc>,
    pub(crate) cache: BlockCache,
    pub(crate) readonly: bool,
    /// Group descriptors changed since the last sync.
    pub(crate) gd_dirty: bool,
    /// Feature flags changed: the backup superblocks need them too.
    pub(crate) features_dirty: bool,
    pub(crate) clock: fn() -> Timespec,
}

impl State {
    /// The current time.
    pub(crate) fn now(&self) -> Timespec {
        (self.clock)()
    }
}

/// A mounted ext2 file system.
pub struct Ext2Fs {
    me: Weak<Ext2Fs>,
    dev: Arc<dyn BlockDevice>,
    id: u64,
    /// Read-only-compatible features allow writing.
    rw_allowed: bool,
    /// `s_state` found at mount, restored at unmount (as Linux does).
    mount_state: u16,
    state: Spinlock<State>,
    /// Live inodes, so one inode number is one `Arc`.
    inodes: Spinlock<BTreeMap<u32, Weak<Ext2Inode>>>,
    /// Unlinked inodes whose last reference went away: freed on the next write operation.
    pending: Spinlock<Vec<u32>>,
}

/// Identities handed to mounted instances ("ext2" in the top bytes keeps them apart from
/// other file systems' counters).
static NEXT_ID: AtomicU64 = AtomicU64::new(0x6578_7432_0000_0001);

impl Ext2Fs {
    /// Mounts the ext2 file system on `dev`; `clock` gives the time for timestamps.
    ///
    /// Refuses (with a message naming them) incompatible features it does not implement, a
    /// journal that needs recovery, and read-write mounts of file systems with
    /// read-only-compatible features it cannot keep valid (`EROFS`). A read-write mount marks
    /// the file system not clean until [`FileSystem::unmount`], as Linux does.
    pub fn mount(
        dev: Arc<dyn BlockDevice>,
        readonly: bool,
        clock: fn() -> Timespec,
    ) -> Result<Arc<Ext2Fs>, MountError> {
        let size = dev.size();
        if size < SB_OFFSET + SB_SIZE as u64 {
            return Err(MountError::new(
                Errno::EINVAL,
                ::alloc::format!("device of {size} bytes is too small to hold an ext2 superblock"),
            ));
        }
        let mut raw = superblock::sb_buffer();
        dev.read(SB_OFFSET, &mut raw)?;
        let sb = Superblock::new(raw);
        let geo = Geometry::from_superblock(&sb, size, true)?;
        let rw_allowed = Geometry::from_superblock(&sb, size, false).is_ok();
        if !readonly {
            Geometry::from_superblock(&sb, size, false)?;
        }
        let mut cache = BlockCache::new(dev.clone(), geo.block_size as usize, CACHE_BLOCKS);
        let per_block = geo.block_size as usize / DESC_SIZE;
        let mut groups = Vec::with_capacity(geo.groups as usize);
        for g in 0..geo.groups as usize {
            let blk = geo.first_data_block + 1 + (g / per_block) as u32;
            let off = (g % per_block) * DESC_SIZE;
            let d = GroupDesc::parse(&cache.read(blk)?[off..off + DESC_SIZE]);
            superblock::check_desc(&geo, g as u32, &d)?;
            groups.push(d);
        }
        let mount_state = sb.state();
        let mut st =
            State { geo, sb, groups, cache, readonly, gd_dirty: false, features_dirty: false, clock };
        let root = st.read_inode(ROOT_INO)?;
        if !root.is_dir() {
            return Err(MountError::new(
                Errno::EINVAL,
                "corrupt file system: the root is not a directory".into(),
            ));
        }
        if !readonly {
            if mount_state & STATE_VALID == 0 || mount_state & STATE_ERROR != 0 {
                log::warn!(
                    "ext2: mounting a file system that was not cleanly unmounted or has errors; run e2fsck"
                );
            }
            mark_mounted(&mut st)?;
            dev.write(SB_OFFSET, st.sb.bytes())?;
            dev.flush()?;
        }
        Ok(Arc::new_cyclic(|me| Ext2Fs {
            me: me.clone(),
            dev,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rw_allowed,
            mount_state,
            state: Spinlock::new(st),
            inodes: Spinlock::new(BTreeMap::new()),
            pending: Spinlock::new(Vec::new()),
        }))
    }

    /// The identity [`Inode::fs_id`] reports.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The `Arc` of inode `ino` (live or new; the number is not checked).
    pub(crate) fn inode_arc(&self, ino: u32) -> Arc<Ext2Inode> {
        let mut map = self.inodes.lock();
        if let Some(i) = map.get(&ino).and_then(Weak::upgrade) {
            return i;
        }
        let fs = self.me.upgrade().expect("ext2: file system used while being dropped");
        let i = Arc::new(Ext2Inode::new(fs, ino));
        map.insert(ino, Arc::downgrade(&i));
        if map.len() > 64 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        i
    }

    /// The live `Arc` of inode `ino`, if someone holds one.
    pub(crate) fn live_inode(&self, ino: u32) -> Option<Arc<Ext2Inode>> {
        self.inodes.lock().get(&ino).and_then(Weak::upgrade)
    }

    /// An inode found in a directory: checked to be in use.
    pub(crate) fn get_inode(&self, st: &mut State, ino: u32) -> KResult<Arc<Ext2Inode>> {
        let raw = st.read_inode(ino)?;
        if raw.file_type().is_none() || (raw.links() == 0 && self.live_inode(ino).is_none()) {
            log::warn!("ext2: directory entry points at unused inode {ino}");
            return Err(Errno::EUCLEAN);
        }
        Ok(self.inode_arc(ino))
    }

    /// Queues an unlinked inode whose last reference went away.
    pub(crate) fn queue_free(&self, ino: u32) {
        self.pending.lock().push(ino);
    }

    /// Locks the state for reading.
    pub(crate) fn lock(&self) -> spinning_top::guard::SpinlockGuard<'_, State> {
        self.state.lock()
    }

    /// Locks the state for a change: `EROFS` when read-only; frees queued orphans first.
    pub(crate) fn lock_rw(&self) -> KResult<spinning_top::guard::SpinlockGuard<'_, State>> {
        let mut st = self.state.lock();
        if st.readonly {
            return Err(Errno::EROFS);
        }
        self.reap(&mut st)?;
        Ok(st)
    }

    /// Frees queued orphan inodes.
    fn reap(&self, st: &mut State) -> KResult<()> {
        if st.readonly {
            return Ok(());
        }
        let list = core::mem::take(&mut *self.pending.lock());
        for ino in list {
            if self.live_inode(ino).is_none() {
                st.free_inode(ino)?;
            }
        }
        Ok(())
    }

    /// Frees inode `ino` now if nobody holds it, else when the last holder lets go.
    pub(crate) fn drop_or_orphan(&self, st: &mut State, ino: u32) -> KResult<()> {
        match self.live_inode(ino) {
            Some(i) => {
                i.set_orphan();
                Ok(())
            }
            None => st.free_inode(ino),
        }
    }

    /// Writes everything dirty; with `clean`, marks the superblock with the state found at
    /// mount (clean if it was).
    fn sync_locked(&self, st: &mut State, clean: bool) -> KResult<()> {
        if st.readonly {
            return Ok(());
        }
        self.reap(st)?;
        if st.gd_dirty {
            let per_block = st.geo.block_size as usize / DESC_SIZE;
            let first = st.geo.first_data_block + 1;
            for g in 0..st.groups.len() {
                let d = st.groups[g];
                let b = st.cache.write(first + (g / per_block) as u32)?;
                let off = (g % per_block) * DESC_SIZE;
                d.store(&mut b[off..off + DESC_SIZE]);
            }
            st.gd_dirty = false;
        }
        st.cache.write_back()?;
        let now = st.now();
        st.sb.set_wtime(now.sec as u32);
        if clean {
            st.sb.set_state(self.mount_state);
        }
        self.dev.write(SB_OFFSET, st.sb.bytes())?;
        if st.features_dirty {
            self.update_backup_features(st)?;
            st.features_dirty = false;
        }
        self.dev.flush()
    }

    /// Copies the feature words into the backup superblocks.
    fn update_backup_features(&self, st: &State) -> KResult<()> {
        let mut buf = superblock::sb_buffer();
        for g in 1..st.geo.groups {
            if !st.geo.has_super(g) {
                continue;
            }
            let off = u64::from(st.geo.group_first_block(g)) * u64::from(st.geo.block_size);
            self.dev.read(off, &mut buf)?;
            if get16(&buf, 56) != superblock::MAGIC {
                continue;
            }
            for field in [92, 96, 100] {
                put32(&mut buf, field, get32(st.sb.bytes(), field));
            }
            self.dev.write(off, &buf)?;
        }
        Ok(())
    }
}

impl Drop for Ext2Fs {
    /// Writes what is still dirty (an unmount would have done so already).
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if let Err(e) = self.sync_locked(&mut st, false) {
            log::warn!("ext2: writing back on drop failed: {}", e.name());
        }
    }
}

/// Marks a read-write mount in the superblock: not clean, one more mount, mount time.
fn mark_mounted(st: &mut State) -> KResult<()> {
    let now = st.now();
    let state = st.sb.state();
    st.sb.set_state(state & !STATE_VALID);
    st.sb.set_mnt_count(st.sb.mnt_count().wrapping_add(1));
    st.sb.set_mtime(now.sec as u32);
    st.sb.set_wtime(now.sec as u32);
    Ok(())
}

impl FileSystem for Ext2Fs {
    fn root(&self) -> Arc<dyn Inode> {
        self.inode_arc(ROOT_INO)
    }

    fn name(&self) -> &'static str {
        "ext2"
    }

    fn statfs(&self) -> StatFs {
        let st = self.lock();
        StatFs {
            magic: EXT2_MAGIC,
            block_size: u64::from(st.geo.block_size),
            blocks: u64::from(st.geo.blocks_count - st.geo.overhead),
            blocks_free: u64::from(st.sb.free_blocks()),
            files: u64::from(st.geo.inodes_count),
            files_free: u64::from(st.sb.free_inodes()),
            name_max: crate::vfs::NAME_MAX as u64,
        }
    }

    fn sync(&self) -> KResult<()> {
        let mut st = self.lock();
        self.sync_locked(&mut st, false)
    }

    fn set_readonly(&self, readonly: bool) -> KResult<()> {
        let mut st = self.lock();
        if readonly == st.readonly {
            return Ok(());
        }
        if readonly {
            self.sync_locked(&mut st, true)?;
            st.readonly = true;
            Ok(())
        } else {
            if !self.rw_allowed {
                return Err(Errno::EROFS);
            }
            mark_mounted(&mut st)?;
            self.dev.write(SB_OFFSET, st.sb.bytes())?;
            self.dev.flush()?;
            st.readonly = false;
            Ok(())
        }
    }

    fn readonly(&self) -> bool {
        self.lock().readonly
    }

    fn unmount(&self) -> KResult<()> {
        let mut st = self.lock();
        self.sync_locked(&mut st, true)?;
        st.readonly = true;
        Ok(())
    }
}
