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

/// Debian's static busybox (package busybox-static): the host-side judge of the guest's
/// userland, and the binary the test initramfs carries.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

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
    let cwd = TempDir::new(&format!("host-sh-{tag}"));
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
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
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
