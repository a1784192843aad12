//! Starting user space: the root file system (the initramfs unpacked into a tmpfs), `/dev`
//! and `/proc`, the console as init's terminal, and the first process; and the end of it all
//! (init exits, `reboot(2)`).

use crate::fs::file::{FdTable, FileKind, OpenFile, oflags};
use crate::fs::{self, FsContext};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spinning_top::Spinlock;
use umlvm_kcore::cpio;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::mount::Location;
use umlvm_kcore::vfs::tmpfs::TmpFs;
use umlvm_kcore::vfs::{FileSystem, FileType, Inode, NewInode, SetAttr, Timespec};

static CMDLINE: Spinlock<&'static str> = Spinlock::new("");
static QUIET: AtomicBool = AtomicBool::new(false);
static STARTED: AtomicBool = AtomicBool::new(false);
static COMMAND_MODE: AtomicBool = AtomicBool::new(false);

/// Whether the first process is a CI-mode command (not an init: signals reach it normally).
pub fn command_mode() -> bool {
    COMMAND_MODE.load(Ordering::Relaxed)
}

/// Whether init (pid 1) was started.
pub fn started() -> bool {
    STARTED.load(Ordering::Relaxed)
}

/// The kernel command line (/proc/cmdline).
pub fn kernel_cmdline() -> &'static str {
    *CMDLINE.lock()
}

/// Whether `quiet` was given (informational messages are not printed on the console).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Largest unpacked initramfs.
const INITRAMFS_LIMIT: usize = 1 << 30;

/// Unpacks `image` (newc cpio, optionally gzip'd, possibly several archives) into `root`.
fn unpack(root: &Arc<dyn Inode>, image: &[u8]) -> Result<usize, String> {
    let t0 = crate::time::now_ns();
    let data = cpio::unpack_image(image, INITRAMFS_LIMIT).map_err(|e| alloc::format!("{e:?}"))?;
    log::debug!("initramfs: {} bytes decompressed in {} us", data.len(), (crate::time::now_ns() - t0) / 1000);
    let mut links: BTreeMap<(u64, u32), Arc<dyn Inode>> = BTreeMap::new();
    let mut count = 0;
    for entry in cpio::entries(&data) {
        let e = entry.map_err(|e| alloc::format!("{e:?}"))?;
        if e.name.is_empty() {
            continue;
        }
        let (parent, name) = match walk_parent(root, e.name) {
            Ok(p) => p,
            Err(err) => {
                log::warn!("initramfs: {}: {}", String::from_utf8_lossy(e.name), err.name());
                continue;
            }
        };
        let Some(kind) = FileType::from_mode(e.mode) else {
            log::warn!("initramfs: {}: bad mode {:o}", String::from_utf8_lossy(e.name), e.mode);
            continue;
        };
        let time = Timespec { sec: i64::from(e.mtime), nsec: 0 };
        let new = NewInode { kind, perm: e.mode & 0o7777, uid: e.uid, gid: e.gid, rdev: e.rdev, time };
        let result: KResult<()> = (|| {
            match kind {
                FileType::Directory => {
                    if parent.lookup(name).is_err() {
                        parent.create(name, &new)?;
                    }
                }
                FileType::Symlink => {
                    let _ = parent.unlink(name);
                    parent.symlink(name, e.data, &new)?;
                }
                FileType::Regular if e.nlink > 1 => {
                    let key = (e.dev, e.ino);
                    let inode = match links.get(&key) {
                        Some(i) => {
                            parent.link(name, i)?;
                            i.clone()
                        }
                        None => {
                            let _ = parent.unlink(name);
                            let i = parent.create(name, &new)?;
                            links.insert(key, i.clone());
                            i
                        }
                    };
                    if !e.data.is_empty() {
                        write_all(&inode, e.data)?;
                    }
                }
                _ => {
                    let _ = parent.unlink(name);
                    let i = parent.create(name, &new)?;
                    if kind == FileType::Regular {
                        write_all(&i, e.data)?;
                    }
                    i.setattr(&SetAttr { mtime: Some(time), atime: Some(time), ..SetAttr::default() })?;
                }
            }
            Ok(())
        })();
        if let Err(err) = result {
            log::warn!("initramfs: {}: {}", String::from_utf8_lossy(e.name), err.name());
        }
        count += 1;
    }
    Ok(count)
}

fn write_all(inode: &Arc<dyn Inode>, data: &[u8]) -> KResult<()> {
    let mut done = 0;
    while done < data.len() {
        done += inode.write_at(done as u64, &data[done..])?;
    }
    Ok(())
}

/// The directory holding `path` (relative to `root`, all parents existing) and the last name.
fn walk_parent<'a>(root: &Arc<dyn Inode>, path: &'a [u8]) -> KResult<(Arc<dyn Inode>, &'a [u8])> {
    let mut parts: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    let name = parts.pop().ok_or(Errno::EINVAL)?;
    let mut dir = root.clone();
    for p in parts {
        dir = dir.lookup(p)?;
    }
    Ok((dir, name))
}

/// Switches that ask for kernel-only work (self-checks, benchmarks, device tests): with one of
/// them a machine does not start user space from its ubd0 (an initrd or `root=` still does).
const KERNEL_ONLY: &[&str] =
    &["selftest", "blktest", "contest", "bench", "heartbeat", "ticks", "crash", "reboots"];

/// Whether this boot starts user space: an initramfs, `root=`, or a ubd0 when no kernel-only
/// switch was given.
pub fn wants_user_space(info: &umlvm_boot::BootInfo, cmdline: &umlvm_kcore::cmdline::Cmdline<'_>) -> bool {
    if !info.initrd.is_empty() || cmdline.get("root").is_some() {
        return true;
    }
    crate::dev::block::index_of_unit(0).is_some() && !KERNEL_ONLY.iter().any(|k| cmdline.get(k).is_some())
}

/// Sets up the file systems and starts init; returns false if there is nothing to run
/// (no initramfs), in which case the kernel-only boot continues.
pub fn start(info: &umlvm_boot::BootInfo, cmdline: &'static str) -> bool {
    *CMDLINE.lock() = cmdline;
    let words = umlvm_kcore::cmdline::Cmdline::new(cmdline);
    QUIET.store(words.flag("quiet"), Ordering::Relaxed);
    if !wants_user_space(info, &words) {
        return false;
    }
    let image = crate::arch::memory::boot_bytes(info.initrd);
    let explicit_root = words.get("root");
    if !image.is_empty() && explicit_root.is_none() {
        mount_initramfs(image);
    } else if let Some(dev) =
        explicit_root.or_else(|| crate::dev::block::index_of_unit(0).map(|_| "/dev/ubda"))
    {
        mount_disk_root(dev, words.flag("ro"), words.get("rootfstype"));
    } else {
        return false;
    }
    let dev = TmpFs::new(fs::clock);
    if let Err(e) = fs::populate_dev(&dev) {
        log::warn!("devtmpfs: {}", e.name());
    }
    fs::register_dev_fs(&dev);
    if let Err(e) = fs::mount_at(b"/dev", dev, "devtmpfs", false) {
        log::warn!("cannot mount /dev: {}", e.name());
    }
    if let Err(e) = fs::mount_at(b"/proc", crate::fs::procfs::ProcFs::new(), "proc", false) {
        log::warn!("cannot mount /proc: {}", e.name());
    }
    let _ = fs::ensure_dir(b"/tmp", 0o1777);

    let (init_args, init_env) = init_arguments(cmdline);
    let explicit = words.get("init").or(words.get("rdinit"));
    // CI mode: `-- COMMAND ARGS` without init= runs the command itself as the first process.
    let command_mode = explicit.is_none() && cmdline.contains(" -- ") || cmdline.starts_with("-- ");
    let command_mode = command_mode && !init_args.is_empty();
    COMMAND_MODE.store(command_mode, Ordering::Relaxed);
    let command_path;
    let candidates: Vec<&str> = match explicit {
        Some(p) => alloc::vec![p],
        None if command_mode => {
            command_path = String::from_utf8_lossy(&search_path(&init_args[0])).into_owned();
            alloc::vec![command_path.as_str()]
        }
        None => alloc::vec!["/init", "/sbin/init", "/etc/init", "/bin/init", "/bin/sh"],
    };
    let ctx = FsContext::at_root();
    for path in candidates {
        let mut args = alloc::vec![path.as_bytes().to_vec()];
        if command_mode {
            args = init_args.clone();
        } else {
            args.extend(init_args.iter().cloned());
        }
        let (exe, inode, args) = match crate::process::exec::resolve(path.as_bytes().to_vec(), args) {
            Ok(r) => r,
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                log::warn!("cannot run {path}: {}", e.name());
                continue;
            }
        };
        let mut envs = alloc::vec![b"HOME=/".to_vec(), b"TERM=linux".to_vec()];
        if command_mode {
            envs.push(b"PATH=/sbin:/usr/sbin:/bin:/usr/bin:/usr/local/bin".to_vec());
        }
        envs.extend(init_env.iter().cloned());
        let files = match console_fds() {
            Ok(f) => f,
            Err(e) => {
                log::warn!("no console for init: {}", e.name());
                FdTable::new()
            }
        };
        crate::process::sched::reset_pids();
        STARTED.store(true, Ordering::Relaxed);
        match crate::process::spawn_init(&exe, inode, args, envs, ctx.clone(), files) {
            Ok(()) => {
                log::info!("starting {path} as init (pid 1)");
                let console = crate::tty::index_of_unit(false, 0).unwrap_or(0);
                crate::tty::set_controlling(console, 1, 1);
                if words.get("stdio") == Some("pipe") {
                    crate::tty::make_pipe_like(console);
                }
                crate::process::sched::start_clock();
                return true;
            }
            Err(e) => log::warn!("cannot run {path}: {}", e.name()),
        }
    }
    crate::kprintln!(
        "Kernel panic: no working init found (tried init=, /init, /sbin/init, /etc/init, /bin/init, /bin/sh)"
    );
    crate::arch::pv::power_off(crate::EXIT_NO_INIT)
}

/// Words of the kernel command line the kernel does not use go to init, as Linux does:
/// everything after `--`, and before it plain words as arguments and `key=value` words
/// (without a `.` in the key) as environment variables.
fn init_arguments(cmdline: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    /// Keys and flags the kernel itself reads.
    const KERNEL: &[&str] = &[
        "quiet",
        "debug",
        "loglevel",
        "init",
        "rdinit",
        "root",
        "rootfstype",
        "ro",
        "rw",
        "selftest",
        "crash",
        "heartbeat",
        "ticks",
        "hz",
        "reboots",
        "pvm",
        "pvm_flip",
        "blktest",
        "contest",
        "bench",
        "mem",
        "console",
        "initrd",
        "umid",
        "con",
        "ssl",
    ];
    let (head, tail) = match cmdline.strip_prefix("-- ") {
        Some(t) => ("", Some(t)),
        None => match cmdline.split_once(" -- ") {
            Some((h, t)) => (h, Some(t)),
            None => (cmdline.strip_suffix(" --").unwrap_or(cmdline), None),
        },
    };
    let mut args = Vec::new();
    let mut env = Vec::new();
    for w in head.split_ascii_whitespace() {
        let key = w.split('=').next().unwrap_or(w);
        let known = KERNEL.contains(&key)
            || key.starts_with("con")
            || key.starts_with("ssl")
            || key.starts_with("ubd")
            || key.starts_with("eth")
            || key.contains('.');
        if known {
            continue;
        }
        if w.contains('=') {
            env.push(w.as_bytes().to_vec());
        } else {
            args.push(w.as_bytes().to_vec());
        }
    }
    if let Some(t) = tail {
        args.extend(split_quoted(t));
    }
    (args, env)
}

/// Splits on spaces, keeping double-quoted runs together (quotes removed), as Linux parses
/// its command line.
fn split_quoted(s: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut any = false;
    for &b in s.as_bytes() {
        match b {
            b'"' => {
                quoted = !quoted;
                any = true;
            }
            b' ' | b'\t' | b'\n' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(core::mem::take(&mut cur));
                }
                any = false;
            }
            _ => cur.push(b),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Finds `name` in the standard PATH (CI-mode commands).
fn search_path(name: &[u8]) -> Vec<u8> {
    if name.contains(&b'/') {
        return name.to_vec();
    }
    for dir in ["/sbin", "/usr/sbin", "/bin", "/usr/bin", "/usr/local/bin"] {
        let mut p = dir.as_bytes().to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        let root = fs::with_vfs(|v| v.root());
        if fs::with_vfs(|v| v.resolve(&root, &root, &p, true)).is_ok() {
            return p;
        }
    }
    name.to_vec()
}

/// Unpacks the initramfs into a tmpfs that becomes `/`.
fn mount_initramfs(image: &[u8]) {
    let t0 = crate::time::now_ns();
    let rootfs = TmpFs::new(fs::clock);
    let root: Arc<dyn Inode> = rootfs.root();
    match unpack(&root, image) {
        Ok(n) => log::info!(
            "initramfs: {} KiB unpacked, {n} entries, in {} us",
            image.len() / 1024,
            (crate::time::now_ns() - t0) / 1000
        ),
        Err(e) => {
            crate::kprintln!("initramfs: cannot unpack: {e}");
            crate::arch::pv::power_off(crate::EXIT_NO_INIT);
        }
    }
    fs::set_root(rootfs, "rootfs");
}

/// Mounts the ext2 file system on block device `dev` (`/dev/ubda`, `ubd0`, `/dev/ubd/0`) as
/// `/`; powers off with [`crate::EXIT_NO_ROOT`] and a message if that is impossible.
fn mount_disk_root(dev: &str, readonly: bool, fstype: Option<&str>) {
    let fail = |why: &str| -> ! {
        crate::kprintln!("umlvm-kernel: cannot mount the root file system {dev}: {why}");
        crate::console::flush();
        crate::arch::pv::power_off(crate::EXIT_NO_ROOT)
    };
    if let Some(t) = fstype
        && t != "ext2"
        && t != "ext3"
    {
        fail(&alloc::format!("rootfstype={t}: only ext2 is supported"));
    }
    let name = dev.strip_prefix("/dev/").unwrap_or(dev);
    let unit = if let Some(l) =
        name.strip_prefix("ubd").filter(|l| l.len() == 1 && l.as_bytes()[0].is_ascii_lowercase())
    {
        u32::from(l.as_bytes()[0] - b'a')
    } else if let Some(n) =
        name.strip_prefix("ubd/").or(name.strip_prefix("ubd")).and_then(|n| n.parse().ok())
    {
        n
    } else {
        fail("not a ubd device (root=/dev/ubdX or root=ubdN)")
    };
    let Some(index) = crate::dev::block::index_of_unit(unit) else {
        fail("no such device (attach it with ubdN=FILE)")
    };
    let ro = readonly || crate::dev::block::read_only(index);
    let t0 = crate::time::now_ns();
    match umlvm_kcore::ext2::Ext2Fs::mount(Arc::new(fs::UbdBlocks::new(index)), ro, fs::clock) {
        Ok(e2) => {
            let e2: Arc<dyn umlvm_kcore::vfs::FileSystem> = e2;
            fs::register_block_fs(index, &e2);
            log::info!(
                "root: ext2 on {dev} mounted {} in {} us",
                if ro { "read-only" } else { "read-write" },
                (crate::time::now_ns() - t0) / 1000
            );
            fs::set_root(e2, dev);
            if ro {
                let root = fs::with_vfs(|v| v.root());
                let _ = fs::with_vfs(|v| v.set_readonly(root.mount, true));
            }
        }
        Err(e) => fail(&alloc::format!("{e}")),
    }
}

/// fds 0, 1, 2 on the console (tty0), as Linux opens /dev/console for init.
fn console_fds() -> KResult<FdTable> {
    let tty = crate::tty::index_of_unit(false, 0).ok_or(Errno::ENODEV)?;
    let root = fs::with_vfs(|v| v.root());
    let loc: Option<Location> = fs::with_vfs(|v| v.resolve(&root, &root, b"/dev/console", true)).ok();
    let f = OpenFile::new(FileKind::Tty(tty), oflags::RDWR, loc);
    let mut t = FdTable::new();
    for _ in 0..3 {
        t.install(f.clone(), false, 0)?;
    }
    Ok(t)
}

/// Init ended: sync, unmount, and power off with its status (128+N for signal N).
pub fn init_exited(status: i32) -> ! {
    let code = if status & 0x7f == 0 { (status >> 8) & 0xff } else { 128 + (status & 0x7f) };
    if !quiet() {
        log::info!("init exited with status {code}; powering off");
    }
    shutdown_fs();
    crate::console::flush();
    crate::arch::pv::power_off(code as u8)
}

fn shutdown_fs() {
    sync_all();
    let mounts = fs::with_vfs(|v| v.mounts());
    for m in mounts.iter().rev() {
        if let Some(f) = fs::with_vfs(|v| v.fs_of(m.id)) {
            let _ = f.unmount();
        }
    }
    crate::dev::block::sync_all();
}

/// Writes every file system's dirty data.
pub fn sync_all() {
    let mounts = fs::with_vfs(|v| v.mounts());
    for m in mounts {
        if let Some(f) = fs::with_vfs(|v| v.fs_of(m.id)) {
            let _ = f.sync();
        }
    }
    crate::dev::block::sync_all();
}

/// Makes every mounted file system read-only after syncing it (SysRq `u`); returns how many.
pub fn remount_all_readonly() -> usize {
    let mounts = fs::with_vfs(|v| v.mounts());
    let mut n = 0;
    for m in mounts {
        if let Some(f) = fs::with_vfs(|v| v.fs_of(m.id)) {
            let _ = f.sync();
            if f.set_readonly(true).is_ok() {
                let _ = fs::with_vfs(|v| v.set_readonly(m.id, true));
                n += 1;
            }
        }
    }
    n
}

/// `reboot(2)`: restart or power off.
pub fn shutdown(restart: bool, status: u8) -> ! {
    shutdown_fs();
    crate::console::flush();
    if restart {
        crate::kprintln!("reboot: Restarting system");
        crate::console::flush();
        crate::arch::pv::reboot()
    }
    crate::kprintln!("reboot: Power down");
    crate::console::flush();
    crate::arch::pv::power_off(status)
}
