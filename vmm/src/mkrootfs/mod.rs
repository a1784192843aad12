//! `umlvm mkrootfs`: builds a bootable ext2 root filesystem image holding Debian's
//! busybox-static, as the UML HOWTO's `root_fs` images were built.
//!
//! The steps: find a static busybox ([`busybox`]), lay out the tree ([`tree`]) in a temporary
//! staging directory, hash the passwords with busybox's own `mkpasswd`, copy `--from` on
//! top, `mke2fs -d` into a temporary file beside OUT, give every file its owner with
//! `debugfs` (root, `/home/user` to user) whoever runs the command, check with `e2fsck -fn`,
//! and only then rename the image to OUT. Bad input is refused before anything is written;
//! on any error the staging directory and the temporary image are removed.
//!
//! Two environment variables exist for tests that need a host without a busybox or without
//! e2fsprogs: `UMLVM_MKROOTFS_HOST_BUSYBOX` replaces the host paths searched for busybox and
//! `UMLVM_MKROOTFS_SBIN` the directories searched after `$PATH` for e2fsprogs.

pub mod busybox;
pub mod e2fs;
pub mod tree;

use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `umlvm mkrootfs`.
#[derive(Args, Debug)]
#[command(after_help = "The image holds busybox (bin/busybox and a link for each applet), busybox \
init with a login prompt on the console, and two accounts: root (password root) and user \
(password user). Boot it with `umlvm run --rootfs OUT`. Needs e2fsprogs (mke2fs -d, debugfs, e2fsck).")]
pub struct MkrootfsArgs {
    /// The image file to create.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// Image size: bytes or K/M/G/T (powers of 1024), a multiple of 4 KiB.
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub size: String,
    /// A directory whose contents are copied over the tree (modes kept; owned by root, by
    /// user under home/user).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// The busybox to install: a statically linked x86-64 executable (default: the host's
    /// /bin/busybox or /usr/bin/busybox, else Debian's busybox-static via apt-get download).
    #[arg(long, value_name = "PATH")]
    pub busybox: Option<PathBuf>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Why mkrootfs refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MkrootfsError {
    /// OUT exists and `--force` was not given.
    #[error("{}: already exists (use --force to replace it)", .0.display())]
    Exists(PathBuf),
    /// OUT exists and is a directory or device.
    #[error("{}: not a regular file", .0.display())]
    OutNotFile(PathBuf),
    /// OUT's directory is missing.
    #[error("{}: no such directory", .0.display())]
    NoOutDir(PathBuf),
    /// `--size` does not parse or is not whole blocks.
    #[error("--size {0}: {1}")]
    BadSize(String, &'static str),
    /// `--size` is smaller than the tree needs.
    #[error(
        "--size {size}: too small: the tree needs at least {min_mib} MiB (use --size {min_mib}M or more)"
    )]
    TooSmall {
        /// As given.
        size: String,
        /// The minimum in MiB.
        min_mib: u64,
    },
    /// `--from` is not a directory.
    #[error("--from {}: not a directory", .0.display())]
    FromNotDir(PathBuf),
    /// `--from` cannot be read or copied.
    #[error("--from")]
    From(#[source] tree::OverlayError),
    /// A `--from` path debugfs cannot name.
    #[error("--from: {}: names with '\"' or control characters are not supported", .0.display())]
    Unquotable(PathBuf),
    /// `--busybox PATH` is unusable.
    #[error("--busybox {}", .0.display())]
    BadBusybox(PathBuf, #[source] std::io::Error),
    /// No usable busybox anywhere.
    #[error(
        "no statically linked busybox: {0}; install Debian's busybox-static (apt-get install \
         busybox-static) or give one with --busybox PATH"
    )]
    NoBusybox(String),
    /// The busybox does not work as expected.
    #[error("busybox {}: {}", .0.display(), .1)]
    Busybox(PathBuf, String),
    /// An e2fsprogs tool is missing or too old.
    #[error("{0}: {1}")]
    Tool(&'static str, String),
    /// An e2fsprogs step failed.
    #[error("{0} {1}")]
    Step(&'static str, String),
    /// A host file operation failed.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
}

type Result<T> = std::result::Result<T, MkrootfsError>;

/// Removes a temporary file or directory when dropped, unless kept.
struct Cleanup {
    path: PathBuf,
    keep: bool,
}

impl Cleanup {
    fn new(path: PathBuf) -> Self {
        Self { path, keep: false }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if self.path.is_dir() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A new private directory under the system temp dir.
fn make_temp_dir(tag: &str) -> Result<Cleanup> {
    use std::os::unix::fs::DirBuilderExt;
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("umlvm-mkrootfs-{tag}-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(|e| MkrootfsError::Io(path.clone(), e))?;
    Ok(Cleanup::new(path))
}

/// Step lines on stderr: `mkrootfs: WHAT`, with the step number and percentage on a
/// terminal.
struct Progress {
    step: usize,
    total: usize,
    tty: bool,
}

impl Progress {
    fn say(&mut self, what: &str) {
        self.step += 1;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let pct = self.step * 100 / self.total.max(1);
            let _ = writeln!(err, "mkrootfs [{}/{} {pct:3}%] {what}", self.step, self.total);
        } else {
            let _ = writeln!(err, "mkrootfs: {what}");
        }
    }
}

/// Parses `--size`: whole 4 KiB blocks, at least one MiB.
fn parse_image_size(input: &str) -> Result<u64> {
    let bytes = crate::config::parse_size(input).ok_or(MkrootfsError::BadSize(
        input.into(),
        "not a size (use a number of bytes with an optional K, M, G or T suffix, e.g. 256M)",
    ))?;
    if bytes % tree::BLOCK_SIZE != 0 {
        return Err(MkrootfsError::BadSize(
            input.into(),
            "not a multiple of 4 KiB (the file-system block size)",
        ));
    }
    if bytes > 16 << 40 {
        return Err(MkrootfsError::BadSize(
            input.into(),
            "larger than the 16 TiB ext2 allows with 4 KiB blocks",
        ));
    }
    Ok(bytes)
}

/// Finds a usable busybox: `--busybox`, the host's, or a downloaded one (into `scratch`).
fn find_busybox(given: Option<&Path>, scratch: &Path, say: &mut dyn FnMut(&str)) -> Result<busybox::Found> {
    if let Some(path) = given {
        busybox::check_file(path).map_err(|e| MkrootfsError::BadBusybox(path.into(), e))?;
        return Ok(busybox::Found { path: path.into(), origin: busybox::Origin::Given });
    }
    // Tests point this at paths without a busybox to exercise the fallback.
    let host_paths: Vec<PathBuf> = match std::env::var_os("UMLVM_MKROOTFS_HOST_BUSYBOX") {
        Some(list) => std::env::split_paths(&list).collect(),
        None => busybox::HOST_PATHS.iter().map(PathBuf::from).collect(),
    };
    let mut notes = Vec::new();
    for path in &host_paths {
        match busybox::check_file(path) {
            Ok(()) => return Ok(busybox::Found { path: path.clone(), origin: busybox::Origin::Host }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push(format!("{}: {e}", path.display())),
        }
    }
    if notes.is_empty() {
        let looked: Vec<String> = host_paths.iter().map(|p| p.display().to_string()).collect();
        notes.push(format!("none at {}", looked.join(", ")));
    }
    match busybox::download(scratch, say) {
        Ok(path) => {
            busybox::check_file(&path).map_err(|e| MkrootfsError::Busybox(path.clone(), e.to_string()))?;
            Ok(busybox::Found { path, origin: busybox::Origin::Downloaded })
        }
        Err(why) => {
            notes.push(why);
            Err(MkrootfsError::NoBusybox(notes.join("; ")))
        }
    }
}

/// `umlvm mkrootfs`.
pub fn mkrootfs(args: &MkrootfsArgs) -> Result<()> {
    // Everything the user gave is checked before anything is written.
    let out = &args.out;
    if let Ok(meta) = out.symlink_metadata() {
        if !args.force {
            return Err(MkrootfsError::Exists(out.clone()));
        }
        if !meta.is_file() {
            return Err(MkrootfsError::OutNotFile(out.clone()));
        }
    }
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        return Err(MkrootfsError::NoOutDir(out_dir));
    }
    let size = parse_image_size(&args.size)?;
    if let Some(from) = args.from.as_ref().filter(|f| !f.is_dir()) {
        return Err(MkrootfsError::FromNotDir(from.clone()));
    }
    let tool = |name: &'static str| {
        e2fs::find_tool(name).ok_or_else(|| {
            MkrootfsError::Tool(
                name,
                "not found: install Debian's e2fsprogs (apt-get install e2fsprogs)".into(),
            )
        })
    };
    let (mke2fs, debugfs, e2fsck) = (tool("mke2fs")?, tool("debugfs")?, tool("e2fsck")?);
    let version = e2fs::mke2fs_version(&mke2fs).map_err(|e| MkrootfsError::Tool("mke2fs", e))?;
    if version < e2fs::MIN_VERSION {
        return Err(MkrootfsError::Tool(
            "mke2fs",
            format!(
                "version {}.{} has no -d: mkrootfs needs e2fsprogs {}.{} or newer",
                version.0,
                version.1,
                e2fs::MIN_VERSION.0,
                e2fs::MIN_VERSION.1
            ),
        ));
    }

    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let scratch = make_temp_dir("work")?;
    // A download reports itself as it goes: it is slow and reaches the network.
    let mut say_now = |what: &str| eprintln!("mkrootfs: {what}");
    let found = find_busybox(args.busybox.as_deref(), &scratch.path, &mut say_now)?;
    let bb = &found.path;
    let bb_size = std::fs::metadata(bb).map_err(|e| MkrootfsError::Io(bb.clone(), e))?.len();
    let applets =
        tree::parse_applet_list(&busybox::list_full(bb).map_err(|e| MkrootfsError::Busybox(bb.clone(), e))?);
    if !applets.iter().any(|a| a == "bin/sh") || !applets.iter().any(|a| a == "sbin/init") {
        return Err(MkrootfsError::Busybox(bb.clone(), "has no sh or init applet".into()));
    }
    // Placeholder hashes of the final length for the size computation.
    let sizing = tree::Hashes { root: "x".repeat(106), user: "x".repeat(106) };
    let mut usage = tree::entries_usage(&tree::base_entries(bb, bb_size, &applets, &sizing));
    if let Some(from) = &args.from {
        let extra = tree::dir_usage(from)
            .map_err(|e| MkrootfsError::From(tree::OverlayError::Io(from.clone(), e)))?;
        usage = usage.plus(extra);
    }
    let min = tree::min_image_bytes(usage);
    if size < min {
        return Err(MkrootfsError::TooSmall { size: args.size.clone(), min_mib: min >> 20 });
    }

    let mut progress = Progress { step: 0, total: if args.from.is_some() { 7 } else { 6 }, tty };
    let how = match found.origin {
        busybox::Origin::Given => "given with --busybox",
        busybox::Origin::Host => "the host's",
        busybox::Origin::Downloaded => "from Debian's busybox-static package",
    };
    progress.say(&format!(
        "busybox: {} ({how}; {}, static x86-64, {} applets)",
        bb.display(),
        busybox::version(bb),
        applets.len()
    ));

    let salt = |what| busybox::random_salt().map_err(|e| MkrootfsError::Io(PathBuf::from(what), e));
    let hash = |password: &str, salt: &str| {
        busybox::mkpasswd(bb, password, salt).map_err(|e| MkrootfsError::Busybox(bb.clone(), e))
    };
    let hashes = tree::Hashes {
        root: hash("root", &salt("/dev/urandom")?)?,
        user: hash("user", &salt("/dev/urandom")?)?,
    };
    progress.say("passwords: root/root and user/user, SHA-512 crypt with random salts (busybox mkpasswd -m sha512, the code busybox login checks with)");

    let staging = scratch.path.join("root");
    std::fs::create_dir(&staging).map_err(|e| MkrootfsError::Io(staging.clone(), e))?;
    let entries = tree::base_entries(bb, bb_size, &applets, &hashes);
    tree::write_tree(&staging, &entries).map_err(|e| MkrootfsError::Io(staging.clone(), e))?;
    let dirs = entries.iter().filter(|e| e.node == tree::Node::Dir).count();
    let files = entries.iter().filter(|e| matches!(e.node, tree::Node::File(_))).count();
    progress.say(&format!(
        "staging tree: {dirs} directories, bin/busybox, {} applet links, {files} files in /etc",
        applets.len()
    ));
    if let Some(from) = &args.from {
        let n = tree::overlay(from, &staging).map_err(MkrootfsError::From)?;
        progress.say(&format!("--from {}: copied {n} entries over the tree", from.display()));
    }

    let fixes = tree::owner_fixes(&staging).map_err(|e| MkrootfsError::Io(staging.clone(), e))?;
    let script = e2fs::owner_script(&fixes).map_err(MkrootfsError::Unquotable)?;

    // The image is made beside OUT and renamed over it only when complete and checked.
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root_fs".into());
    let partial = out_dir.join(format!(".{name}.mkrootfs-{}", std::process::id()));
    let mut image = Cleanup::new(partial.clone());
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| MkrootfsError::Io(partial.clone(), e))?;
    e2fs::mke2fs(&mke2fs, &staging, &partial, size).map_err(|e| MkrootfsError::Step("mke2fs", e))?;
    progress.say(&format!(
        "mke2fs -t ext2 -L root_fs -d: {} MiB image, {} KiB blocks",
        size >> 20,
        tree::BLOCK_SIZE / 1024
    ));

    e2fs::debugfs_write(&debugfs, &partial, &script, &scratch.path)
        .map_err(|e| MkrootfsError::Step("debugfs", e))?;
    progress.say(&format!(
        "owners: everything root:root, /home/user user:user ({} set with debugfs)",
        fixes.len()
    ));

    e2fs::e2fsck(&e2fsck, &partial).map_err(|e| MkrootfsError::Step("e2fsck -fn", e))?;
    progress.say("e2fsck -fn: clean");

    std::fs::rename(&partial, out).map_err(|e| MkrootfsError::Io(out.clone(), e))?;
    image.keep = true;
    eprintln!("mkrootfs: wrote {}: boot it with `umlvm run --rootfs {}`", out.display(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_whole_blocks() {
        assert_eq!(parse_image_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_image_size("8192").unwrap(), 8192);
        let e = parse_image_size("lots").unwrap_err().to_string();
        assert!(e.starts_with("--size lots: not a size"), "{e}");
        let e = parse_image_size("1000").unwrap_err().to_string();
        assert_eq!(e, "--size 1000: not a multiple of 4 KiB (the file-system block size)");
        assert!(parse_image_size("17T").is_err());
    }

    #[test]
    fn cleanup_removes_unless_kept() {
        let dir = make_temp_dir("unit").unwrap();
        let path = dir.path.clone();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
        let mut kept = make_temp_dir("unit").unwrap();
        kept.keep = true;
        let path = kept.path.clone();
        drop(kept);
        assert!(path.is_dir());
        std::fs::remove_dir_all(path).unwrap();
    }
}
