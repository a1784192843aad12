//! The [`Inode`] glue: every operation locks the file system and works on the on-disk inode
//! through the block cache, so all `Arc`s of one inode number see the same state.

use super::inode::{IBLOCK_BYTES, LINK_MAX, RawInode};
use super::{Ext2Fs, ROOT_INO, State};
use crate::errno::{Errno, KResult};
use crate::vfs::{DirEntry, FileSystem, FileType, Inode, Metadata, NewInode, S_IFMT, SetAttr, check_name};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, Ordering};

/// An inode of a mounted [`Ext2Fs`].
pub struct Ext2Inode {
    fs: Arc<Ext2Fs>,
    ino: u32,
    /// Unlinked while held: freed when the last `Arc` goes.
    orphan: AtomicBool,
}

impl Ext2Inode {
    pub(crate) fn new(fs: Arc<Ext2Fs>, ino: u32) -> Self {
        Self { fs, ino, orphan: AtomicBool::new(false) }
    }

    /// The inode number.
    pub fn ino(&self) -> u32 {
        self.ino
    }

    /// The file system it belongs to.
    pub fn fs(&self) -> &Arc<Ext2Fs> {
        &self.fs
    }

    pub(crate) fn set_orphan(&self) {
        self.orphan.store(true, Ordering::Relaxed);
    }

    /// This inode, read as a directory (`ENOTDIR` otherwise).
    fn dir(&self, st: &mut State) -> KResult<RawInode> {
        let raw = st.read_inode(self.ino)?;
        if !raw.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(raw)
    }

    /// This inode as a directory that may get new entries (not removed).
    fn live_dir(&self, st: &mut State) -> KResult<RawInode> {
        let raw = self.dir(st)?;
        if raw.links() == 0 {
            return Err(Errno::ENOENT);
        }
        Ok(raw)
    }

    /// Another inode of this same file system, else `EXDEV`.
    fn same_fs<'a>(&self, other: &'a Arc<dyn Inode>) -> KResult<&'a Ext2Inode> {
        match other.as_any().downcast_ref::<Ext2Inode>() {
            Some(o) if Arc::ptr_eq(&o.fs, &self.fs) => Ok(o),
            _ => Err(Errno::EXDEV),
        }
    }

    /// Adds one to (or takes one from) the link count of `ino`.
    fn adjust_links(st: &mut State, ino: u32, delta: i32) -> KResult<u16> {
        let mut raw = st.read_inode(ino)?;
        let links = (i32::from(raw.links()) + delta).clamp(0, i32::from(u16::MAX)) as u16;
        raw.set_links(links);
        raw.set_ctime(st.now());
        st.write_inode(ino, &raw)?;
        Ok(links)
    }

    /// Makes a new inode `name` in this directory: `fill` writes its contents.
    fn make(
        &self,
        name: &[u8],
        new: &NewInode,
        kind: FileType,
        fill: impl FnOnce(&mut State, u32, &mut RawInode) -> KResult<()>,
    ) -> KResult<Arc<dyn Inode>> {
        check_name(name)?;
        let mut st = self.fs.lock_rw()?;
        let mut dir = self.live_dir(&mut st)?;
        if st.dir_find(&dir, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let is_dir = kind == FileType::Directory;
        if is_dir && dir.links() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        let group = st.inode_group(self.ino);
        let ino = st.alloc_inode(group, is_dir)?;
        let mut raw = RawInode::zeroed(st.geo.inode_size as usize);
        raw.set_mode((kind.mode_bits() | (new.perm & 0o7777)) as u16);
        raw.set_uid(new.uid);
        raw.set_gid(new.gid);
        raw.set_atime(new.time);
        raw.set_mtime(new.time);
        raw.set_ctime(new.time);
        raw.set_crtime(new.time);
        raw.set_links(if is_dir { 2 } else { 1 });
        let made = fill(&mut st, ino, &mut raw).and_then(|()| {
            st.write_inode(ino, &raw)?;
            st.dir_add(self.ino, &mut dir, name, ino, kind)
        });
        if let Err(e) = made {
            // Undo: the inode was never linked.
            if raw.has_block_map(st.geo.block_size) {
                st.free_blocks_from(&mut raw, 0)?;
            }
            st.write_inode(ino, &raw)?;
            st.free_inode(ino)?;
            st.write_inode(self.ino, &dir)?;
            return Err(e);
        }
        if is_dir {
            dir.set_links(dir.links() + 1);
        }
        st.write_inode(self.ino, &dir)?;
        Ok(self.fs.inode_arc(ino))
    }

    /// Whether directory `ancestor` is `dir` or above it.
    fn is_ancestor(st: &mut State, ancestor: u32, mut dir: u32) -> KResult<bool> {
        for _ in 0..65536 {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT_INO {
                return Ok(false);
            }
            let raw = st.read_inode(dir)?;
            dir = st.dir_find(&raw, b"..")?.ok_or(Errno::EUCLEAN)?.ino;
        }
        Err(Errno::ELOOP)
    }
}

impl Drop for Ext2Inode {
    fn drop(&mut self) {
        if self.orphan.load(Ordering::Relaxed) {
            self.fs.queue_free(self.ino);
        }
    }
}

impl Inode for Ext2Inode {
    fn metadata(&self) -> Metadata {
        let mut st = self.fs.lock();
        let bs = st.geo.block_size;
        let raw = match st.read_inode(self.ino) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("ext2: cannot read inode {}: {}", self.ino, e.name());
                return Metadata { ino: u64::from(self.ino), ..Metadata::default() };
            }
        };
        let rdev = match raw.file_type() {
            Some(FileType::CharDevice | FileType::BlockDevice) => raw.rdev(),
            _ => 0,
        };
        Metadata {
            ino: u64::from(self.ino),
            mode: u32::from(raw.mode()),
            nlink: u32::from(raw.links()),
            uid: raw.uid(),
            gid: raw.gid(),
            size: raw.size(),
            blocks: u64::from(raw.sectors()),
            blksize: bs,
            rdev,
            atime: raw.atime(),
            mtime: raw.mtime(),
            ctime: raw.ctime(),
        }
    }

    fn setattr(&self, attr: &SetAttr) -> KResult<()> {
        let mut st = self.fs.lock_rw()?;
        let mut raw = st.read_inode(self.ino)?;
        let now = st.now();
        if let Some(size) = attr.size {
            match raw.file_type() {
                Some(FileType::Regular) => {}
                Some(FileType::Directory) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            if size != raw.size() {
                st.truncate(&mut raw, size)?;
                raw.set_mtime(now);
            }
        }
        if let Some(perm) = attr.perm {
            raw.set_mode(((u32::from(raw.mode()) & S_IFMT) | (perm & 0o7777)) as u16);
        }
        if let Some(uid) = attr.uid {
            raw.set_uid(uid);
        }
        if let Some(gid) = attr.gid {
            raw.set_gid(gid);
        }
        if let Some(t) = attr.atime {
            raw.set_atime(t);
        }
        if let Some(t) = attr.mtime {
            raw.set_mtime(t);
        }
        raw.set_ctime(now);
        st.write_inode(self.ino, &raw)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> KResult<usize> {
        let mut st = self.fs.lock();
        let raw = st.read_inode(self.ino)?;
        match raw.file_type() {
            Some(FileType::Regular) => st.read_data(&raw, offset, buf),
            Some(FileType::Directory) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> KResult<usize> {
        let mut st = self.fs.lock_rw()?;
        let mut raw = st.read_inode(self.ino)?;
        match raw.file_type() {
            Some(FileType::Regular) => {}
            Some(FileType::Directory) => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let res = st.write_data(self.ino, &mut raw, offset, buf);
        let now = st.now();
        raw.set_mtime(now);
        raw.set_ctime(now);
        st.write_inode(self.ino, &raw)?;
        res
    }

    fn lookup(&self, name: &[u8]) -> KResult<Arc<dyn Inode>> {
        let mut st = self.fs.lock();
        let dir = self.dir(&mut st)?;
        if dir.links() == 0 {
            return Err(Errno::ENOENT);
        }
        let found = st.dir_find(&dir, name)?.ok_or(Errno::ENOENT)?;
        Ok(self.fs.get_inode(&mut st, found.ino)?)
    }

    fn create(&self, name: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>> {
        match new.kind {
            FileType::Symlink => Err(Errno::EINVAL),
            FileType::Directory => {
                let parent = self.ino;
                self.make(name, new, new.kind, |st, ino, raw| st.dir_init(ino, raw, parent))
            }
            FileType::CharDevice | FileType::BlockDevice => {
                let rdev = new.rdev;
                self.make(name, new, new.kind, |_, _, raw| {
                    raw.set_rdev(rdev);
                    Ok(())
                })
            }
            kind => self.make(name, new, kind, |_, _, _| Ok(())),
        }
    }

    fn symlink(&self, name: &[u8], target: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        self.make(name, new, FileType::Symlink, |st, ino, raw| {
            if target.len() >= st.geo.block_size as usize {
                return Err(Errno::ENAMETOOLONG);
            }
            if target.len() < IBLOCK_BYTES {
                raw.iblock_bytes_mut()[..target.len()].copy_from_slice(target);
                raw.set_size(target.len() as u64);
                Ok(())
            } else {
                st.write_data(ino, raw, 0, target).map(|_| ())
            }
        })
    }

    fn link(&self, name: &[u8], target: &Arc<dyn Inode>) -> KResult<()> {
        let t = self.same_fs(target)?;
        check_name(name)?;
        let mut st = self.fs.lock_rw()?;
        let mut dir = self.live_dir(&mut st)?;
        let mut raw = st.read_inode(t.ino)?;
        let kind = raw.file_type().ok_or(Errno::EUCLEAN)?;
        if kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        if raw.links() == 0 {
            return Err(Errno::ENOENT);
        }
        if raw.links() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        if st.dir_find(&dir, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        st.dir_add(self.ino, &mut dir, name, t.ino, kind)?;
        st.write_inode(self.ino, &dir)?;
        raw.set_links(raw.links() + 1);
        raw.set_ctime(st.now());
        st.write_inode(t.ino, &raw)
    }

    fn unlink(&self, name: &[u8]) -> KResult<()> {
        let mut st = self.fs.lock_rw()?;
        let mut dir = self.dir(&mut st)?;
        let found = st.dir_find(&dir, name)?.ok_or(Errno::ENOENT)?;
        if matches!(name, b"." | b"..") {
            return Err(Errno::EISDIR);
        }
        let raw = st.read_inode(found.ino)?;
        if raw.is_dir() {
            return Err(Errno::EISDIR);
        }
        st.dir_remove(&mut dir, &found)?;
        st.write_inode(self.ino, &dir)?;
        if Self::adjust_links(&mut st, found.ino, -1)? == 0 {
            self.fs.drop_or_orphan(&mut st, found.ino)?;
        }
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> KResult<()> {
        match name {
            b"." => return Err(Errno::EINVAL),
            b".." => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let mut st = self.fs.lock_rw()?;
        let mut dir = self.dir(&mut st)?;
        let found = st.dir_find(&dir, name)?.ok_or(Errno::ENOENT)?;
        let mut raw = st.read_inode(found.ino)?;
        if !raw.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !st.dir_is_empty(&raw)? {
            return Err(Errno::ENOTEMPTY);
        }
        st.dir_remove(&mut dir, &found)?;
        dir.set_links(dir.links().saturating_sub(1));
        st.write_inode(self.ino, &dir)?;
        raw.set_links(0);
        raw.set_ctime(st.now());
        st.write_inode(found.ino, &raw)?;
        self.fs.drop_or_orphan(&mut st, found.ino)
    }

    fn rename(&self, old: &[u8], new_dir: &Arc<dyn Inode>, new: &[u8]) -> KResult<()> {
        let nd = self.same_fs(new_dir)?;
        check_name(new)?;
        if matches!(old, b"." | b"..") {
            return Err(Errno::EINVAL);
        }
        let mut st = self.fs.lock_rw()?;
        let (src_dir, dst_dir) = (self.ino, nd.ino);
        let sdir = self.dir(&mut st)?;
        let found = st.dir_find(&sdir, old)?.ok_or(Errno::ENOENT)?;
        let ino = found.ino;
        let raw = st.read_inode(ino)?;
        let kind = raw.file_type().ok_or(Errno::EUCLEAN)?;
        let is_dir = kind == FileType::Directory;
        let mut ddir = nd.live_dir(&mut st)?;
        if is_dir && src_dir != dst_dir && Self::is_ancestor(&mut st, ino, dst_dir)? {
            return Err(Errno::EINVAL);
        }
        let existing = st.dir_find(&ddir, new)?;
        if let Some(t) = &existing {
            if t.ino == ino {
                return Ok(());
            }
            let traw = st.read_inode(t.ino)?;
            match (is_dir, traw.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !st.dir_is_empty(&traw)? => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        } else if is_dir && src_dir != dst_dir && ddir.links() >= LINK_MAX {
            return Err(Errno::EMLINK);
        }
        // Link the new name first: if that fails (no space), nothing changed.
        match &existing {
            Some(t) => st.dir_retarget(&mut ddir, t, ino, kind)?,
            None => st.dir_add(dst_dir, &mut ddir, new, ino, kind)?,
        }
        st.write_inode(dst_dir, &ddir)?;
        if let Some(t) = existing {
            let links = if st.read_inode(t.ino)?.is_dir() {
                // The replaced directory's ".." no longer counts for the new parent.
                Self::adjust_links(&mut st, dst_dir, -1)?;
                Self::adjust_links(&mut st, t.ino, -2)?
            } else {
                Self::adjust_links(&mut st, t.ino, -1)?
            };
            if links == 0 {
                self.fs.drop_or_orphan(&mut st, t.ino)?;
            }
        }
        // Remove the old name (found again: the directory may have changed).
        let mut sdir = st.read_inode(src_dir)?;
        let found = st.dir_find(&sdir, old)?.ok_or(Errno::EUCLEAN)?;
        st.dir_remove(&mut sdir, &found)?;
        st.write_inode(src_dir, &sdir)?;
        if is_dir && src_dir != dst_dir {
            let mut moved = st.read_inode(ino)?;
            let dotdot = st.dir_find(&moved, b"..")?.ok_or(Errno::EUCLEAN)?;
            st.dir_retarget(&mut moved, &dotdot, dst_dir, FileType::Directory)?;
            st.write_inode(ino, &moved)?;
            Self::adjust_links(&mut st, src_dir, -1)?;
            Self::adjust_links(&mut st, dst_dir, 1)?;
        }
        Self::adjust_links(&mut st, ino, 0)?;
        Ok(())
    }

    fn readlink(&self) -> KResult<Vec<u8>> {
        let mut st = self.fs.lock();
        let raw = st.read_inode(self.ino)?;
        if raw.file_type() != Some(FileType::Symlink) {
            return Err(Errno::EINVAL);
        }
        let size = raw.size() as usize;
        if raw.is_fast_symlink(st.geo.block_size) {
            if size > IBLOCK_BYTES {
                return Err(Errno::EUCLEAN);
            }
            return Ok(raw.iblock_bytes()[..size].to_vec());
        }
        if size > st.geo.block_size as usize {
            return Err(Errno::EUCLEAN);
        }
        let mut buf = alloc::vec![0; size];
        let n = st.read_data(&raw, 0, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn read_dir(&self, cursor: u64) -> KResult<Option<(DirEntry, u64)>> {
        let mut st = self.fs.lock();
        let dir = self.dir(&mut st)?;
        if dir.links() == 0 {
            // Removed while open: empty, as in Linux.
            return Ok(None);
        }
        st.dir_entry_at(&dir, cursor)
    }

    fn parent(&self) -> KResult<Arc<dyn Inode>> {
        let mut st = self.fs.lock();
        let dir = self.dir(&mut st)?;
        if self.ino == ROOT_INO {
            return Ok(self.fs.inode_arc(ROOT_INO));
        }
        let found = st.dir_find(&dir, b"..")?.ok_or(Errno::EUCLEAN)?;
        Ok(self.fs.get_inode(&mut st, found.ino)?)
    }

    fn fs_id(&self) -> u64 {
        self.fs.id()
    }

    fn sync(&self) -> KResult<()> {
        self.fs.sync()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
