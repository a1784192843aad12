//! `/proc`: process directories (stat, status, cmdline, comm, exe, cwd, fd/, maps, environ)
//! and system files (version, cpuinfo, meminfo, uptime, loadavg, mounts, filesystems,
//! cmdline, stat), generated when read — enough for busybox `ps`, `top`, `free`, `mount`.

use crate::process::sched::{self, Pid, State};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt::Write;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::{
    DirEntry, FileSystem, FileType, Inode, Metadata, NewInode, SetAttr, StatFs, Timespec, next_fs_id,
};

/// The proc file system.
pub struct ProcFs {
    id: u64,
}

impl ProcFs {
    /// A new instance.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { id: next_fs_id() })
    }
}

impl FileSystem for ProcFs {
    fn root(&self) -> Arc<dyn Inode> {
        Arc::new(ProcInode { fs: self.id, node: Node::Root })
    }
    fn name(&self) -> &'static str {
        "proc"
    }
    fn statfs(&self) -> StatFs {
        StatFs { magic: 0x9fa0, block_size: 4096, name_max: 255, ..StatFs::default() }
    }
}

const SYS_FILES: &[&str] =
    &["cmdline", "cpuinfo", "filesystems", "loadavg", "meminfo", "mounts", "stat", "uptime", "version"];
const PID_FILES: &[&str] = &["cmdline", "comm", "environ", "maps", "stat", "statm", "status"];
const PID_LINKS: &[&str] = &["cwd", "exe", "root"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Root,
    SelfLink,
    Sys(usize),
    Pid(Pid),
    PidFile(Pid, usize),
    PidLink(Pid, usize),
    FdDir(Pid),
    Fd(Pid, i32),
}

struct ProcInode {
    fs: u64,
    node: Node,
}

impl ProcInode {
    fn ino(&self) -> u64 {
        match self.node {
            Node::Root => 1,
            Node::SelfLink => 2,
            Node::Sys(i) => 16 + i as u64,
            Node::Pid(p) => (u64::from(p) << 16) | 1,
            Node::PidFile(p, i) => (u64::from(p) << 16) | (16 + i as u64),
            Node::PidLink(p, i) => (u64::from(p) << 16) | (32 + i as u64),
            Node::FdDir(p) => (u64::from(p) << 16) | 2,
            Node::Fd(p, fd) => (u64::from(p) << 16) | (1024 + fd as u64),
        }
    }

    fn kind(&self) -> FileType {
        match self.node {
            Node::Root | Node::Pid(_) | Node::FdDir(_) => FileType::Directory,
            Node::SelfLink | Node::PidLink(..) | Node::Fd(..) => FileType::Symlink,
            _ => FileType::Regular,
        }
    }

    fn child(&self, node: Node) -> Arc<dyn Inode> {
        Arc::new(ProcInode { fs: self.fs, node })
    }

    fn content(&self) -> KResult<Vec<u8>> {
        match self.node {
            Node::Sys(i) => Ok(system_file(SYS_FILES[i]).into_bytes()),
            Node::PidFile(p, i) => pid_file(p, PID_FILES[i]),
            _ => Err(Errno::EISDIR),
        }
    }
}

fn boot_time() -> Timespec {
    let ns = crate::time::unix_ns() - crate::time::now_ns();
    Timespec { sec: (ns / 1_000_000_000) as i64, nsec: 0 }
}

impl Inode for ProcInode {
    fn metadata(&self) -> Metadata {
        let kind = self.kind();
        let perm = match kind {
            FileType::Directory => 0o555,
            FileType::Symlink => 0o777,
            _ => 0o444,
        };
        let t = boot_time();
        Metadata {
            ino: self.ino(),
            mode: kind.mode_bits() | perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            blksize: 1024,
            atime: t,
            mtime: t,
            ctime: t,
            ..Metadata::default()
        }
    }
    fn setattr(&self, _attr: &SetAttr) -> KResult<()> {
        Err(Errno::EPERM)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> KResult<usize> {
        let data = self.content()?;
        if offset >= data.len() as u64 {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - offset as usize);
        buf[..n].copy_from_slice(&data[offset as usize..offset as usize + n]);
        Ok(n)
    }
    fn write_at(&self, _offset: u64, _buf: &[u8]) -> KResult<usize> {
        Err(Errno::EACCES)
    }
    fn lookup(&self, name: &[u8]) -> KResult<Arc<dyn Inode>> {
        match &self.node {
            Node::Root => {
                if name == b"self" {
                    return Ok(self.child(Node::SelfLink));
                }
                if let Some(i) = SYS_FILES.iter().position(|f| f.as_bytes() == name) {
                    return Ok(self.child(Node::Sys(i)));
                }
                let pid = parse_num(name).ok_or(Errno::ENOENT)?;
                live(pid)?;
                Ok(self.child(Node::Pid(pid)))
            }
            Node::Pid(p) => {
                live(*p)?;
                if name == b"fd" {
                    return Ok(self.child(Node::FdDir(*p)));
                }
                if let Some(i) = PID_FILES.iter().position(|f| f.as_bytes() == name) {
                    return Ok(self.child(Node::PidFile(*p, i)));
                }
                if let Some(i) = PID_LINKS.iter().position(|f| f.as_bytes() == name) {
                    return Ok(self.child(Node::PidLink(*p, i)));
                }
                Err(Errno::ENOENT)
            }
            Node::FdDir(p) => {
                let fd = parse_num(name).ok_or(Errno::ENOENT)? as i32;
                let t = live(*p)?;
                t.proc.fd_table().lock().get(fd).map_err(|_| Errno::ENOENT)?;
                Ok(self.child(Node::Fd(*p, fd)))
            }
            _ => Err(Errno::ENOTDIR),
        }
    }
    fn create(&self, _name: &[u8], _new: &NewInode) -> KResult<Arc<dyn Inode>> {
        Err(Errno::EACCES)
    }
    fn symlink(&self, _name: &[u8], _target: &[u8], _new: &NewInode) -> KResult<Arc<dyn Inode>> {
        Err(Errno::EACCES)
    }
    fn link(&self, _name: &[u8], _target: &Arc<dyn Inode>) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn unlink(&self, _name: &[u8]) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn rmdir(&self, _name: &[u8]) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn rename(&self, _old: &[u8], _new_dir: &Arc<dyn Inode>, _new: &[u8]) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn readlink(&self) -> KResult<Vec<u8>> {
        match self.node {
            Node::SelfLink => Ok(format!("{}", sched::current().pid).into_bytes()),
            Node::PidLink(p, i) => {
                let t = live(p)?;
                match PID_LINKS[i] {
                    "exe" => Ok(t.proc.inner.lock().exe.clone()),
                    "cwd" => {
                        let cwd = t.proc.fs_context().lock().cwd.clone();
                        match cwd {
                            Some(c) => crate::fs::path_of(&c),
                            None => Ok(b"/".to_vec()),
                        }
                    }
                    _ => Ok(b"/".to_vec()),
                }
            }
            Node::Fd(p, fd) => {
                let t = live(p)?;
                let f = t.proc.fd_table().lock().get(fd).map_err(|_| Errno::ENOENT)?;
                Ok(crate::syscall::describe_file(&f))
            }
            _ => Err(Errno::EINVAL),
        }
    }
    fn read_dir(&self, cursor: u64) -> KResult<Option<(DirEntry, u64)>> {
        let mut names: Vec<(Vec<u8>, Node)> = Vec::new();
        match &self.node {
            Node::Root => {
                names.push((b"self".to_vec(), Node::SelfLink));
                for (i, f) in SYS_FILES.iter().enumerate() {
                    names.push((f.as_bytes().to_vec(), Node::Sys(i)));
                }
                for t in sched::all_tasks() {
                    if t.pid != 0 {
                        names.push((format!("{}", t.pid).into_bytes(), Node::Pid(t.pid)));
                    }
                }
            }
            Node::Pid(p) => {
                live(*p)?;
                names.push((b"fd".to_vec(), Node::FdDir(*p)));
                for (i, f) in PID_FILES.iter().enumerate() {
                    names.push((f.as_bytes().to_vec(), Node::PidFile(*p, i)));
                }
                for (i, f) in PID_LINKS.iter().enumerate() {
                    names.push((f.as_bytes().to_vec(), Node::PidLink(*p, i)));
                }
            }
            Node::FdDir(p) => {
                let t = live(*p)?;
                for (fd, _) in t.proc.fd_table().lock().open_fds() {
                    names.push((format!("{fd}").into_bytes(), Node::Fd(*p, fd)));
                }
            }
            _ => return Err(Errno::ENOTDIR),
        }
        let dot = |name: &[u8]| DirEntry { ino: self.ino(), kind: FileType::Directory, name: name.to_vec() };
        match cursor {
            0 => return Ok(Some((dot(b"."), 1))),
            1 => return Ok(Some((dot(b".."), 2))),
            _ => {}
        }
        let i = (cursor - 2) as usize;
        Ok(names.into_iter().nth(i).map(|(name, node)| {
            let n = ProcInode { fs: self.fs, node };
            (DirEntry { ino: n.ino(), kind: n.kind(), name }, cursor + 1)
        }))
    }
    fn parent(&self) -> KResult<Arc<dyn Inode>> {
        Ok(match self.node {
            Node::Root | Node::SelfLink | Node::Sys(_) | Node::Pid(_) => self.child(Node::Root),
            Node::PidFile(p, _) | Node::PidLink(p, _) | Node::FdDir(p) => self.child(Node::Pid(p)),
            Node::Fd(p, _) => self.child(Node::FdDir(p)),
        })
    }
    fn fs_id(&self) -> u64 {
        self.fs
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn parse_num(name: &[u8]) -> Option<u32> {
    core::str::from_utf8(name).ok()?.parse().ok()
}

fn live(pid: Pid) -> KResult<Arc<sched::Task>> {
    sched::task(pid).ok_or(Errno::ENOENT)
}

fn ticks_since_boot() -> u64 {
    crate::time::now_ns() / (1_000_000_000 / sched::HZ)
}

fn system_file(name: &str) -> String {
    let mut s = String::new();
    match name {
        "version" => s = crate::sysinfo::proc_version(),
        "cmdline" => {
            s.push_str(crate::init::kernel_cmdline());
            s.push('\n');
        }
        "uptime" => {
            let ns = crate::time::now_ns();
            let idle = crate::process::sched::idle_ns();
            let _ = writeln!(
                s,
                "{}.{:02} {}.{:02}",
                ns / 1_000_000_000,
                ns / 10_000_000 % 100,
                idle / 1_000_000_000,
                idle / 10_000_000 % 100
            );
        }
        "loadavg" => {
            let n = sched::all_tasks().iter().filter(|t| t.state() == State::Runnable && t.pid != 0).count();
            let _ = writeln!(
                s,
                "0.00 0.00 0.00 {n}/{} {}",
                sched::all_tasks().len().saturating_sub(1),
                sched::last_pid()
            );
        }
        "meminfo" => {
            let total = crate::mm::total_bytes() / 1024;
            let free = crate::mm::free_frames() * 4;
            for (k, v) in [
                ("MemTotal", total),
                ("MemFree", free),
                ("MemAvailable", free),
                ("Buffers", 0),
                ("Cached", 0),
                ("SwapCached", 0),
                ("Active", 0),
                ("Inactive", 0),
                ("SwapTotal", 0),
                ("SwapFree", 0),
                ("Shmem", 0),
                ("Slab", 0),
            ] {
                let _ = writeln!(s, "{k}:{:>w$} kB", v, w = 16 - k.len() + 8);
            }
        }
        "cpuinfo" => {
            let _ = writeln!(
                s,
                "processor\t: 0\nvendor_id\t: umlvm\nmodel name\t: umlvm virtual CPU ({} mode)",
                crate::arch::mode::current().name()
            );
            let _ =
                writeln!(s, "cpu MHz\t\t: {}\nflags\t\t: fpu tsc sse sse2\n", crate::time::tsc_khz() / 1000);
        }
        "filesystems" => {
            s.push_str("nodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\n\text2\n");
        }
        "mounts" => {
            for m in crate::fs::with_vfs(|v| v.mounts()) {
                let target = String::from_utf8_lossy(&m.target).into_owned();
                let _ = writeln!(
                    s,
                    "{} {} {} {} 0 0",
                    m.source,
                    target,
                    m.fstype,
                    if m.readonly { "ro" } else { "rw" }
                );
            }
        }
        "stat" => {
            let mut user = 0;
            let mut sys = 0;
            for t in sched::all_tasks() {
                user += t.utime.load(core::sync::atomic::Ordering::Relaxed);
                sys += t.stime.load(core::sync::atomic::Ordering::Relaxed);
            }
            let idle = crate::process::sched::idle_ns() / (1_000_000_000 / sched::HZ);
            let _ = writeln!(s, "cpu  {user} 0 {sys} {idle} 0 0 0 0 0 0");
            let _ = writeln!(s, "cpu0 {user} 0 {sys} {idle} 0 0 0 0 0 0");
            let _ = writeln!(
                s,
                "intr 0\nctxt {}\nbtime {}\nprocesses {}\nprocs_running 1\nprocs_blocked 0",
                sched::switches(),
                boot_time().sec,
                sched::last_pid()
            );
        }
        _ => {}
    }
    let _ = ticks_since_boot;
    s
}

fn pid_file(pid: Pid, name: &str) -> KResult<Vec<u8>> {
    let t = live(pid)?;
    let i = t.proc.inner.lock();
    let comm = String::from_utf8_lossy(&i.comm).into_owned();
    let (vsz, rss) = match t.proc.mm() {
        Some(mm) => {
            let m = mm.lock();
            (m.areas.iter().map(|a| a.end - a.start).sum::<u64>(), m.resident_pages)
        }
        None => (0, 0),
    };
    let state = t.state();
    let out = match name {
        "cmdline" => i.cmdline.clone(),
        "comm" => format!("{comm}\n").into_bytes(),
        "environ" => Vec::new(),
        "stat" => {
            let tty = i.ctty.map_or(0, crate::tty::device_number);
            let start = (i.start_ns / (1_000_000_000 / sched::HZ)) as i64;
            let ut = t.utime.load(core::sync::atomic::Ordering::Relaxed);
            let st = t.stime.load(core::sync::atomic::Ordering::Relaxed);
            let fg = i.ctty.map_or(-1, |c| crate::tty::foreground(c) as i64);
            format!(
                "{pid} ({comm}) {} {} {} {} {tty} {fg} 4194560 0 0 0 0 {ut} {st} {} {} 20 0 1 0 {start} {vsz} {rss} 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
                state.letter(),
                i.ppid,
                i.pgid,
                i.sid,
                i.cutime,
                i.cstime
            )
            .into_bytes()
        }
        "statm" => format!("{} {rss} 0 0 0 0 0\n", vsz / 4096).into_bytes(),
        "status" => {
            let st = match state {
                State::Runnable => "R (running)",
                State::Sleeping => "S (sleeping)",
                State::DiskSleep => "D (disk sleep)",
                State::Stopped => "T (stopped)",
                State::Zombie => "Z (zombie)",
            };
            format!(
                "Name:\t{comm}\nUmask:\t0022\nState:\t{st}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{}\nTracerPid:\t0\nUid:\t{u}\t{e}\t{e}\t{e}\nGid:\t{g}\t{ge}\t{ge}\t{ge}\nFDSize:\t64\nVmSize:\t{} kB\nVmRSS:\t{} kB\nThreads:\t1\nSigPnd:\t{:016x}\nSigBlk:\t{:016x}\n",
                i.ppid,
                vsz / 1024,
                rss * 4,
                i.pending.set().0,
                i.blocked.0,
                u = i.uid,
                e = i.euid,
                g = i.gid,
                ge = i.egid
            )
            .into_bytes()
        }
        "maps" => {
            drop(i);
            let mut s = String::new();
            if let Some(mm) = t.proc.mm() {
                let m = mm.lock();
                for a in m.areas.iter() {
                    let l = a.access.letters();
                    let (off, path) = match &a.backing {
                        crate::mm::vm::Backing::File { offset, .. } => (*offset, ""),
                        crate::mm::vm::Backing::Anon => {
                            (0, if a.end == crate::mm::vm::STACK_TOP { "[stack]" } else { "" })
                        }
                    };
                    let _ = writeln!(
                        s,
                        "{:08x}-{:08x} {}{}{}{} {off:08x} 00:00 0 {path}",
                        a.start,
                        a.end,
                        l[0] as char,
                        l[1] as char,
                        l[2] as char,
                        if a.shared { 's' } else { 'p' }
                    );
                }
            }
            return Ok(s.into_bytes());
        }
        _ => return Err(Errno::ENOENT),
    };
    Ok(out)
}
