//! End-to-end: the busybox userland. The guest boots a busybox initramfs and runs Debian's
//! busybox-static as init, the way Linux does (`init=/bin/sh -- ARGS...`):
//!
//! - every script in `tests/scripts/sh/` must print exactly what the host's busybox prints for
//!   it and end with the same status;
//! - the common applets give concrete, checked output (`tests/scripts/applets.sh`);
//! - a shell on a terminal answers, ^C interrupts a command, `exit N` and ^D end the machine;
//! - init's exit status, or 128+N when a signal kills it, is umlvm's.
//!
//! The tests that need no KVM check the judges themselves against the host's busybox.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use umlvm_tests::{
    Guarded, HOST_BUSYBOX, Run, TempDir, Terminal, boot_initramfs, busybox_initramfs, console_text,
    host_busybox_sh, line_diff, pty, require_kvm, terminal, umlvm_bin,
};

/// Switches for a userland boot: no informational kernel lines on the console, a shell as init.
const SH_INIT: &[&str] = &["quiet", "init=/bin/sh"];
/// How long one guest (or one host script) may run before it is killed and reported.
const LIMIT: Duration = Duration::from_secs(30);
/// The differential test stops after this many guests time out, to keep the suite bounded.
const MAX_TIMEOUTS: usize = 3;

/// One script of the corpus, with what its header documents.
struct Script {
    /// File name without `.sh`.
    name: String,
    path: PathBuf,
    /// `# status: N`: the exit status it must end with.
    status: i32,
    /// `# args: A B ...`: its positional arguments (no spaces; they travel on the kernel
    /// command line).
    args: Vec<String>,
}

impl Script {
    fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let status = header("# status:")
            .unwrap_or_else(|| panic!("{}: no `# status: N` line", path.display()))
            .parse()
            .unwrap_or_else(|e| panic!("{}: bad `# status:` line: {e}", path.display()));
        let args =
            header("# args:").map_or_else(Vec::new, |a| a.split_whitespace().map(String::from).collect());
        let name = path.file_stem().expect("a file name").to_string_lossy().into_owned();
        Self { name, path: path.to_path_buf(), status, args }
    }

    /// Where it lies in the guest's initramfs.
    fn guest_path(&self) -> String {
        format!("/scripts/{}.sh", self.name)
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// The corpus, sorted by name.
fn sh_scripts() -> Vec<Script> {
    let dir = scripts_dir().join("sh");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 25, "the corpus in {} has only {} scripts", dir.display(), paths.len());
    paths.iter().map(|p| Script::load(p)).collect()
}

fn applets_script() -> PathBuf {
    scripts_dir().join("applets.sh")
}

/// The initramfs every test here boots, built once per test process: busybox and its applet
/// links, with the corpus and the applet script under `/scripts`.
fn initramfs() -> &'static Path {
    static INITRAMFS: OnceLock<PathBuf> = OnceLock::new();
    INITRAMFS.get_or_init(|| {
        let mut files: Vec<(String, Vec<u8>)> =
            sh_scripts().iter().map(|s| (s.guest_path(), std::fs::read(&s.path).expect("script"))).collect();
        files.push(("/scripts/applets.sh".into(), std::fs::read(applets_script()).expect("applets.sh")));
        let extra: Vec<(&str, &[u8], u32)> =
            files.iter().map(|(p, b)| (p.trim_start_matches('/'), b.as_slice(), 0o755)).collect();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("userland");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        busybox_initramfs(&dir, &extra)
    })
}

/// Boots the shared initramfs with `/bin/sh` as init and `args` as its arguments.
fn guest_sh(switches: &[&str], args: &[&str]) -> Run {
    let mut all = switches.to_vec();
    all.extend_from_slice(SH_INIT);
    boot_initramfs(initramfs(), &all, args, LIMIT)
}

// ---------------------------------------------------------------------------------------------
// The script corpus.

/// The host half, no KVM needed: every script runs under the host's busybox, ends with its
/// documented status, prints something, and writes nothing to stderr (in the guest stderr is
/// the console too, so stdout alone is what both sides are compared on).
#[test]
fn corpus_scripts_end_with_their_documented_status_on_host_busybox() {
    let mut problems = Vec::new();
    for s in sh_scripts() {
        let r = host_busybox_sh(&s.path, &s.args(), LIMIT);
        if r.timed_out || r.status != Some(s.status) || r.stdout.trim().is_empty() || !r.stderr.is_empty() {
            problems.push(format!("{}: expected status {} with output and no stderr\n{r}", s.name, s.status));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The host half: a script's output does not depend on the run (no PIDs, times or temp
/// names leak into it), so it can be compared with the guest's.
#[test]
fn corpus_output_is_deterministic_on_host_busybox() {
    for s in sh_scripts() {
        let first = host_busybox_sh(&s.path, &s.args(), LIMIT);
        let second = host_busybox_sh(&s.path, &s.args(), LIMIT);
        assert_eq!(first.stdout, second.stdout, "{}: output differs between two runs", s.name);
    }
}

/// The differential judge: each script in its own guest, compared with the host's busybox
/// line by line and by exit status.
#[test]
fn guest_runs_every_corpus_script_like_the_host() {
    require_kvm();
    let scripts = sh_scripts();
    let mut failures = Vec::new();
    let mut timeouts = 0;
    for s in &scripts {
        let host = host_busybox_sh(&s.path, &s.args(), LIMIT);
        assert!(
            !host.timed_out && host.stderr.is_empty(),
            "{}: the host run is not a usable reference\n{host}",
            s.name
        );
        let mut init_args = vec![s.guest_path()];
        init_args.extend(s.args.iter().cloned());
        let init_args: Vec<&str> = init_args.iter().map(String::as_str).collect();
        let guest = guest_sh(&[], &init_args);
        if guest.timed_out {
            timeouts += 1;
            failures
                .push(format!("{}: the guest did not finish within {LIMIT:?}; killed it\n{guest}", s.name));
            if timeouts == MAX_TIMEOUTS {
                failures.push(format!("giving up after {MAX_TIMEOUTS} timeouts"));
                break;
            }
            continue;
        }
        let (want, got) = (console_text(&host.stdout), guest.console());
        if guest.status != host.status || got != want {
            failures.push(format!(
                "{name}: exit status: host {:?}, guest {:?}\n--- host: busybox sh {name}.sh\n+++ guest: \
                 init=/bin/sh -- {}\n{}--- umlvm stderr\n{}",
                host.status,
                guest.status,
                init_args.join(" "),
                line_diff(&want, &got),
                guest.stderr,
                name = s.name,
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scripts differ between the host's busybox and the guest:\n\n{}",
        failures.len(),
        scripts.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Applets.

/// `applets.sh`'s output split at its `== NAME` lines.
fn sections(output: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in output.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("== ") {
            out.push((name.trim_end().to_string(), String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
        }
    }
    out
}

/// Sections whose output is the same on every Linux machine, and exactly what it is.
const EXACT_SECTIONS: &[(&str, &str)] = &[
    ("ls", "a\nb\nc\n. .. .dot a b c \nd\n"),
    ("cat", "x\ny\nx\ny\n     1\tx\n     2\ty\n"),
    ("cp", "x\ny\na b c \n"),
    ("mv", "g is gone\nx\ny\ne2\n"),
    ("rm", "removed\nrm -f of nothing ok\n"),
    ("mkdir", "p/q/r\nFile exists\n"),
    ("ln", "f\nx\ny\n2\n"),
    ("find", "d\nd/.dot\nd/a\nd/b\nd/c\np\np/q\np/q/r\n./d/b\n./p/q/r\n./sym\n"),
    ("grep", "banana\n2\ncherry\n3:cherry\ngrep -q status 1\n"),
    ("sed", "Apple\nbAnAnA\ncherry\nbanana\ntwo one\n"),
    ("awk", "5 apple\n6 banana\n6 cherry\n12\n123\n"),
    ("sort", "cherry banana apple \n9 10 100 \na b \n"),
    ("head", "1 2 3 \n"),
    ("tail", "9 10 \n"),
    ("wc", "3\n5\n3\n"),
    ("od", "   A   B  \\n\n 41 42 0a\n"),
    ("dd", "4+0 records in\n4+0 records out\n2048\nbanana\n"),
    ("tar", "d/ d/.dot d/a d/b d/c f \nd f \nextracted file matches\napple\n"),
    ("gzip", "hello\nnums replaced by nums.gz\n1000\n1000\nfruit\n"),
    ("kill", "killed sleep: 143\nkill -0 on self: ok\nKILL\nTERM\n"),
    ("env", "HOME=/\nTERM=linux\nA=1\nB=two\n"),
    ("true-false", "true 0\nfalse 1\n"),
    ("test", "/ is a directory\nbusybox is executable\ncomparisons\nmissing file 1\n"),
    ("end", "done\n"),
];

/// Checks the sections any Linux machine (the host included) must print as they are;
/// returns the problems.
fn check_portable_sections(got: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let section = |name: &str| got.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
    for (name, want) in EXACT_SECTIONS {
        match section(name) {
            None => problems.push(format!("no `== {name}` section")),
            Some(text) if text != *want => problems.push(format!("{name}:\n{}", line_diff(want, text))),
            Some(_) => {}
        }
    }
    let lines = |name: &str| section(name).unwrap_or_default().lines().collect::<Vec<_>>();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    let slept = lines("sleep");
    check(matches!(slept[..], ["1"] | ["2"]), format!("sleep 1 took {slept:?} s by date +%s"));
    let date = lines("date");
    let year = date.first().and_then(|y| y.parse::<u32>().ok());
    check(year.is_some_and(|y| y >= 2024), format!("date +%Y: {date:?}, want a year >= 2024"));
    check(date.get(1) == Some(&"1970-01-01T00:00:00"), format!("date -u -d @0: {date:?}"));
    let uname = lines("uname");
    check(uname.first() == Some(&"Linux"), format!("uname -s: {uname:?}"));
    check(uname.get(1) == Some(&"x86_64"), format!("uname -m: {uname:?}"));
    let release = uname.get(2).copied().unwrap_or_default();
    check(
        release.starts_with(|c: char| c.is_ascii_digit()) && release.contains('.'),
        format!("uname -r: {release:?}, want a version like 6.1.0"),
    );
    let version = section("proc-version").unwrap_or_default();
    check(version.starts_with("Linux version "), format!("/proc/version: {version:?}"));
    problems
}

/// The sections only the guest can answer as checked here: its processes, mounts and RAM.
fn check_guest_sections(got: &[(String, String)], mem_kib: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let section = |name: &str| got.iter().find(|(n, _)| n == name).map_or("", |(_, t)| t.as_str());

    // ps: a header, then `PID USER [TIME] COMMAND` rows; init is the shell running the
    // script, and ps itself is listed (busybox's shell may run it without exec, as `{ps} ...`).
    let ps = section("ps");
    let mut rows = ps.lines();
    let header = rows.next().unwrap_or_default();
    if !header.trim_start().starts_with("PID") || !header.trim_end().ends_with("COMMAND") {
        problems.push(format!("ps header: {header:?}"));
    }
    let command_at = header.find("COMMAND").unwrap_or(usize::MAX);
    let procs: Vec<(u32, &str)> = rows
        .filter_map(|r| Some((r.split_whitespace().next()?.parse().ok()?, r.get(command_at..)?.trim())))
        .collect();
    if !procs.contains(&(1, "/bin/sh /scripts/applets.sh")) {
        problems.push(format!("ps: no PID 1 running `/bin/sh /scripts/applets.sh`:\n{ps}"));
    }
    if !procs.iter().any(|&(pid, cmd)| pid > 1 && (cmd == "ps" || cmd.starts_with("{ps} "))) {
        problems.push(format!("ps: does not list itself:\n{ps}"));
    }

    // mount: /proc as the script mounted it, and the initramfs as the root.
    let mount = section("mount");
    if !mount.lines().any(|l| l.starts_with("proc on /proc type proc (")) {
        problems.push(format!("mount: no `proc on /proc type proc` line:\n{mount}"));
    }
    let root_ok = mount.lines().any(|l| {
        l.split_once(" on / type ")
            .is_some_and(|(_, t)| ["rootfs (", "tmpfs (", "ramfs ("].iter().any(|k| t.starts_with(k)))
    });
    if !root_ok {
        problems.push(format!("mount: no `... on / type rootfs|tmpfs|ramfs` line:\n{mount}"));
    }

    // free: in KiB; the total is the RAM less what the kernel keeps, at least 3/4 of it.
    let free = section("free");
    let total = free.lines().find_map(|l| l.strip_prefix("Mem:")).and_then(|r| r.split_whitespace().next());
    match total.and_then(|t| t.parse::<u64>().ok()) {
        Some(t) if t <= mem_kib && t >= mem_kib * 3 / 4 => {}
        _ => problems
            .push(format!("free: want a Mem: total between 3/4 of {mem_kib} KiB and all of it:\n{free}")),
    }
    problems
}

/// The host half of the applet checks: the host's busybox prints exactly what the table
/// says, so the table is right.
#[test]
fn applet_expectations_hold_for_host_busybox() {
    let r = host_busybox_sh(&applets_script(), &[], LIMIT);
    r.assert_status(0);
    let problems = check_portable_sections(&sections(&r.stdout));
    assert!(problems.is_empty(), "{}\n{r}", problems.join("\n"));
}

#[test]
fn applets_work_in_the_guest() {
    let r = guest_sh(&["mem=256M"], &["/scripts/applets.sh"]);
    r.assert_status(0);
    let got = sections(&r.console());
    let mut problems = check_portable_sections(&got);
    problems.extend(check_guest_sections(&got, 256 * 1024));
    assert!(problems.is_empty(), "{}\n{r}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Exit statuses.

#[test]
fn init_exit_status_is_umlvms() {
    guest_sh(&[], &["-c", "exit 7"]).assert_status(7);
    // As on Linux, init ignores signals it has no handler for, SIGKILL included.
    guest_sh(&[], &["-c", "kill -9 $$; echo survived"]).assert_status(0).assert_stdout("survived");
}

/// Without init=, the words after `--` are a command the kernel runs itself (CI mode): its
/// status is umlvm's, 128+N when signal N killed it.
#[test]
fn command_mode_exit_status_is_umlvms() {
    let run = |args: &[&str]| boot_initramfs(initramfs(), &["quiet"], args, LIMIT);
    run(&["sh", "-c", "exit 7"]).assert_status(7);
    run(&["false"]).assert_status(1);
    run(&["true"]).assert_status(0);
    run(&["sh", "-c", "kill -9 $$"]).assert_status(128 + 9);
    run(&["sh", "-c", "kill -TERM $$"]).assert_status(128 + 15);
}

// ---------------------------------------------------------------------------------------------
// A shell on a terminal.

/// umlvm with its stdin and stdout (con0) on a pty, the guest's init a shell on con0.
fn guest_shell_on_pty(log: &Path) -> (Terminal, Guarded) {
    require_kvm();
    let (term, slave) = terminal("/ # ");
    let child = Command::new(umlvm_bin())
        .arg("run")
        .arg("--initrd")
        .arg(initramfs())
        .args(SH_INIT)
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave)
        .stderr(File::create(log).expect("umlvm stderr log"))
        .spawn()
        .expect("spawn umlvm");
    (term, Guarded(child))
}

/// The host's busybox shell on a pty that is its controlling terminal: the same session,
/// to check the session's expectations against a real Linux terminal.
fn host_shell_on_pty() -> (Terminal, Guarded) {
    // SAFETY: geteuid has no preconditions.
    let prompt = if unsafe { libc::geteuid() } == 0 { "/ # " } else { "/ $ " };
    let (term, slave) = terminal(prompt);
    let mut cmd = Command::new(HOST_BUSYBOX);
    cmd.arg0("/bin/sh")
        .current_dir("/")
        .env_clear()
        .env("HOME", "/")
        .env("TERM", "linux")
        .env("PATH", "/sbin:/usr/sbin:/bin:/usr/bin")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    // SAFETY: between fork and exec only async-signal-safe calls: setsid, and ioctl making
    // stdin (the pty slave) the controlling terminal of the new session.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (term, Guarded(cmd.spawn().expect("spawn busybox sh")))
}

/// Waits up to `limit` for a child we started; kills it (by PID) and panics if it is still
/// running then.
fn exit_status(child: &mut Guarded, limit: Duration, what: &str) -> Option<i32> {
    let child = &mut child.0;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {limit:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The interactive session: the prompt comes, a command answers, ^C interrupts a running
/// command and gives the prompt back within a few seconds, and `exit 5` ends the shell.
fn interactive_session(t: &mut Terminal, first_prompt: Duration) {
    t.prompt(first_prompt);
    t.send(b"echo $((6*7))\r");
    let answer = t.prompt(Duration::from_secs(10));
    assert!(answer.contains("\r\n42\r\n"), "echo $((6*7)) answered {answer:?}");

    t.send(b"sleep 100\r");
    t.expect("sleep 100\r\n", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    t.send(b"\x03");
    t.prompt(Duration::from_secs(5));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(5), "^C took {took:?} to give the prompt back");
    t.send(b"echo status $?\r");
    let answer = t.prompt(Duration::from_secs(10));
    assert!(answer.contains("\r\nstatus 130\r\n"), "sleep was not killed by SIGINT: {answer:?}");

    t.send(b"exit 5\r");
}

/// ^D on an empty line ends the shell with the status of its last command.
fn eof_session(t: &mut Terminal, first_prompt: Duration) {
    t.prompt(first_prompt);
    t.send(b"(exit 4)\r");
    t.prompt(Duration::from_secs(10));
    t.send(b"\x04");
}

#[test]
fn interactive_session_expectations_hold_for_host_busybox() {
    let (mut t, mut child) = host_shell_on_pty();
    interactive_session(&mut t, Duration::from_secs(10));
    assert_eq!(exit_status(&mut child, Duration::from_secs(10), "busybox sh"), Some(5));

    let (mut t, mut child) = host_shell_on_pty();
    eof_session(&mut t, Duration::from_secs(10));
    assert_eq!(exit_status(&mut child, Duration::from_secs(10), "busybox sh"), Some(4));
}

#[test]
fn shell_on_a_terminal_answers_and_is_interrupted_by_ctrl_c() {
    let dir = TempDir::new("userland-pty");
    let log = dir.join("umlvm.stderr");
    let (mut t, mut child) = guest_shell_on_pty(&log);
    interactive_session(&mut t, LIMIT);
    let status = exit_status(&mut child, Duration::from_secs(10), "umlvm");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status, Some(5), "`exit 5` ends the machine with status 5; umlvm stderr:\n{stderr}");
    assert!(pty::is_canonical(&t.master), "umlvm restored the terminal");
}

#[test]
fn ctrl_d_at_the_prompt_ends_the_shell_and_the_machine() {
    let dir = TempDir::new("userland-pty-eof");
    let log = dir.join("umlvm.stderr");
    let (mut t, mut child) = guest_shell_on_pty(&log);
    eof_session(&mut t, LIMIT);
    let status = exit_status(&mut child, Duration::from_secs(10), "umlvm");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status, Some(4), "^D ends the shell with its last status, 4; umlvm stderr:\n{stderr}");
}

/// CI mode with stdin from a file or /dev/null (not a terminal): the command sees a pipe, not
/// a terminal — no echo of its input, `\n` stays `\n`, isatty() is false — and the end of
/// umlvm's stdin is the end of its input.
#[test]
fn command_mode_with_piped_stdio_behaves_like_a_pipe() {
    require_kvm();
    let dir = TempDir::new("ci-stdio");
    let input = dir.join("input");
    std::fs::write(&input, "alpha\nbeta\ngamma\n").unwrap();
    let run = |args: &[&str], stdin: std::process::Stdio| {
        let mut cmd = Command::new(umlvm_bin());
        cmd.arg("run").arg("--initrd").arg(initramfs()).arg("quiet").arg("--").args(args);
        cmd.stdin(stdin).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        umlvm_tests::run_command_bounded(cmd, LIMIT)
    };
    let r = run(&["wc", "-l"], std::fs::File::open(&input).unwrap().into());
    r.assert_status(0);
    assert_eq!(r.stdout, "3\n", "exactly the count: no echo, no \\r\n{r}");
    let r = run(
        &["sh", "-c", "sort -r; test -t 0 || echo not-a-tty; test -t 1 || echo out-not-a-tty"],
        std::fs::File::open(&input).unwrap().into(),
    );
    r.assert_status(0);
    assert_eq!(r.stdout, "gamma\nbeta\nalpha\nnot-a-tty\nout-not-a-tty\n", "{r}");
    let r = run(&["cat"], std::process::Stdio::null());
    r.assert_status(0);
    assert_eq!(r.stdout, "", "cat of an empty stdin ends at once\n{r}");
    let r = run(&["ls", "/"], std::process::Stdio::null());
    assert!(r.stdout.contains("bin\ndev\n"), "one name per line, as into a pipe\n{r}");
}
