//! The root filesystem's content as data: the entries of a busybox system (directories,
//! configuration files, applet links), the space they need on ext2, and writing them into a
//! staging directory for `mke2fs -d`.
//!
//! Everything here is a pure function of its inputs except [`write_tree`] and
//! [`overlay`], so the file list, the configuration files and the size computation are
//! unit-tested without running any tool.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// The ext2 block size mkrootfs asks `mke2fs` for (`-b`).
pub const BLOCK_SIZE: u64 = 4096;
/// Bytes of image per inode (`mke2fs -i`): 128 inodes per MiB.
pub const BYTES_PER_INODE: u64 = 8192;
/// On-disk inode size (`mke2fs -I`).
pub const INODE_SIZE: u64 = 256;
/// Superblock, group descriptors, reserved descriptor blocks, bitmaps and a little spare:
/// what a small image spends before the inode tables and the files.
const FIXED_OVERHEAD_BYTES: u64 = 2 << 20;
/// Free space the smallest accepted image keeps beyond what the files need, in percent.
const MARGIN_PERCENT: u64 = 10;

/// The unprivileged account's uid and gid.
pub const USER_ID: u32 = 1000;
/// The unprivileged account's home, relative to the root.
pub const USER_HOME: &str = "home/user";

/// A file's owner in the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// `root:root`.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
    /// `user:user`.
    pub const USER: Owner = Owner { uid: USER_ID, gid: USER_ID };
}

/// Who owns `rel` (a path relative to the root) in the image: `user` for the home directory
/// of `user` and everything in it, root for the rest, whoever built the image.
pub fn owner_of(rel: &Path) -> Owner {
    if rel.starts_with(USER_HOME) { Owner::USER } else { Owner::ROOT }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file with this content.
    File(Vec<u8>),
    /// A copy of a host file of this size (busybox itself).
    Copy {
        /// The host file.
        source: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// A symbolic link to this target.
    Symlink(String),
}

/// One path of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the root, without a leading `/`.
    pub path: String,
    /// What it is.
    pub node: Node,
    /// Permission bits (`0o755`, `0o1777`, ...); ignored for symlinks.
    pub mode: u32,
}

/// The password hashes (`crypt(3)` strings) of the two accounts.
#[derive(Clone, Debug)]
pub struct Hashes {
    /// `root`'s.
    pub root: String,
    /// `user`'s.
    pub user: String,
}

/// Directories of every image, with their modes, parents before children.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("etc/init.d", 0o755),
    ("home", 0o755),
    (USER_HOME, 0o755),
    ("mnt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
];

/// `/etc/inittab` for busybox init: the boot script, a login prompt on the console (con0 is
/// `/dev/tty0` in the guest), and what to do on ctrl-alt-del, shutdown and restart.
pub const INITTAB: &str = "\
# /etc/inittab: busybox init's table (made by umlvm mkrootfs).
# id:runlevels:action:process -- the id is the terminal the process gets.
::sysinit:/etc/init.d/rcS
tty0::respawn:/sbin/getty -L 0 tty0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
::restart:/sbin/init
";

/// `/etc/init.d/rcS`: run once at boot. No `set -e`: a failing step must not stop the
/// machine from reaching the login prompt, and its message stays on the console.
pub const RCS: &str = "\
#!/bin/sh
# /etc/init.d/rcS: run once by init at boot (::sysinit in /etc/inittab).
PATH=/sbin:/usr/sbin:/bin:/usr/bin
export PATH
mount -o remount,rw / 2>/dev/null
mount -a
mkdir -p /dev/pts
hostname -F /etc/hostname
";

/// `/etc/fstab`: the root on ubd0, /proc, and a RAM /tmp.
pub const FSTAB: &str = "\
# <file system> <mount point> <type> <options> <dump> <pass>
/dev/ubda / ext2 defaults 0 1
proc /proc proc defaults 0 0
tmpfs /tmp tmpfs defaults 0 0
";

/// `/etc/group`.
pub const GROUP: &str = "root:x:0:\nuser:x:1000:\n";

/// `/etc/passwd` (the hashes are in `/etc/shadow`).
pub const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
";

/// `/etc/hostname`.
pub const HOSTNAME: &str = "umlvm\n";

/// `/etc/issue`: the banner getty prints above the login prompt.
pub const ISSUE: &str = "umlvm (busybox) - log in as root (password root) or user (password user)\n\n";

/// `/etc/profile`: read by login shells.
pub const PROFILE: &str = "\
# /etc/profile: read by login shells (busybox sh).
PATH=/sbin:/usr/sbin:/bin:/usr/bin
PS1='\\u@\\h:\\w\\$ '
export PATH PS1
umask 022
";

/// `/etc/shells`: the login shells.
pub const SHELLS: &str = "/bin/sh\n/bin/ash\n";

/// `/etc/shadow` with `hashes`. The last-change field is empty (password ageing off): a 0
/// there would mean "must change at next login".
pub fn shadow(hashes: &Hashes) -> String {
    format!("root:{}::0:99999:7:::\nuser:{}::0:99999:7:::\n", hashes.root, hashes.user)
}

/// The symlink target for applet `applet` (e.g. `usr/bin/awk`), relative to the link's
/// directory: `busybox` in `bin/`, `../../bin/busybox` in `usr/bin/`.
pub fn applet_target(applet: &str) -> String {
    let depth = Path::new(applet).components().count().saturating_sub(1);
    if Path::new(applet).parent() == Some(Path::new("bin")) {
        "busybox".into()
    } else {
        format!("{}bin/busybox", "../".repeat(depth))
    }
}

/// Every entry of the image before `--from`: directories, `bin/busybox` (a copy of `busybox`
/// of `busybox_size` bytes), a link for each applet (paths as `busybox --list-full` prints
/// them), and the configuration files. Parents come before children.
pub fn base_entries(busybox: &Path, busybox_size: u64, applets: &[String], hashes: &Hashes) -> Vec<Entry> {
    let mut entries: Vec<Entry> =
        DIRS.iter().map(|(p, m)| Entry { path: (*p).into(), node: Node::Dir, mode: *m }).collect();
    let file = |path: &str, text: String, mode: u32| Entry {
        path: path.into(),
        node: Node::File(text.into_bytes()),
        mode,
    };
    entries.extend([
        file("etc/inittab", INITTAB.into(), 0o644),
        file("etc/init.d/rcS", RCS.into(), 0o755),
        file("etc/fstab", FSTAB.into(), 0o644),
        file("etc/passwd", PASSWD.into(), 0o644),
        file("etc/group", GROUP.into(), 0o644),
        file("etc/shadow", shadow(hashes), 0o600),
        file("etc/hostname", HOSTNAME.into(), 0o644),
        file("etc/issue", ISSUE.into(), 0o644),
        file("etc/profile", PROFILE.into(), 0o644),
        file("etc/shells", SHELLS.into(), 0o644),
    ]);
    entries.push(Entry {
        path: "bin/busybox".into(),
        node: Node::Copy { source: busybox.to_path_buf(), size: busybox_size },
        mode: 0o755,
    });
    for applet in applets {
        let dir = Path::new(applet).parent().and_then(Path::to_str).unwrap_or("");
        if !dir.is_empty() && !entries.iter().any(|e| e.path == dir) {
            entries.push(Entry { path: dir.into(), node: Node::Dir, mode: 0o755 });
        }
        entries.push(Entry { path: applet.clone(), node: Node::Symlink(applet_target(applet)), mode: 0o777 });
    }
    entries
}

/// The applet paths of `busybox --list-full` output: relative, without `bin/busybox` itself,
/// without duplicates, and without anything that would leave the root.
pub fn parse_applet_list(list: &str) -> Vec<String> {
    let mut applets: Vec<String> = Vec::new();
    for line in list.lines() {
        let path = line.trim().trim_start_matches('/');
        let inside = Path::new(path).components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if path.is_empty() || path == "bin/busybox" || !inside || applets.iter().any(|a| a == path) {
            continue;
        }
        applets.push(path.to_string());
    }
    applets
}

/// What a tree needs on ext2: blocks for data, directories, indirect blocks and long
/// symlinks, and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// File-system blocks of [`BLOCK_SIZE`].
    pub blocks: u64,
    /// Inodes.
    pub inodes: u64,
}

impl Usage {
    /// Adds a regular file of `size` bytes.
    pub fn add_file(&mut self, size: u64) {
        let data = size.div_ceil(BLOCK_SIZE);
        let per_block = BLOCK_SIZE / 4;
        // Beyond the 12 direct blocks: one indirect block, then a double-indirect block with
        // one indirect block per `per_block` data blocks (files stay far below triple).
        let indirect = match data {
            0..=12 => 0,
            d if d <= 12 + per_block => 1,
            d => 2 + (d - 12 - per_block).div_ceil(per_block),
        };
        self.blocks += data + indirect;
        self.inodes += 1;
    }

    /// Adds a directory holding entries whose names are `name_lens` bytes long.
    pub fn add_dir(&mut self, name_lens: impl IntoIterator<Item = usize>) {
        // Each entry is 8 bytes plus its name, 4-aligned; `.` and `..` take 24.
        let bytes: u64 = 24 + name_lens.into_iter().map(|n| (8 + n as u64).next_multiple_of(4)).sum::<u64>();
        self.blocks += bytes.div_ceil(BLOCK_SIZE).max(1);
        self.inodes += 1;
    }

    /// Adds a symlink with a target of `target_len` bytes (up to 59 live in the inode).
    pub fn add_symlink(&mut self, target_len: usize) {
        self.blocks += u64::from(target_len >= 60);
        self.inodes += 1;
    }

    /// The sum of two usages.
    pub fn plus(self, other: Usage) -> Usage {
        Usage { blocks: self.blocks + other.blocks, inodes: self.inodes + other.inodes }
    }
}

/// What `entries` need.
pub fn entries_usage(entries: &[Entry]) -> Usage {
    let mut usage = Usage::default();
    for e in entries {
        match &e.node {
            Node::Dir => {
                let prefix = format!("{}/", e.path);
                let children = entries
                    .iter()
                    .filter(|c| c.path.strip_prefix(&prefix).is_some_and(|rest| !rest.contains('/')));
                usage.add_dir(children.map(|c| c.path.len() - prefix.len()));
            }
            Node::File(bytes) => usage.add_file(bytes.len() as u64),
            Node::Copy { size, .. } => usage.add_file(*size),
            Node::Symlink(target) => usage.add_symlink(target.len()),
        }
    }
    // The root directory itself.
    let top = entries.iter().filter(|e| !e.path.contains('/'));
    usage.add_dir(top.map(|e| e.path.len()));
    usage
}

/// What the host tree at `dir` needs (not following symlinks). Entries that `--from` would
/// put over existing ones are counted again: the estimate errs on the large side.
pub fn dir_usage(dir: &Path) -> io::Result<Usage> {
    let mut usage = Usage::default();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        names.push(entry.file_name().len());
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            usage = usage.plus(dir_usage(&entry.path())?);
        } else if meta.file_type().is_symlink() {
            usage.add_symlink(std::fs::read_link(entry.path())?.as_os_str().len());
        } else {
            usage.add_file(meta.len());
        }
    }
    usage.add_dir(names);
    Ok(usage)
}

/// The smallest image size mkrootfs accepts for a tree that needs `usage`: the files, the
/// inode tables (one inode per [`BYTES_PER_INODE`] bytes of image), the fixed metadata and
/// [`MARGIN_PERCENT`] spare, rounded up to a whole MiB.
pub fn min_image_bytes(usage: Usage) -> u64 {
    const MIB: u64 = 1 << 20;
    let with_margin = |n: u64| n + n * MARGIN_PERCENT / 100;
    let data = with_margin(usage.blocks * BLOCK_SIZE) + FIXED_OVERHEAD_BYTES;
    // The inode tables take INODE_SIZE per BYTES_PER_INODE of the whole image.
    let by_space = data * BYTES_PER_INODE / (BYTES_PER_INODE - INODE_SIZE);
    // Inodes 1-10 are reserved, 11 is lost+found.
    let by_inodes = (with_margin(usage.inodes) + 16) * BYTES_PER_INODE;
    by_space.max(by_inodes).next_multiple_of(MIB)
}

/// Creates `entries` under `root` (an existing, empty directory), with their modes.
pub fn write_tree(root: &Path, entries: &[Entry]) -> io::Result<()> {
    let at = |e: &io::Error, p: &Path| io::Error::new(e.kind(), format!("{}: {e}", p.display()));
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).map_err(|e| at(&e, root))?;
    for e in entries {
        let path = root.join(&e.path);
        match &e.node {
            Node::Dir => std::fs::create_dir(&path),
            Node::File(bytes) => std::fs::write(&path, bytes),
            Node::Copy { source, .. } => std::fs::copy(source, &path).map(|_| ()),
            Node::Symlink(target) => symlink(target, &path),
        }
        .map_err(|err| at(&err, &path))?;
        if !matches!(e.node, Node::Symlink(_)) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode))
                .map_err(|err| at(&err, &path))?;
        }
    }
    Ok(())
}

/// Why `--from` could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Reading or writing a file failed.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] io::Error),
    /// A device node, fifo or socket.
    #[error("{}: not a regular file, directory or symlink (mkrootfs copies only those)", .0.display())]
    Special(PathBuf),
}

/// Copies the contents of `from` over `root`, preserving permission bits (setuid included)
/// and symlinks; a directory merges with an existing one, anything else replaces what was
/// there. Returns how many entries it copied.
pub fn overlay(from: &Path, root: &Path) -> Result<u64, OverlayError> {
    let mut count = 0;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| OverlayError::Io(p, e)
    };
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let src = entry.map_err(io(from))?.path();
        let dst = root.join(src.file_name().expect("read_dir entries have names"));
        let meta = src.symlink_metadata().map_err(io(&src))?;
        let old = dst.symlink_metadata().ok();
        let ft = meta.file_type();
        // Whatever is in the way goes, except a directory a directory merges into.
        if let Some(old) = old.as_ref().filter(|old| !(ft.is_dir() && old.is_dir())) {
            if old.is_dir() {
                std::fs::remove_dir_all(&dst).map_err(io(&dst))?;
            } else {
                std::fs::remove_file(&dst).map_err(io(&dst))?;
            }
        }
        let mode = std::fs::Permissions::from_mode(meta.mode() & 0o7777);
        if ft.is_dir() {
            if !dst.is_dir() {
                std::fs::create_dir(&dst).map_err(io(&dst))?;
            }
            count += overlay(&src, &dst)?;
            std::fs::set_permissions(&dst, mode).map_err(io(&dst))?;
        } else if ft.is_symlink() {
            symlink(std::fs::read_link(&src).map_err(io(&src))?, &dst).map_err(io(&dst))?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
            std::fs::set_permissions(&dst, mode).map_err(io(&dst))?;
        } else {
            return Err(OverlayError::Special(src));
        }
        count += 1;
    }
    Ok(count)
}

/// A path of the staged tree whose owner on the host differs from its owner in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerFix {
    /// Path relative to the root.
    pub path: PathBuf,
    /// Who must own it.
    pub owner: Owner,
}

/// The entries under `root` (the staging directory) whose host owner is not [`owner_of`]
/// them: `mke2fs -d` copies host ownership, which must be corrected in the image.
pub fn owner_fixes(root: &Path) -> io::Result<Vec<OwnerFix>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<OwnerFix>) -> io::Result<()> {
        for entry in std::fs::read_dir(root.join(rel))? {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            let meta = entry.path().symlink_metadata()?;
            let owner = owner_of(&rel);
            if meta.uid() != owner.uid || meta.gid() != owner.gid {
                out.push(OwnerFix { path: rel.clone(), owner });
            }
            if meta.is_dir() {
                walk(root, &rel, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes() -> Hashes {
        Hashes { root: "$6$saltsalt$ROOTHASH".into(), user: "$6$saltsalt$USERHASH".into() }
    }

    fn applets() -> Vec<String> {
        parse_applet_list("/bin/busybox\nbin/sh\nsbin/init\nusr/bin/awk\nusr/bin/[\nlinuxrc\nbin/sh\n../x\n")
    }

    fn sample() -> Vec<Entry> {
        base_entries(Path::new("/bin/busybox"), 2_000_000, &applets(), &hashes())
    }

    #[test]
    fn applet_list_is_relative_unique_and_without_busybox() {
        assert_eq!(applets(), ["bin/sh", "sbin/init", "usr/bin/awk", "usr/bin/[", "linuxrc"]);
    }

    #[test]
    fn applet_links_are_relative_to_their_directory() {
        assert_eq!(applet_target("bin/sh"), "busybox");
        assert_eq!(applet_target("sbin/init"), "../bin/busybox");
        assert_eq!(applet_target("usr/bin/awk"), "../../bin/busybox");
        assert_eq!(applet_target("linuxrc"), "bin/busybox");
    }

    #[test]
    fn file_list_has_the_system_and_parents_come_first() {
        let entries = sample();
        let find = |p: &str| entries.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("{p} missing"));
        for dir in
            ["dev", "proc", "sys", "tmp", "mnt", "root", "etc", "home/user", "var/log", "run", "usr/sbin"]
        {
            assert_eq!(find(dir).node, Node::Dir, "{dir}");
        }
        assert_eq!(find("tmp").mode, 0o1777);
        assert_eq!(find("root").mode, 0o700);
        assert_eq!(find("etc/shadow").mode, 0o600);
        assert_eq!(find("etc/init.d/rcS").mode, 0o755);
        assert_eq!(find("bin/sh").node, Node::Symlink("busybox".into()));
        assert!(matches!(find("bin/busybox").node, Node::Copy { size: 2_000_000, .. }));
        for file in
            ["inittab", "fstab", "passwd", "group", "shadow", "hostname", "issue", "profile", "shells"]
        {
            assert!(matches!(find(&format!("etc/{file}")).node, Node::File(_)), "{file}");
        }
        for (i, e) in entries.iter().enumerate() {
            if let Some(parent) = Path::new(&e.path).parent().filter(|p| !p.as_os_str().is_empty()) {
                let at = entries.iter().position(|p| Path::new(&p.path) == parent);
                assert!(at.is_some_and(|at| at < i), "{}: parent not before it", e.path);
            }
        }
        let mut paths: Vec<_> = entries.iter().map(|e| &e.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), entries.len(), "no path twice");
    }

    #[test]
    fn inittab_runs_rcs_and_a_getty_on_the_console() {
        let lines: Vec<&str> = INITTAB.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "::sysinit:/etc/init.d/rcS",
                "tty0::respawn:/sbin/getty -L 0 tty0 vt100",
                "::ctrlaltdel:/sbin/reboot",
                "::shutdown:/bin/umount -a -r",
                "::restart:/sbin/init",
            ]
        );
        assert!(RCS.starts_with("#!/bin/sh\n"));
        for step in ["mount -a", "hostname -F /etc/hostname", "mkdir -p /dev/pts"] {
            assert!(RCS.lines().any(|l| l == step), "{step}");
        }
        assert!(FSTAB.lines().any(|l| l == "/dev/ubda / ext2 defaults 0 1"));
    }

    #[test]
    fn accounts_are_root_and_user_with_shadowed_hashes() {
        assert_eq!(PASSWD.lines().next(), Some("root:x:0:0:root:/root:/bin/sh"));
        assert_eq!(PASSWD.lines().nth(1), Some("user:x:1000:1000:user:/home/user:/bin/sh"));
        assert_eq!(GROUP, "root:x:0:\nuser:x:1000:\n");
        let shadow = shadow(&hashes());
        let fields: Vec<Vec<&str>> = shadow.lines().map(|l| l.split(':').collect()).collect();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0][..3], ["root", "$6$saltsalt$ROOTHASH", ""]);
        assert_eq!(fields[1][..3], ["user", "$6$saltsalt$USERHASH", ""]);
        assert!(fields.iter().all(|f| f.len() == 9), "9 fields: {shadow}");
        assert!(ISSUE.contains("log in as root (password root) or user (password user)"));
        assert!(SHELLS.lines().any(|l| l == "/bin/sh"));
    }

    #[test]
    fn ownership_is_root_except_the_user_home() {
        assert_eq!(owner_of(Path::new("etc/passwd")), Owner::ROOT);
        assert_eq!(owner_of(Path::new("home")), Owner::ROOT);
        assert_eq!(owner_of(Path::new("home/user")), Owner::USER);
        assert_eq!(owner_of(Path::new("home/user/.profile")), Owner::USER);
        assert_eq!(owner_of(Path::new("home/username")), Owner::ROOT);
    }

    #[test]
    fn usage_counts_blocks_inodes_and_indirect_blocks() {
        let mut u = Usage::default();
        u.add_file(0);
        assert_eq!(u, Usage { blocks: 0, inodes: 1 });
        u.add_file(12 * BLOCK_SIZE);
        assert_eq!(u.blocks, 12);
        let mut big = Usage::default();
        big.add_file(13 * BLOCK_SIZE);
        assert_eq!(big.blocks, 14, "13 data blocks and one indirect block");
        let mut huge = Usage::default();
        huge.add_file((12 + 1024 + 1) * BLOCK_SIZE);
        assert_eq!(huge.blocks, 12 + 1024 + 1 + 3, "indirect, double indirect and one more indirect");
        let mut links = Usage::default();
        links.add_symlink(59);
        links.add_symlink(60);
        assert_eq!(links, Usage { blocks: 1, inodes: 2 });
        let mut dir = Usage::default();
        dir.add_dir([255; 20]);
        assert_eq!(dir.blocks, 2, "20 long names overflow one block");
    }

    #[test]
    fn minimum_size_covers_files_inodes_and_margin() {
        let entries = sample();
        let usage = entries_usage(&entries);
        assert_eq!(usage.inodes, entries.len() as u64 + 1, "every entry and the root");
        assert!(usage.blocks >= 2_000_000u64.div_ceil(BLOCK_SIZE));
        let min = min_image_bytes(usage);
        assert_eq!(min % (1 << 20), 0);
        assert!(min >= 2_000_000 * 11 / 10 + FIXED_OVERHEAD_BYTES, "{min}");
        assert!(min <= 8 << 20, "a bare busybox system fits in a few MiB: {min}");
        // Many small files: the inode tables decide.
        let many = Usage { blocks: 0, inodes: 100_000 };
        assert!(min_image_bytes(many) >= 110_000 * BYTES_PER_INODE);
        // More data never needs less space.
        assert!(min_image_bytes(usage.plus(Usage { blocks: 1000, inodes: 0 })) > min);
    }

    #[test]
    fn tree_is_written_with_modes_and_overlaid_by_from() {
        let base = std::env::temp_dir().join(format!("umlvm-tree-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(&root).unwrap();
        let entries = base_entries(Path::new("/proc/self/exe"), 0, &applets(), &hashes());
        write_tree(&root, &entries).unwrap();
        let mode = |p: &str| root.join(p).symlink_metadata().unwrap().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("root"), 0o700);
        assert_eq!(mode("etc/init.d/rcS"), 0o755);
        assert_eq!(std::fs::read_link(root.join("usr/bin/awk")).unwrap(), Path::new("../../bin/busybox"));
        assert_eq!(std::fs::read_to_string(root.join("etc/inittab")).unwrap(), INITTAB);

        let from = base.join("from");
        std::fs::create_dir_all(from.join("etc")).unwrap();
        std::fs::create_dir_all(from.join("opt/tool")).unwrap();
        std::fs::write(from.join("etc/motd"), "hi\n").unwrap();
        std::fs::write(from.join("etc/hostname"), "box\n").unwrap();
        std::fs::write(from.join("opt/tool/run"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(from.join("opt/tool/run"), std::fs::Permissions::from_mode(0o4750)).unwrap();
        symlink("busybox", from.join("bin_link")).unwrap();
        assert_eq!(overlay(&from, &root).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(root.join("etc/hostname")).unwrap(), "box\n");
        assert_eq!(std::fs::read_to_string(root.join("etc/motd")).unwrap(), "hi\n");
        assert!(root.join("etc/inittab").is_file(), "directories merge");
        assert_eq!(mode("opt/tool/run"), 0o4750);
        assert_eq!(std::fs::read_link(root.join("bin_link")).unwrap(), Path::new("busybox"));
        assert!(dir_usage(&from).unwrap().inodes == 7 + 1);

        // Everything was created by this user: every path needing another owner is listed.
        let fixes = owner_fixes(&root).unwrap();
        let me = std::fs::metadata(&root).unwrap().uid();
        let home = fixes.iter().find(|f| f.path == Path::new("home/user")).map(|f| f.owner);
        assert_eq!(home, Some(Owner::USER));
        assert_eq!(fixes.iter().any(|f| f.path == Path::new("etc/passwd")), me != 0);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
