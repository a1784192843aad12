//! File syscalls: descriptors, paths, directories, metadata, pipes, polling, mounts.

use super::User;
use crate::fs::file::{FileKind, OpenFile, Pipe, oflags};
use crate::fs::{self as kfs, lookup_at, lookup_parent_at};
use crate::process::sched;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use umlvm_kcore::abi;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::mount::Location;
use umlvm_kcore::vfs::{FileType, Metadata, NewInode, SetAttr, Timespec};

/// `AT_FDCWD`.
pub const AT_FDCWD: i32 = -100;
/// `AT_SYMLINK_NOFOLLOW`.
pub const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
/// `AT_REMOVEDIR`.
pub const AT_REMOVEDIR: u32 = 0x200;
/// `AT_SYMLINK_FOLLOW`.
const AT_SYMLINK_FOLLOW: u32 = 0x400;
/// `AT_EMPTY_PATH`.
const AT_EMPTY_PATH: u32 = 0x1000;

/// Largest single transfer staged through the kernel at once.
const CHUNK: usize = 64 * 1024;

fn file(fd: i32) -> KResult<Arc<OpenFile>> {
    sched::current().proc.fd_table().lock().get(fd)
}

fn install(f: Arc<OpenFile>, cloexec: bool) -> KResult<u64> {
    let table = sched::current().proc.fd_table();
    let fd = table.lock().install(f, cloexec, 0)?;
    Ok(fd as u64)
}

/// The directory a `*at` call starts from.
fn dir_of(dirfd: i32) -> KResult<Option<Location>> {
    if dirfd == AT_FDCWD {
        return Ok(None);
    }
    let f = file(dirfd)?;
    let loc = f.location.clone().ok_or(Errno::ENOTDIR)?;
    if !loc.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    Ok(Some(loc))
}

fn path_arg(addr: u64) -> KResult<Vec<u8>> {
    let p = User::current()?.cstr(addr)?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(p)
}

fn new_inode(kind: FileType, perm: u32) -> NewInode {
    let me = sched::current();
    let (uid, gid) = {
        let i = me.proc.inner.lock();
        (i.euid, i.egid)
    };
    NewInode { kind, perm: perm & 0o7777 & !kfs::umask(), uid, gid, rdev: 0, time: kfs::clock() }
}

pub fn read(fd: i32, buf: u64, len: u64) -> KResult<u64> {
    let f = file(fd)?;
    let user = User::current()?;
    let mut tmp = vec![0u8; (len as usize).min(CHUNK)];
    let n = f.read(&mut tmp)?;
    user.write(buf, &tmp[..n])?;
    Ok(n as u64)
}

pub fn write(fd: i32, buf: u64, len: u64) -> KResult<u64> {
    let f = file(fd)?;
    let user = User::current()?;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        let data = user.read(buf + done, n)?;
        match f.write(&data) {
            Ok(w) => {
                done += w as u64;
                if w < n {
                    break;
                }
            }
            Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
        }
    }
    Ok(done)
}

pub fn pread(fd: i32, buf: u64, len: u64, off: u64) -> KResult<u64> {
    let f = file(fd)?;
    let mut tmp = vec![0u8; (len as usize).min(CHUNK)];
    let n = f.read_at(off, &mut tmp)?;
    User::current()?.write(buf, &tmp[..n])?;
    Ok(n as u64)
}

pub fn pwrite(fd: i32, buf: u64, len: u64, off: u64) -> KResult<u64> {
    let f = file(fd)?;
    let data = User::current()?.read(buf, (len as usize).min(CHUNK))?;
    Ok(f.write_at(off, &data)? as u64)
}

fn iovecs(iov: u64, count: u64) -> KResult<Vec<(u64, u64)>> {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let mut v = Vec::new();
    for i in 0..count {
        let base = user.read_u64(iov + 16 * i)?;
        let len = user.read_u64(iov + 16 * i + 8)?;
        v.push((base, len));
    }
    Ok(v)
}

pub fn readv(fd: i32, iov: u64, count: u64) -> KResult<u64> {
    let mut total = 0;
    for (base, len) in iovecs(iov, count)? {
        if len == 0 {
            continue;
        }
        let n = read(fd, base, len)?;
        total += n;
        if n < len {
            break;
        }
    }
    Ok(total)
}

pub fn writev(fd: i32, iov: u64, count: u64) -> KResult<u64> {
    let f = file(fd)?;
    let user = User::current()?;
    // Gather first, so one writev is one write (shells rely on this for atomic lines).
    let mut data = Vec::new();
    for (base, len) in iovecs(iov, count)? {
        data.extend_from_slice(&user.read(base, len as usize)?);
    }
    Ok(f.write(&data)? as u64)
}

pub fn openat(dirfd: i32, path: u64, flags: u32, mode: u32) -> KResult<u64> {
    let path = path_arg(path)?;
    let dir = dir_of(dirfd)?;
    let f = open_path(dir.as_ref(), &path, flags, mode)?;
    install(f, flags & oflags::CLOEXEC != 0)
}

/// Opens `path` as `open(2)` does.
pub fn open_path(dir: Option<&Location>, path: &[u8], flags: u32, mode: u32) -> KResult<Arc<OpenFile>> {
    let follow = flags & oflags::NOFOLLOW == 0;
    let loc = match lookup_at(dir, path, follow) {
        Ok(l) => {
            if flags & oflags::CREAT != 0 && flags & oflags::EXCL != 0 {
                return Err(Errno::EEXIST);
            }
            l
        }
        Err(Errno::ENOENT) if flags & oflags::CREAT != 0 => {
            let (parent, name) = lookup_parent_at(dir, path)?;
            kfs::check_writable(&parent)?;
            let inode = parent.inode.create(&name, &new_inode(FileType::Regular, mode))?;
            Location { mount: parent.mount, inode }
        }
        Err(e) => return Err(e),
    };
    let md = loc.inode.metadata();
    let kind = md.file_type();
    if flags & oflags::PATH != 0 {
        return Ok(OpenFile::new(FileKind::Inode(loc.inode.clone()), flags, Some(loc)));
    }
    if flags & oflags::DIRECTORY != 0 && kind != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let writing = matches!(flags & oflags::ACCMODE, oflags::WRONLY | oflags::RDWR);
    match kind {
        FileType::Directory if writing => return Err(Errno::EISDIR),
        FileType::Symlink => return Err(Errno::ELOOP),
        FileType::CharDevice | FileType::BlockDevice => {
            let dev = crate::fs::file::open_device(kind, md.rdev)?;
            if let FileKind::Tty(t) = dev {
                maybe_acquire_ctty(t, flags);
            }
            return Ok(OpenFile::new(dev, flags, Some(loc)));
        }
        FileType::Fifo => return crate::fs::fifo::open(&loc, flags),
        FileType::Socket => return Err(Errno::ENXIO),
        _ => {}
    }
    if writing {
        kfs::check_writable(&loc)?;
    }
    if flags & oflags::TRUNC != 0 && writing && kind == FileType::Regular {
        loc.inode.setattr(&SetAttr { size: Some(0), ..SetAttr::default() })?;
    }
    Ok(OpenFile::new(
        FileKind::Inode(loc.inode.clone()),
        flags & !(oflags::CREAT | oflags::EXCL | oflags::TRUNC),
        Some(loc),
    ))
}

/// A session leader without a controlling terminal acquires the first one it opens.
fn maybe_acquire_ctty(t: usize, flags: u32) {
    if flags & oflags::NOCTTY != 0 {
        return;
    }
    let me = sched::current();
    let (leader, has, sid, pgid) = {
        let i = me.proc.inner.lock();
        (i.sid == me.pid, i.ctty.is_some(), i.sid, i.pgid)
    };
    if leader && !has {
        crate::tty::set_controlling(t, sid, pgid);
        me.proc.inner.lock().ctty = Some(t);
    }
}

pub fn close(fd: i32) -> KResult<u64> {
    let table = sched::current().proc.fd_table();
    let f = table.lock().close(fd)?;
    drop(f);
    Ok(0)
}

pub fn dup(fd: i32) -> KResult<u64> {
    let table = sched::current().proc.fd_table();
    let mut t = table.lock();
    let f = t.get(fd)?;
    Ok(t.install(f, false, 0)? as u64)
}

pub fn dup3(old: i32, new: i32, flags: u32, dup2: bool) -> KResult<u64> {
    let table = sched::current().proc.fd_table();
    let mut t = table.lock();
    let f = t.get(old)?;
    if old == new {
        return if dup2 { Ok(new as u64) } else { Err(Errno::EINVAL) };
    }
    let prev = t.get(new).ok();
    t.install_at(new, f, flags & oflags::CLOEXEC != 0)?;
    drop(t);
    drop(prev);
    Ok(new as u64)
}

pub fn fcntl(fd: i32, cmd: u32, arg: u64) -> KResult<u64> {
    const F_DUPFD: u32 = 0;
    const F_GETFD: u32 = 1;
    const F_SETFD: u32 = 2;
    const F_GETFL: u32 = 3;
    const F_SETFL: u32 = 4;
    const F_GETLK: u32 = 5;
    const F_SETLK: u32 = 6;
    const F_SETLKW: u32 = 7;
    const F_DUPFD_CLOEXEC: u32 = 1030;
    let table = sched::current().proc.fd_table();
    let mut t = table.lock();
    match cmd {
        F_DUPFD | F_DUPFD_CLOEXEC => {
            let f = t.get(fd)?;
            Ok(t.install(f, cmd == F_DUPFD_CLOEXEC, arg as usize)? as u64)
        }
        F_GETFD => Ok(u64::from(t.slot_mut(fd)?.cloexec)),
        F_SETFD => {
            t.slot_mut(fd)?.cloexec = arg & 1 != 0;
            Ok(0)
        }
        F_GETFL => Ok(u64::from(t.get(fd)?.flags() & !oflags::CLOEXEC)),
        F_SETFL => {
            let f = t.get(fd)?;
            let keep = f.flags() & !(oflags::APPEND | oflags::NONBLOCK);
            f.flags.store(
                keep | (arg as u32 & (oflags::APPEND | oflags::NONBLOCK)),
                core::sync::atomic::Ordering::Relaxed,
            );
            Ok(0)
        }
        F_GETLK => {
            t.get(fd)?;
            drop(t);
            // No locks are ever held by anyone else: report F_UNLCK (2) in l_type.
            User::current()?.write(arg, &2u16.to_le_bytes())?;
            Ok(0)
        }
        F_SETLK | F_SETLKW => t.get(fd).map(|_| 0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn lseek(fd: i32, off: i64, whence: u32) -> KResult<u64> {
    file(fd)?.seek(off, whence)
}

pub fn ioctl(fd: i32, cmd: u64, arg: u64) -> KResult<u64> {
    let f = file(fd)?;
    match &f.kind {
        FileKind::Tty(t) => crate::tty::ioctl(*t, &f, cmd, arg),
        FileKind::PipeRead(p) if cmd == 0x541b => {
            User::current()?.write_i32(arg, p.available() as i32)?;
            Ok(0)
        }
        FileKind::Block(b) => crate::dev::block::ioctl(*b, cmd, arg),
        _ if cmd == 0x5421 => {
            let on = User::current()?.read_i32(arg)? != 0;
            let fl = f.flags();
            f.flags.store(
                if on { fl | oflags::NONBLOCK } else { fl & !oflags::NONBLOCK },
                core::sync::atomic::Ordering::Relaxed,
            );
            Ok(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

fn dev_of(loc: &Location) -> u64 {
    // A distinct st_dev per mount (anonymous device numbers 0:N).
    umlvm_kcore::vfs::makedev(0, loc.mount.0 as u32 + 1)
}

fn stat_loc(loc: &Location, addr: u64) -> KResult<u64> {
    let md = loc.inode.metadata();
    User::current()?.write(addr, &abi::encode_stat(&md, dev_of(loc)))?;
    Ok(0)
}

fn stat_file(f: &OpenFile) -> (Metadata, u64) {
    match (&f.kind, &f.location) {
        (_, Some(loc)) => (loc.inode.metadata(), dev_of(loc)),
        (FileKind::PipeRead(_) | FileKind::PipeWrite(_), None) => {
            let md = Metadata {
                ino: f as *const OpenFile as u64 & 0xffff_ffff,
                mode: 0o010600,
                nlink: 1,
                blksize: 4096,
                ..Metadata::default()
            };
            (md, umlvm_kcore::vfs::makedev(0, 12))
        }
        _ => (Metadata { mode: 0o020620, nlink: 1, blksize: 1024, ..Metadata::default() }, 0),
    }
}

pub fn fstat(fd: i32, addr: u64) -> KResult<u64> {
    let f = file(fd)?;
    let (md, dev) = stat_file(&f);
    User::current()?.write(addr, &abi::encode_stat(&md, dev))?;
    Ok(0)
}

pub fn fstatat(dirfd: i32, path: u64, addr: u64, flags: u32) -> KResult<u64> {
    let p = User::current()?.cstr(path)?;
    if p.is_empty() {
        if flags & AT_EMPTY_PATH != 0 {
            return fstat(dirfd, addr);
        }
        return Err(Errno::ENOENT);
    }
    let dir = dir_of(dirfd)?;
    let loc = lookup_at(dir.as_ref(), &p, flags & AT_SYMLINK_NOFOLLOW == 0)?;
    stat_loc(&loc, addr)
}

pub fn statx(dirfd: i32, path: u64, flags: u32, mask: u32, addr: u64) -> KResult<u64> {
    let p = User::current()?.cstr(path)?;
    let (md, dev) = if p.is_empty() && flags & AT_EMPTY_PATH != 0 {
        stat_file(&*file(dirfd)?)
    } else {
        let dir = dir_of(dirfd)?;
        let loc = lookup_at(dir.as_ref(), &p, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        (loc.inode.metadata(), dev_of(&loc))
    };
    User::current()?.write(addr, &abi::encode_statx(&md, dev, mask, 1)?)?;
    Ok(0)
}

pub fn faccessat(dirfd: i32, path: u64, mode: u32) -> KResult<u64> {
    let p = path_arg(path)?;
    let dir = dir_of(dirfd)?;
    let loc = lookup_at(dir.as_ref(), &p, true)?;
    let md = loc.inode.metadata();
    if mode & 2 != 0 && kfs::readonly(&loc) {
        return Err(Errno::EROFS);
    }
    // Root may do anything, but executing needs some x bit (as Linux).
    if mode & 1 != 0 && md.file_type() != FileType::Directory && md.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    Ok(0)
}

pub fn getdents64(fd: i32, buf: u64, len: u64) -> KResult<u64> {
    let f = file(fd)?;
    let inode = f.inode().ok_or(Errno::ENOTDIR)?.clone();
    if inode.metadata().file_type() != FileType::Directory {
        return Err(Errno::ENOTDIR);
    }
    let mut out = Vec::new();
    let mut off = f.offset.lock();
    let mut cursor = *off;
    while let Some((entry, next)) = inode.read_dir(cursor)? {
        let d = abi::Dirent64 {
            ino: entry.ino,
            off: next as i64,
            kind: entry.kind.dirent_type(),
            name: &entry.name,
        };
        let mut rec = vec![0u8; d.reclen()];
        d.encode(&mut rec);
        if out.len() + rec.len() > len as usize {
            if out.is_empty() {
                return Err(Errno::EINVAL);
            }
            break;
        }
        out.extend_from_slice(&rec);
        cursor = next;
    }
    *off = cursor;
    drop(off);
    User::current()?.write(buf, &out)?;
    Ok(out.len() as u64)
}

pub fn getcwd(buf: u64, size: u64) -> KResult<u64> {
    let me = sched::current();
    let cwd = me.proc.fs_context().lock().cwd.clone();
    let cwd = match cwd {
        Some(c) => c,
        None => kfs::with_vfs(|v| v.root()),
    };
    let mut path = kfs::path_of(&cwd)?;
    path.push(0);
    if path.len() as u64 > size {
        return Err(Errno::ERANGE);
    }
    User::current()?.write(buf, &path)?;
    Ok(path.len() as u64)
}

pub fn chdir(path: u64) -> KResult<u64> {
    let p = path_arg(path)?;
    let loc = lookup_at(None, &p, true)?;
    if !loc.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    sched::current().proc.fs_context().lock().cwd = Some(loc);
    Ok(0)
}

pub fn fchdir(fd: i32) -> KResult<u64> {
    let loc = file(fd)?.location.clone().ok_or(Errno::ENOTDIR)?;
    if !loc.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    sched::current().proc.fs_context().lock().cwd = Some(loc);
    Ok(0)
}

pub fn chroot(path: u64) -> KResult<u64> {
    let p = path_arg(path)?;
    let loc = lookup_at(None, &p, true)?;
    if !loc.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    sched::current().proc.fs_context().lock().root = Some(loc);
    Ok(0)
}

pub fn mkdirat(dirfd: i32, path: u64, mode: u32) -> KResult<u64> {
    let p = path_arg(path)?;
    let dir = dir_of(dirfd)?;
    let (parent, name) = lookup_parent_at(dir.as_ref(), &p)?;
    kfs::check_writable(&parent)?;
    parent.inode.create(&name, &new_inode(FileType::Directory, mode))?;
    Ok(0)
}

pub fn mknodat(dirfd: i32, path: u64, mode: u32, dev: u64) -> KResult<u64> {
    let p = path_arg(path)?;
    let kind = match mode & umlvm_kcore::vfs::S_IFMT {
        0 => FileType::Regular,
        _ => FileType::from_mode(mode).ok_or(Errno::EINVAL)?,
    };
    if kind == FileType::Directory || kind == FileType::Symlink {
        return Err(Errno::EINVAL);
    }
    let dir = dir_of(dirfd)?;
    let (parent, name) = lookup_parent_at(dir.as_ref(), &p)?;
    kfs::check_writable(&parent)?;
    let mut new = new_inode(kind, mode);
    new.rdev = umlvm_kcore::vfs::makedev(
        ((dev >> 8) & 0xfff) as u32 | ((dev >> 32) as u32 & !0xfff),
        (dev & 0xff) as u32 | ((dev >> 12) as u32 & !0xff),
    );
    parent.inode.create(&name, &new)?;
    Ok(0)
}

pub fn unlinkat(dirfd: i32, path: u64, flags: u32) -> KResult<u64> {
    let p = path_arg(path)?;
    let dir = dir_of(dirfd)?;
    let (parent, name) = lookup_parent_at(dir.as_ref(), &p)?;
    kfs::check_writable(&parent)?;
    if flags & AT_REMOVEDIR != 0 {
        if let Ok(inode) = parent.inode.lookup(&name) {
            let child = Location { mount: parent.mount, inode };
            if kfs::with_vfs(|v| v.is_mount_point(&child)) {
                return Err(Errno::EBUSY);
            }
        }
        parent.inode.rmdir(&name)?;
    } else {
        parent.inode.unlink(&name)?;
    }
    Ok(0)
}

pub fn renameat(olddir: i32, old: u64, newdir: i32, new: u64, flags: u32) -> KResult<u64> {
    const RENAME_NOREPLACE: u32 = 1;
    let (o, n) = (path_arg(old)?, path_arg(new)?);
    let (od, nd) = (dir_of(olddir)?, dir_of(newdir)?);
    let (op, oname) = lookup_parent_at(od.as_ref(), &o)?;
    let (np, nname) = lookup_parent_at(nd.as_ref(), &n)?;
    kfs::check_writable(&np)?;
    if op.mount != np.mount {
        return Err(Errno::EXDEV);
    }
    if flags & RENAME_NOREPLACE != 0 && np.inode.lookup(&nname).is_ok() {
        return Err(Errno::EEXIST);
    }
    if flags & !RENAME_NOREPLACE != 0 {
        return Err(Errno::EINVAL);
    }
    op.inode.rename(&oname, &np.inode, &nname)?;
    Ok(0)
}

pub fn linkat(olddir: i32, old: u64, newdir: i32, new: u64, flags: u32) -> KResult<u64> {
    let (o, n) = (path_arg(old)?, path_arg(new)?);
    let od = dir_of(olddir)?;
    let target = lookup_at(od.as_ref(), &o, flags & AT_SYMLINK_FOLLOW != 0)?;
    let nd = dir_of(newdir)?;
    let (np, nname) = lookup_parent_at(nd.as_ref(), &n)?;
    kfs::check_writable(&np)?;
    if np.mount != target.mount {
        return Err(Errno::EXDEV);
    }
    np.inode.link(&nname, &target.inode)?;
    Ok(0)
}

pub fn symlinkat(target: u64, newdir: i32, new: u64) -> KResult<u64> {
    let t = User::current()?.cstr(target)?;
    if t.is_empty() {
        return Err(Errno::ENOENT);
    }
    let n = path_arg(new)?;
    let nd = dir_of(newdir)?;
    let (np, nname) = lookup_parent_at(nd.as_ref(), &n)?;
    kfs::check_writable(&np)?;
    np.inode.symlink(&nname, &t, &new_inode(FileType::Symlink, 0o777))?;
    Ok(0)
}

pub fn readlinkat(dirfd: i32, path: u64, buf: u64, size: u64) -> KResult<u64> {
    let p = path_arg(path)?;
    if size == 0 || size > i32::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    let dir = dir_of(dirfd)?;
    let loc = lookup_at(dir.as_ref(), &p, false)?;
    let target = loc.inode.readlink()?;
    let n = target.len().min(size as usize);
    User::current()?.write(buf, &target[..n])?;
    Ok(n as u64)
}

fn setattr_at(dirfd: i32, path: u64, follow: bool, attr: SetAttr) -> KResult<u64> {
    let p = path_arg(path)?;
    let dir = dir_of(dirfd)?;
    let loc = lookup_at(dir.as_ref(), &p, follow)?;
    kfs::check_writable(&loc)?;
    loc.inode.setattr(&attr)?;
    Ok(0)
}

fn setattr_fd(fd: i32, attr: SetAttr) -> KResult<u64> {
    let f = file(fd)?;
    let loc = f.location.clone().ok_or(Errno::EINVAL)?;
    kfs::check_writable(&loc)?;
    loc.inode.setattr(&attr)?;
    Ok(0)
}

pub fn fchmodat(dirfd: i32, path: u64, mode: u32) -> KResult<u64> {
    setattr_at(dirfd, path, true, SetAttr { perm: Some(mode & 0o7777), ..SetAttr::default() })
}

pub fn fchmod(fd: i32, mode: u32) -> KResult<u64> {
    setattr_fd(fd, SetAttr { perm: Some(mode & 0o7777), ..SetAttr::default() })
}

fn owner(uid: u32, gid: u32) -> SetAttr {
    SetAttr {
        uid: (uid != u32::MAX).then_some(uid),
        gid: (gid != u32::MAX).then_some(gid),
        ..SetAttr::default()
    }
}

pub fn fchownat(dirfd: i32, path: u64, uid: u32, gid: u32, flags: u32) -> KResult<u64> {
    let p = User::current()?.cstr(path)?;
    if p.is_empty() && flags & AT_EMPTY_PATH != 0 {
        return setattr_fd(dirfd, owner(uid, gid));
    }
    setattr_at(dirfd, path, flags & AT_SYMLINK_NOFOLLOW == 0, owner(uid, gid))
}

pub fn fchown(fd: i32, uid: u32, gid: u32) -> KResult<u64> {
    setattr_fd(fd, owner(uid, gid))
}

pub fn truncate(path: u64, len: u64) -> KResult<u64> {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    setattr_at(AT_FDCWD, path, true, SetAttr { size: Some(len), ..SetAttr::default() })
}

pub fn ftruncate(fd: i32, len: u64) -> KResult<u64> {
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let f = file(fd)?;
    if !f.can_write() {
        return Err(Errno::EINVAL);
    }
    setattr_fd(fd, SetAttr { size: Some(len), ..SetAttr::default() })
}

fn times_from(user: &User, addr: u64) -> KResult<(Option<Timespec>, Option<Timespec>)> {
    const UTIME_NOW: u64 = (1 << 30) - 1;
    const UTIME_OMIT: u64 = (1 << 30) - 2;
    if addr == 0 {
        let now = kfs::clock();
        return Ok((Some(now), Some(now)));
    }
    let mut out = [None, None];
    for (i, slot) in out.iter_mut().enumerate() {
        let sec = user.read_u64(addr + 16 * i as u64)?;
        let nsec = user.read_u64(addr + 16 * i as u64 + 8)?;
        *slot = match nsec {
            UTIME_NOW => Some(kfs::clock()),
            UTIME_OMIT => None,
            n if n < 1_000_000_000 => Some(Timespec { sec: sec as i64, nsec: n as u32 }),
            _ => return Err(Errno::EINVAL),
        };
    }
    Ok((out[0], out[1]))
}

pub fn utimensat(dirfd: i32, path: u64, times: u64, flags: u32) -> KResult<u64> {
    let user = User::current()?;
    let (atime, mtime) = times_from(&user, times)?;
    let attr = SetAttr { atime, mtime, ..SetAttr::default() };
    if path == 0 {
        return setattr_fd(dirfd, attr);
    }
    setattr_at(dirfd, path, flags & AT_SYMLINK_NOFOLLOW == 0, attr)
}

/// `utime` (132: struct utimbuf of two longs) and `utimes` (235: two timevals).
pub fn utimes_compat(nr: u64, path: u64, times: u64) -> KResult<u64> {
    let user = User::current()?;
    let attr = if times == 0 {
        let now = kfs::clock();
        SetAttr { atime: Some(now), mtime: Some(now), ..SetAttr::default() }
    } else if nr == 132 {
        let a = user.read_u64(times)? as i64;
        let m = user.read_u64(times + 8)? as i64;
        SetAttr {
            atime: Some(Timespec { sec: a, nsec: 0 }),
            mtime: Some(Timespec { sec: m, nsec: 0 }),
            ..SetAttr::default()
        }
    } else {
        let t = |i: u64| -> KResult<Timespec> {
            let sec = user.read_u64(times + 16 * i)? as i64;
            let usec = user.read_u64(times + 16 * i + 8)?;
            Ok(Timespec { sec, nsec: (usec.min(999_999) * 1000) as u32 })
        };
        SetAttr { atime: Some(t(0)?), mtime: Some(t(1)?), ..SetAttr::default() }
    };
    setattr_at(AT_FDCWD, path, true, attr)
}

pub fn fsync(fd: i32) -> KResult<u64> {
    let f = file(fd)?;
    if let Some(i) = f.inode() {
        i.sync()?;
    }
    if let FileKind::Block(b) = &f.kind {
        crate::dev::block::flush_index(*b)?;
    }
    Ok(0)
}

pub fn sync() -> KResult<u64> {
    crate::init::sync_all();
    Ok(0)
}

pub fn pipe2(addr: u64, flags: u32) -> KResult<u64> {
    if flags & !(oflags::CLOEXEC | oflags::NONBLOCK | 0o40000) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = Pipe::new();
    let nb = flags & oflags::NONBLOCK;
    let r = OpenFile::new(FileKind::PipeRead(p.clone()), nb, None);
    let w = OpenFile::new(FileKind::PipeWrite(p), oflags::WRONLY | nb, None);
    let cloexec = flags & oflags::CLOEXEC != 0;
    let table = sched::current().proc.fd_table();
    let (rfd, wfd) = {
        let mut t = table.lock();
        let rfd = t.install(r, cloexec, 0)?;
        match t.install(w, cloexec, 0) {
            Ok(wfd) => (rfd, wfd),
            Err(e) => {
                let _ = t.close(rfd);
                return Err(e);
            }
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&rfd.to_le_bytes());
    b[4..].copy_from_slice(&wfd.to_le_bytes());
    if let Err(e) = User::current()?.write(addr, &b) {
        let mut t = table.lock();
        let _ = t.close(rfd);
        let _ = t.close(wfd);
        return Err(e);
    }
    Ok(0)
}

pub fn sendfile(out_fd: i32, in_fd: i32, offp: u64, count: u64) -> KResult<u64> {
    let (inf, outf) = (file(in_fd)?, file(out_fd)?);
    // As on Linux, the source must be a file with pages (a regular file or a block device);
    // terminals and pipes get EINVAL, and callers fall back to read/write.
    let seekable = match &inf.kind {
        FileKind::Inode(i) => i.metadata().file_type() == FileType::Regular,
        FileKind::Block(_) => true,
        _ => false,
    };
    if !seekable {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let mut off = if offp != 0 { Some(user.read_u64(offp)?) } else { None };
    let mut done = 0u64;
    let mut buf = vec![0u8; CHUNK];
    while done < count {
        let want = ((count - done) as usize).min(CHUNK);
        let n = match off {
            Some(o) => inf.read_at(o, &mut buf[..want])?,
            None => inf.read(&mut buf[..want])?,
        };
        if n == 0 {
            break;
        }
        let w = outf.write(&buf[..n])?;
        done += w as u64;
        if let Some(o) = off.as_mut() {
            *o += w as u64;
        }
        if w < n {
            break;
        }
    }
    if let Some(o) = off {
        user.write_u64(offp, o)?;
    }
    Ok(done)
}

// ---- poll / select ----

const POLLIN: u16 = 1;
const POLLPRI: u16 = 2;
const POLLOUT: u16 = 4;
const POLLERR: u16 = 8;
const POLLHUP: u16 = 16;
const POLLNVAL: u16 = 32;

/// Polls `fds` (fd, requested events) until one is ready or the deadline passes; returns the
/// revents for each.
fn poll_fds(fds: &[(i32, u16)], deadline: Option<u64>) -> KResult<Vec<u16>> {
    let table = sched::current().proc.fd_table();
    let files: Vec<Option<Arc<OpenFile>>> =
        fds.iter().map(|&(fd, _)| if fd < 0 { None } else { table.lock().get(fd).ok() }).collect();
    let check = || -> Vec<u16> {
        fds.iter()
            .zip(&files)
            .map(|(&(fd, ev), f)| match f {
                None if fd < 0 => 0,
                None => POLLNVAL,
                Some(f) => {
                    let r = f.ready();
                    let mut out = 0;
                    if r.read && ev & (POLLIN | POLLPRI) != 0 {
                        out |= ev & POLLIN;
                    }
                    if r.write && ev & POLLOUT != 0 {
                        out |= POLLOUT;
                    }
                    if r.hangup {
                        out |= if matches!(f.kind, FileKind::PipeWrite(_)) { POLLERR } else { POLLHUP };
                    }
                    out
                }
            })
            .collect()
    };
    // Pollers sleep on one shared channel that every wakeup also pokes (`sched::wake_all`).
    let r = sched::wait_event(crate::fs::poll::POLL_CHAN, true, deadline, || {
        let rev = check();
        rev.iter().any(|&r| r != 0).then_some(rev)
    });
    match r {
        Ok(rev) => Ok(rev),
        Err(sched::Interrupted::Timeout) => Ok(check()),
        Err(sched::Interrupted::Signal) => Err(Errno::EINTR),
    }
}

fn deadline_ms(timeout: i64) -> Option<u64> {
    (timeout >= 0).then(|| crate::time::now_ns() + timeout as u64 * 1_000_000)
}

fn deadline_ts(user: &User, addr: u64) -> KResult<Option<u64>> {
    if addr == 0 {
        return Ok(None);
    }
    let sec = user.read_u64(addr)?;
    let nsec = user.read_u64(addr + 8)?;
    if nsec >= 1_000_000_000 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(crate::time::now_ns().saturating_add(sec.saturating_mul(1_000_000_000)).saturating_add(nsec)))
}

fn do_poll(fds_addr: u64, n: u64, deadline: Option<u64>) -> KResult<u64> {
    if n > 4096 {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let raw = user.read(fds_addr, 8 * n as usize)?;
    let fds: Vec<(i32, u16)> = raw
        .chunks(8)
        .map(|c| {
            (
                i32::from_le_bytes(c[0..4].try_into().expect("4")),
                u16::from_le_bytes(c[4..6].try_into().expect("2")),
            )
        })
        .collect();
    let rev = poll_fds(&fds, deadline)?;
    let mut out = raw;
    for (i, r) in rev.iter().enumerate() {
        out[8 * i + 6..8 * i + 8].copy_from_slice(&r.to_le_bytes());
    }
    user.write(fds_addr, &out)?;
    Ok(rev.iter().filter(|&&r| r != 0).count() as u64)
}

pub fn poll(fds: u64, n: u64, timeout: i64) -> KResult<u64> {
    do_poll(fds, n, deadline_ms(timeout))
}

pub fn ppoll(fds: u64, n: u64, ts: u64, mask: u64) -> KResult<u64> {
    let user = User::current()?;
    let deadline = deadline_ts(&user, ts)?;
    let old = if mask != 0 { Some(crate::process::signal::swap_mask_from_user(&user, mask)?) } else { None };
    let r = do_poll(fds, n, deadline);
    if let Some(old) = old {
        crate::process::signal::restore_mask_after(old, r.is_err());
    }
    r
}

pub fn select(nfds: i32, r: u64, w: u64, e: u64, timeout: u64, pselect: bool) -> KResult<u64> {
    if !(0..=1024).contains(&nfds) {
        return Err(Errno::EINVAL);
    }
    let user = User::current()?;
    let bytes = (nfds as usize).div_ceil(64) * 8;
    let read_set =
        |a: u64| -> KResult<Vec<u8>> { if a == 0 { Ok(vec![0; bytes]) } else { user.read(a, bytes) } };
    let (rs, ws, es) = (read_set(r)?, read_set(w)?, read_set(e)?);
    let bit = |s: &[u8], i: usize| s[i / 8] & (1 << (i % 8)) != 0;
    let mut fds = Vec::new();
    for i in 0..nfds as usize {
        let mut ev = 0;
        if bit(&rs, i) {
            ev |= POLLIN;
        }
        if bit(&ws, i) {
            ev |= POLLOUT;
        }
        if bit(&es, i) {
            ev |= POLLPRI;
        }
        if ev != 0 {
            fds.push((i as i32, ev));
        }
    }
    let deadline = if timeout == 0 {
        None
    } else if pselect {
        deadline_ts(&user, timeout)?
    } else {
        let sec = user.read_u64(timeout)?;
        let usec = user.read_u64(timeout + 8)?;
        Some(crate::time::now_ns() + sec * 1_000_000_000 + usec * 1000)
    };
    let rev = poll_fds(&fds, deadline)?;
    if rev.iter().any(|&r| r & POLLNVAL != 0) {
        return Err(Errno::EBADF);
    }
    let (mut ro, mut wo, mut eo) = (vec![0u8; bytes], vec![0u8; bytes], vec![0u8; bytes]);
    let mut count = 0;
    for (&(fd, ev), &r) in fds.iter().zip(&rev) {
        let i = fd as usize;
        if ev & POLLIN != 0 && r & (POLLIN | POLLHUP | POLLERR) != 0 {
            ro[i / 8] |= 1 << (i % 8);
            count += 1;
        }
        if ev & POLLOUT != 0 && r & (POLLOUT | POLLERR) != 0 {
            wo[i / 8] |= 1 << (i % 8);
            count += 1;
        }
        if ev & POLLPRI != 0 && r & POLLPRI != 0 {
            eo[i / 8] |= 1 << (i % 8);
            count += 1;
        }
    }
    for (a, s) in [(r, &ro), (w, &wo), (e, &eo)] {
        if a != 0 {
            user.write(a, s)?;
        }
    }
    Ok(count)
}

// ---- statfs, mount ----

fn statfs_of(loc: &Location, addr: u64) -> KResult<u64> {
    let fs = kfs::with_vfs(|v| v.fs_of(loc.mount)).ok_or(Errno::ENOENT)?;
    let flags = if kfs::readonly(loc) { 1 } else { 0 };
    User::current()?.write(addr, &abi::encode_statfs(&fs.statfs(), loc.mount.0 as u64, flags))?;
    Ok(0)
}

pub fn statfs(path: u64, addr: u64) -> KResult<u64> {
    let p = path_arg(path)?;
    let loc = lookup_at(None, &p, true)?;
    statfs_of(&loc, addr)
}

pub fn fstatfs(fd: i32, addr: u64) -> KResult<u64> {
    let loc = file(fd)?.location.clone().ok_or(Errno::ENOSYS)?;
    statfs_of(&loc, addr)
}

pub fn mount(source: u64, target: u64, fstype: u64, flags: u64, _data: u64) -> KResult<u64> {
    const MS_RDONLY: u64 = 1;
    const MS_REMOUNT: u64 = 32;
    let user = User::current()?;
    let t = path_arg(target)?;
    let at = lookup_at(None, &t, true)?;
    if flags & MS_REMOUNT != 0 {
        let ro = flags & MS_RDONLY != 0;
        let fs = kfs::with_vfs(|v| v.fs_of(at.mount)).ok_or(Errno::EINVAL)?;
        if ro {
            fs.sync()?;
        }
        fs.set_readonly(ro)?;
        kfs::with_vfs(|v| v.set_readonly(at.mount, ro))?;
        return Ok(0);
    }
    let ty = if fstype != 0 { user.cstr(fstype)? } else { Vec::new() };
    let src = if source != 0 { user.cstr(source)? } else { Vec::new() };
    crate::fs::mount_fs(&src, &at, &ty, flags & MS_RDONLY != 0)?;
    Ok(0)
}

pub fn umount(target: u64, _flags: u64) -> KResult<u64> {
    let t = path_arg(target)?;
    let at = lookup_at(None, &t, true)?;
    let fs = kfs::with_vfs(|v| v.unmount(&at))?;
    drop(fs);
    Ok(0)
}

/// Reads a whole user buffer into a String-free byte vector (for `sethostname`).
pub fn user_bytes(addr: u64, len: u64) -> KResult<Vec<u8>> {
    if len > 64 {
        return Err(Errno::EINVAL);
    }
    User::current()?.read(addr, len as usize)
}

/// The location of an open file (for /proc/PID/fd).
pub fn describe(f: &OpenFile) -> Vec<u8> {
    match (&f.kind, &f.location) {
        (_, Some(l)) => kfs::path_of(l).unwrap_or_else(|_| b"?".to_vec()),
        (FileKind::PipeRead(p) | FileKind::PipeWrite(p), _) => {
            alloc::format!("pipe:[{}]", (Arc::as_ptr(p) as u64) & 0xffff_ffff).into_bytes()
        }
        (FileKind::Tty(t), _) => {
            alloc::format!("/dev/{}", crate::tty::name(*t).unwrap_or_default()).into_bytes()
        }
        _ => b"anon_inode:[unknown]".to_vec(),
    }
}
