//! tmpfs: a file system that lives entirely in memory.
//!
//! File data is kept in 4 KiB pages allocated on first write, so files may have holes (they
//! read as zeros and cost nothing). Directories map names to inodes and keep every entry's
//! *serial*, a per-directory counter value given out when the entry is added: `read_dir`
//! cursors are serials (0 is `.`, 1 is `..`), so a cursor stays valid whatever is added or
//! removed around it.
//!
//! Locking: every inode has its own spinlock, and no code path holds two of them at once.
//! Operations that change the tree (create, link, unlink, rmdir, rename) first take the file
//! system's namespace lock, so the tree cannot change between their checks and their updates
//! even though they lock the inodes involved one after another.
//!
//! Directories point at their parent weakly (the parent owns its children), so an inode tree
//! is freed when its last outside reference goes; the free is iterative, however deep the
//! tree.

use super::{
    DirEntry, FileSystem, FileType, Inode, Metadata, NAME_MAX, NewInode, PATH_MAX, SetAttr, StatFs, Timespec,
    check_name, next_fs_id,
};
use crate::errno::{Errno, KResult};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::collections::btree_map::Entry;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::any::Any;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spinning_top::Spinlock;

/// The `f_type` that `statfs` reports for tmpfs.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The largest file: writes that would end past it are cut short there, and writes starting
/// at or past it (and truncates beyond it) fail with `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// Bytes per data page (and the reported block size).
const PAGE_SIZE: usize = 4096;
/// The size a directory reports per entry, as Linux's tmpfs does (`BOGO_DIRENT_SIZE`).
const DIRENT_SIZE: u64 = 20;
/// The serial of a directory's first real entry (0 and 1 are `.` and `..`).
const FIRST_SERIAL: u64 = 2;
/// Seconds after which a read updates the access time even if it is newer than the
/// modification and change times (Linux's `relatime`).
const RELATIME_SECS: i64 = 24 * 60 * 60;

/// How a new tmpfs is set up (`mount -t tmpfs -o mode=,uid=,gid=,size=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmpFsOptions {
    /// Permission bits of the root directory.
    pub root_perm: u32,
    /// Owner of the root directory.
    pub root_uid: u32,
    /// Group of the root directory.
    pub root_gid: u32,
    /// The most file data it holds, in bytes (rounded up to whole pages); beyond it writes
    /// fail with `ENOSPC`. `None` is unlimited.
    pub max_bytes: Option<u64>,
}

impl Default for TmpFsOptions {
    fn default() -> Self {
        Self { root_perm: 0o755, root_uid: 0, root_gid: 0, max_bytes: None }
    }
}

/// A tmpfs instance. Create one with [`TmpFs::new`] and use it through [`FileSystem`].
pub struct TmpFs {
    shared: Arc<Shared>,
    root: Arc<TmpInode>,
}

impl TmpFs {
    /// An empty tmpfs with a root directory of mode 0755, owned by root, without a size
    /// limit. `clock` gives the current time for time stamps.
    pub fn new(clock: fn() -> Timespec) -> Arc<Self> {
        Self::with_options(clock, TmpFsOptions::default())
    }

    /// Like [`TmpFs::new`], with root directory permissions `perm` (say 0o1777 for `/tmp`).
    pub fn with_root_mode(clock: fn() -> Timespec, perm: u32) -> Arc<Self> {
        Self::with_options(clock, TmpFsOptions { root_perm: perm, ..TmpFsOptions::default() })
    }

    /// An empty tmpfs set up as `options` say.
    pub fn with_options(clock: fn() -> Timespec, options: TmpFsOptions) -> Arc<Self> {
        let shared = Arc::new(Shared {
            id: next_fs_id(),
            clock,
            next_ino: AtomicU64::new(1),
            max_pages: options.max_bytes.map(|bytes| bytes.div_ceil(PAGE_SIZE as u64)),
            used_pages: AtomicU64::new(0),
            readonly: AtomicBool::new(false),
            namespace: Spinlock::new(()),
        });
        let attr = Attr {
            perm: options.root_perm & 0o7777,
            nlink: 2,
            uid: options.root_uid,
            gid: options.root_gid,
            rdev: 0,
            atime: clock(),
            mtime: clock(),
            ctime: clock(),
        };
        let root = TmpInode::new(&shared, FileType::Directory, attr, Body::Dir(DirData::new(None)));
        Arc::new(Self { shared, root })
    }
}

impl FileSystem for TmpFs {
    fn root(&self) -> Arc<dyn Inode> {
        self.root.clone()
    }

    fn name(&self) -> &'static str {
        "tmpfs"
    }

    fn statfs(&self) -> StatFs {
        // Like Linux, an unlimited tmpfs reports no block figures at all.
        let (blocks, blocks_free) = match self.shared.max_pages {
            Some(max) => (max, max.saturating_sub(self.shared.used_pages.load(Ordering::Relaxed))),
            None => (0, 0),
        };
        StatFs {
            magic: TMPFS_MAGIC,
            block_size: PAGE_SIZE as u64,
            blocks,
            blocks_free,
            files: 0,
            files_free: 0,
            name_max: NAME_MAX as u64,
        }
    }

    fn set_readonly(&self, readonly: bool) -> KResult<()> {
        self.shared.readonly.store(readonly, Ordering::Relaxed);
        Ok(())
    }

    fn readonly(&self) -> bool {
        self.shared.readonly.load(Ordering::Relaxed)
    }
}

/// What all inodes of one instance share.
struct Shared {
    id: u64,
    clock: fn() -> Timespec,
    next_ino: AtomicU64,
    /// The page limit, if any.
    max_pages: Option<u64>,
    /// Data pages allocated now.
    used_pages: AtomicU64,
    readonly: AtomicBool,
    /// Held by every operation that changes the tree, around all its steps.
    namespace: Spinlock<()>,
}

impl Shared {
    fn now(&self) -> Timespec {
        (self.clock)()
    }

    fn writable(&self) -> KResult<()> {
        if self.readonly.load(Ordering::Relaxed) { Err(Errno::EROFS) } else { Ok(()) }
    }

    /// A zeroed data page, counted against the limit.
    fn new_page(&self) -> KResult<Box<[u8]>> {
        let reserved = self.used_pages.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            self.max_pages.is_none_or(|max| used < max).then_some(used + 1)
        });
        if reserved.is_err() {
            return Err(Errno::ENOSPC);
        }
        let mut page = Vec::new();
        if page.try_reserve_exact(PAGE_SIZE).is_err() {
            self.release_pages(1);
            return Err(Errno::ENOMEM);
        }
        page.resize(PAGE_SIZE, 0);
        Ok(page.into_boxed_slice())
    }

    fn release_pages(&self, count: usize) {
        self.used_pages.fetch_sub(count as u64, Ordering::Relaxed);
    }
}

/// One tmpfs inode.
struct TmpInode {
    ino: u64,
    /// The type never changes, so it is readable without the lock.
    kind: FileType,
    fs: Arc<Shared>,
    /// This inode itself, to hand out `Arc`s of it from `&self`.
    this: Weak<TmpInode>,
    state: Spinlock<State>,
}

/// The mutable part of an inode.
struct State {
    attr: Attr,
    body: Body,
}

/// Attributes apart from type, inode number and size.
#[derive(Clone, Copy)]
struct Attr {
    perm: u32,
    nlink: u32,
    uid: u32,
    gid: u32,
    rdev: u64,
    atime: Timespec,
    mtime: Timespec,
    ctime: Timespec,
}

impl Attr {
    /// A new inode's attributes.
    fn new(new: &NewInode, perm: u32, nlink: u32) -> Self {
        let rdev = match new.kind {
            FileType::CharDevice | FileType::BlockDevice => new.rdev,
            _ => 0,
        };
        Self {
            perm: perm & 0o7777,
            nlink,
            uid: new.uid,
            gid: new.gid,
            rdev,
            atime: new.time,
            mtime: new.time,
            ctime: new.time,
        }
    }

    /// Records a change of the data (`mtime` and `ctime`).
    fn modified(&mut self, now: Timespec) {
        self.mtime = now;
        self.ctime = now;
    }
}

/// What an inode holds, by type.
enum Body {
    File(FileData),
    Dir(DirData),
    Symlink(Vec<u8>),
    /// Devices, fifos and sockets: metadata only.
    Special,
}

impl Body {
    fn dir(&self) -> KResult<&DirData> {
        match self {
            Self::Dir(dir) => Ok(dir),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn dir_mut(&mut self) -> KResult<&mut DirData> {
        match self {
            Self::Dir(dir) => Ok(dir),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The error for a data operation on something that is not a regular file.
    fn not_a_file(&self) -> Errno {
        match self {
            Self::Dir(_) => Errno::EISDIR,
            _ => Errno::EINVAL,
        }
    }

    /// Gives back the data pages and moves the directory entries into `orphans`.
    fn release(&mut self, fs: &Shared, orphans: &mut Vec<Arc<TmpInode>>) {
        match self {
            Self::File(file) => {
                fs.release_pages(file.pages.len());
                file.pages.clear();
            }
            Self::Dir(dir) => {
                dir.by_serial.clear();
                orphans.extend(core::mem::take(&mut dir.by_name).into_values().map(|slot| slot.inode));
            }
            Self::Symlink(_) | Self::Special => {}
        }
    }
}

/// The data of a regular file: its size and the pages written so far.
#[derive(Default)]
struct FileData {
    size: u64,
    /// Page index to page. Bytes past `size` in the last page are always zero.
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl FileData {
    fn read(&self, offset: u64, buf: &mut [u8]) -> usize {
        let Some(left) = self.size.checked_sub(offset) else { return 0 };
        let len = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let mut done = 0;
        while done < len {
            let (index, within) = page_of(offset + done as u64);
            let n = (PAGE_SIZE - within).min(len - done);
            let out = &mut buf[done..done + n];
            match self.pages.get(&index) {
                Some(page) => out.copy_from_slice(&page[within..within + n]),
                None => out.fill(0),
            }
            done += n;
        }
        len
    }

    /// Writes `buf` at `offset` (the caller keeps the end within [`MAX_FILE_SIZE`]). Running
    /// out of space after some bytes is a short write.
    fn write(&mut self, fs: &Shared, offset: u64, buf: &[u8]) -> KResult<usize> {
        let mut done = 0;
        let mut failure = None;
        while done < buf.len() {
            let (index, within) = page_of(offset + done as u64);
            let n = (PAGE_SIZE - within).min(buf.len() - done);
            let page = match self.pages.entry(index) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match fs.new_page() {
                    Ok(page) => entry.insert(page),
                    Err(err) => {
                        failure = Some(err);
                        break;
                    }
                },
            };
            page[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
        match failure {
            Some(err) if done == 0 => Err(err),
            _ => {
                self.size = self.size.max(offset + done as u64);
                Ok(done)
            }
        }
    }

    /// Cuts the file to `size` or extends it with a hole.
    fn truncate(&mut self, fs: &Shared, size: u64) {
        if size < self.size {
            let dropped = self.pages.split_off(&size.div_ceil(PAGE_SIZE as u64));
            fs.release_pages(dropped.len());
            let (index, within) = page_of(size);
            if let Some(page) = self.pages.get_mut(&index) {
                page[within..].fill(0);
            }
        }
        self.size = size;
    }
}

/// The page index and offset within the page of a file position.
fn page_of(pos: u64) -> (u64, usize) {
    (pos / PAGE_SIZE as u64, (pos % PAGE_SIZE as u64) as usize)
}

/// A directory's entries.
struct DirData {
    /// The parent directory; `None` for the root, which is its own parent.
    parent: Option<Weak<TmpInode>>,
    by_name: BTreeMap<Vec<u8>, Slot>,
    /// Serial to name, for `read_dir`: iteration order is the order entries were added.
    by_serial: BTreeMap<u64, Vec<u8>>,
    next_serial: u64,
}

/// One directory entry.
struct Slot {
    serial: u64,
    inode: Arc<TmpInode>,
}

impl DirData {
    fn new(parent: Option<Weak<TmpInode>>) -> Self {
        Self { parent, by_name: BTreeMap::new(), by_serial: BTreeMap::new(), next_serial: FIRST_SERIAL }
    }

    fn get(&self, name: &[u8]) -> Option<&Arc<TmpInode>> {
        self.by_name.get(name).map(|slot| &slot.inode)
    }

    /// Adds an entry (the caller made sure `name` is free).
    fn insert(&mut self, name: &[u8], inode: Arc<TmpInode>) {
        let serial = self.next_serial;
        self.next_serial += 1;
        self.by_serial.insert(serial, name.to_vec());
        self.by_name.insert(name.to_vec(), Slot { serial, inode });
    }

    fn remove(&mut self, name: &[u8]) -> Option<Arc<TmpInode>> {
        let slot = self.by_name.remove(name)?;
        self.by_serial.remove(&slot.serial);
        Some(slot.inode)
    }

    fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl TmpInode {
    fn new(fs: &Arc<Shared>, kind: FileType, attr: Attr, body: Body) -> Arc<Self> {
        let ino = fs.next_ino.fetch_add(1, Ordering::Relaxed);
        Arc::new_cyclic(|this| Self {
            ino,
            kind,
            fs: fs.clone(),
            this: this.clone(),
            state: Spinlock::new(State { attr, body }),
        })
    }

    /// An `Arc` of this inode (always there while a method runs on it).
    fn arc(&self) -> KResult<Arc<TmpInode>> {
        self.this.upgrade().ok_or(Errno::ENOENT)
    }

    /// `other` as an inode of this instance, else `EXDEV`.
    fn same_fs(&self, other: &Arc<dyn Inode>) -> KResult<Arc<TmpInode>> {
        if other.fs_id() != self.fs.id {
            return Err(Errno::EXDEV);
        }
        other.as_any().downcast_ref::<TmpInode>().ok_or(Errno::EXDEV)?.arc()
    }

    /// The parent of a directory, if it is not the root (and was not freed).
    fn parent_dir(&self) -> Option<Arc<TmpInode>> {
        let state = self.state.lock();
        state.body.dir().ok()?.parent.as_ref()?.upgrade()
    }

    /// Whether this directory is `ancestor` or lies below it.
    fn is_within(&self, ancestor: &TmpInode) -> bool {
        if core::ptr::eq(self, ancestor) {
            return true;
        }
        let mut current = self.parent_dir();
        while let Some(dir) = current {
            if core::ptr::eq(&*dir, ancestor) {
                return true;
            }
            current = dir.parent_dir();
        }
        false
    }

    /// The entry `name` of this directory.
    fn child(&self, name: &[u8]) -> KResult<Arc<TmpInode>> {
        self.state.lock().body.dir()?.get(name).cloned().ok_or(Errno::ENOENT)
    }

    /// Checks that `name` can be added to this directory: it is a live directory and `name`
    /// is free.
    fn check_free(state: &State, name: &[u8]) -> KResult<()> {
        let dir = state.body.dir()?;
        if state.attr.nlink == 0 {
            Err(Errno::ENOENT)
        } else if dir.get(name).is_some() {
            Err(Errno::EEXIST)
        } else {
            Ok(())
        }
    }

    /// Makes a new inode and enters it as `name`.
    fn add_child(&self, name: &[u8], new: &NewInode, perm: u32, body: Body) -> KResult<Arc<TmpInode>> {
        check_name(name)?;
        self.fs.writable()?;
        let _tree = self.fs.namespace.lock();
        let now = self.fs.now();
        let mut state = self.state.lock();
        Self::check_free(&state, name)?;
        let is_dir = new.kind == FileType::Directory;
        let attr = Attr::new(new, perm, if is_dir { 2 } else { 1 });
        let inode = Self::new(&self.fs, new.kind, attr, body);
        let State { attr, body } = &mut *state;
        body.dir_mut()?.insert(name, inode.clone());
        if is_dir {
            attr.nlink += 1;
        }
        attr.modified(now);
        Ok(inode)
    }

    /// Updates the access time after a read, the way `relatime` does.
    fn accessed(&self, attr: &mut Attr) {
        if self.fs.readonly.load(Ordering::Relaxed) {
            return;
        }
        let now = self.fs.now();
        if attr.atime <= attr.mtime
            || attr.atime <= attr.ctime
            || now.sec.saturating_sub(attr.atime.sec) >= RELATIME_SECS
        {
            attr.atime = now;
        }
    }
}

impl Inode for TmpInode {
    fn metadata(&self) -> Metadata {
        let state = self.state.lock();
        let (size, pages) = match &state.body {
            Body::File(file) => (file.size, file.pages.len() as u64),
            Body::Dir(dir) => ((dir.by_name.len() as u64 + 2) * DIRENT_SIZE, 0),
            Body::Symlink(target) => (target.len() as u64, 0),
            Body::Special => (0, 0),
        };
        let attr = &state.attr;
        Metadata {
            ino: self.ino,
            mode: self.kind.mode_bits() | attr.perm,
            nlink: attr.nlink,
            uid: attr.uid,
            gid: attr.gid,
            size,
            blocks: pages * (PAGE_SIZE as u64 / 512),
            blksize: PAGE_SIZE as u32,
            rdev: attr.rdev,
            atime: attr.atime,
            mtime: attr.mtime,
            ctime: attr.ctime,
        }
    }

    fn setattr(&self, change: &SetAttr) -> KResult<()> {
        self.fs.writable()?;
        let now = self.fs.now();
        let mut state = self.state.lock();
        let State { attr, body } = &mut *state;
        // The size is the only change that can fail: do it first, so a failure changes nothing.
        if let Some(size) = change.size {
            let Body::File(file) = body else { return Err(body.not_a_file()) };
            if size > MAX_FILE_SIZE {
                return Err(Errno::EFBIG);
            }
            file.truncate(&self.fs, size);
            attr.mtime = now;
        }
        if let Some(perm) = change.perm {
            attr.perm = perm & 0o7777;
        }
        if let Some(uid) = change.uid {
            attr.uid = uid;
        }
        if let Some(gid) = change.gid {
            attr.gid = gid;
        }
        if let Some(atime) = change.atime {
            attr.atime = atime;
        }
        if let Some(mtime) = change.mtime {
            attr.mtime = mtime;
        }
        attr.ctime = now;
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> KResult<usize> {
        let mut state = self.state.lock();
        let State { attr, body } = &mut *state;
        let Body::File(file) = body else { return Err(body.not_a_file()) };
        let read = file.read(offset, buf);
        if !buf.is_empty() {
            self.accessed(attr);
        }
        Ok(read)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> KResult<usize> {
        self.fs.writable()?;
        let now = self.fs.now();
        let mut state = self.state.lock();
        let State { attr, body } = &mut *state;
        let Body::File(file) = body else { return Err(body.not_a_file()) };
        if buf.is_empty() {
            return Ok(0);
        }
        if offset >= MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let room = usize::try_from(MAX_FILE_SIZE - offset).unwrap_or(usize::MAX);
        let written = file.write(&self.fs, offset, &buf[..buf.len().min(room)])?;
        attr.modified(now);
        Ok(written)
    }

    fn lookup(&self, name: &[u8]) -> KResult<Arc<dyn Inode>> {
        Ok(self.child(name)?)
    }

    fn create(&self, name: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>> {
        let body = match new.kind {
            FileType::Regular => Body::File(FileData::default()),
            FileType::Directory => Body::Dir(DirData::new(Some(self.this.clone()))),
            FileType::Symlink => return Err(Errno::EINVAL),
            FileType::CharDevice | FileType::BlockDevice | FileType::Fifo | FileType::Socket => Body::Special,
        };
        Ok(self.add_child(name, new, new.perm, body)?)
    }

    fn symlink(&self, name: &[u8], target: &[u8], new: &NewInode) -> KResult<Arc<dyn Inode>> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let new = NewInode { kind: FileType::Symlink, rdev: 0, ..*new };
        Ok(self.add_child(name, &new, 0o777, Body::Symlink(target.to_vec()))?)
    }

    fn link(&self, name: &[u8], target: &Arc<dyn Inode>) -> KResult<()> {
        check_name(name)?;
        self.fs.writable()?;
        let target = self.same_fs(target)?;
        if target.kind == FileType::Directory {
            return Err(Errno::EPERM);
        }
        let _tree = self.fs.namespace.lock();
        let now = self.fs.now();
        Self::check_free(&self.state.lock(), name)?;
        {
            let mut state = target.state.lock();
            let attr = &mut state.attr;
            if attr.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            attr.nlink = attr.nlink.checked_add(1).ok_or(Errno::EMLINK)?;
            attr.ctime = now;
        }
        let mut state = self.state.lock();
        let State { attr, body } = &mut *state;
        body.dir_mut()?.insert(name, target);
        attr.modified(now);
        Ok(())
    }

    fn unlink(&self, name: &[u8]) -> KResult<()> {
        self.fs.writable()?;
        let _tree = self.fs.namespace.lock();
        let now = self.fs.now();
        let child = self.child(name)?;
        if child.kind == FileType::Directory {
            return Err(Errno::EISDIR);
        }
        {
            let mut state = self.state.lock();
            let State { attr, body } = &mut *state;
            body.dir_mut()?.remove(name);
            attr.modified(now);
        }
        let mut state = child.state.lock();
        state.attr.nlink = state.attr.nlink.saturating_sub(1);
        state.attr.ctime = now;
        Ok(())
    }

    fn rmdir(&self, name: &[u8]) -> KResult<()> {
        self.fs.writable()?;
        let _tree = self.fs.namespace.lock();
        let now = self.fs.now();
        let child = self.child(name)?;
        {
            let mut state = child.state.lock();
            if !state.body.dir()?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            state.attr.nlink = 0;
            state.attr.ctime = now;
        }
        let mut state = self.state.lock();
        let State { attr, body } = &mut *state;
        body.dir_mut()?.remove(name);
        attr.nlink = attr.nlink.saturating_sub(1);
        attr.modified(now);
        Ok(())
    }

    fn rename(&self, old: &[u8], new_dir: &Arc<dyn Inode>, new: &[u8]) -> KResult<()> {
        check_name(new)?;
        self.fs.writable()?;
        let new_dir = self.same_fs(new_dir)?;
        let _tree = self.fs.namespace.lock();
        let now = self.fs.now();
        let source = self.child(old)?;
        let target = {
            let state = new_dir.state.lock();
            let dir = state.body.dir()?;
            if state.attr.nlink == 0 {
                return Err(Errno::ENOENT);
            }
            dir.get(new).cloned()
        };
        if target.as_ref().is_some_and(|target| Arc::ptr_eq(target, &source)) {
            return Ok(()); // The same inode under both names: nothing to do.
        }
        let moves_dir = source.kind == FileType::Directory;
        if moves_dir {
            if new_dir.is_within(&source) {
                return Err(Errno::EINVAL);
            }
            if let Some(target) = &target {
                let state = target.state.lock();
                if !state.body.dir()?.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
        } else if target.as_ref().is_some_and(|target| target.kind == FileType::Directory) {
            return Err(Errno::EISDIR);
        }

        // All checked: now change the tree.
        let same_dir = core::ptr::eq(self, &*new_dir);
        {
            let mut state = self.state.lock();
            let State { attr, body } = &mut *state;
            body.dir_mut()?.remove(old);
            if moves_dir && !same_dir {
                attr.nlink = attr.nlink.saturating_sub(1);
            }
            attr.modified(now);
        }
        {
            let mut state = new_dir.state.lock();
            let State { attr, body } = &mut *state;
            let dir = body.dir_mut()?;
            dir.remove(new);
            dir.insert(new, source.clone());
            if moves_dir && !same_dir {
                attr.nlink += 1;
            }
            if target.as_ref().is_some_and(|target| target.kind == FileType::Directory) {
                attr.nlink = attr.nlink.saturating_sub(1);
            }
            attr.modified(now);
        }
        if let Some(target) = target {
            let mut state = target.state.lock();
            let attr = &mut state.attr;
            attr.nlink = if target.kind == FileType::Directory { 0 } else { attr.nlink.saturating_sub(1) };
            attr.ctime = now;
        }
        let mut state = source.state.lock();
        state.attr.ctime = now;
        if let Body::Dir(dir) = &mut state.body {
            dir.parent = Some(Arc::downgrade(&new_dir));
        }
        Ok(())
    }

    fn readlink(&self) -> KResult<Vec<u8>> {
        match &self.state.lock().body {
            Body::Symlink(target) => Ok(target.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn read_dir(&self, cursor: u64) -> KResult<Option<(DirEntry, u64)>> {
        let state = self.state.lock();
        let dir = state.body.dir()?;
        let entry = |ino, kind, name: &[u8]| DirEntry { ino, kind, name: name.to_vec() };
        Ok(match cursor {
            0 => Some((entry(self.ino, FileType::Directory, b"."), 1)),
            1 => {
                let parent = dir.parent.as_ref().and_then(Weak::upgrade);
                let ino = parent.map_or(self.ino, |parent| parent.ino);
                Some((entry(ino, FileType::Directory, b".."), FIRST_SERIAL))
            }
            _ => dir.by_serial.range(cursor..).next().and_then(|(&serial, name)| {
                let inode = dir.get(name)?;
                Some((entry(inode.ino, inode.kind, name), serial + 1))
            }),
        })
    }

    fn parent(&self) -> KResult<Arc<dyn Inode>> {
        let state = self.state.lock();
        match &state.body.dir()?.parent {
            None => Ok(self.arc()?),
            Some(parent) => Ok(parent.upgrade().ok_or(Errno::ENOENT)?),
        }
    }

    fn fs_id(&self) -> u64 {
        self.fs.id
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Drop for TmpInode {
    /// Frees the data and, for a directory, every inode below it that nothing else holds,
    /// one at a time, so freeing a deep tree does not recurse.
    fn drop(&mut self) {
        let mut orphans = Vec::new();
        self.state.get_mut().body.release(&self.fs, &mut orphans);
        while let Some(inode) = orphans.pop() {
            if let Some(mut inode) = Arc::into_inner(inode) {
                inode.state.get_mut().body.release(&inode.fs, &mut orphans);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{S_IFMT, makedev, same_inode};
    use core::cell::Cell;

    std::thread_local! {
        static NOW: Cell<i64> = const { Cell::new(1000) };
    }

    /// A fake clock, per test thread.
    fn clock() -> Timespec {
        Timespec { sec: NOW.with(Cell::get), nsec: 0 }
    }

    fn set_now(sec: i64) {
        NOW.with(|now| now.set(sec));
    }

    fn at(sec: i64) -> Timespec {
        Timespec { sec, nsec: 0 }
    }

    fn new(kind: FileType, perm: u32) -> NewInode {
        NewInode { kind, perm, uid: 7, gid: 8, rdev: 0, time: clock() }
    }

    fn root() -> Arc<dyn Inode> {
        TmpFs::new(clock).root()
    }

    fn file(dir: &Arc<dyn Inode>, name: &str) -> Arc<dyn Inode> {
        dir.create(name.as_bytes(), &new(FileType::Regular, 0o644)).unwrap()
    }

    fn mkdir(dir: &Arc<dyn Inode>, name: &str) -> Arc<dyn Inode> {
        dir.create(name.as_bytes(), &new(FileType::Directory, 0o755)).unwrap()
    }

    fn nlink(inode: &Arc<dyn Inode>) -> u32 {
        inode.metadata().nlink
    }

    fn read_all(inode: &Arc<dyn Inode>) -> Vec<u8> {
        let mut buf = vec![0; inode.metadata().size as usize];
        assert_eq!(inode.read_at(0, &mut buf).unwrap(), buf.len());
        buf
    }

    /// Every entry name, `.` and `..` included.
    fn names(dir: &Arc<dyn Inode>) -> Vec<String> {
        let mut names = Vec::new();
        let mut cursor = 0;
        while let Some((entry, next)) = dir.read_dir(cursor).unwrap() {
            names.push(String::from_utf8(entry.name).unwrap());
            cursor = next;
        }
        names
    }

    #[test]
    fn create_and_lookup() {
        let root = root();
        let f = file(&root, "f");
        let meta = f.metadata();
        assert_eq!(meta.mode, 0o100644);
        assert_eq!((meta.uid, meta.gid, meta.nlink, meta.size), (7, 8, 1, 0));
        assert_eq!((meta.atime, meta.mtime, meta.ctime), (clock(), clock(), clock()));
        assert!(same_inode(&*root.lookup(b"f").unwrap(), &*f));
        assert_eq!(root.lookup(b"g").err(), Some(Errno::ENOENT));
        assert_eq!(root.create(b"f", &new(FileType::Regular, 0o644)).err(), Some(Errno::EEXIST));
        assert_eq!(root.create(b"f", &new(FileType::Directory, 0o755)).err(), Some(Errno::EEXIST));
        assert_eq!(f.lookup(b"x").err(), Some(Errno::ENOTDIR));
        assert_eq!(f.create(b"x", &new(FileType::Regular, 0o644)).err(), Some(Errno::ENOTDIR));
        for bad in [&b""[..], b".", b"..", b"a/b"] {
            assert_eq!(root.create(bad, &new(FileType::Regular, 0o644)).err(), Some(Errno::EINVAL));
        }
        let long = [b'n'; NAME_MAX + 1];
        assert_eq!(root.create(&long, &new(FileType::Regular, 0o644)).err(), Some(Errno::ENAMETOOLONG));
        assert!(root.create(&long[..NAME_MAX], &new(FileType::Regular, 0o644)).is_ok());
        assert_eq!(root.create(b"l", &new(FileType::Symlink, 0o777)).err(), Some(Errno::EINVAL));
        // Permission bits beyond 0o7777 are dropped.
        let g = root.create(b"g", &new(FileType::Regular, 0o177777)).unwrap();
        assert_eq!(g.metadata().mode, 0o107777);
        assert_ne!(g.metadata().ino, f.metadata().ino);
    }

    #[test]
    fn root_directory() {
        let fs = TmpFs::with_root_mode(clock, 0o1777);
        let root = fs.root();
        let meta = root.metadata();
        assert_eq!(meta.mode, 0o41777);
        assert_eq!(meta.nlink, 2);
        assert!(same_inode(&*root.parent().unwrap(), &*root));
        assert_eq!(names(&root), [".", ".."]);
        let mut cursor = 0;
        while let Some((entry, next)) = root.read_dir(cursor).unwrap() {
            assert_eq!((entry.ino, entry.kind), (meta.ino, FileType::Directory));
            cursor = next;
        }
        assert_eq!(TmpFs::new(clock).root().metadata().mode, 0o40755);
        assert_eq!(fs.name(), "tmpfs");
    }

    #[test]
    fn read_write_and_holes() {
        let root = root();
        let f = file(&root, "f");
        assert_eq!(f.write_at(0, b"hello").unwrap(), 5);
        assert_eq!(read_all(&f), b"hello");
        assert_eq!(f.write_at(10_000, b"world").unwrap(), 5);
        let meta = f.metadata();
        assert_eq!(meta.size, 10_005);
        assert_eq!(meta.blocks, 16, "two pages");
        assert_eq!(meta.blksize, 4096);
        let data = read_all(&f);
        assert_eq!(&data[..5], b"hello");
        assert!(data[5..10_000].iter().all(|&b| b == 0));
        assert_eq!(&data[10_000..], b"world");
        // Reads across page boundaries, short reads at the end, nothing past it.
        let mut buf = [0xff; 10];
        assert_eq!(f.read_at(4090, &mut buf).unwrap(), 10);
        assert_eq!(buf, [0; 10]);
        assert_eq!(f.read_at(10_000, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"world");
        assert_eq!(f.read_at(10_005, &mut buf).unwrap(), 0);
        assert_eq!(f.read_at(u64::MAX, &mut buf).unwrap(), 0);
        // Overwrite inside, spanning pages.
        let big = vec![0xab; 9000];
        assert_eq!(f.write_at(3, &big).unwrap(), 9000);
        let data = read_all(&f);
        assert_eq!(&data[..3], b"hel");
        assert!(data[3..9003].iter().all(|&b| b == 0xab));
        assert_eq!(f.write_at(0, b"").unwrap(), 0);
    }

    #[test]
    fn sparse_writes_far_out_and_the_size_limit() {
        let root = root();
        let f = file(&root, "f");
        assert_eq!(f.write_at(512 << 20, b"x").unwrap(), 1);
        let meta = f.metadata();
        assert_eq!((meta.size, meta.blocks), ((512 << 20) + 1, 8));
        assert_eq!(f.write_at(MAX_FILE_SIZE, b"x").err(), Some(Errno::EFBIG));
        assert_eq!(f.write_at(u64::MAX, b"x").err(), Some(Errno::EFBIG));
        assert_eq!(f.write_at(MAX_FILE_SIZE - 2, b"xyz").unwrap(), 2, "cut short at the limit");
        assert_eq!(f.metadata().size, MAX_FILE_SIZE);
        let too_big = SetAttr { size: Some(MAX_FILE_SIZE + 1), ..SetAttr::default() };
        assert_eq!(f.setattr(&too_big).err(), Some(Errno::EFBIG));
        assert_eq!(f.metadata().size, MAX_FILE_SIZE);
    }

    #[test]
    fn truncate_and_extend() {
        let root = root();
        let f = file(&root, "f");
        f.write_at(0, &[1; 10_000]).unwrap();
        let resize = |size| f.setattr(&SetAttr { size: Some(size), ..SetAttr::default() });
        resize(4097).unwrap();
        assert_eq!(f.metadata().blocks, 16);
        resize(3).unwrap();
        assert_eq!((f.metadata().size, f.metadata().blocks), (3, 8));
        // Extending shows zeros, not the old bytes.
        resize(8192).unwrap();
        let data = read_all(&f);
        assert_eq!(&data[..3], [1, 1, 1]);
        assert!(data[3..].iter().all(|&b| b == 0));
        assert_eq!(f.metadata().blocks, 8, "extending allocates nothing");
        f.write_at(20_000, b"z").unwrap();
        resize(0).unwrap();
        assert_eq!((f.metadata().size, f.metadata().blocks), (0, 0));
        resize(5).unwrap();
        assert_eq!(read_all(&f), [0; 5]);

        let dir = mkdir(&root, "d");
        let size = SetAttr { size: Some(0), ..SetAttr::default() };
        assert_eq!(dir.setattr(&size).err(), Some(Errno::EISDIR));
        let link = root.symlink(b"l", b"f", &new(FileType::Symlink, 0)).unwrap();
        assert_eq!(link.setattr(&size).err(), Some(Errno::EINVAL));
    }

    #[test]
    fn data_operations_on_other_types() {
        let root = root();
        let dir = mkdir(&root, "d");
        let fifo = root.create(b"p", &new(FileType::Fifo, 0o600)).unwrap();
        let mut buf = [0; 4];
        assert_eq!(dir.read_at(0, &mut buf).err(), Some(Errno::EISDIR));
        assert_eq!(dir.write_at(0, b"x").err(), Some(Errno::EISDIR));
        assert_eq!(fifo.read_at(0, &mut buf).err(), Some(Errno::EINVAL));
        assert_eq!(fifo.write_at(0, b"x").err(), Some(Errno::EINVAL));
        assert_eq!(dir.readlink().err(), Some(Errno::EINVAL));
        assert_eq!(fifo.read_dir(0).err(), Some(Errno::ENOTDIR));
        assert_eq!(fifo.parent().err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn special_files_keep_their_metadata() {
        let root = root();
        let tty = NewInode { rdev: makedev(4, 1), ..new(FileType::CharDevice, 0o620) };
        let tty = root.create(b"tty1", &tty).unwrap();
        assert_eq!(tty.metadata().mode, 0o20620);
        assert_eq!(tty.metadata().rdev, makedev(4, 1));
        let disk = NewInode { rdev: makedev(254, 0), ..new(FileType::BlockDevice, 0o660) };
        assert_eq!(root.create(b"vda", &disk).unwrap().metadata().rdev, makedev(254, 0));
        let fifo = NewInode { rdev: 99, ..new(FileType::Fifo, 0o644) };
        let fifo = root.create(b"fifo", &fifo).unwrap();
        assert_eq!((fifo.metadata().rdev, fifo.metadata().mode & S_IFMT), (0, 0o010000));
        let sock = root.create(b"sock", &new(FileType::Socket, 0o755)).unwrap();
        assert_eq!(sock.metadata().file_type(), FileType::Socket);
        let mut cursor = 2;
        let mut kinds = Vec::new();
        while let Some((entry, next)) = root.read_dir(cursor).unwrap() {
            kinds.push(entry.kind);
            cursor = next;
        }
        assert_eq!(kinds, [FileType::CharDevice, FileType::BlockDevice, FileType::Fifo, FileType::Socket]);
    }

    #[test]
    fn symlinks() {
        let root = root();
        let link = root.symlink(b"l", b"../some/where", &new(FileType::Symlink, 0o600)).unwrap();
        let meta = link.metadata();
        assert_eq!((meta.mode, meta.size, meta.nlink), (0o120777, 13, 1));
        assert_eq!(link.readlink().unwrap(), b"../some/where");
        assert_eq!(root.lookup(b"l").unwrap().readlink().unwrap(), b"../some/where");
        assert_eq!(root.symlink(b"l", b"x", &new(FileType::Symlink, 0)).err(), Some(Errno::EEXIST));
        assert_eq!(root.symlink(b"e", b"", &new(FileType::Symlink, 0)).err(), Some(Errno::ENOENT));
        let long = vec![b'a'; PATH_MAX];
        assert_eq!(root.symlink(b"e", &long, &new(FileType::Symlink, 0)).err(), Some(Errno::ENAMETOOLONG));
        assert_eq!(file(&root, "f").readlink().err(), Some(Errno::EINVAL));
        assert_eq!(link.lookup(b"x").err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn link_counts() {
        let root = root();
        let a = mkdir(&root, "a");
        assert_eq!((nlink(&root), nlink(&a)), (3, 2));
        let b = mkdir(&a, "b");
        assert_eq!((nlink(&root), nlink(&a), nlink(&b)), (3, 3, 2));
        let f = file(&a, "f");
        assert_eq!(nlink(&a), 3, "files do not count");
        a.link(b"g", &f).unwrap();
        root.link(b"h", &f).unwrap();
        assert_eq!(nlink(&f), 3);
        assert!(same_inode(&*root.lookup(b"h").unwrap(), &*f));
        assert_eq!(a.link(b"g", &f).err(), Some(Errno::EEXIST));
        assert_eq!(root.link(b"bb", &b).err(), Some(Errno::EPERM));
        a.unlink(b"f").unwrap();
        a.unlink(b"g").unwrap();
        assert_eq!(nlink(&f), 1);
        root.unlink(b"h").unwrap();
        assert_eq!(nlink(&f), 0);
        assert_eq!(root.link(b"again", &f).err(), Some(Errno::ENOENT), "no links to a deleted file");
        a.rmdir(b"b").unwrap();
        assert_eq!((nlink(&a), nlink(&b)), (2, 0));
        root.rmdir(b"a").unwrap();
        assert_eq!(nlink(&root), 2);
        // Links between instances.
        let other = TmpFs::new(clock).root();
        let g = file(&other, "g");
        assert_eq!(root.link(b"g", &g).err(), Some(Errno::EXDEV));
    }

    #[test]
    fn unlinked_files_live_on_while_held() {
        let root = root();
        let f = file(&root, "f");
        f.write_at(0, b"still here").unwrap();
        root.unlink(b"f").unwrap();
        assert_eq!(root.lookup(b"f").err(), Some(Errno::ENOENT));
        assert_eq!(read_all(&f), b"still here");
        f.write_at(10, b"!").unwrap();
        assert_eq!(read_all(&f), b"still here!");
        assert_eq!(root.unlink(b"f").err(), Some(Errno::ENOENT));
        mkdir(&root, "d");
        assert_eq!(root.unlink(b"d").err(), Some(Errno::EISDIR));
        assert_eq!(f.unlink(b"x").err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn rmdir_rules() {
        let root = root();
        let d = mkdir(&root, "d");
        file(&d, "f");
        file(&root, "f");
        assert_eq!(root.rmdir(b"d").err(), Some(Errno::ENOTEMPTY));
        assert_eq!(root.rmdir(b"f").err(), Some(Errno::ENOTDIR));
        assert_eq!(root.rmdir(b"none").err(), Some(Errno::ENOENT));
        let e = mkdir(&d, "e");
        d.unlink(b"f").unwrap();
        assert_eq!(root.rmdir(b"d").err(), Some(Errno::ENOTEMPTY));
        d.rmdir(b"e").unwrap();
        root.rmdir(b"d").unwrap();
        // A removed directory takes no new entries but still knows its parent.
        assert_eq!(d.create(b"x", &new(FileType::Regular, 0o644)).err(), Some(Errno::ENOENT));
        assert_eq!(d.symlink(b"x", b"y", &new(FileType::Symlink, 0)).err(), Some(Errno::ENOENT));
        assert_eq!(names(&d), [".", ".."]);
        assert!(same_inode(&*d.parent().unwrap(), &*root));
        assert_eq!(e.create(b"x", &new(FileType::Regular, 0o644)).err(), Some(Errno::ENOENT));
    }

    #[test]
    fn read_dir_cursors_survive_changes() {
        let root = root();
        let d = mkdir(&root, "d");
        for i in 0..10 {
            file(&d, &format!("f{i}"));
        }
        let (dot, next) = d.read_dir(0).unwrap().unwrap();
        assert_eq!((dot.name.as_slice(), dot.ino), (&b"."[..], d.metadata().ino));
        let (dotdot, mut cursor) = d.read_dir(next).unwrap().unwrap();
        assert_eq!((dotdot.name.as_slice(), dotdot.ino), (&b".."[..], root.metadata().ino));
        // Walk the directory, removing the entry just read and the one after it, and adding
        // new ones: nothing comes twice, removed entries never come, added ones come once.
        let mut seen = Vec::new();
        while let Some((entry, next)) = d.read_dir(cursor).unwrap() {
            let name = String::from_utf8(entry.name.clone()).unwrap();
            assert!(!seen.contains(&name), "{name} returned twice");
            assert!(same_inode(
                &*d.lookup(&entry.name).unwrap(),
                &*root.lookup(b"d").unwrap().lookup(&entry.name).unwrap()
            ));
            d.unlink(&entry.name).unwrap();
            if let Some(n) = name.strip_prefix('f').and_then(|n| n.parse::<u32>().ok()) {
                let _ = d.unlink(format!("f{}", n + 1).as_bytes());
                if n == 4 {
                    file(&d, "late");
                }
            }
            seen.push(name);
            cursor = next;
        }
        assert_eq!(seen, ["f0", "f2", "f4", "f6", "f8", "late"]);
        assert_eq!(names(&d), [".", ".."]);
        assert_eq!(d.read_dir(cursor).unwrap(), None);
        assert_eq!(d.read_dir(u64::MAX).unwrap(), None);
        // Entries come in the order they were made.
        for name in ["zeta", "alpha", "mid"] {
            file(&d, name);
        }
        assert_eq!(names(&d), [".", "..", "zeta", "alpha", "mid"]);
    }

    #[test]
    fn rename_files() {
        set_now(100);
        let root = root();
        let a = mkdir(&root, "a");
        let b = mkdir(&root, "b");
        let f = file(&a, "f");
        set_now(200);
        a.rename(b"f", &a, b"g").unwrap();
        assert_eq!(a.lookup(b"f").err(), Some(Errno::ENOENT));
        assert!(same_inode(&*a.lookup(b"g").unwrap(), &*f));
        assert_eq!((a.metadata().mtime, f.metadata().ctime, f.metadata().mtime), (at(200), at(200), at(100)));
        set_now(300);
        a.rename(b"g", &b, b"h").unwrap();
        assert!(same_inode(&*b.lookup(b"h").unwrap(), &*f));
        assert_eq!((a.metadata().mtime, b.metadata().mtime), (at(300), at(300)));
        assert_eq!((nlink(&a), nlink(&b), nlink(&f)), (2, 2, 1));
        // Replacing a file: the old one loses its link but lives on while held.
        let old = file(&b, "old");
        old.write_at(0, b"old").unwrap();
        b.rename(b"h", &b, b"old").unwrap();
        assert!(same_inode(&*b.lookup(b"old").unwrap(), &*f));
        assert_eq!(b.lookup(b"h").err(), Some(Errno::ENOENT));
        assert_eq!((nlink(&old), read_all(&old)), (0, b"old".to_vec()));
        assert_eq!(names(&b), [".", "..", "old"]);
        // A file onto a directory.
        mkdir(&b, "dir");
        assert_eq!(b.rename(b"old", &b, b"dir").err(), Some(Errno::EISDIR));
        assert_eq!(b.rename(b"nothing", &b, b"x").err(), Some(Errno::ENOENT));
        assert_eq!(b.rename(b"old", &f, b"x").err(), Some(Errno::ENOTDIR));
        assert_eq!(b.rename(b"old", &b, b"").err(), Some(Errno::EINVAL));
        let other = TmpFs::new(clock).root();
        assert_eq!(b.rename(b"old", &other, b"x").err(), Some(Errno::EXDEV));
    }

    #[test]
    fn rename_onto_itself_does_nothing() {
        let root = root();
        let f = file(&root, "f");
        root.link(b"g", &f).unwrap();
        root.rename(b"f", &root, b"f").unwrap();
        root.rename(b"f", &root, b"g").unwrap();
        assert_eq!(names(&root), [".", "..", "f", "g"], "hard links to one file: both stay");
        assert_eq!(nlink(&f), 2);
        let d = mkdir(&root, "d");
        root.rename(b"d", &root, b"d").unwrap();
        assert_eq!(nlink(&d), 2);
        assert_eq!(nlink(&root), 3);
    }

    #[test]
    fn rename_directories() {
        let root = root();
        let a = mkdir(&root, "a");
        let b = mkdir(&root, "b");
        let sub = mkdir(&a, "sub");
        file(&sub, "inside");
        assert_eq!((nlink(&a), nlink(&b)), (3, 2));
        a.rename(b"sub", &b, b"moved").unwrap();
        assert_eq!((nlink(&root), nlink(&a), nlink(&b), nlink(&sub)), (4, 2, 3, 2));
        assert!(same_inode(&*sub.parent().unwrap(), &*b));
        let (dotdot, _) = sub.read_dir(1).unwrap().unwrap();
        assert_eq!(dotdot.ino, b.metadata().ino);
        assert!(sub.lookup(b"inside").is_ok());
        // Onto an empty directory: it is replaced.
        let empty = mkdir(&a, "empty");
        b.rename(b"moved", &a, b"empty").unwrap();
        assert_eq!((nlink(&a), nlink(&b), nlink(&empty)), (3, 2, 0));
        assert!(same_inode(&*a.lookup(b"empty").unwrap(), &*sub));
        // Onto a non-empty directory, a file, or into itself.
        let full = mkdir(&root, "full");
        file(&full, "x");
        assert_eq!(a.rename(b"empty", &root, b"full").err(), Some(Errno::ENOTEMPTY));
        file(&root, "file");
        assert_eq!(a.rename(b"empty", &root, b"file").err(), Some(Errno::ENOTDIR));
        let deep = mkdir(&sub, "deep");
        assert_eq!(root.rename(b"a", &deep, b"a").err(), Some(Errno::EINVAL));
        assert_eq!(root.rename(b"a", &sub, b"a").err(), Some(Errno::EINVAL));
        assert_eq!(root.rename(b"a", &a, b"a2").err(), Some(Errno::EINVAL));
        // Into the parent's parent is fine.
        sub.rename(b"deep", &root, b"deep").unwrap();
        assert_eq!((nlink(&root), nlink(&sub)), (6, 2));
        assert!(same_inode(&*deep.parent().unwrap(), &*root));
    }

    #[test]
    fn times_follow_the_clock() {
        set_now(100);
        let root = root();
        let f = file(&root, "f");
        let times = |i: &Arc<dyn Inode>| {
            let m = i.metadata();
            (m.atime.sec, m.mtime.sec, m.ctime.sec)
        };
        assert_eq!(times(&f), (100, 100, 100));
        assert_eq!(times(&root), (100, 100, 100));
        set_now(200);
        f.write_at(0, b"data").unwrap();
        assert_eq!(times(&f), (100, 200, 200));
        // relatime: a read updates atime when it is not newer than mtime, or a day old.
        set_now(300);
        f.read_at(0, &mut [0; 4]).unwrap();
        assert_eq!(times(&f).0, 300);
        set_now(400);
        f.read_at(0, &mut [0; 4]).unwrap();
        assert_eq!(times(&f).0, 300);
        f.read_at(0, &mut []).unwrap();
        set_now(300 + RELATIME_SECS);
        f.read_at(0, &mut [0; 4]).unwrap();
        assert_eq!(times(&f).0, 300 + RELATIME_SECS);
        set_now(500);
        f.setattr(&SetAttr { perm: Some(0o600), ..SetAttr::default() }).unwrap();
        assert_eq!(times(&f), (300 + RELATIME_SECS, 200, 500));
        set_now(600);
        f.setattr(&SetAttr { size: Some(1), ..SetAttr::default() }).unwrap();
        assert_eq!(times(&f), (300 + RELATIME_SECS, 600, 600));
        let explicit = SetAttr { atime: Some(at(1)), mtime: Some(at(2)), ..SetAttr::default() };
        set_now(700);
        f.setattr(&explicit).unwrap();
        assert_eq!(times(&f), (1, 2, 700));
        // Directories change when entries do.
        set_now(800);
        file(&root, "g");
        assert_eq!(times(&root), (100, 800, 800));
        set_now(900);
        root.unlink(b"g").unwrap();
        assert_eq!(times(&root), (100, 900, 900));
        set_now(1000);
        root.link(b"h", &f).unwrap();
        assert_eq!(times(&root).1, 1000);
        assert_eq!(times(&f).2, 1000);
    }

    #[test]
    fn setattr_changes_only_what_is_asked() {
        let root = root();
        let f = file(&root, "f");
        f.setattr(&SetAttr { perm: Some(0o4755), ..SetAttr::default() }).unwrap();
        assert_eq!(f.metadata().mode, 0o104755);
        f.setattr(&SetAttr { uid: Some(1), ..SetAttr::default() }).unwrap();
        f.setattr(&SetAttr { gid: Some(2), ..SetAttr::default() }).unwrap();
        let meta = f.metadata();
        assert_eq!((meta.uid, meta.gid, meta.mode), (1, 2, 0o104755));
        let d = mkdir(&root, "d");
        d.setattr(&SetAttr { perm: Some(0o700), ..SetAttr::default() }).unwrap();
        assert_eq!(d.metadata().mode, 0o40700);
        // A failing size change changes nothing else.
        let bad = SetAttr { perm: Some(0o777), size: Some(1), ..SetAttr::default() };
        assert_eq!(d.setattr(&bad).err(), Some(Errno::EISDIR));
        assert_eq!(d.metadata().mode, 0o40700);
    }

    #[test]
    fn statfs_and_identity() {
        let a = TmpFs::new(clock);
        let b = TmpFs::new(clock);
        assert_ne!(a.root().fs_id(), b.root().fs_id());
        let stat = a.statfs();
        assert_eq!((stat.magic, stat.block_size, stat.name_max), (TMPFS_MAGIC, 4096, 255));
        assert_eq!((stat.blocks, stat.blocks_free), (0, 0));
        assert!(a.root().as_any().downcast_ref::<TmpInode>().is_some());
    }

    #[test]
    fn size_cap() {
        let options = TmpFsOptions { max_bytes: Some(3 * 4096 - 100), ..TmpFsOptions::default() };
        let fs = TmpFs::with_options(clock, options);
        let root = fs.root();
        assert_eq!((fs.statfs().blocks, fs.statfs().blocks_free), (3, 3));
        let f = file(&root, "f");
        assert_eq!(f.write_at(0, &[1; 4096]).unwrap(), 4096);
        assert_eq!(fs.statfs().blocks_free, 2);
        // A write that does not fit is cut short; one with no room at all fails.
        let g = file(&root, "g");
        assert_eq!(g.write_at(0, &[2; 3 * 4096]).unwrap(), 2 * 4096);
        assert_eq!(g.metadata().size, 2 * 4096);
        assert_eq!(g.write_at(2 * 4096, b"x").err(), Some(Errno::ENOSPC));
        assert_eq!(fs.statfs().blocks_free, 0);
        // Holes and rewrites of allocated pages need no space.
        assert_eq!(g.write_at(0, b"rewrite").unwrap(), 7);
        g.setattr(&SetAttr { size: Some(1 << 20), ..SetAttr::default() }).unwrap();
        // Truncating gives pages back; an unlinked file's pages return when it is dropped.
        g.setattr(&SetAttr { size: Some(4096), ..SetAttr::default() }).unwrap();
        assert_eq!(fs.statfs().blocks_free, 1);
        root.unlink(b"f").unwrap();
        assert_eq!(fs.statfs().blocks_free, 1, "f is still held");
        drop(f);
        assert_eq!(fs.statfs().blocks_free, 2);
    }

    #[test]
    fn read_only() {
        let fs = TmpFs::new(clock);
        let root = fs.root();
        let f = file(&root, "f");
        f.write_at(0, b"x").unwrap();
        fs.set_readonly(true).unwrap();
        assert!(fs.readonly());
        let regular = new(FileType::Regular, 0o644);
        assert_eq!(root.create(b"g", &regular).err(), Some(Errno::EROFS));
        assert_eq!(f.write_at(0, b"y").err(), Some(Errno::EROFS));
        assert_eq!(f.setattr(&SetAttr::default()).err(), Some(Errno::EROFS));
        assert_eq!(root.unlink(b"f").err(), Some(Errno::EROFS));
        assert_eq!(root.rename(b"f", &root, b"g").err(), Some(Errno::EROFS));
        let atime = f.metadata().atime;
        set_now(clock().sec + 10);
        assert_eq!(read_all(&f), b"x");
        assert_eq!(f.metadata().atime, atime, "no atime updates either");
        fs.set_readonly(false).unwrap();
        assert!(root.create(b"g", &regular).is_ok());
    }

    #[test]
    fn freeing_a_deep_tree_does_not_recurse() {
        let fs = TmpFs::new(clock);
        let mut dir = fs.root();
        for _ in 0..100_000 {
            dir = mkdir(&dir, "d");
        }
        let leaf = file(&dir, "leaf");
        leaf.write_at(0, b"kept").unwrap();
        drop(dir);
        drop(fs);
        assert_eq!(read_all(&leaf), b"kept", "held inodes survive their file system");
    }
}
