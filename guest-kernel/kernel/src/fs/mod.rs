//! The kernel's file-system state: the mount table, each process's root/cwd/umask, the
//! device file system and the helpers syscalls use to turn paths into inodes.

pub mod fifo;
pub mod file;
pub mod poll;
pub mod procfs;

use crate::fs::file::FileKind;
use crate::process::sched;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spinning_top::Spinlock;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::mount::{Location, Vfs};
use umlvm_kcore::vfs::tmpfs::TmpFs;
use umlvm_kcore::vfs::{FileSystem, FileType, NewInode, Timespec, makedev};

static VFS: Spinlock<Option<Vfs>> = Spinlock::new(None);

/// Every device file system made so far (`/dev` and any other devtmpfs mount), so that
/// hot-plugged devices get their nodes in each.
static DEV_FS: Spinlock<Vec<alloc::sync::Weak<TmpFs>>> = Spinlock::new(Vec::new());

/// File systems on block devices: (device table slot, the file system), so that a device in
/// use is not unplugged.
static BLOCK_FS: Spinlock<Vec<(usize, alloc::sync::Weak<dyn FileSystem>)>> = Spinlock::new(Vec::new());

/// The wall clock for file times.
pub fn clock() -> Timespec {
    let ns = crate::time::unix_ns();
    Timespec { sec: (ns / 1_000_000_000) as i64, nsec: (ns % 1_000_000_000) as u32 }
}

/// Runs `f` on the mount table if it is free (interrupt handlers: the interrupted code may
/// hold it while it waits for a device); `None` if it is busy.
pub fn try_with_vfs<R>(f: impl FnOnce(&mut Vfs) -> R) -> Option<R> {
    let mut vfs = VFS.try_lock()?;
    Some(f(vfs.as_mut()?))
}

/// Records `fs`, a device file system, for hot-plugged nodes.
pub fn register_dev_fs(fs: &Arc<TmpFs>) {
    let mut list = DEV_FS.lock();
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(fs));
}

/// Records that `fs` lives on block device slot `index`.
pub fn register_block_fs(index: usize, fs: &Arc<dyn FileSystem>) {
    let mut list = BLOCK_FS.lock();
    list.retain(|(_, w)| w.strong_count() > 0);
    list.push((index, Arc::downgrade(fs)));
}

/// Why block device slot `index` cannot be unplugged: `Some(Ok(reason))` if a mounted file
/// system uses it, `Some(Err(()))` if that cannot be told now (the mount table is busy).
pub fn block_device_user(index: usize, name: &str) -> Option<Result<alloc::string::String, ()>> {
    let live: Vec<Arc<dyn FileSystem>> =
        BLOCK_FS.try_lock()?.iter().filter(|(i, _)| *i == index).filter_map(|(_, w)| w.upgrade()).collect();
    if live.is_empty() {
        return None;
    }
    let found = try_with_vfs(|v| {
        v.mounts().into_iter().find(|m| {
            v.fs_of(m.id).is_some_and(|fs| {
                live.iter().any(|l| Arc::as_ptr(l) as *const () == Arc::as_ptr(&fs) as *const ())
            })
        })
    });
    Some(match found {
        None => Err(()),
        Some(Some(m)) => {
            Ok(alloc::format!("{name} is mounted on {}", alloc::string::String::from_utf8_lossy(&m.target)))
        }
        Some(None) => Ok(alloc::format!("{name} is in use by a file system")),
    })
}

/// Adds (`add`) or removes the nodes `name` of block device `unit` in every device file
/// system.
pub fn block_nodes(unit: u32, names: &[&str], add: bool) {
    let list: Vec<Arc<TmpFs>> = DEV_FS.lock().iter().filter_map(alloc::sync::Weak::upgrade).collect();
    for dev in list {
        let root = dev.root();
        for name in names {
            let r = if add {
                let new = NewInode {
                    kind: FileType::BlockDevice,
                    perm: 0o660,
                    uid: 0,
                    gid: 0,
                    rdev: makedev(98, unit * 16),
                    time: clock(),
                };
                root.create(name.as_bytes(), &new).map(|_| ())
            } else {
                root.unlink(name.as_bytes())
            };
            if let Err(e) = r {
                log::debug!("/dev/{name}: {}", e.name());
            }
        }
    }
}

/// Runs `f` on the mount table.
pub fn with_vfs<R>(f: impl FnOnce(&mut Vfs) -> R) -> R {
    f(VFS.lock().as_mut().expect("root file system mounted"))
}

/// Root, working directory and umask of a process.
#[derive(Clone)]
pub struct FsContext {
    /// Root directory.
    pub root: Option<Location>,
    /// Working directory.
    pub cwd: Option<Location>,
    /// File-creation mask.
    pub umask: u32,
}

impl FsContext {
    /// Before any file system exists.
    pub fn initial() -> Self {
        Self { root: None, cwd: None, umask: 0o022 }
    }

    /// At the root of the mount table.
    pub fn at_root() -> Self {
        let root = with_vfs(|v| v.root());
        Self { root: Some(root.clone()), cwd: Some(root), umask: 0o022 }
    }
}

/// Mounts `fs` as `/`.
pub fn set_root(fs: Arc<dyn FileSystem>, source: &str) {
    *VFS.lock() = Some(Vfs::new(fs, source));
}

fn ctx() -> (Location, Location) {
    let me = sched::current();
    let fs = me.proc.fs_context();
    let f = fs.lock();
    let root = f.root.clone().unwrap_or_else(|| with_vfs(|v| v.root()));
    let cwd = f.cwd.clone().unwrap_or_else(|| root.clone());
    (root, cwd)
}

/// The file at `path` (relative to `dir`, or the cwd when `None`).
pub fn lookup_at(dir: Option<&Location>, path: &[u8], follow: bool) -> KResult<Location> {
    let (root, cwd) = ctx();
    let base = dir.cloned().unwrap_or(cwd);
    with_vfs(|v| v.resolve(&root, &base, path, follow))
}

/// The parent directory of `path` and its last component.
pub fn lookup_parent_at(dir: Option<&Location>, path: &[u8]) -> KResult<(Location, Vec<u8>)> {
    let (root, cwd) = ctx();
    let base = dir.cloned().unwrap_or(cwd);
    with_vfs(|v| v.resolve_parent(&root, &base, path))
}

/// The absolute path of `loc` as the current process sees it.
pub fn path_of(loc: &Location) -> KResult<Vec<u8>> {
    let (root, _) = ctx();
    with_vfs(|v| v.path_of(&root, loc))
}

/// Whether the mount holding `loc` is read-only.
pub fn readonly(loc: &Location) -> bool {
    with_vfs(|v| v.is_readonly(loc.mount))
}

/// The umask of the current process.
pub fn umask() -> u32 {
    sched::current().proc.fs_context().lock().umask
}

/// Fills `dev` (a fresh tmpfs) with the device nodes of this machine.
pub fn populate_dev(dev: &Arc<TmpFs>) -> KResult<()> {
    let root = dev.root();
    let node = |name: &[u8], kind: FileType, perm: u32, ma: u32, mi: u32| -> KResult<()> {
        let new = NewInode { kind, perm, uid: 0, gid: 0, rdev: makedev(ma, mi), time: clock() };
        root.create(name, &new).map(|_| ())
    };
    let c = FileType::CharDevice;
    node(b"null", c, 0o666, 1, 3)?;
    node(b"zero", c, 0o666, 1, 5)?;
    node(b"full", c, 0o666, 1, 7)?;
    node(b"random", c, 0o666, 1, 8)?;
    node(b"urandom", c, 0o666, 1, 9)?;
    node(b"tty", c, 0o666, 5, 0)?;
    node(b"console", c, 0o600, 5, 1)?;
    for (serial, unit) in crate::tty::units() {
        let name = if serial { alloc::format!("ttyS{unit}") } else { alloc::format!("tty{unit}") };
        node(name.as_bytes(), c, 0o620, 4, if serial { 64 + unit } else { unit })?;
    }
    for unit in crate::dev::block::units() {
        let letter = (b'a' + unit as u8) as char;
        node(alloc::format!("ubd{letter}").as_bytes(), FileType::BlockDevice, 0o660, 98, unit * 16)?;
        node(alloc::format!("ubd{unit}").as_bytes(), FileType::BlockDevice, 0o660, 98, unit * 16)?;
    }
    let dir = NewInode { kind: FileType::Directory, perm: 0o755, uid: 0, gid: 0, rdev: 0, time: clock() };
    root.create(b"pts", &dir)?;
    root.create(b"shm", &NewInode { perm: 0o1777, ..dir })?;
    let fd = NewInode { kind: FileType::Symlink, perm: 0o777, uid: 0, gid: 0, rdev: 0, time: clock() };
    root.symlink(b"fd", b"/proc/self/fd", &fd)?;
    root.symlink(b"stdin", b"/proc/self/fd/0", &fd)?;
    root.symlink(b"stdout", b"/proc/self/fd/1", &fd)?;
    root.symlink(b"stderr", b"/proc/self/fd/2", &fd)?;
    Ok(())
}

/// Makes directory `path` (absolute) in the mount table if missing.
pub fn ensure_dir(path: &[u8], perm: u32) -> KResult<Location> {
    let root = with_vfs(|v| v.root());
    if let Ok(l) = with_vfs(|v| v.resolve(&root, &root, path, true)) {
        return Ok(l);
    }
    let (parent, name) = with_vfs(|v| v.resolve_parent(&root, &root, path))?;
    let new = NewInode { kind: FileType::Directory, perm, uid: 0, gid: 0, rdev: 0, time: clock() };
    let inode = parent.inode.create(&name, &new)?;
    Ok(Location { mount: parent.mount, inode })
}

/// Mounts `fs` at absolute `path` (created if missing).
pub fn mount_at(path: &[u8], fs: Arc<dyn FileSystem>, source: &str, readonly: bool) -> KResult<()> {
    let at = ensure_dir(path, 0o755)?;
    with_vfs(|v| v.mount(&at, fs, source, readonly)).map(|_| ())
}

/// `EROFS` unless the mount of `loc` is writable.
pub fn check_writable(loc: &Location) -> KResult<()> {
    if readonly(loc) { Err(Errno::EROFS) } else { Ok(()) }
}

/// The block device behind `/dev/ubdX` for a file system, with read-ahead: reads go to the
/// device in [`CHUNK`]-sized requests that are kept (LRU) for the small block reads file
/// systems make, because every request costs VM exits and a trip through the VMM's event
/// loop. Writes go through to the device and update the cached copy.
pub struct UbdBlocks {
    index: usize,
    cache: Spinlock<ChunkCache>,
}

/// Read-ahead unit.
const CHUNK: u64 = 128 * 1024;
/// Chunks kept (8 MiB).
const CHUNKS: usize = 64;

/// Largest run of contiguous writes gathered into one request.
const WRITE_RUN: usize = 1 << 20;

#[derive(Default)]
struct ChunkCache {
    chunks: alloc::collections::BTreeMap<u64, (Vec<u8>, u64)>,
    clock: u64,
    /// Contiguous writes not yet sent: (device offset, bytes). File systems write back
    /// block by block, in block order; gathering them saves a request per block.
    pending: Option<(u64, Vec<u8>)>,
}

impl UbdBlocks {
    fn send_pending(&self, c: &mut ChunkCache) -> KResult<()> {
        if let Some((at, data)) = c.pending.take() {
            let n = crate::dev::block::write_bytes(self.index, at, &data)?;
            if n != data.len() {
                return Err(Errno::EIO);
            }
        }
        Ok(())
    }
}

impl Drop for UbdBlocks {
    fn drop(&mut self) {
        let mut c = core::mem::take(&mut *self.cache.lock());
        if let Err(e) = self.send_pending(&mut c) {
            log::error!("ubd: write-back at release failed: {}", e.name());
        }
    }
}

impl UbdBlocks {
    /// The device with ubd table index `index`.
    pub fn new(index: usize) -> Self {
        Self { index, cache: Spinlock::new(ChunkCache::default()) }
    }
}

impl umlvm_kcore::ext2::BlockDevice for UbdBlocks {
    fn read(&self, offset: u64, buf: &mut [u8]) -> KResult<()> {
        let size = crate::dev::block::size_bytes(self.index);
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > size) {
            return Err(Errno::EIO);
        }
        let mut c = self.cache.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let chunk = at / CHUNK;
            c.clock += 1;
            let now = c.clock;
            if !c.chunks.contains_key(&chunk) {
                // The device must see gathered writes before it is read.
                self.send_pending(&mut c)?;
                let start = chunk * CHUNK;
                let len = CHUNK.min(size - start) as usize;
                let mut data = alloc::vec![0u8; len];
                let n = crate::dev::block::read_bytes(self.index, start, &mut data)?;
                if n != len {
                    return Err(Errno::EIO);
                }
                if c.chunks.len() >= CHUNKS {
                    let oldest = c.chunks.iter().min_by_key(|(_, (_, used))| *used).map(|(&k, _)| k);
                    if let Some(k) = oldest {
                        c.chunks.remove(&k);
                    }
                }
                c.chunks.insert(chunk, (data, now));
            }
            let entry = c.chunks.get_mut(&chunk).expect("loaded above");
            entry.1 = now;
            let within = (at - chunk * CHUNK) as usize;
            let n = (entry.0.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&entry.0[within..within + n]);
            done += n;
        }
        Ok(())
    }
    fn write(&self, offset: u64, buf: &[u8]) -> KResult<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > crate::dev::block::size_bytes(self.index))
        {
            return Err(Errno::EIO);
        }
        let mut c = self.cache.lock();
        let extends = matches!(&c.pending, Some((at, data)) if at + data.len() as u64 == offset && data.len() + buf.len() <= WRITE_RUN);
        if extends {
            if let Some((_, data)) = c.pending.as_mut() {
                data.extend_from_slice(buf);
            }
        } else {
            self.send_pending(&mut c)?;
            c.pending = Some((offset, buf.to_vec()));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let chunk = at / CHUNK;
            let within = (at - chunk * CHUNK) as usize;
            let n = (CHUNK as usize - within).min(buf.len() - done);
            if let Some((data, _)) = c.chunks.get_mut(&chunk) {
                let m = n.min(data.len().saturating_sub(within));
                data[within..within + m].copy_from_slice(&buf[done..done + m]);
            }
            done += n;
        }
        Ok(())
    }
    fn flush(&self) -> KResult<()> {
        {
            let mut c = self.cache.lock();
            self.send_pending(&mut c)?;
        }
        crate::dev::block::flush_index(self.index)
    }
    fn size(&self) -> u64 {
        crate::dev::block::size_bytes(self.index)
    }
}

/// `mount(2)`: mounts a file system of type `fstype` from `source` at `at`.
pub fn mount_fs(source: &[u8], at: &Location, fstype: &[u8], readonly: bool) -> KResult<()> {
    let name = core::str::from_utf8(source).unwrap_or("none");
    let fs: Arc<dyn FileSystem> = match fstype {
        b"proc" => crate::fs::procfs::ProcFs::new(),
        b"tmpfs" | b"ramfs" => TmpFs::with_root_mode(clock, 0o1777),
        b"devtmpfs" => {
            let dev = TmpFs::new(clock);
            populate_dev(&dev)?;
            register_dev_fs(&dev);
            dev
        }
        b"ext2" | b"ext3" | b"" => {
            let loc = lookup_at(None, source, true)?;
            let md = loc.inode.metadata();
            if md.file_type() != FileType::BlockDevice {
                return Err(Errno::ENOTBLK);
            }
            let FileKind::Block(index) = crate::fs::file::open_device(FileType::BlockDevice, md.rdev)? else {
                return Err(Errno::ENXIO);
            };
            let ro = readonly || crate::dev::block::read_only(index);
            match umlvm_kcore::ext2::Ext2Fs::mount(Arc::new(UbdBlocks::new(index)), ro, clock) {
                Ok(fs) => {
                    let fs: Arc<dyn FileSystem> = fs;
                    register_block_fs(index, &fs);
                    fs
                }
                Err(e) => {
                    log::warn!("mount {name}: {e}");
                    return Err(e.errno);
                }
            }
        }
        b"sysfs" | b"devpts" | b"cgroup" | b"cgroup2" => return Err(Errno::ENODEV),
        _ => return Err(Errno::ENODEV),
    };
    with_vfs(|v| v.mount(at, fs, name, readonly)).map(|_| ())
}
