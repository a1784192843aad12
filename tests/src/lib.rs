//! Helpers for umlvm's end-to-end tests: run the real `umlvm` binary (which embeds the real
//! guest kernel built from this workspace) in KVM, with a time limit, and capture what it
//! printed and its exit status.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one `umlvm` invocation did.
#[derive(Debug)]
pub struct Run {
    /// Exit status (`None` if killed by a signal).
    pub status: Option<i32>,
    /// Standard output (the guest console).
    pub stdout: String,
    /// Standard error (umlvm's own messages).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether it ran past its time limit and was killed (see [`run_command_bounded`]).
    pub timed_out: bool,
}

impl Run {
    /// Panics with the whole output unless stdout contains `needle`.
    #[track_caller]
    pub fn assert_stdout(&self, needle: &str) -> &Self {
        assert!(self.stdout.contains(needle), "stdout lacks {needle:?}\n{self}");
        self
    }

    /// Panics unless stderr contains `needle`.
    #[track_caller]
    pub fn assert_stderr(&self, needle: &str) -> &Self {
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}\n{self}");
        self
    }

    /// Panics unless the exit status is `code`.
    #[track_caller]
    pub fn assert_status(&self, code: i32) -> &Self {
        assert_eq!(self.status, Some(code), "unexpected exit status\n{self}");
        self
    }

    /// Standard output as the guest's terminal wrote it, with the tty's `\r\n` turned back into
    /// `\n` (see [`console_text`]).
    pub fn console(&self) -> String {
        console_text(&self.stdout)
    }

    /// Panics unless stderr is exactly one line starting with `umlvm: ` and containing `needle`,
    /// and the status is 2: the contract for bad input.
    #[track_caller]
    pub fn assert_one_line_error(&self, needle: &str) -> &Self {
        self.assert_status(2);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line\n{self}");
        assert!(lines[0].starts_with("umlvm: "), "error line lacks the umlvm: prefix\n{self}");
        assert!(lines[0].contains(needle), "error line lacks {needle:?}\n{self}");
        assert!(!self.stderr.contains("panicked"), "umlvm panicked\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- status {:?} after {:?}{}\n--- stdout\n{}--- stderr\n{}---",
            self.status,
            self.elapsed,
            if self.timed_out { " (timed out and killed)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// The `umlvm` binary under test: `$UMLVM_BIN`, or the one cargo built next to this test.
pub fn umlvm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("UMLVM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/umlvm
    let profile_dir =
        exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join("umlvm");
    assert!(
        bin.is_file(),
        "{} does not exist: build it first (`cargo build -p umlvm`; `make test` does) or set UMLVM_BIN",
        bin.display()
    );
    bin
}

/// Fails loudly when this machine has no usable /dev/kvm: KVM tests must not pass silently.
pub fn require_kvm() {
    let kvm = Path::new("/dev/kvm");
    assert!(
        kvm.exists(),
        "/dev/kvm is missing: the end-to-end tests boot real guests in KVM and cannot run here"
    );
    assert!(
        std::fs::OpenOptions::new().read(true).write(true).open(kvm).is_ok(),
        "/dev/kvm is not accessible to this user: add it to group kvm or run as root"
    );
}

/// Whether this host's KVM is `kvm_pvm` (PVM mode is then the default).
pub fn pvm_host() -> bool {
    Path::new("/sys/module/kvm_pvm").exists()
}

/// Runs `umlvm` with `args` and extra environment, killing it after `limit`.
pub fn umlvm_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut cmd = Command::new(umlvm_bin());
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_command(cmd, limit)
}

/// Runs a prepared command with a time limit, capturing both streams; panics if it runs
/// past the limit.
pub fn run_command(cmd: Command, limit: Duration) -> Run {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let run = run_command_bounded(cmd, limit);
    assert!(!run.timed_out, "umlvm {args:?} did not finish within {limit:?}\n{run}");
    run
}

/// Runs a prepared command with a time limit, capturing both streams. A command still running
/// at the limit is killed (by its PID) and the result says `timed_out`, with what it had
/// printed so far.
pub fn run_command_bounded(mut cmd: Command, limit: Duration) -> Run {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            // Only the child we started, by PID.
            let _ = child.kill();
            timed_out = true;
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().expect("reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().expect("reader")).into_owned();
    Run { status: if timed_out { None } else { status.code() }, stdout, stderr, elapsed, timed_out }
}

/// Runs `umlvm` with `args` (30 s limit).
pub fn umlvm(args: &[&str]) -> Run {
    umlvm_env(args, &[], Duration::from_secs(30))
}

/// Boots the guest: `umlvm run <switches>`, after checking KVM.
pub fn boot(switches: &[&str]) -> Run {
    require_kvm();
    let mut args = vec!["run"];
    args.extend_from_slice(switches);
    umlvm(&args)
}

/// A fresh scratch directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates one whose name includes `tag`.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("umlvm-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    /// Path of `name` inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Parses the first number after `prefix` in `text`.
pub fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Turns what a guest terminal wrote back into plain text: a tty's output processing writes
/// every `\n` as `\r\n`.
pub fn console_text(s: &str) -> String {
    s.replace("\r\n", "\n")
}

/// Boots the guest with an initramfs and runs its init with arguments:
/// `umlvm run --initrd INITRD SWITCHES... -- INIT_ARGS...` (Linux's convention: the words after
/// `--` are init's arguments), after checking KVM. A machine still running after `limit` is
/// killed; the result then says `timed_out`.
pub fn boot_initramfs(initrd: &Path, switches: &[&str], init_args: &[&str], limit: Duration) -> Run {
    require_kvm();
    let mut cmd = Command::new(umlvm_bin());
    cmd.arg("run").arg("--initrd").arg(initrd).args(switches);
    if !init_args.is_empty() {
        cmd.arg("--").args(init_args);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    run_command_bounded(cmd, limit)
}

/// Runs `busybox sh SCRIPT ARGS...` on the host as the guest's init would run it: in a fresh
/// empty working directory, with stdin on /dev/null and the environment cleared to what Linux
/// gives init (`HOME=/`, `TERM=linux`) plus the `PATH` busybox's shell uses when there is none.
/// Killed after `limit` (the result then says `timed_out`).
pub fn host_busybox_sh(script: &Path, args: &[&str], limit: Duration) -> Run {
    assert!(
        Path::new(HOST_BUSYBOX).is_file(),
        "{HOST_BUSYBOX} is missing: install Debian's busybox-static (`make setup` does)"
    );
    let tag = script.file_stem().map_or_else(|| "script".into(), |s| s.to_string_lossy().into_owned());
    // Concurrent tests may run the same script: each run gets its own directory.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cwd = TempDir::new(&format!("host-sh-{tag}-{n}"));
    let mut cmd = Command::new(HOST_BUSYBOX);
    cmd.arg("sh")
        .arg(script)
        .args(args)
        .current_dir(cwd.path())
        .env_clear()
        .env("PATH", "/sbin:/usr/sbin:/bin:/usr/bin")
        .env("HOME", "/")
        .env("TERM", "linux")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_command_bounded(cmd, limit)
}

/// A line diff of `expected` against `actual` in the style of `diff -u`: `-` lines only in
/// `expected`, `+` lines only in `actual`, and up to three common lines of context around each
/// change. Empty when they are equal.
pub fn line_diff(expected: &str, actual: &str) -> String {
    const CONTEXT: usize = 3;
    let a: Vec<&str> = expected.split_inclusive('\n').collect();
    let b: Vec<&str> = actual.split_inclusive('\n').collect();
    // Longest common subsequence table, filled from the ends.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown = None;
    for (k, (op, line)) in ops.iter().enumerate() {
        let near = changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
        if !near {
            continue;
        }
        if last_shown.is_some_and(|l| l + 1 != k) || (last_shown.is_none() && k > 0) {
            out.push_str("@@\n");
        }
        out.push(*op);
        // Control characters (a stray `\r`, say) are shown escaped.
        for c in line.strip_suffix('\n').unwrap_or(line).chars() {
            if c.is_control() && c != '\t' {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        if !line.ends_with('\n') {
            out.push_str("  (no newline at end)");
        }
        out.push('\n');
        last_shown = Some(k);
    }
    out
}

/// Reads from `r`, appending to `buf`, until `buf` contains `needle`; panics after `limit`
/// or at end of input, with everything read. Works with readers that time out or are
/// non-blocking, and with a pty master while nothing holds its slave open (EIO).
pub fn read_more_until(r: &mut impl Read, buf: &mut Vec<u8>, needle: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(buf).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {needle:?}; got {:?}",
            String::from_utf8_lossy(buf)
        );
        match r.read(&mut chunk) {
            Ok(0) => panic!("end of stream before {needle:?}; got {:?}", String::from_utf8_lossy(buf)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads from `r` until `needle` appears (see [`read_more_until`]); returns everything read.
pub fn read_until(r: &mut impl Read, needle: &str, limit: Duration) -> String {
    let mut buf = Vec::new();
    read_more_until(r, &mut buf, needle, limit);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The host's static busybox, which test initramfs images are built from.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// The applets of the host's busybox as paths relative to the root (`bin/sh`,
/// `usr/bin/awk`, ...), after checking that it is a static x86-64 binary a guest can run.
fn busybox_applets() -> &'static [String] {
    static APPLETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    APPLETS.get_or_init(|| {
        let bin = Path::new(HOST_BUSYBOX);
        let elf = std::fs::read(bin).unwrap_or_else(|e| {
            panic!("{HOST_BUSYBOX}: {e}: install Debian's busybox-static (apt-get install busybox-static; `make setup` does)")
        });
        assert!(
            is_static_x86_64_elf(&elf),
            "{HOST_BUSYBOX} is not a statically linked x86-64 executable (Debian's `busybox` package is \
             dynamic): install busybox-static instead (apt-get install busybox-static; `make setup` does)"
        );
        let out = Command::new(bin).arg("--list-full").output().expect("run busybox --list-full");
        assert!(out.status.success(), "{HOST_BUSYBOX} --list-full failed: {out:?}");
        let list = String::from_utf8(out.stdout).expect("applet paths are UTF-8");
        let applets: Vec<String> = list
            .lines()
            .map(|l| l.trim().trim_start_matches('/').to_string())
            .filter(|l| !l.is_empty() && l != "bin/busybox")
            .collect();
        assert!(applets.iter().any(|a| a == "bin/sh"), "{HOST_BUSYBOX} has no sh applet");
        applets
    })
}

/// Whether `elf` is a 64-bit little-endian x86-64 ELF executable without a program
/// interpreter (`PT_INTERP`), i.e. statically linked.
fn is_static_x86_64_elf(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 || u16_at(18) != Some(62) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    const PT_INTERP: u32 = 3;
    (0..phnum as usize).all(|i| {
        let ph = phoff as usize + i * phentsize as usize;
        u32_at(ph).is_some_and(|t| t != PT_INTERP)
    })
}

/// What a test adds to an initramfs: a path relative to its root, the bytes, the mode bits
/// (e.g. `0o755`). An entry named `init` replaces the default `/init`.
pub type ExtraFile<'a> = (&'a str, &'a [u8], u32);

/// The default `/init`: a shell script, since busybox picks its applet by the name it was
/// started as and an `/init` symlink would run busybox's `init`, not a shell.
pub const DEFAULT_INIT: &[u8] = b"#!/bin/sh\nexec /bin/sh\n";

/// Builds a busybox initramfs in `dir` and returns the path of its `.cpio.gz`: a newc cpio
/// archive (gzipped, `gzip -9n`) holding `bin/busybox` (the host's busybox-static), a
/// symlink to it for every applet (`bin/sh`, `usr/bin/awk`, ...), the directories `dev proc
/// sys tmp etc root`, an `/init` ([`DEFAULT_INIT`] unless `extra` has one) and the `extra`
/// files. Entries are in `find . | sort` order, owned by root.
///
/// Archives are cached per test process by the content of `extra`: a second call with the
/// same files writes the cached bytes instead of packing again. Panics, naming the Debian
/// package to install, if busybox-static, cpio or gzip is missing.
pub fn busybox_initramfs(dir: &Path, extra: &[ExtraFile<'_>]) -> PathBuf {
    type Key = Vec<(String, Vec<u8>, u32)>;
    type Cache = Vec<(Key, std::sync::Arc<Vec<u8>>)>;
    static CACHE: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
    let key: Key = extra.iter().map(|(p, b, m)| (p.to_string(), b.to_vec(), *m)).collect();
    let (index, bytes) = {
        // Held while packing, so concurrent tests wanting the same archive pack it once.
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        let index = match cache.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let bytes = pack_busybox_initramfs(dir, extra);
                cache.push((key, std::sync::Arc::new(bytes)));
                cache.len() - 1
            }
        };
        (index, cache[index].1.clone())
    };
    let out = dir.join(format!("busybox-initramfs-{index}.cpio.gz"));
    std::fs::write(&out, &*bytes).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    out
}

/// Stages and packs one initramfs (see [`busybox_initramfs`]); returns the `.cpio.gz` bytes.
fn pack_busybox_initramfs(dir: &Path, extra: &[ExtraFile<'_>]) -> Vec<u8> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let applets = busybox_applets();
    let stage = dir.join(format!("initramfs-stage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    let mkdir = |p: &Path| std::fs::create_dir_all(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "root"] {
        mkdir(&stage.join(d));
    }
    chmod(&stage.join("tmp"), 0o1777);
    chmod(&stage.join("root"), 0o700);
    let busybox = stage.join("bin/busybox");
    std::fs::copy(HOST_BUSYBOX, &busybox).unwrap_or_else(|e| panic!("copy {HOST_BUSYBOX}: {e}"));
    chmod(&busybox, 0o755);
    for applet in applets {
        let link = stage.join(applet);
        mkdir(link.parent().expect("applet paths have a parent"));
        symlink("/bin/busybox", &link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
    }
    let mut files: Vec<ExtraFile<'_>> = vec![("init", DEFAULT_INIT, 0o755)];
    files.extend_from_slice(extra);
    for (path, bytes, mode) in files {
        let rel = path.trim_start_matches('/');
        assert!(
            !rel.is_empty() && !Path::new(rel).components().any(|c| c == std::path::Component::ParentDir),
            "initramfs path {path:?} must name a file inside the archive"
        );
        let file = stage.join(rel);
        mkdir(file.parent().expect("joined path has a parent"));
        if file.symlink_metadata().is_ok() {
            std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        }
        std::fs::write(&file, bytes).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        chmod(&file, mode & 0o7777);
    }

    let found = Command::new("find").arg(".").current_dir(&stage).output().expect("run find");
    assert!(found.status.success(), "find failed: {found:?}");
    let mut names: Vec<&[u8]> = found.stdout.split(|&b| b == b'\n').filter(|n| !n.is_empty()).collect();
    names.sort_unstable(); // byte order, as `LC_ALL=C sort`
    let mut list = names.join(&b'\n');
    list.push(b'\n');

    let missing = |name: &'static str, package: &'static str| {
        move |e: std::io::Error| -> std::process::Child {
            panic!("cannot run {name}: {e}: install Debian's {package} (`make setup` does)")
        }
    };
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet", "-R", "0:0"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(missing("cpio", "cpio"));
    let cpio_out = cpio.stdout.take().expect("piped");
    let gzip = Command::new("gzip")
        .arg("-9n")
        .stdin(cpio_out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(missing("gzip", "gzip"));
    {
        use std::io::Write;
        let mut stdin = cpio.stdin.take().expect("piped");
        stdin.write_all(&list).expect("write the file list to cpio");
    }
    let packed = gzip.wait_with_output().expect("wait for gzip");
    let cpio_status = cpio.wait().expect("wait for cpio");
    assert!(cpio_status.success(), "cpio -o failed: {cpio_status}");
    assert!(packed.status.success(), "gzip failed: {}", packed.status);
    let _ = std::fs::remove_dir_all(&stage);
    packed.stdout
}

/// A pseudo-terminal for tests that need umlvm's stdin to be a terminal.
pub mod pty {
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd};

    /// Opens a pty pair: (master, slave).
    pub fn open() -> (File, File) {
        // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on a descriptor we own; the name
        // buffer is large enough and NUL-terminated by ptsname_r on success.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt");
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let path = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
            let master = File::from_raw_fd(m);
            let slave =
                std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open pty slave");
            (master, slave)
        }
    }

    /// Whether the terminal is in canonical (cooked) mode, as a fresh terminal is.
    pub fn is_canonical(f: &File) -> bool {
        // SAFETY: termios is plain data that tcgetattr fills.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(f.as_raw_fd(), &mut t), 0, "tcgetattr");
            t.c_lflag & libc::ICANON != 0
        }
    }

    /// Makes reads from `f` return `WouldBlock` instead of waiting (for a pty master that
    /// [`read_until`](super::read_until) polls).
    pub fn set_nonblocking(f: &File) {
        // SAFETY: fcntl on a descriptor we own, with integer flags.
        unsafe {
            let flags = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
            assert!(flags >= 0, "F_GETFL");
            assert_eq!(libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK), 0, "F_SETFL");
        }
    }

    /// Sends SIGTERM to a child we started.
    pub fn terminate(child: &std::process::Child) {
        // SAFETY: kill with the PID of our own child and a plain signal number.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
}

/// The master side of a pty with a shell on its slave, and what has been read but not yet
/// consumed.
pub struct Terminal {
    /// The pty master.
    pub master: std::fs::File,
    pending: Vec<u8>,
    prompt: &'static str,
}

impl Terminal {
    /// Waits up to `limit` for `needle`; returns the output up to and including it.
    pub fn expect(&mut self, needle: &str, limit: std::time::Duration) -> String {
        read_more_until(&mut self.master, &mut self.pending, needle, limit);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        let end = text.find(needle).expect("read_more_until found it") + needle.len();
        self.pending = text.as_bytes()[end..].to_vec();
        text[..end].to_string()
    }

    /// Waits for the prompt.
    pub fn prompt(&mut self, limit: std::time::Duration) -> String {
        let prompt = self.prompt;
        self.expect(prompt, limit)
    }

    /// Types `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self.master, bytes).expect("write to the pty");
    }
}

/// A child we started, killed (by its PID) if it is still running when a test gives up on it.
pub struct Guarded(pub std::process::Child);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A fresh pty: its master, non-blocking for [`Terminal::expect`], and its slave.
pub fn terminal(prompt: &'static str) -> (Terminal, std::fs::File) {
    let (master, slave) = pty::open();
    pty::set_nonblocking(&master);
    (Terminal { master, pending: Vec::new(), prompt }, slave)
}

/// A machine started with `umid` under `base` (`--uml-dir`), its console collected in the
/// background, killed by its PID when dropped; `start` returns once `ready` was printed.
pub struct Machine {
    /// The umlvm process.
    pub child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
    /// Its mconsole socket.
    pub socket: PathBuf,
    stderr: PathBuf,
}

impl Machine {
    /// Starts `umlvm run umid=UMID --uml-dir BASE EXTRA...`.
    pub fn start(base: &Path, umid: &str, extra: &[&str], ready: &str) -> Self {
        require_kvm();
        let mut args =
            vec!["run".to_string(), format!("umid={umid}"), "--uml-dir".into(), base.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let stderr = base.join(format!("{umid}.stderr"));
        let mut child = std::process::Command::new(umlvm_bin())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let m = Self { child, out, socket: base.join(umid).join("mconsole"), stderr };
        m.wait_for(ready);
        assert!(m.socket.exists(), "no mconsole socket at {}", m.socket.display());
        m
    }

    /// The console output so far.
    pub fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until the console shows `needle`.
    pub fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.output().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in\n{}\n--- umlvm stderr\n{}",
                self.output(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Debian's uml_mconsole against this machine: (exit status, output).
    pub fn uml_mconsole(&self, command: &[&str]) -> (Option<i32>, String) {
        uml_mconsole_at(&self.socket, command, || {
            format!(
                "--- guest\n{}\n--- umlvm stderr\n{}",
                self.output(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            )
        })
    }

    /// Waits (up to 20 s) for the machine to end; its exit status.
    pub fn wait(mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(std::time::Instant::now() < deadline, "machine did not end\n{}", self.output());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Only the machine this test started, by PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs Debian's `uml_mconsole SOCKET COMMAND...` (package uml-utilities), bounded to 10 s
/// (the client is killed by its PID then, and the test fails with `context()`): (exit status,
/// trimmed output).
pub fn uml_mconsole_at(
    socket: &Path,
    command: &[&str],
    context: impl Fn() -> String,
) -> (Option<i32>, String) {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new("uml_mconsole")
        .arg(socket)
        .args(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("uml_mconsole (package uml-utilities)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            return (status.code(), out.trim().to_string());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("uml_mconsole {command:?} got no reply in 10 s\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_marks_changes_with_context() {
        assert_eq!(line_diff("a\nb\n", "a\nb\n"), "");
        let d = line_diff("1\n2\n3\n4\n5\n6\n7\nold\n", "1\n2\n3\n4\n5\n6\n7\nnew\r\nextra");
        assert_eq!(d, "@@\n 5\n 6\n 7\n-old\n+new\\r\n+extra  (no newline at end)\n");
        assert_eq!(console_text("a\r\nb\r\n"), "a\nb\n");
    }

    fn run_ok(cmd: &mut Command) -> String {
        let out = cmd.output().expect("spawn");
        assert!(out.status.success(), "{cmd:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn busybox_initramfs_is_a_gzipped_newc_archive_with_sh_and_init() {
        let dir = TempDir::new("initramfs");
        let hello: &[u8] = b"hello\n";
        let path = busybox_initramfs(dir.path(), &[("etc/motd", hello, 0o644)]);
        assert!(path.to_string_lossy().ends_with(".cpio.gz"));
        run_ok(Command::new("gzip").arg("-t").arg(&path));
        let cpio = std::fs::File::open(&path).unwrap();
        let mut gunzip = Command::new("gzip").arg("-dc").stdin(cpio).stdout(Stdio::piped()).spawn().unwrap();
        let listing =
            run_ok(Command::new("cpio").args(["-t", "--quiet"]).stdin(gunzip.stdout.take().unwrap()));
        assert!(gunzip.wait().unwrap().success(), "gzip -dc {}", path.display());
        let names: Vec<&str> = listing.lines().map(|l| l.trim_start_matches("./")).collect();
        for want in ["bin/sh", "bin/busybox", "init", "etc/motd", "dev", "proc", "sys", "tmp", "root"] {
            assert!(names.contains(&want), "{want} missing from {}:\n{listing}", path.display());
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "entries in sorted order");

        // The same files again come from the per-process cache, byte for byte.
        let again = busybox_initramfs(dir.path(), &[("etc/motd", hello, 0o644)]);
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap());
    }

    #[test]
    fn static_elf_check() {
        assert!(is_static_x86_64_elf(&std::fs::read(HOST_BUSYBOX).unwrap()));
        assert!(!is_static_x86_64_elf(&std::fs::read("/bin/cat").unwrap()), "cat is dynamic");
        assert!(!is_static_x86_64_elf(b"#!/bin/sh\n"));
    }
}
