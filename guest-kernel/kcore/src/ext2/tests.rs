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
    let bad = ["Fix?", "Clear?", "wrong", "Salvage?", "Relocate?", "Connect to", "Unattached", "differences"];
    assert!(code == 0 && !bad.iter().any(|b| out.contains(b)), "e2fsck -fn found problems ({code}):\n{out}");
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
    t.setattr(&SetAttr { size: Some(bs as u64 * 13 + 5), perm: Some(0o600), uid: Some(70000), ..Default::default() })
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
        let entries: std::vec::Vec<DirEntry> = list(dir)
            .into_iter()
            .filter(|e| !matches!(&e.name[..], b"." | b".." | b"lost+found"))
            .collect();
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
        let _ = tag.to_string();
    }
}
