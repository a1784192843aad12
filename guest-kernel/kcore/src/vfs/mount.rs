//! The mount table and path resolution.
//!
//! A [`Location`] is a place in the whole tree: an inode together with the mount it was
//! reached through (the same directory can be visible under several mounts). The [`Vfs`]
//! records which mount covers which directory, walks paths across mounts and symlinks the
//! way Linux's `namei` does, and turns locations back into absolute paths.
//!
//! A mount covers a directory, identified by (mount it is seen through, file-system id,
//! inode number). Mounting on a directory that is already covered stacks the new mount on
//! top of the topmost one; walks always enter the topmost.
//!
//! Permission checks (search permission on directories) are not done here: the walker does
//! not know the caller's credentials.

use super::{FileSystem, FileType, Inode, NAME_MAX, PATH_MAX, same_inode};
use crate::errno::{Errno, KResult};
use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The most symlinks one path resolution expands before failing with `ELOOP` (Linux's
/// `MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// Identifies a mount. Ids are never reused, so a stale one (of an unmounted file system)
/// never names a different mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MountId(pub usize);

/// A place in the tree: an inode and the mount through which it was reached.
#[derive(Clone)]
pub struct Location {
    /// The mount.
    pub mount: MountId,
    /// The inode, of that mount's file system.
    pub inode: Arc<dyn Inode>,
}

impl Location {
    /// Whether both are the same inode seen through the same mount.
    pub fn same(&self, other: &Location) -> bool {
        self.mount == other.mount && same_inode(&*self.inode, &*other.inode)
    }

    /// Whether the inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.inode.metadata().file_type() == FileType::Directory
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("mount", &self.mount.0)
            .field("fs", &self.inode.fs_id())
            .field("ino", &self.inode.metadata().ino)
            .finish()
    }
}

/// One line of `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount.
    pub id: MountId,
    /// What was mounted (a device path, or a name such as `tmpfs`).
    pub source: String,
    /// Absolute path of the mount point, from the root of the whole tree.
    pub target: Vec<u8>,
    /// File-system type name.
    pub fstype: &'static str,
    /// Whether it is read-only (the mount or the file system).
    pub readonly: bool,
}

/// The final component of a path, as [`Vfs::resolve_last`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastComponent {
    /// A name.
    Name {
        /// The name (at most [`NAME_MAX`] bytes, no `/`).
        name: Vec<u8>,
        /// Whether slashes followed it (`mkdir("a/")`): it must be, or become, a directory.
        must_be_dir: bool,
    },
    /// `.`: Linux's callers fail with `EEXIST` (mkdir), `EINVAL` (rmdir), `EISDIR`
    /// (unlink) or `EBUSY` (rename).
    Dot,
    /// `..`: like [`LastComponent::Dot`], except that rmdir fails with `ENOTEMPTY`.
    DotDot,
    /// The path has no components (`/`): Linux's callers fail with `EEXIST` (mkdir) or
    /// `EBUSY` (rmdir, rename, unlink gives `EISDIR`).
    Root,
}

/// Where a mount is attached.
struct MountPoint {
    /// The covered directory.
    at: Location,
    /// Its key in `Vfs::covers`.
    key: CoverKey,
}

/// One mounted file system.
struct Mount {
    fs: Arc<dyn FileSystem>,
    root: Arc<dyn Inode>,
    /// `None` for the root of the tree.
    mountpoint: Option<MountPoint>,
    source: String,
    readonly: bool,
}

/// A covered directory: (mount it is seen through, file-system id, inode number).
type CoverKey = (usize, u64, u64);

fn cover_key(loc: &Location) -> CoverKey {
    (loc.mount.0, loc.inode.fs_id(), loc.inode.metadata().ino)
}

/// The mount table. Not locked: the kernel keeps it behind its own lock.
pub struct Vfs {
    /// Indexed by [`MountId`]; `None` once unmounted.
    mounts: Vec<Option<Mount>>,
    /// Which mount sits directly on top of each covered directory.
    covers: BTreeMap<CoverKey, MountId>,
    /// The mount at the root of the tree (always attached).
    root: MountId,
}

impl Vfs {
    /// A tree with `root_fs` at `/`; `source` is what `/proc/mounts` lists for it.
    pub fn new(root_fs: Arc<dyn FileSystem>, source: &str) -> Vfs {
        let root = root_fs.root();
        let mount =
            Mount { fs: root_fs, root, mountpoint: None, source: source.to_string(), readonly: false };
        Vfs { mounts: vec![Some(mount)], covers: BTreeMap::new(), root: MountId(0) }
    }

    fn get(&self, id: MountId) -> Option<&Mount> {
        self.mounts.get(id.0)?.as_ref()
    }

    fn get_mut(&mut self, id: MountId) -> KResult<&mut Mount> {
        self.mounts.get_mut(id.0).and_then(Option::as_mut).ok_or(Errno::EINVAL)
    }

    /// The root directory of the whole tree (a process's root unless it `chroot`s).
    pub fn root(&self) -> Location {
        self.mount_root(self.root).expect("the root mount is always attached")
    }

    /// The root directory of mount `id`, if it is mounted.
    pub fn mount_root(&self, id: MountId) -> Option<Location> {
        Some(Location { mount: id, inode: self.get(id)?.root.clone() })
    }

    /// Mounts `fs` on directory `at` and returns the new mount. If something is mounted on
    /// `at` already, the new mount goes on top of the topmost one and hides it.
    pub fn mount(
        &mut self,
        at: &Location,
        fs: Arc<dyn FileSystem>,
        source: &str,
        readonly: bool,
    ) -> KResult<MountId> {
        if self.get(at.mount).is_none() {
            return Err(Errno::EINVAL);
        }
        if !at.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let at = self.follow_mounts(at.clone());
        let key = cover_key(&at);
        let id = MountId(self.mounts.len());
        let root = fs.root();
        let mountpoint = Some(MountPoint { at, key });
        self.mounts.push(Some(Mount { fs, root, mountpoint, source: source.to_string(), readonly }));
        self.covers.insert(key, id);
        Ok(id)
    }

    /// Unmounts the mount whose root is `target` and returns its file system, after calling
    /// its [`FileSystem::unmount`] (whose failure leaves it mounted). `EINVAL` if `target` is
    /// not the root of a mount or is the root of the tree, `EBUSY` if anything is mounted
    /// inside (or on top of) it. Whether files on it are still open is for the caller to
    /// check: those locations keep working on the detached file system.
    pub fn unmount(&mut self, target: &Location) -> KResult<Arc<dyn FileSystem>> {
        let mount = self.get(target.mount).ok_or(Errno::EINVAL)?;
        if !same_inode(&*mount.root, &*target.inode) {
            return Err(Errno::EINVAL);
        }
        let key = mount.mountpoint.as_ref().ok_or(Errno::EINVAL)?.key;
        if self.has_submounts(target.mount) {
            return Err(Errno::EBUSY);
        }
        mount.fs.unmount()?;
        self.covers.remove(&key);
        let mount = self.mounts[target.mount.0].take().ok_or(Errno::EINVAL)?;
        Ok(mount.fs)
    }

    /// Makes the mount whose root is `new_root` the root of the tree, like `pivot_root(2)`:
    /// it is detached from where it was mounted; then the old root mount, with everything
    /// still mounted in it, is mounted on directory `put_old`, which must lie inside the new
    /// root's tree, or, when `put_old` is `None`, it is detached. Returns the file systems of
    /// the detached mounts, deepest first: call [`FileSystem::unmount`] on each and drop
    /// them. Locations of processes (root, cwd) are not changed: the kernel moves those that
    /// pointed at the old root to [`Vfs::root`].
    ///
    /// Switching from an initramfs to a disk: mount the disk's file system somewhere (on `/`
    /// itself will do), then `replace_root(&vfs.mount_root(id).unwrap(), None)`.
    ///
    /// `EINVAL` if `new_root` is not the root of a mount or `put_old` is outside it,
    /// `EBUSY` if `new_root` is the root already, `ENOTDIR` if `put_old` is no directory.
    pub fn replace_root(
        &mut self,
        new_root: &Location,
        put_old: Option<&Location>,
    ) -> KResult<Vec<Arc<dyn FileSystem>>> {
        let new_id = new_root.mount;
        let mount = self.get(new_id).ok_or(Errno::EINVAL)?;
        if !same_inode(&*mount.root, &*new_root.inode) {
            return Err(Errno::EINVAL);
        }
        let Some(old_key) = mount.mountpoint.as_ref().map(|mp| mp.key) else {
            return Err(Errno::EBUSY);
        };
        let put_old = match put_old {
            Some(at) => {
                if self.depth_below(at.mount, new_id).is_none() {
                    return Err(Errno::EINVAL);
                }
                if !at.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
                Some(self.follow_mounts(at.clone()))
            }
            None => None,
        };
        self.covers.remove(&old_key);
        self.get_mut(new_id)?.mountpoint = None;
        let old_root = core::mem::replace(&mut self.root, new_id);
        match put_old {
            Some(at) => {
                let key = cover_key(&at);
                self.covers.insert(key, old_root);
                self.get_mut(old_root)?.mountpoint = Some(MountPoint { at, key });
                Ok(Vec::new())
            }
            None => Ok(self.detach_tree(old_root)),
        }
    }

    /// Removes mount `top` and every mount inside it; returns their file systems, deepest
    /// first.
    fn detach_tree(&mut self, top: MountId) -> Vec<Arc<dyn FileSystem>> {
        let mut doomed: Vec<(usize, MountId)> = (0..self.mounts.len())
            .map(MountId)
            .filter_map(|id| Some((self.depth_below(id, top)?, id)))
            .collect();
        doomed.sort_unstable_by(|a, b| b.cmp(a));
        let mut detached = Vec::with_capacity(doomed.len());
        for (_, id) in doomed {
            if let Some(mount) = self.mounts[id.0].take() {
                if let Some(mountpoint) = mount.mountpoint {
                    self.covers.remove(&mountpoint.key);
                }
                detached.push(mount.fs);
            }
        }
        detached
    }

    /// How many mounts down from `ancestor` mount `id` is (0 if it is `ancestor`), or `None`
    /// if it is not inside it.
    fn depth_below(&self, mut id: MountId, ancestor: MountId) -> Option<usize> {
        let mut depth = 0;
        while id != ancestor {
            id = self.get(id)?.mountpoint.as_ref()?.at.mount;
            depth += 1;
        }
        self.get(id).map(|_| depth)
    }

    /// Whether any mount is attached to a directory seen through mount `id`.
    fn has_submounts(&self, id: MountId) -> bool {
        self.covers.range((id.0, 0, 0)..=(id.0, u64::MAX, u64::MAX)).next().is_some()
    }

    /// Whether mount `id` is read-only, by its own flag or because its file system is (a
    /// mount that is gone counts as read-only).
    pub fn is_readonly(&self, id: MountId) -> bool {
        self.get(id).is_none_or(|mount| mount.readonly || mount.fs.readonly())
    }

    /// Sets the read-only flag of mount `id` (`mount -o remount,ro,bind`); the file
    /// system's own state is changed through [`FileSystem::set_readonly`].
    pub fn set_readonly(&mut self, id: MountId, readonly: bool) -> KResult<()> {
        self.get_mut(id)?.readonly = readonly;
        Ok(())
    }

    /// The file system of mount `id`, if it is mounted.
    pub fn fs_of(&self, id: MountId) -> Option<Arc<dyn FileSystem>> {
        self.get(id).map(|mount| mount.fs.clone())
    }

    /// Whether something is mounted on `loc` (so it cannot be removed or renamed: `EBUSY`).
    pub fn is_mount_point(&self, loc: &Location) -> bool {
        !self.covers.is_empty() && self.covers.contains_key(&cover_key(loc))
    }

    /// Whether `loc` is the root directory of its mount.
    pub fn is_mount_root(&self, loc: &Location) -> bool {
        self.get(loc.mount).is_some_and(|mount| same_inode(&*mount.root, &*loc.inode))
    }

    /// The mounts, parents before children and otherwise in the order they were mounted, as
    /// `/proc/mounts` lists them.
    pub fn mounts(&self) -> Vec<MountInfo> {
        let tree_root = self.root();
        let mut listed = vec![false; self.mounts.len()];
        let mut order = vec![self.root];
        listed[self.root.0] = true;
        while let Some(next) = (0..self.mounts.len()).find(|&i| {
            !listed[i]
                && self
                    .get(MountId(i))
                    .is_some_and(|mount| mount.mountpoint.as_ref().is_some_and(|mp| listed[mp.at.mount.0]))
        }) {
            listed[next] = true;
            order.push(MountId(next));
        }
        order
            .into_iter()
            .filter_map(|id| {
                let mount = self.get(id)?;
                let target = match &mount.mountpoint {
                    None => b"/".to_vec(),
                    Some(mp) => {
                        self.path_of(&tree_root, &mp.at).unwrap_or_else(|_| b"(unreachable)".to_vec())
                    }
                };
                Some(MountInfo {
                    id,
                    source: mount.source.clone(),
                    target,
                    fstype: mount.fs.name(),
                    readonly: mount.readonly || mount.fs.readonly(),
                })
            })
            .collect()
    }

    /// `loc`, or the root of the topmost mount stacked on it.
    pub fn follow_mounts(&self, mut loc: Location) -> Location {
        if self.covers.is_empty() {
            return loc;
        }
        while let Some(&id) = self.covers.get(&cover_key(&loc)) {
            match self.mount_root(id) {
                Some(top) => loc = top,
                None => break,
            }
        }
        loc
    }

    /// Resolves `path`: absolute paths start at `root` (the process's root directory),
    /// relative ones at `cwd`. Symlinks are followed in every component but the last, and in
    /// the last too if `follow_last` or if slashes follow it; a path ending in slashes must
    /// name a directory. `..` never leaves `root` and climbs out of mounts.
    ///
    /// Errors: `ENOENT` (missing component, empty path or symlink target), `ENOTDIR` (a
    /// component that must be a directory is not), `ELOOP` (more than [`MAX_SYMLINKS`]
    /// symlinks), `ENAMETOOLONG` (a component over [`NAME_MAX`] bytes, a path of
    /// [`PATH_MAX`] or more), and whatever the file systems report.
    pub fn resolve(
        &self,
        root: &Location,
        cwd: &Location,
        path: &[u8],
        follow_last: bool,
    ) -> KResult<Location> {
        match self.walk(root, cwd, path, Goal::Target { follow_last })? {
            Walked::Target(loc) => Ok(loc),
            Walked::Parent(..) => Err(Errno::EINVAL),
        }
    }

    /// Resolves all but the final component of `path` (for mkdir, unlink, rename and
    /// creating opens): returns the directory and the final component, which is not looked
    /// up. `EEXIST` when the final component is no name (`/`, `.`, `..`): use
    /// [`Vfs::resolve_last`] to tell those apart, and to learn whether the name was followed
    /// by slashes.
    pub fn resolve_parent(
        &self,
        root: &Location,
        cwd: &Location,
        path: &[u8],
    ) -> KResult<(Location, Vec<u8>)> {
        match self.resolve_last(root, cwd, path)? {
            (dir, LastComponent::Name { name, .. }) => Ok((dir, name)),
            _ => Err(Errno::EEXIST),
        }
    }

    /// Like [`Vfs::resolve_parent`], but reports every kind of final component: the
    /// directory returned is the one the final component is in (for `.` and `..`, the
    /// directory they are taken in; for [`LastComponent::Root`], `root`).
    pub fn resolve_last(
        &self,
        root: &Location,
        cwd: &Location,
        path: &[u8],
    ) -> KResult<(Location, LastComponent)> {
        match self.walk(root, cwd, path, Goal::Parent)? {
            Walked::Parent(dir, last) => Ok((dir, last)),
            Walked::Target(_) => Err(Errno::EINVAL),
        }
    }

    /// The walker behind [`Vfs::resolve`] and [`Vfs::resolve_last`].
    fn walk(&self, root: &Location, cwd: &Location, path: &[u8], goal: Goal) -> KResult<Walked> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        if path.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut current = if path[0] == b'/' {
            root.clone()
        } else if cwd.is_dir() {
            cwd.clone()
        } else {
            return Err(Errno::ENOTDIR);
        };
        // The text still to walk: the path, and on top the targets of symlinks being followed.
        let mut stack = vec![Frame::new(path.to_vec(), path.ends_with(b"/"))];
        let mut expansions = 0;
        let mut name_buf = [0u8; NAME_MAX];
        while let Some(frame) = stack.last_mut() {
            let Some(range) = frame.next_component() else {
                stack.pop();
                continue;
            };
            let name = name_buf.get_mut(..range.len()).ok_or(Errno::ENAMETOOLONG)?;
            name.copy_from_slice(&frame.text[range]);
            let name = &*name;
            // A component must be a directory if slashes follow it, here or after the
            // symlink whose target it ends.
            let at_end = frame.at_end();
            let must_be_dir = !at_end || frame.must_be_dir;
            if at_end {
                stack.pop();
            }
            let is_last = stack.is_empty();
            if is_last && goal == Goal::Parent {
                let last = match name {
                    b"." => LastComponent::Dot,
                    b".." => LastComponent::DotDot,
                    _ => LastComponent::Name { name: name.to_vec(), must_be_dir },
                };
                return Ok(Walked::Parent(current, last));
            }
            match name {
                b"." => {}
                b".." => current = self.dotdot(root, current)?,
                _ => {
                    let inode = current.inode.lookup(name)?;
                    let next = self.follow_mounts(Location { mount: current.mount, inode });
                    let kind = next.inode.metadata().file_type();
                    let follow = !is_last || must_be_dir || goal == Goal::Target { follow_last: true };
                    if kind == FileType::Symlink && follow {
                        expansions += 1;
                        if expansions > MAX_SYMLINKS {
                            return Err(Errno::ELOOP);
                        }
                        let target = next.inode.readlink()?;
                        if target.is_empty() {
                            return Err(Errno::ENOENT);
                        }
                        if target.len() >= PATH_MAX {
                            return Err(Errno::ENAMETOOLONG);
                        }
                        if target[0] == b'/' {
                            current = root.clone();
                        }
                        // A relative target is walked from the link's directory: `current`.
                        let target_must_be_dir = must_be_dir || target.ends_with(b"/");
                        stack.push(Frame::new(target, target_must_be_dir));
                        continue;
                    }
                    if must_be_dir && kind != FileType::Directory {
                        return Err(Errno::ENOTDIR);
                    }
                    current = next;
                }
            }
        }
        Ok(match goal {
            Goal::Target { .. } => Walked::Target(current),
            // Only slashes: the walk never met a final component.
            Goal::Parent => Walked::Parent(current, LastComponent::Root),
        })
    }

    /// `..` from `current`: stays at `root` and at the root of the tree, climbs from a mount's
    /// root to the directory it covers first, and enters mounts on the directory it reaches.
    fn dotdot(&self, root: &Location, mut current: Location) -> KResult<Location> {
        loop {
            if current.same(root) {
                return Ok(current);
            }
            let Some(mount) = self.get(current.mount) else { break };
            if !same_inode(&*mount.root, &*current.inode) {
                break;
            }
            match &mount.mountpoint {
                Some(mountpoint) => current = mountpoint.at.clone(),
                None => return Ok(current),
            }
        }
        let inode = current.inode.parent()?;
        Ok(self.follow_mounts(Location { mount: current.mount, inode }))
    }

    /// The absolute path of directory `loc` as seen from `root` (for `getcwd` and
    /// `/proc/self/cwd`), found by climbing parents and looking up each directory's name in
    /// its parent. `ENOENT` if `loc` was removed or lies outside `root`, `ENAMETOOLONG` if
    /// the path reaches [`PATH_MAX`].
    pub fn path_of(&self, root: &Location, loc: &Location) -> KResult<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut len = 0;
        let mut current = loc.clone();
        while !current.same(root) {
            let mount = self.get(current.mount).ok_or(Errno::ENOENT)?;
            if same_inode(&*mount.root, &*current.inode) {
                current = mount.mountpoint.as_ref().ok_or(Errno::ENOENT)?.at.clone();
                continue;
            }
            let ino = current.inode.metadata().ino;
            let parent = current.inode.parent()?;
            let name = name_in(&*parent, ino)?;
            len += name.len() + 1;
            if len >= PATH_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            names.push(name);
            current = Location { mount: current.mount, inode: parent };
        }
        if names.is_empty() {
            return Ok(b"/".to_vec());
        }
        let mut path = Vec::with_capacity(len);
        for name in names.iter().rev() {
            path.push(b'/');
            path.extend_from_slice(name);
        }
        Ok(path)
    }
}

/// The name under which `dir` lists inode `ino` (`ENOENT` if it does not).
fn name_in(dir: &dyn Inode, ino: u64) -> KResult<Vec<u8>> {
    let mut cursor = 0;
    while let Some((entry, next)) = dir.read_dir(cursor)? {
        if entry.ino == ino && entry.name != b"." && entry.name != b".." {
            return Ok(entry.name);
        }
        cursor = next;
    }
    Err(Errno::ENOENT)
}

/// What a walk is after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Goal {
    /// The inode the whole path names.
    Target {
        /// Whether a final symlink is followed.
        follow_last: bool,
    },
    /// The directory holding the final component.
    Parent,
}

/// What a walk found.
enum Walked {
    Target(Location),
    Parent(Location, LastComponent),
}

/// Path text being walked.
struct Frame {
    text: Vec<u8>,
    /// Where the next component starts (or the slashes before it).
    pos: usize,
    /// Whether the last component must be a directory.
    must_be_dir: bool,
}

impl Frame {
    fn new(text: Vec<u8>, must_be_dir: bool) -> Self {
        Self { text, pos: 0, must_be_dir }
    }

    /// The byte range of the next component, or `None` if only slashes are left.
    fn next_component(&mut self) -> Option<core::ops::Range<usize>> {
        let rest = &self.text[self.pos..];
        let start = self.pos + rest.iter().take_while(|&&b| b == b'/').count();
        let end = start + self.text[start..].iter().take_while(|&&b| b != b'/').count();
        self.pos = end;
        (start < end).then_some(start..end)
    }

    /// Whether nothing but slashes is left.
    fn at_end(&self) -> bool {
        self.text[self.pos..].iter().all(|&b| b == b'/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::tmpfs::TmpFs;
    use crate::vfs::{NewInode, StatFs, Timespec};
    use core::sync::atomic::{AtomicUsize, Ordering};

    fn clock() -> Timespec {
        Timespec { sec: 1, nsec: 0 }
    }

    fn new(kind: FileType) -> NewInode {
        NewInode { kind, perm: 0o755, uid: 0, gid: 0, rdev: 0, time: clock() }
    }

    fn tmpfs() -> Arc<dyn FileSystem> {
        TmpFs::new(clock)
    }

    /// A tree on a tmpfs: /bin/sh, /etc/passwd, /mnt/under, /usr/lib, /home/user.
    fn tree() -> (Vfs, Location) {
        let vfs = Vfs::new(tmpfs(), "rootfs");
        let root = vfs.root();
        for dir in ["bin", "etc", "mnt", "usr", "usr/lib", "home", "home/user"] {
            mkdir(&vfs, &root, dir);
        }
        for file in ["bin/sh", "etc/passwd", "mnt/under"] {
            touch(&vfs, &root, file);
        }
        (vfs, root)
    }

    fn mkdir(vfs: &Vfs, cwd: &Location, path: &str) -> Location {
        let (dir, name) = vfs.resolve_parent(&vfs.root(), cwd, path.as_bytes()).unwrap();
        let inode = dir.inode.create(&name, &new(FileType::Directory)).unwrap();
        Location { mount: dir.mount, inode }
    }

    fn touch(vfs: &Vfs, cwd: &Location, path: &str) -> Location {
        let (dir, name) = vfs.resolve_parent(&vfs.root(), cwd, path.as_bytes()).unwrap();
        let inode = dir.inode.create(&name, &new(FileType::Regular)).unwrap();
        Location { mount: dir.mount, inode }
    }

    fn symlink(vfs: &Vfs, path: &str, target: &str) {
        let (dir, name) = vfs.resolve_parent(&vfs.root(), &vfs.root(), path.as_bytes()).unwrap();
        dir.inode.symlink(&name, target.as_bytes(), &new(FileType::Symlink)).unwrap();
    }

    /// Resolves from the tree's root, following a final symlink.
    fn get(vfs: &Vfs, path: &str) -> KResult<Location> {
        vfs.resolve(&vfs.root(), &vfs.root(), path.as_bytes(), true)
    }

    fn path(vfs: &Vfs, loc: &Location) -> String {
        String::from_utf8(vfs.path_of(&vfs.root(), loc).unwrap()).unwrap()
    }

    fn assert_at(loc: KResult<Location>, expected: &Location) {
        let loc = loc.unwrap();
        assert!(loc.same(expected), "{loc:?} is not {expected:?}");
    }

    fn mount_tmpfs(vfs: &mut Vfs, at: &str) -> MountId {
        let at = get(vfs, at).unwrap();
        vfs.mount(&at, tmpfs(), "tmpfs", false).unwrap()
    }

    #[test]
    fn plain_paths() {
        let (vfs, root) = tree();
        let etc = get(&vfs, "/etc").unwrap();
        let passwd = get(&vfs, "/etc/passwd").unwrap();
        assert_eq!(passwd.inode.metadata().file_type(), FileType::Regular);
        assert_at(get(&vfs, "/"), &root);
        assert_at(get(&vfs, "///"), &root);
        assert_at(get(&vfs, "etc/passwd"), &passwd);
        assert_at(get(&vfs, "//etc///passwd"), &passwd);
        assert_at(get(&vfs, "/etc/./passwd"), &passwd);
        assert_at(get(&vfs, "/etc/../etc/passwd"), &passwd);
        assert_at(get(&vfs, "/etc/"), &etc);
        assert_at(get(&vfs, "/etc/."), &etc);
        assert_at(get(&vfs, "."), &root);
        assert_at(vfs.resolve(&root, &etc, b"passwd", true), &passwd);
        assert_at(vfs.resolve(&root, &etc, b"..", true), &root);
        assert_at(vfs.resolve(&root, &etc, b"/etc", true), &etc);
        assert_eq!(get(&vfs, "").err(), Some(Errno::ENOENT));
        assert_eq!(get(&vfs, "/nope").err(), Some(Errno::ENOENT));
        assert_eq!(get(&vfs, "/nope/x").err(), Some(Errno::ENOENT));
        assert_eq!(get(&vfs, "/etc/passwd/x").err(), Some(Errno::ENOTDIR));
        assert_eq!(get(&vfs, "/etc/passwd/").err(), Some(Errno::ENOTDIR));
        assert_eq!(get(&vfs, "/etc/passwd/.").err(), Some(Errno::ENOTDIR));
        assert_eq!(get(&vfs, "/etc/passwd/..").err(), Some(Errno::ENOTDIR));
        // A relative path from a file (a dirfd that is none).
        assert_eq!(vfs.resolve(&root, &passwd, b"x", true).err(), Some(Errno::ENOTDIR));
        assert_eq!(vfs.resolve(&root, &passwd, b".", true).err(), Some(Errno::ENOTDIR));
        assert_at(vfs.resolve(&root, &passwd, b"/etc", true), &etc);
    }

    #[test]
    fn length_limits() {
        let (vfs, _) = tree();
        let long = "n".repeat(NAME_MAX + 1);
        assert_eq!(get(&vfs, &format!("/etc/{long}")).err(), Some(Errno::ENAMETOOLONG));
        assert_eq!(get(&vfs, &format!("/{long}/x")).err(), Some(Errno::ENAMETOOLONG));
        assert_eq!(get(&vfs, &format!("/etc/{}", &long[1..])).err(), Some(Errno::ENOENT));
        let slashes = "/".repeat(PATH_MAX - 1 - "etc/passwd".len());
        assert!(get(&vfs, &format!("{slashes}etc/passwd")).is_ok(), "4095 bytes is fine");
        assert_eq!(get(&vfs, &format!("/{slashes}etc/passwd")).err(), Some(Errno::ENAMETOOLONG));
    }

    #[test]
    fn dotdot_stays_inside_roots() {
        let (vfs, root) = tree();
        assert_at(get(&vfs, "/.."), &root);
        assert_at(get(&vfs, "/../../etc/.."), &root);
        assert_at(get(&vfs, "../../bin/sh"), &get(&vfs, "/bin/sh").unwrap());
        // A chrooted process: its root is /home.
        let home = get(&vfs, "/home").unwrap();
        let user = get(&vfs, "/home/user").unwrap();
        assert_at(vfs.resolve(&home, &home, b"/..", true), &home);
        assert_at(vfs.resolve(&home, &user, b"../../..", true), &home);
        assert_at(vfs.resolve(&home, &home, b"/user", true), &user);
        assert_at(vfs.resolve(&home, &user, b"../user/./../user", true), &user);
        assert_eq!(vfs.resolve(&home, &home, b"/etc", true).err(), Some(Errno::ENOENT));
    }

    #[test]
    fn mounts_are_entered_and_left() {
        let (mut vfs, root) = tree();
        let covered = get(&vfs, "/mnt").unwrap();
        let id = mount_tmpfs(&mut vfs, "/mnt");
        assert_ne!(id, MountId(0));
        let mnt = get(&vfs, "/mnt").unwrap();
        assert_eq!(mnt.mount, id);
        assert!(vfs.is_mount_root(&mnt));
        assert!(vfs.is_mount_point(&covered));
        assert!(!vfs.is_mount_point(&mnt));
        assert_ne!(mnt.inode.fs_id(), root.inode.fs_id());
        assert_eq!(get(&vfs, "/mnt/under").err(), Some(Errno::ENOENT));
        let inside = mkdir(&vfs, &root, "/mnt/d");
        assert_eq!(inside.mount, id);
        assert_at(get(&vfs, "/mnt/d"), &inside);
        assert_at(get(&vfs, "/mnt/d/../.."), &root);
        assert_at(get(&vfs, "/mnt/.."), &root);
        assert_at(get(&vfs, "/mnt/../etc/passwd"), &get(&vfs, "/etc/passwd").unwrap());
        assert_at(vfs.resolve(&root, &inside, b"../../bin", true), &get(&vfs, "/bin").unwrap());
        assert_at(vfs.resolve(&root, &mnt, b"..", true), &root);
        // Through a location reached before the mount, the covered directory still shows.
        assert!(vfs.resolve(&root, &covered, b"under", true).is_ok());
        // `..` into a covered directory enters the mount on it.
        let covered_child = covered.inode.create(b"c", &new(FileType::Directory)).unwrap();
        let covered_child = Location { mount: MountId(0), inode: covered_child };
        assert_at(vfs.resolve(&root, &covered_child, b"..", true), &mnt);
        // A mount root chosen as the process root.
        assert_at(vfs.resolve(&mnt, &mnt, b"..", true), &mnt);
        assert_at(vfs.resolve(&mnt, &inside, b"/d", true), &inside);
        // Only directories can be mounted on.
        let passwd = get(&vfs, "/etc/passwd").unwrap();
        assert_eq!(vfs.mount(&passwd, tmpfs(), "x", false).err(), Some(Errno::ENOTDIR));
    }

    #[test]
    fn stacked_mounts() {
        let (mut vfs, root) = tree();
        let lower = mount_tmpfs(&mut vfs, "/mnt");
        touch(&vfs, &root, "/mnt/lower");
        let upper = mount_tmpfs(&mut vfs, "/mnt");
        assert_eq!(get(&vfs, "/mnt").unwrap().mount, upper);
        assert_eq!(get(&vfs, "/mnt/lower").err(), Some(Errno::ENOENT));
        assert_at(get(&vfs, "/mnt/.."), &root);
        // Mounting through the covered directory also lands on top.
        let covered = Location { mount: MountId(0), inode: root.inode.lookup(b"mnt").unwrap() };
        let top = vfs.mount(&covered, tmpfs(), "top", false).unwrap();
        assert_eq!(get(&vfs, "/mnt").unwrap().mount, top);
        assert_eq!(path(&vfs, &get(&vfs, "/mnt").unwrap()), "/mnt");
        let lower_root = vfs.mount_root(lower).unwrap();
        assert_eq!(vfs.unmount(&lower_root).err(), Some(Errno::EBUSY));
        vfs.unmount(&get(&vfs, "/mnt").unwrap()).unwrap();
        assert_eq!(get(&vfs, "/mnt").unwrap().mount, upper);
        vfs.unmount(&get(&vfs, "/mnt").unwrap()).unwrap();
        assert!(get(&vfs, "/mnt/lower").is_ok());
        vfs.unmount(&get(&vfs, "/mnt").unwrap()).unwrap();
        assert!(get(&vfs, "/mnt/under").is_ok());
        assert_eq!(get(&vfs, "/mnt").unwrap().mount, MountId(0));
    }

    /// A tmpfs that counts unmounts and can refuse them.
    struct Counting {
        inner: Arc<TmpFs>,
        unmounts: AtomicUsize,
        fail: bool,
    }

    impl FileSystem for Counting {
        fn root(&self) -> Arc<dyn Inode> {
            self.inner.root()
        }
        fn name(&self) -> &'static str {
            "counting"
        }
        fn statfs(&self) -> StatFs {
            self.inner.statfs()
        }
        fn unmount(&self) -> KResult<()> {
            self.unmounts.fetch_add(1, Ordering::Relaxed);
            if self.fail { Err(Errno::EIO) } else { Ok(()) }
        }
    }

    #[test]
    fn unmount_rules() {
        let (mut vfs, root) = tree();
        let fs = Arc::new(Counting { inner: TmpFs::new(clock), unmounts: AtomicUsize::new(0), fail: false });
        let id = vfs.mount(&get(&vfs, "/mnt").unwrap(), fs.clone(), "dev", false).unwrap();
        let mnt = get(&vfs, "/mnt").unwrap();
        let sub = mkdir(&vfs, &root, "/mnt/sub");
        assert_eq!(vfs.unmount(&root).err(), Some(Errno::EINVAL), "not /");
        assert_eq!(vfs.unmount(&sub).err(), Some(Errno::EINVAL), "not a mount root");
        assert_eq!(vfs.unmount(&get(&vfs, "/etc").unwrap()).err(), Some(Errno::EINVAL));
        let inner = mount_tmpfs(&mut vfs, "/mnt/sub");
        assert_eq!(vfs.unmount(&mnt).err(), Some(Errno::EBUSY));
        assert_eq!(fs.unmounts.load(Ordering::Relaxed), 0);
        vfs.unmount(&vfs.mount_root(inner).unwrap()).unwrap();
        let gone = vfs.unmount(&mnt).unwrap();
        assert_eq!(gone.name(), "counting");
        assert_eq!(fs.unmounts.load(Ordering::Relaxed), 1);
        // The id is dead now, and not given out again.
        assert!(vfs.fs_of(id).is_none());
        assert!(vfs.mount_root(id).is_none());
        assert!(vfs.is_readonly(id));
        assert_eq!(vfs.set_readonly(id, false).err(), Some(Errno::EINVAL));
        assert_eq!(vfs.unmount(&mnt).err(), Some(Errno::EINVAL));
        let again = mount_tmpfs(&mut vfs, "/mnt");
        assert!(again.0 > inner.0);
        // Stale locations still work on the detached file system, `..` stays put.
        assert!(vfs.resolve(&root, &sub, b"..", true).is_ok());
        // A file system that fails to unmount stays mounted.
        let failing =
            Arc::new(Counting { inner: TmpFs::new(clock), unmounts: AtomicUsize::new(0), fail: true });
        let id = vfs.mount(&get(&vfs, "/etc").unwrap(), failing, "bad", false).unwrap();
        assert_eq!(vfs.unmount(&vfs.mount_root(id).unwrap()).err(), Some(Errno::EIO));
        assert_eq!(get(&vfs, "/etc").unwrap().mount, id);
    }

    #[test]
    fn symlinks_are_followed() {
        let (mut vfs, root) = tree();
        let etc = get(&vfs, "/etc").unwrap();
        let passwd = get(&vfs, "/etc/passwd").unwrap();
        symlink(&vfs, "/abs", "/etc");
        symlink(&vfs, "/etc/rel", "passwd");
        symlink(&vfs, "/usr/lib/up", "../../etc/passwd");
        symlink(&vfs, "/dangling", "/nowhere");
        symlink(&vfs, "/slashed", "etc/passwd/");
        symlink(&vfs, "/dirslash", "etc//");
        symlink(&vfs, "/toroot", "/");
        assert_at(get(&vfs, "/abs"), &etc);
        assert_at(get(&vfs, "/abs/passwd"), &passwd);
        assert_at(get(&vfs, "/abs/rel"), &passwd);
        assert_at(get(&vfs, "/usr/lib/up"), &passwd);
        assert_at(get(&vfs, "/dirslash/passwd"), &passwd);
        assert_at(get(&vfs, "/toroot/etc"), &etc);
        assert_at(get(&vfs, "/toroot"), &root);
        // Not following the last one.
        let link = vfs.resolve(&root, &root, b"/abs", false).unwrap();
        assert_eq!(link.inode.metadata().file_type(), FileType::Symlink);
        assert_eq!(
            vfs.resolve(&root, &root, b"/dangling", false).unwrap().inode.readlink().unwrap(),
            b"/nowhere"
        );
        assert_eq!(get(&vfs, "/dangling").err(), Some(Errno::ENOENT));
        // A trailing slash follows it anyway, and wants a directory.
        assert_at(vfs.resolve(&root, &root, b"/abs/", false), &etc);
        assert_eq!(vfs.resolve(&root, &root, b"/etc/rel/", false).err(), Some(Errno::ENOTDIR));
        assert_eq!(get(&vfs, "/slashed").err(), Some(Errno::ENOTDIR));
        assert_eq!(
            vfs.resolve(&root, &root, b"/dirslash", false).unwrap().inode.readlink().unwrap(),
            b"etc//"
        );
        // Absolute targets start at the process root.
        let home = get(&vfs, "/home").unwrap();
        symlink(&vfs, "/home/user/up", "/user");
        assert_at(vfs.resolve(&home, &home, b"/user/up/up/up", true), &get(&vfs, "/home/user").unwrap());
        // Relative targets climb out of mounts.
        mount_tmpfs(&mut vfs, "/mnt");
        symlink(&vfs, "/mnt/etc", "../etc");
        assert_at(get(&vfs, "/mnt/etc/passwd"), &passwd);
    }

    #[test]
    fn symlink_loops() {
        let (vfs, root) = tree();
        symlink(&vfs, "/a", "b");
        symlink(&vfs, "/b", "/a");
        symlink(&vfs, "/self", "./self/x");
        assert_eq!(get(&vfs, "/a").err(), Some(Errno::ELOOP));
        assert_eq!(get(&vfs, "/a/x").err(), Some(Errno::ELOOP));
        assert_eq!(get(&vfs, "/self").err(), Some(Errno::ELOOP));
        assert!(vfs.resolve(&root, &root, b"/a", false).is_ok());
        // A chain of exactly MAX_SYMLINKS links resolves; one more does not.
        symlink(&vfs, "/l0", "/etc/passwd");
        for i in 1..=MAX_SYMLINKS {
            symlink(&vfs, &format!("/l{i}"), &format!("l{}", i - 1));
        }
        assert!(get(&vfs, &format!("/l{}", MAX_SYMLINKS - 1)).is_ok());
        assert_eq!(get(&vfs, &format!("/l{MAX_SYMLINKS}")).err(), Some(Errno::ELOOP));
        // The count is per resolution, not per symlink.
        assert_eq!(get(&vfs, "/l20/../l20").err(), Some(Errno::ENOTDIR));
        symlink(&vfs, "/d0", "/etc");
        for i in 1..=25 {
            symlink(&vfs, &format!("/d{i}"), &format!("d{}", i - 1));
        }
        assert!(get(&vfs, "/d20/passwd").is_ok());
        assert_eq!(get(&vfs, "/d20/../d20/passwd").err(), Some(Errno::ELOOP));
    }

    #[test]
    fn parents_and_final_components() {
        let (mut vfs, root) = tree();
        let etc = get(&vfs, "/etc").unwrap();
        let last = |path: &str| vfs.resolve_last(&root, &etc, path.as_bytes());
        let name = |name: &str, must_be_dir| LastComponent::Name { name: name.into(), must_be_dir };
        let (dir, component) = last("/etc/passwd").unwrap();
        assert!(dir.same(&etc));
        assert_eq!(component, name("passwd", false));
        assert_eq!(last("/etc/new/").unwrap().1, name("new", true));
        assert_eq!(last("/etc/new//").unwrap().1, name("new", true));
        assert!(last("new").unwrap().0.same(&etc));
        assert!(last("../new").unwrap().0.same(&root));
        assert_eq!(last("/").unwrap().1, LastComponent::Root);
        assert!(last("//").unwrap().0.same(&root));
        assert_eq!(last("/etc/.").unwrap().1, LastComponent::Dot);
        assert_eq!(last(".").unwrap().1, LastComponent::Dot);
        assert_eq!(last("/etc/..").unwrap().1, LastComponent::DotDot);
        assert!(last("/etc/..").unwrap().0.same(&etc));
        assert_eq!(last("").err(), Some(Errno::ENOENT));
        assert_eq!(last("/nope/x").err(), Some(Errno::ENOENT));
        assert_eq!(last("/etc/passwd/x").err(), Some(Errno::ENOTDIR));
        assert_eq!(last(&format!("/etc/{}", "n".repeat(256))).err(), Some(Errno::ENAMETOOLONG));
        // The final component is never followed; the ones before are.
        symlink(&vfs, "/abs", "/etc");
        let (dir, component) = last("/abs").unwrap();
        assert!(dir.same(&root));
        assert_eq!(component, name("abs", false));
        let (dir, component) = last("/abs/new").unwrap();
        assert!(dir.same(&etc));
        assert_eq!(component, name("new", false));
        // The simple form.
        let (dir, component) = vfs.resolve_parent(&root, &root, b"etc/passwd").unwrap();
        assert!(dir.same(&etc));
        assert_eq!(component, b"passwd");
        for path in ["/", "/etc/.", "..", "/etc/.."] {
            assert_eq!(vfs.resolve_parent(&root, &root, path.as_bytes()).err(), Some(Errno::EEXIST));
        }
        // Inside a mount.
        let id = mount_tmpfs(&mut vfs, "/mnt");
        let (dir, _) = vfs.resolve_parent(&root, &root, b"/mnt/x").unwrap();
        assert_eq!(dir.mount, id);
        assert!(vfs.is_mount_root(&dir));
    }

    #[test]
    fn paths_of_locations() {
        let (mut vfs, root) = tree();
        assert_eq!(path(&vfs, &root), "/");
        assert_eq!(path(&vfs, &get(&vfs, "/home/user").unwrap()), "/home/user");
        mount_tmpfs(&mut vfs, "/mnt");
        assert_eq!(path(&vfs, &get(&vfs, "/mnt").unwrap()), "/mnt");
        let d = mkdir(&vfs, &root, "/mnt/d");
        mkdir(&vfs, &root, "/mnt/d/e");
        assert_eq!(path(&vfs, &d), "/mnt/d");
        mount_tmpfs(&mut vfs, "/mnt/d/e");
        let f = mkdir(&vfs, &root, "/mnt/d/e/f");
        assert_eq!(path(&vfs, &f), "/mnt/d/e/f");
        // Seen from a chroot.
        let home = get(&vfs, "/home").unwrap();
        let user = get(&vfs, "/home/user").unwrap();
        assert_eq!(vfs.path_of(&home, &user).unwrap(), b"/user");
        assert_eq!(vfs.path_of(&home, &home).unwrap(), b"/");
        assert_eq!(vfs.path_of(&home, &d).err(), Some(Errno::ENOENT), "outside the root");
        // Renamed, then removed.
        let home_dir = home.inode.clone();
        home_dir.rename(b"user", &root.inode, b"moved").unwrap();
        assert_eq!(path(&vfs, &user), "/moved");
        root.inode.rmdir(b"moved").unwrap();
        assert_eq!(vfs.path_of(&root, &user).err(), Some(Errno::ENOENT));
    }

    #[test]
    fn the_mount_list() {
        let (mut vfs, root) = tree();
        let mnt = mount_tmpfs(&mut vfs, "/mnt");
        let usr = vfs.mount(&get(&vfs, "/usr").unwrap(), tmpfs(), "/dev/vda", true).unwrap();
        mkdir(&vfs, &root, "/mnt/sub");
        let sub = mount_tmpfs(&mut vfs, "/mnt/sub");
        let list = vfs.mounts();
        let summary: Vec<_> =
            list.iter().map(|m| (m.id, m.source.as_str(), m.target.as_slice(), m.readonly)).collect();
        assert_eq!(
            summary,
            [
                (MountId(0), "rootfs", &b"/"[..], false),
                (mnt, "tmpfs", b"/mnt", false),
                (usr, "/dev/vda", b"/usr", true),
                (sub, "tmpfs", b"/mnt/sub", false),
            ]
        );
        assert!(list.iter().all(|m| m.fstype == "tmpfs"));
        assert!(vfs.is_readonly(usr));
        vfs.set_readonly(usr, false).unwrap();
        assert!(!vfs.is_readonly(usr));
        vfs.set_readonly(mnt, true).unwrap();
        assert!(vfs.is_readonly(mnt));
        // The file system's own read-only state counts too.
        let fs = vfs.fs_of(MountId(0)).unwrap();
        fs.set_readonly(true).unwrap();
        assert!(vfs.is_readonly(MountId(0)));
        assert!(vfs.mounts()[0].readonly);
        fs.set_readonly(false).unwrap();
        vfs.unmount(&vfs.mount_root(sub).unwrap()).unwrap();
        assert_eq!(vfs.mounts().len(), 3);
    }

    #[test]
    fn root_replaced_keeping_the_old_one() {
        let (mut vfs, old_root) = tree();
        let proc_id = mount_tmpfs(&mut vfs, "/mnt");
        mkdir(&vfs, &old_root, "/newroot");
        let disk_id = mount_tmpfs(&mut vfs, "/newroot");
        mkdir(&vfs, &old_root, "/newroot/initramfs");
        touch(&vfs, &old_root, "/newroot/on-disk");
        let new_root = vfs.mount_root(disk_id).unwrap();
        let put_old = get(&vfs, "/newroot/initramfs").unwrap();
        // Refusals first.
        assert_eq!(vfs.replace_root(&old_root, None).err(), Some(Errno::EBUSY));
        assert_eq!(vfs.replace_root(&put_old, None).err(), Some(Errno::EINVAL));
        let outside = get(&vfs, "/etc").unwrap();
        assert_eq!(vfs.replace_root(&new_root, Some(&outside)).err(), Some(Errno::EINVAL));
        let not_dir = get(&vfs, "/newroot/on-disk").unwrap();
        assert_eq!(vfs.replace_root(&new_root, Some(&not_dir)).err(), Some(Errno::ENOTDIR));

        assert!(vfs.replace_root(&new_root, Some(&put_old)).unwrap().is_empty());
        let root = vfs.root();
        assert!(root.same(&new_root));
        assert!(get(&vfs, "/on-disk").is_ok());
        assert_at(get(&vfs, "/initramfs"), &old_root);
        assert!(get(&vfs, "/initramfs/etc/passwd").is_ok());
        assert_eq!(get(&vfs, "/initramfs/mnt").unwrap().mount, proc_id);
        assert_at(get(&vfs, "/initramfs/.."), &root);
        assert_at(get(&vfs, "/.."), &root);
        assert_eq!(path(&vfs, &get(&vfs, "/initramfs/home/user").unwrap()), "/initramfs/home/user");
        let targets: Vec<_> = vfs.mounts().into_iter().map(|m| (m.id, m.target)).collect();
        assert_eq!(
            targets,
            [
                (disk_id, b"/".to_vec()),
                (MountId(0), b"/initramfs".to_vec()),
                (proc_id, b"/initramfs/mnt".to_vec())
            ]
        );
        // The old root can now be unmounted once its own mounts are.
        assert_eq!(vfs.unmount(&old_root).err(), Some(Errno::EBUSY));
        vfs.unmount(&get(&vfs, "/initramfs/mnt").unwrap()).unwrap();
        vfs.unmount(&old_root).unwrap();
        assert!(get(&vfs, "/initramfs").unwrap().inode.read_dir(2).unwrap().is_none());
    }

    #[test]
    fn root_replaced_dropping_the_old_one() {
        let (mut vfs, old_root) = tree();
        let proc_fs = tmpfs();
        let proc_id = vfs.mount(&get(&vfs, "/mnt").unwrap(), proc_fs.clone(), "proc", false).unwrap();
        // The disk goes on / itself, hiding the initramfs, then becomes the root.
        let disk = tmpfs();
        let disk_id = vfs.mount(&old_root, disk.clone(), "/dev/vda", false).unwrap();
        assert_eq!(vfs.mounts().last().unwrap().target, b"/");
        assert!(get(&vfs, "/etc").is_ok(), "a process root does not see mounts on it");
        let detached = vfs.replace_root(&vfs.mount_root(disk_id).unwrap(), None).unwrap();
        let ids: Vec<_> = detached.iter().map(|fs| fs.root().fs_id()).collect();
        assert_eq!(ids, [proc_fs.root().fs_id(), old_root.inode.fs_id()], "deepest first");
        assert!(same_inode(&*vfs.root().inode, &*disk.root()));
        assert_eq!(get(&vfs, "/etc").err(), Some(Errno::ENOENT));
        assert!(vfs.fs_of(MountId(0)).is_none() && vfs.fs_of(proc_id).is_none());
        let list = vfs.mounts();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].id, &*list[0].target, &*list[0].source), (disk_id, &b"/"[..], "/dev/vda"));
        mkdir(&vfs, &vfs.root(), "/proc");
        let id = mount_tmpfs(&mut vfs, "/proc");
        assert_eq!(path(&vfs, &vfs.mount_root(id).unwrap()), "/proc");
    }
}
