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
            "--- status {:?} after {:?}\n--- stdout\n{}--- stderr\n{}---",
            self.status, self.elapsed, self.stdout, self.stderr
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

/// Runs a prepared command with a time limit, capturing both streams.
pub fn run_command(mut cmd: Command, limit: Duration) -> Run {
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
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            // Only the child we started, by PID.
            let _ = child.kill();
            let _ = child.wait();
            panic!("umlvm {:?} did not finish within {limit:?}", cmd.get_args().collect::<Vec<_>>());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out_reader.join().expect("reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().expect("reader")).into_owned();
    Run { status: status.code(), stdout, stderr, elapsed }
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

    /// Sends SIGTERM to a child we started.
    pub fn terminate(child: &std::process::Child) {
        // SAFETY: kill with the PID of our own child and a plain signal number.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }
}
