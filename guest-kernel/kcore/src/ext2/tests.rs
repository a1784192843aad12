//! Host tests against images made by `mke2fs` and checked by `e2fsck` and `debugfs`
//! (e2fsprogs is a required test tool).

extern crate std;

use super::*;
use crate::vfs::{DirEntry, FileType, Metadata, NewInode, SetAttr, makedev};
use ::alloc::format;
use ::alloc::string::{String, ToString};
use ::alloc::vec;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicUsize;

/// A block device over a host file.
struct FileDev {
    file: File,
    size: u64,
}

impl BlockDevice for FileDev {
    fn read(&self, offset: u64, buf: &mut [u8]) -> KResult<()> {
        self.file.read_exact_at(buf, offset).map_err(|_| Errno::EIO)
    }
    fn write(&self, offset: u64, buf: &[u8]) -> KResult<()> {
        self.file.write_all_at(buf, offset).map_err(|_| Errno::EIO)
    }
    fn flush(&self) -> KResult<()> {
        self.file.sync_data().map_err(|_| Errno::EIO)
    }
    fn size(&self) -> u64 {
        self.size
    }
}

fn clock() -> Timespec {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    Timespec { sec: d.as_secs() as i64, nsec: d.subsec_nanos() }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("umlvm-ext2-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An e2fsprogs tool, found on `PATH` or in the sbin directories.
fn tool(name: &str) -> PathBuf {
    let mut dirs: std::vec::Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(["/sbin", "/usr/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: e2fsprogs (mke2fs, e2fsck, debugfs) is required by the ext2 tests");
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Makes an image of `size_k` KiB with `mke2fs -q -F` and extra arguments.
fn mkfs(img: &Path, size_k: u64, args: &[&str]) {
    let f = File::create(img).unwrap();
    f.set_len(size_k * 1024).unwrap();
    drop(f);
    let (code, out) = run(Command::new(tool("mke2fs")).args(["-q", "-F"]).args(args).arg(img));
    assert_eq!(code, 0, "mke2fs {args:?} failed: {out}");
}

/// `e2fsck -fn`: asserts a clean bill of health.
fn fsck(img: &Path) {
    let (code, out) = run(Command::new(tool("e2fsck")).arg("-fn").arg(img));
    // Nothing but the five passes, the version banner and the summary line.
    let unexpected = out.lines().any(|l| {
        !(l.is_empty() || l.starts_with("Pass ") || l.starts_with("e2fsck ") || l.contains(" files ("))
    });
    assert!(code == 0 && out.contains("Pass 5") && !unexpected, "e2fsck -fn found problems ({code}):\n{out}");
}

fn debugfs(img: &Path, req: &str) -> std::vec::Vec<u8> {
    let out = Command::new(tool("debugfs")).arg("-R").arg(req).arg(img).output().unwrap();
    assert!(out.status.success(), "debugfs {req} failed");
    out.stdout
}

fn open_dev(img: &Path) -> Arc<FileDev> {
    let file = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let size = file.metadata().unwrap().len();
    Arc::new(FileDev { file, size })
}

fn mount(img: &Path, readonly: bool) -> Arc<Ext2Fs> {
    Ext2Fs::mount(open_dev(img), readonly, clock).unwrap_or_else(|e| panic!("mount failed: {e}"))
}

fn mount_err(img: &Path, readonly: bool) -> MountError {
    match Ext2Fs::mount(open_dev(img), readonly, clock) {
        Ok(_) => panic!("mount of {img:?} should fail"),
        Err(e) => e,
    }
}

fn new_inode(kind: FileType, perm: u32) -> NewInode {
    NewInode { kind, perm, uid: 1000, gid: 100, rdev: 0, time: clock() }
}

fn walk(fs: &Arc<Ext2Fs>, path: &str) -> KResult<Arc<dyn Inode>> {
    let mut cur = fs.root();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        cur = cur.lookup(c.as_bytes())?;
    }
    Ok(cur)
}

fn read_all(i: &Arc<dyn Inode>) -> std::vec::Vec<u8> {
    let size = i.metadata().size as usize;
    let mut buf = vec![0; size];
    let mut done = 0;
    while done < size {
        let n = i.read_at(done as u64, &mut buf[done..]).unwrap();
        assert!(n > 0);
        done += n;
    }
    buf
}

fn list(dir: &Arc<dyn Inode>) -> std::vec::Vec<DirEntry> {
    let mut out = std::vec::Vec::new();
    let mut cursor = 0;
    while let Some((e, next)) = dir.read_dir(cursor).unwrap() {
        out.push(e);
        cursor = next;
    }
    out
}

fn names(dir: &Arc<dyn Inode>) -> std::vec::Vec<String> {
    let mut v: std::vec::Vec<String> =
        list(dir).into_iter().map(|e| String::from_utf8(e.name).unwrap()).collect();
    v.sort();
    v
}

/// Deterministic test data.
fn pattern(len: usize, seed: u32) -> std::vec::Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn create_file(dir: &Arc<dyn Inode>, name: &str, data: &[u8]) -> Arc<dyn Inode> {
    let f = dir.create(name.as_bytes(), &new_inode(FileType::Regular, 0o644)).unwrap();
    if !data.is_empty() {
        assert_eq!(f.write_at(0, data).unwrap(), data.len());
    }
    f
}

fn mkdir(dir: &Arc<dyn Inode>, name: &str) -> Arc<dyn Inode> {
    dir.create(name.as_bytes(), &new_inode(FileType::Directory, 0o755)).unwrap()
}

/// The populated tree for `mke2fs -d`.
fn populate(root: &Path) {
    std::fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    std::fs::write(root.join("hello.txt"), b"hello, ext2\n").unwrap();
    std::fs::write(root.join("etc/big.bin"), pattern(300_000, 7)).unwrap();
    std::fs::write(root.join("etc/deep/er/leaf"), b"leaf").unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("fast-link")).unwrap();
    let long = "x/".repeat(60) + "target";
    std::os::unix::fs::symlink(&long, root.join("slow-link")).unwrap();
    std::fs::create_dir_all(root.join("many")).unwrap();
    for i in 0..200 {
        std::fs::write(root.join(format!("many/file-with-a-longish-name-{i:04}")), format!("{i}")).unwrap();
    }
}

fn check_populated(fs: &Arc<Ext2Fs>) {
    let root = fs.root();
    let n = names(&root);
    for want in [".", "..", "etc", "fast-link", "hello.txt", "many", "slow-link"] {
        assert!(n.iter().any(|x| x == want), "{want} missing from {n:?}");
    }
    assert_eq!(read_all(&walk(fs, "hello.txt").unwrap()), b"hello, ext2\n");
    assert_eq!(read_all(&walk(fs, "etc/big.bin").unwrap()), pattern(300_000, 7));
    assert_eq!(read_all(&walk(fs, "etc/deep/er/leaf").unwrap()), b"leaf");
    assert_eq!(walk(fs, "fast-link").unwrap().readlink().unwrap(), b"hello.txt");
    assert_eq!(walk(fs, "slow-link").unwrap().readlink().unwrap(), ("x/".repeat(60) + "target").as_bytes());
    let many = walk(fs, "many").unwrap();
    assert_eq!(list(&many).len(), 202);
    for i in [0, 77, 199] {
        let f = many.lookup(format!("file-with-a-longish-name-{i:04}").as_bytes()).unwrap();
        assert_eq!(read_all(&f), format!("{i}").as_bytes());
    }
    let er = walk(fs, "etc/deep/er").unwrap();
    assert_eq!(er.parent().unwrap().metadata().ino, walk(fs, "etc/deep").unwrap().metadata().ino);
    assert_eq!(root.parent().unwrap().metadata().ino, 2);
    assert!(Arc::ptr_eq(
        &walk(fs, "etc").unwrap().as_any().downcast_ref::<Ext2Inode>().map(|i| i.fs().clone()).unwrap(),
        fs
    ));
}

/// Image configurations: (tag, mke2fs arguments, size in KiB).
const CONFIGS: &[(&str, &[&str], u64)] = &[
    ("1k", &["-t", "ext2", "-b", "1024"], 32 * 1024),
    ("2k-128", &["-t", "ext2", "-b", "2048", "-I", "128"], 32 * 1024),
    ("4k", &["-t", "ext2", "-b", "4096"], 64 * 1024),
    ("rev0", &["-t", "ext2", "-r", "0", "-b", "1024"], 32 * 1024),
];

#[test]
fn ext2_reads_a_populated_image() {
    for (tag, args, size) in CONFIGS {
        let s = Scratch::new(tag);
        let src = s.path("src");
        populate(&src);
        let img = s.path("img");
        let mut a = args.to_vec();
        a.extend(["-d", src.to_str().unwrap()]);
        mkfs(&img, *size, &a);
        let before = std::fs::read(&img).unwrap();
        let fs = mount(&img, true);
        check_populated(&fs);
        assert!(fs.readonly());
        assert_eq!(fs.name(), "ext2");
        assert_eq!(fs.statfs().magic, 0xEF53);
        let f = walk(&fs, "hello.txt").unwrap();
        assert_eq!(f.write_at(0, b"x"), Err(Errno::EROFS));
        assert_eq!(fs.root().create(b"n", &new_inode(FileType::Regular, 0o644)).err(), Some(Errno::EROFS));
        fs.unmount().unwrap();
        drop((f, fs));
        assert!(std::fs::read(&img).unwrap() == before, "{tag}: a read-only mount wrote to the image");
    }
}

/// Everything a workload leaves behind, checked from inside and outside.
fn workload(fs: &Arc<Ext2Fs>) {
    let root = fs.root();
    // Many files in one directory (several directory blocks).
    let many = mkdir(&root, "many");
    for i in 0..300 {
        create_file(&many, &format!("f{i:03}-{}", "n".repeat(i % 40)), &pattern(i * 37, i as u32));
    }
    // A deep chain of directories.
    let mut d = root.clone();
    for i in 0..40 {
        d = mkdir(&d, &format!("d{i}"));
    }
    create_file(&d, "bottom", b"at the bottom\n");
    // A file spanning direct, indirect and double indirect blocks.
    let bs = fs.statfs().block_size as usize;
    let big = pattern(bs * (12 + bs / 4 + 40) + 123, 99);
    create_file(&root, "big", &big);
    // Sparse: holes between writes.
    let sp = create_file(&root, "sparse", b"");
    sp.write_at(5 * bs as u64 + 3, b"middle").unwrap();
    sp.write_at(200 * bs as u64, b"end").unwrap();
    // Symlinks, devices, fifo, socket.
    root.symlink(b"fast", b"big", &new_inode(FileType::Symlink, 0o777)).unwrap();
    let slow: std::vec::Vec<u8> = "s/".repeat(100).into_bytes();
    root.symlink(b"slow", &slow, &new_inode(FileType::Symlink, 0o777)).unwrap();
    let mut dev = new_inode(FileType::CharDevice, 0o600);
    dev.rdev = makedev(4, 64);
    root.create(b"tty", &dev).unwrap();
    dev.kind = FileType::BlockDevice;
    dev.rdev = makedev(259, 70000);
    root.create(b"nvme", &dev).unwrap();
    root.create(b"fifo", &new_inode(FileType::Fifo, 0o644)).unwrap();
    root.create(b"sock", &new_inode(FileType::Socket, 0o644)).unwrap();
    // Hard links.
    let hl = create_file(&root, "hard", b"linked");
    many.link(b"hard2", &hl).unwrap();
    assert_eq!(hl.metadata().nlink, 2);
    let (h1, h2) = (root.lookup(b"hard").unwrap(), many.lookup(b"hard2").unwrap());
    assert!(core::ptr::addr_eq(Arc::as_ptr(&h1), Arc::as_ptr(&hl)), "one inode, one Arc");
    assert!(core::ptr::addr_eq(Arc::as_ptr(&h2), Arc::as_ptr(&hl)), "one inode, one Arc");
    assert_eq!(many.link(b"x", &walk(fs, "d0").unwrap()), Err(Errno::EPERM));
    // Renames: files and directories across parents, and over existing targets.
    let a = mkdir(&root, "a");
    let b = mkdir(&root, "b");
    create_file(&a, "moved", b"moved file");
    a.rename(b"moved", &b, b"moved-here").unwrap();
    mkdir(&a, "sub");
    create_file(&walk(fs, "a/sub").unwrap(), "inner", b"inner");
    a.rename(b"sub", &b, b"sub2").unwrap();
    assert_eq!(walk(fs, "b/sub2").unwrap().parent().unwrap().metadata().ino, b.metadata().ino);
    assert_eq!(a.metadata().nlink, 2);
    assert_eq!(b.metadata().nlink, 3);
    create_file(&b, "victim", b"will be replaced");
    b.rename(b"moved-here", &b, b"victim").unwrap();
    mkdir(&a, "empty");
    b.rename(b"sub2", &a, b"empty").unwrap();
    assert_eq!(b.metadata().nlink, 2);
    assert_eq!(a.metadata().nlink, 3);
    assert_eq!(root.rename(b"a", &walk(fs, "a/empty").unwrap(), b"loop"), Err(Errno::EINVAL));
    assert_eq!(root.rename(b"a", &root, b"b"), Err(Errno::ENOTEMPTY));
    assert_eq!(b.lookup(b"moved-here").err(), Some(Errno::ENOENT));
    // Errors.
    assert_eq!(root.create(b"big", &new_inode(FileType::Regular, 0o644)).err(), Some(Errno::EEXIST));
    assert_eq!(root.rmdir(b"a"), Err(Errno::ENOTEMPTY));
    assert_eq!(root.unlink(b"a"), Err(Errno::EISDIR));
    assert_eq!(root.rmdir(b"big"), Err(Errno::ENOTDIR));
    assert_eq!(walk(fs, "big").unwrap().lookup(b"x").err(), Some(Errno::ENOTDIR));
    // Truncate down (into the indirect range) and attributes.
    let t = create_file(&root, "trunc", &pattern(bs * 20, 3));
    t.setattr(&SetAttr {
        size: Some(bs as u64 * 13 + 5),
        perm: Some(0o600),
        uid: Some(70000),
        ..Default::default()
    })
    .unwrap();
    t.setattr(&SetAttr { size: Some(bs as u64 * 15), ..Default::default() }).unwrap();
    let m = t.metadata();
    assert_eq!((m.mode & 0o7777, m.uid, m.size), (0o600, 70000, bs as u64 * 15));
    let data = read_all(&t);
    assert_eq!(&data[..bs * 13 + 5], &pattern(bs * 20, 3)[..bs * 13 + 5]);
    assert!(data[bs * 13 + 5..].iter().all(|&b| b == 0));
}

fn check_workload(fs: &Arc<Ext2Fs>) {
    let bs = fs.statfs().block_size as usize;
    let root = fs.root();
    let many = walk(fs, "many").unwrap();
    assert_eq!(list(&many).len(), 303);
    for i in [0, 1, 150, 299] {
        let f = many.lookup(format!("f{i:03}-{}", "n".repeat(i % 40)).as_bytes()).unwrap();
        assert_eq!(read_all(&f), pattern(i * 37, i as u32));
    }
    let deep: String = (0..40).map(|i| format!("d{i}/")).collect();
    assert_eq!(read_all(&walk(fs, &(deep + "bottom")).unwrap()), b"at the bottom\n");
    assert_eq!(read_all(&walk(fs, "big").unwrap()), pattern(bs * (12 + bs / 4 + 40) + 123, 99));
    let sp = walk(fs, "sparse").unwrap();
    let data = read_all(&sp);
    assert_eq!(data.len(), 200 * bs + 3);
    assert_eq!(&data[5 * bs + 3..5 * bs + 9], b"middle");
    assert_eq!(&data[200 * bs..], b"end");
    assert_eq!(data.iter().filter(|&&b| b != 0).count(), 9);
    assert!(sp.metadata().blocks < 8 * (bs as u64 / 512));
    assert_eq!(walk(fs, "fast").unwrap().readlink().unwrap(), b"big");
    assert_eq!(walk(fs, "slow").unwrap().readlink().unwrap(), "s/".repeat(100).as_bytes());
    let tty = walk(fs, "tty").unwrap().metadata();
    assert_eq!((tty.file_type(), tty.rdev), (FileType::CharDevice, makedev(4, 64)));
    let nvme = walk(fs, "nvme").unwrap().metadata();
    assert_eq!((nvme.file_type(), nvme.rdev), (FileType::BlockDevice, makedev(259, 70000)));
    assert_eq!(walk(fs, "fifo").unwrap().metadata().file_type(), FileType::Fifo);
    assert_eq!(walk(fs, "sock").unwrap().metadata().file_type(), FileType::Socket);
    let hard = walk(fs, "hard").unwrap();
    assert_eq!(hard.metadata().nlink, 2);
    assert_eq!(hard.metadata().ino, walk(fs, "many/hard2").unwrap().metadata().ino);
    assert_eq!(read_all(&walk(fs, "b/victim").unwrap()), b"moved file");
    assert_eq!(read_all(&walk(fs, "a/empty/inner").unwrap()), b"inner");
    assert_eq!(names(&root).len(), 17);
    let m: Metadata = walk(fs, "trunc").unwrap().metadata();
    assert_eq!((m.uid, m.gid, m.size), (70000, 100, bs as u64 * 15));
}

/// Removes everything below `dir` (depth first).
fn remove_all(dir: &Arc<dyn Inode>) {
    loop {
        let entries: std::vec::Vec<DirEntry> =
            list(dir).into_iter().filter(|e| !matches!(&e.name[..], b"." | b".." | b"lost+found")).collect();
        if entries.is_empty() {
            return;
        }
        for e in entries {
            if e.kind == FileType::Directory {
                let sub = dir.lookup(&e.name).unwrap();
                remove_all(&sub);
                drop(sub);
                dir.rmdir(&e.name).unwrap();
            } else {
                dir.unlink(&e.name).unwrap();
            }
        }
    }
}

#[test]
fn ext2_write_workload_passes_e2fsck() {
    for (tag, args, size) in CONFIGS {
        let s = Scratch::new(tag);
        let img = s.path("img");
        mkfs(&img, *size, args);
        let fresh = {
            let fs = mount(&img, true);
            fs.statfs()
        };
        let fs = mount(&img, false);
        workload(&fs);
        check_workload(&fs);
        fs.unmount().unwrap();
        drop(fs);
        fsck(&img);
        // From the outside.
        assert_eq!(debugfs(&img, "cat /a/empty/inner"), b"inner");
        assert_eq!(debugfs(&img, "cat /b/victim"), b"moved file");
        let ls = String::from_utf8(debugfs(&img, "ls -l /")).unwrap();
        for name in ["many", "big", "sparse", "fast", "slow", "tty", "fifo", "hard"] {
            assert!(ls.contains(name), "{tag}: debugfs ls lacks {name}:\n{ls}");
        }
        let stat = String::from_utf8(debugfs(&img, "stat /tty")).unwrap();
        assert!(stat.contains("Device major/minor number: 04:64"), "{tag}: {stat}");
        // Again from the inside, then delete everything.
        let fs = mount(&img, false);
        check_workload(&fs);
        remove_all(&fs.root());
        assert_eq!(names(&fs.root()), [".", "..", "lost+found"]);
        let end = fs.statfs();
        assert_eq!((end.blocks_free, end.files_free), (fresh.blocks_free, fresh.files_free), "{tag}");
        fs.unmount().unwrap();
        drop(fs);
        fsck(&img);
    }
}

#[test]
fn ext2_fsck_helper_notices_damage() {
    let s = Scratch::new("damage");
    let img = s.path("img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "1024"]);
    fsck(&img);
    // Bump the superblock's free block count.
    let f = OpenOptions::new().read(true).write(true).open(&img).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, 1024 + 12).unwrap();
    f.write_all_at(&(u32::from_le_bytes(b) + 5).to_le_bytes(), 1024 + 12).unwrap();
    drop(f);
    assert!(std::panic::catch_unwind(|| fsck(&img)).is_err());
}

#[test]
fn ext2_refuses_what_it_cannot_mount() {
    let s = Scratch::new("refuse");
    // Zeros: no magic.
    let zeros = s.path("zeros");
    File::create(&zeros).unwrap().set_len(1 << 20).unwrap();
    let e = mount_err(&zeros, true);
    assert_eq!(e.errno, Errno::EINVAL);
    assert!(e.message.contains("not an ext2 file system"), "{e}");
    // Too small for a superblock.
    let tiny = s.path("tiny");
    File::create(&tiny).unwrap().set_len(1000).unwrap();
    assert!(mount_err(&tiny, true).message.contains("too small"));
    // ext4: names the features.
    let ext4 = s.path("ext4");
    mkfs(&ext4, 16384, &["-t", "ext4"]);
    for ro in [true, false] {
        let e = mount_err(&ext4, ro);
        assert_eq!(e.errno, Errno::EINVAL);
        assert!(e.message.contains("ext4 feature extents (0x40) is not supported"), "{e}");
        assert!(e.message.contains("flex_bg (0x200)"), "{e}");
    }
    // Truncated image.
    let trunc = s.path("trunc");
    mkfs(&trunc, 8192, &["-t", "ext2"]);
    OpenOptions::new().write(true).open(&trunc).unwrap().set_len(4 << 20).unwrap();
    let e = mount_err(&trunc, true);
    assert!(e.message.contains("truncated image"), "{e}");
    // Read-only-compatible features we cannot keep valid: read-only mounts only.
    let huge = s.path("huge");
    mkfs(&huge, 8192, &["-t", "ext2", "-O", "huge_file"]);
    let e = mount_err(&huge, false);
    assert_eq!(e.errno, Errno::EROFS);
    assert!(e.message.contains("huge_file (0x8)"), "{e}");
    let fs = mount(&huge, true);
    assert_eq!(fs.set_readonly(false), Err(Errno::EROFS));
    assert!(names(&fs.root()).contains(&"lost+found".to_string()));
}

#[test]
fn ext2_ext3_clean_journal_mounts_and_dirty_one_is_refused() {
    let s = Scratch::new("ext3");
    let img = s.path("img");
    mkfs(&img, 16384, &["-t", "ext3", "-b", "1024"]);
    let journal_before = debugfs(&img, "cat <8>");
    let fs = mount(&img, false);
    let d = mkdir(&fs.root(), "dir");
    create_file(&d, "f", &pattern(70_000, 5));
    fs.unmount().unwrap();
    drop((d, fs));
    fsck(&img);
    assert_eq!(debugfs(&img, "cat <8>"), journal_before, "the journal was modified");
    assert_eq!(debugfs(&img, "cat /dir/f"), pattern(70_000, 5));
    let (code, out) =
        run(Command::new(tool("debugfs")).args(["-w", "-R", "feature needs_recovery"]).arg(&img));
    assert_eq!(code, 0, "{out}");
    for ro in [true, false] {
        let e = mount_err(&img, ro);
        assert!(e.message.contains("needs recovery"), "{e}");
    }
}

#[test]
fn ext2_huge_sparse_file_uses_triple_indirect_blocks() {
    for (tag, args) in [
        ("large", &["-t", "ext2", "-b", "1024"][..]),
        ("nolarge", &["-t", "ext2", "-b", "1024", "-O", "^large_file"]),
    ] {
        let s = Scratch::new(tag);
        let img = s.path("img");
        mkfs(&img, 32768, args);
        let fs = mount(&img, false);
        let f = create_file(&fs.root(), "huge", b"head");
        let far = (9u64 << 30) + 12345; // 9 GiB: triple indirect with 1 KiB blocks
        let mid = 70u64 << 20; // 70 MiB: just past the double indirect range
        f.write_at(mid, b"triple").unwrap();
        f.write_at(far, b"tail").unwrap();
        let m = f.metadata();
        assert_eq!(m.size, far + 4);
        assert!(m.blocks <= 2 * 12, "{tag}: {} sectors for three data blocks", m.blocks);
        let mut buf = [1u8; 10];
        assert_eq!(f.read_at(far - 6, &mut buf).unwrap(), 10);
        assert_eq!(&buf, b"\0\0\0\0\0\0tail");
        assert_eq!(f.read_at(mid, &mut buf[..6]).unwrap(), 6);
        assert_eq!(&buf[..6], b"triple");
        assert_eq!(f.read_at(far + 4, &mut buf).unwrap(), 0);
        assert_eq!(f.write_at(1 << 50, b"x"), Err(Errno::EFBIG));
        fs.sync().unwrap();
        fs.unmount().unwrap();
        drop((f, fs));
        fsck(&img);
        let stat = String::from_utf8(debugfs(&img, "stat /huge")).unwrap();
        assert!(stat.contains(&format!("Size: {}", far + 4)), "{stat}");
        let feats = String::from_utf8(debugfs(&img, "features")).unwrap();
        assert!(feats.contains("large_file"), "{tag}: {feats}");
        // Shrink in steps across the tree levels.
        let fs = mount(&img, false);
        let f = walk(&fs, "huge").unwrap();
        let free0 = fs.statfs().blocks_free;
        for size in [mid + 3, 100_000, 3] {
            f.setattr(&SetAttr { size: Some(size), ..Default::default() }).unwrap();
            assert_eq!(f.metadata().size, size);
        }
        assert_eq!(read_all(&f), b"hea");
        assert_eq!(f.metadata().blocks, 2);
        assert!(fs.statfs().blocks_free > free0);
        fs.unmount().unwrap();
        drop((f, fs));
        fsck(&img);
    }
}

#[test]
fn ext2_unlinked_open_file_lives_until_dropped() {
    let s = Scratch::new("orphan");
    let img = s.path("img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "4096"]);
    let fs = mount(&img, false);
    let fresh = fs.statfs();
    let root = fs.root();
    let f = create_file(&root, "open", &pattern(100_000, 1));
    let d = mkdir(&root, "cwd");
    root.unlink(b"open").unwrap();
    root.rmdir(b"cwd").unwrap();
    assert_eq!(f.metadata().nlink, 0);
    assert_eq!(read_all(&f), pattern(100_000, 1));
    f.write_at(100_000, b"more").unwrap();
    assert_eq!(d.create(b"x", &new_inode(FileType::Regular, 0o644)).err(), Some(Errno::ENOENT));
    assert_eq!(d.lookup(b"x").err(), Some(Errno::ENOENT));
    assert_eq!(root.link(b"back", &f), Err(Errno::ENOENT));
    assert!(fs.statfs().files_free < fresh.files_free);
    drop((f, d));
    fs.sync().unwrap();
    assert_eq!(fs.statfs(), fresh);
    fs.unmount().unwrap();
    drop((root, fs));
    fsck(&img);
}

#[test]
fn ext2_fills_the_disk_and_recovers() {
    let s = Scratch::new("full");
    let img = s.path("img");
    mkfs(&img, 2048, &["-t", "ext2", "-b", "1024", "-N", "64"]);
    let fs = mount(&img, false);
    let fresh = fs.statfs();
    let root = fs.root();
    let chunk = pattern(50_000, 2);
    let mut n = 0;
    'outer: loop {
        let f = match root.create(format!("f{n}").as_bytes(), &new_inode(FileType::Regular, 0o644)) {
            Ok(f) => f,
            Err(e) => {
                assert_eq!(e, Errno::ENOSPC);
                break;
            }
        };
        n += 1;
        let mut off = 0;
        while off < 200_000 {
            match f.write_at(off, &chunk) {
                Ok(w) => off += w as u64,
                Err(e) => {
                    assert_eq!(e, Errno::ENOSPC);
                    break 'outer;
                }
            }
        }
    }
    assert!(fs.statfs().blocks_free < 4 || fs.statfs().files_free == 0);
    fs.sync().unwrap();
    fsck(&img);
    remove_all(&root);
    assert_eq!(fs.statfs(), fresh);
    fs.unmount().unwrap();
    drop((root, fs));
    fsck(&img);
}

#[test]
fn ext2_big_file_through_a_small_cache() {
    let s = Scratch::new("bigfile");
    let img = s.path("img");
    mkfs(&img, 32768, &["-t", "ext2", "-b", "4096"]);
    let data = pattern(12 << 20, 42);
    let fs = mount(&img, false);
    let f = create_file(&fs.root(), "data", b"");
    let mut off = 0;
    for (i, step) in [1usize, 4095, 4096, 10_000, 65_536, 333_333].iter().cycle().enumerate() {
        if off >= data.len() {
            break;
        }
        let end = (off + step + i).min(data.len());
        assert_eq!(f.write_at(off as u64, &data[off..end]).unwrap(), end - off);
        off = end;
    }
    assert_eq!(read_all(&f), data);
    fs.unmount().unwrap();
    drop((f, fs));
    fsck(&img);
    assert!(debugfs(&img, "cat /data") == data);
    let fs = mount(&img, true);
    assert!(read_all(&walk(&fs, "data").unwrap()) == data);
}

#[test]
fn ext2_hashed_directories_are_read_and_edited_linearly() {
    let s = Scratch::new("htree");
    let src = s.path("src");
    std::fs::create_dir_all(src.join("big")).unwrap();
    for i in 0..1500 {
        std::fs::write(src.join(format!("big/entry-number-{i:05}")), format!("{i}")).unwrap();
    }
    let img = s.path("img");
    mkfs(&img, 16384, &["-t", "ext2", "-b", "1024", "-d", src.to_str().unwrap()]);
    // e2fsck -D builds the hashed index.
    let (code, out) = run(Command::new(tool("e2fsck")).arg("-fyD").arg(&img));
    assert!(code <= 1, "e2fsck -fyD: {out}");
    let stat = String::from_utf8(debugfs(&img, "stat /big")).unwrap();
    assert!(stat.contains("Flags: 0x1000"), "no htree index made: {stat}");
    let fs = mount(&img, false);
    let big = walk(&fs, "big").unwrap();
    assert_eq!(list(&big).len(), 1502);
    assert_eq!(read_all(&big.lookup(b"entry-number-01234").unwrap()), b"1234");
    for i in (0..1500).step_by(3) {
        big.unlink(format!("entry-number-{i:05}").as_bytes()).unwrap();
    }
    for i in 0..300 {
        create_file(&big, &format!("new-{i}"), b"n");
    }
    assert_eq!(list(&big).len(), 1502 - 500 + 300);
    fs.unmount().unwrap();
    drop((big, fs));
    fsck(&img);
    assert_eq!(debugfs(&img, "cat /big/entry-number-01235"), b"1235");
    assert_eq!(debugfs(&img, "cat /big/new-299"), b"n");
}

#[test]
fn ext2_superblock_state_remount_and_statfs() {
    let s = Scratch::new("state");
    let img = s.path("img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "1024"]);
    let sb_field = |off: u64| {
        let f = File::open(&img).unwrap();
        let mut b = [0u8; 2];
        f.read_exact_at(&mut b, 1024 + off).unwrap();
        u16::from_le_bytes(b)
    };
    assert_eq!((sb_field(58), sb_field(52)), (1, 0));
    let fs = mount(&img, false);
    assert_eq!((sb_field(58), sb_field(52)), (0, 1), "a read-write mount marks the file system not clean");
    let st = fs.statfs();
    assert_eq!((st.magic, st.block_size, st.name_max), (0xEF53, 1024, 255));
    assert!(st.blocks < 8192 && st.blocks > 7000 && st.blocks_free < st.blocks);
    create_file(&fs.root(), "f", b"data");
    assert_eq!(fs.statfs().files_free, st.files_free - 1);
    fs.set_readonly(true).unwrap();
    assert_eq!(sb_field(58), 1);
    assert!(fs.readonly());
    assert_eq!(fs.root().unlink(b"f"), Err(Errno::EROFS));
    fsck(&img);
    fs.set_readonly(false).unwrap();
    assert_eq!((sb_field(58), sb_field(52)), (0, 2));
    fs.root().unlink(b"f").unwrap();
    fs.unmount().unwrap();
    assert_eq!(sb_field(58), 1);
    assert_eq!(fs.root().create(b"g", &new_inode(FileType::Regular, 0o644)).err(), Some(Errno::EROFS));
    drop(fs);
    fsck(&img);
}

#[test]
fn ext2_read_dir_cursors_survive_changes() {
    let s = Scratch::new("cursor");
    let img = s.path("img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "1024"]);
    let fs = mount(&img, false);
    let d = mkdir(&fs.root(), "d");
    for i in 0..100 {
        create_file(&d, &format!("e{i}"), b"");
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0;
    let mut step = 0;
    while let Some((e, next)) = d.read_dir(cursor).unwrap() {
        assert!(seen.insert(e.name.clone()), "{:?} returned twice", String::from_utf8_lossy(&e.name));
        if step == 0 {
            assert_eq!(e.name, b".");
        }
        if step == 1 {
            assert_eq!(e.name, b"..");
        }
        // Remove the entry just returned and one ahead; add new ones.
        if e.name.starts_with(b"e") {
            d.unlink(&e.name).unwrap();
            let _ = d.unlink(format!("e{}", step + 7).as_bytes());
            create_file(&d, &format!("n{step}"), b"");
        }
        cursor = next;
        step += 1;
    }
    assert!(seen.len() >= 52);
    fs.unmount().unwrap();
    drop((d, fs));
    fsck(&img);
}

#[test]
fn ext2_corruption_is_an_error_not_a_panic() {
    let s = Scratch::new("corrupt");
    let img = s.path("img");
    mkfs(&img, 8192, &["-t", "ext2", "-b", "1024"]);
    let fs = mount(&img, false);
    let d = mkdir(&fs.root(), "d");
    create_file(&d, "f", &pattern(20_000, 9));
    fs.unmount().unwrap();
    drop((d, fs));
    let block_of = |path: &str| -> u64 {
        let out = String::from_utf8(debugfs(&img, &format!("blocks {path}"))).unwrap();
        out.split_whitespace().next().unwrap().parse().unwrap()
    };
    let dir_blk = block_of("/d");
    let ino: u64 = String::from_utf8(debugfs(&img, "ls -l /d"))
        .unwrap()
        .lines()
        .find(|l| l.ends_with(" f"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&img).unwrap();
    // The file's first block pointer now points past the end of the file system.
    let ipg = u64::from({
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 1024 + 40).unwrap();
        u32::from_le_bytes(b)
    });
    let table = {
        let mut b = [0u8; 4];
        f.read_exact_at(&mut b, 2048 + 32 * ((ino - 1) / ipg) + 8).unwrap();
        u64::from(u32::from_le_bytes(b))
    };
    let inode_off = table * 1024 + ((ino - 1) % ipg) * 256;
    f.write_all_at(&999_999u32.to_le_bytes(), inode_off + 40).unwrap();
    let fs = mount(&img, true);
    assert_eq!(read_all_err(&walk(&fs, "d/f").unwrap()), Errno::EUCLEAN);
    drop(fs);
    // A zero rec_len in the directory.
    f.write_all_at(&0u16.to_le_bytes(), dir_blk * 1024 + 4).unwrap();
    drop(f);
    let fs = mount(&img, true);
    let d = walk(&fs, "d").unwrap();
    assert_eq!(d.lookup(b"f").err(), Some(Errno::EUCLEAN));
    assert_eq!(d.read_dir(0).err(), Some(Errno::EUCLEAN));
}

fn read_all_err(i: &Arc<dyn Inode>) -> Errno {
    let mut buf = vec![0; 4096];
    i.read_at(0, &mut buf).unwrap_err()
}
