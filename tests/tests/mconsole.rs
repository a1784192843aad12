//! End-to-end: the management console. Debian's `uml_mconsole` (package uml-utilities) and
//! `umlvm mconsole` drive a live machine: version, help, stop/go (the guest's heartbeat stops
//! and resumes), config queries, reboot, halt; bad datagrams; umid directory rules.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use umlvm_tests::{Machine, TempDir, umlvm, umlvm_bin};

/// A machine running kernel-only work, ready once it printed its boot time.
fn start(base: &Path, umid: &str, extra: &[&str]) -> Machine {
    Machine::start(base, umid, extra, "Boot time:")
}

/// Heartbeats the guest logged so far (`heartbeat=N`).
fn heartbeats(m: &Machine) -> usize {
    m.output().matches("heartbeat ").count()
}

#[test]
fn uml_mconsole_drives_a_live_machine() {
    let base = TempDir::new("mc-life");
    let m = start(base.path(), "life", &["selftest=none", "heartbeat=150"]);
    assert_eq!(
        m.uml_mconsole(&["version"]),
        (Some(0), format!("OK umlvm-kernel {v} (umlvm {v})", v = env!("CARGO_PKG_VERSION")))
    );
    let (status, help) = m.uml_mconsole(&["help"]);
    assert_eq!(status, Some(0));
    assert!(help.contains("stop - pause the UML") && help.contains("go - continue"), "{help}");
    assert_eq!(m.uml_mconsole(&["go"]), (Some(1), "ERR Not stopped".into()));
    assert_eq!(m.uml_mconsole(&["config", "con0"]), (Some(0), "OK fd:0,fd:1".into()));
    assert_eq!(m.uml_mconsole(&["frobnicate"]), (Some(1), "ERR Unknown command".into()));

    // stop: the guest's heartbeat (every 100 ms) stops; go: it resumes.
    m.wait_for("heartbeat 2\r\n");
    assert_eq!(m.uml_mconsole(&["stop"]), (Some(0), "OK stopped".into()));
    std::thread::sleep(Duration::from_millis(100));
    let frozen = heartbeats(&m);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(heartbeats(&m), frozen, "the guest ran while stopped");
    assert_eq!(m.uml_mconsole(&["version"]).0, Some(0), "mconsole answers while stopped");
    assert_eq!(m.uml_mconsole(&["stop"]), (Some(1), "ERR Already stopped".into()));
    assert_eq!(m.uml_mconsole(&["go"]), (Some(0), "OK".into()));
    m.wait_for(&format!("heartbeat {}\r\n", frozen + 2));

    // reboot, then halt: immediate, exit status 0, directory gone.
    assert_eq!(m.uml_mconsole(&["reboot"]).0, Some(0));
    m.wait_for("(boot 1)");
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    let dir = base.path().join("life");
    assert_eq!(m.wait(), Some(0));
    assert!(!dir.exists(), "umid directory left behind");
}

#[test]
fn umlvm_mconsole_one_shot_and_interactive() {
    let base = TempDir::new("mc-own");
    let m = start(base.path(), "own", &["selftest=none", "ticks=20000"]);
    let r = umlvm(&["mconsole", "--uml-dir", base.path().to_str().unwrap(), "own", "version"]);
    r.assert_status(0).assert_stdout("OK umlvm-kernel ");
    umlvm(&["mconsole", "--uml-dir", base.path().to_str().unwrap(), "own", "go"])
        .assert_status(1)
        .assert_stdout("ERR Not stopped");
    let list = umlvm(&["list", "--uml-dir", base.path().to_str().unwrap()]);
    list.assert_status(0).assert_stdout("own ");
    // Interactive, commands on stdin.
    let mut child = Command::new(umlvm_bin())
        .args(["mconsole", m.socket.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"version\nconfig con0\nquit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("OK umlvm-kernel") && text.contains("OK fd:0,fd:1"), "{text}");
    umlvm(&["mconsole", m.socket.to_str().unwrap(), "halt"]).assert_status(0);
    assert_eq!(m.wait(), Some(0));
    umlvm(&["mconsole", "--uml-dir", base.path().to_str().unwrap(), "own", "version"])
        .assert_one_line_error("no such machine");
}

#[test]
fn interactive_prompt_on_a_terminal_has_history() {
    use std::io::Write;
    use umlvm_tests::pty;
    let base = TempDir::new("mc-tty");
    let m = start(base.path(), "tty", &["selftest=none", "ticks=20000"]);
    let (master, slave) = pty::open();
    let mut child = Command::new(umlvm_bin())
        .args(["mconsole", "--uml-dir", base.path().to_str().unwrap(), "tty"])
        .env("TERM", "xterm")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        // Ends with EIO once the client has exited and the last slave descriptor is closed.
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_count = |child: &Child, needle: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().matches(needle).count() < count {
            if Instant::now() > deadline {
                pty::terminate(child);
                panic!("wanted {count} x {needle:?} on the terminal:\n{:?}", seen.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut keys = master;
    wait_count(&child, "(tty) ", 1);
    keys.write_all(b"version\r").unwrap();
    wait_count(&child, "OK umlvm-kernel", 1);
    wait_count(&child, "(tty) ", 2);
    // Up arrow recalls the last command; Enter runs it again.
    keys.write_all(b"\x1b[A").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    keys.write_all(b"\r").unwrap();
    wait_count(&child, "OK umlvm-kernel", 2);
    wait_count(&child, "(tty) ", 3);
    keys.write_all(b"quit\r").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            pty::terminate(&child);
            panic!("client did not leave on quit:\n{:?}", seen.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "client exit {status}");
    // The terminal is left as it was found (cooked mode).
    assert!(pty::is_canonical(&keys), "terminal left in raw mode");
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    assert_eq!(m.wait(), Some(0));
}

#[test]
fn bad_datagrams_do_not_hurt_the_machine() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let base = TempDir::new("mc-bad");
    let m = start(base.path(), "bad", &["selftest=none", "ticks=20000"]);
    let addr =
        SocketAddr::from_abstract_name(format!("umlvm-test-bad-{}", std::process::id()).as_bytes()).unwrap();
    let s = UnixDatagram::bind_addr(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = [0u8; 1024];
    // Plain text (a version-0 client): a bare error text.
    s.send_to(b"version", &m.socket).unwrap();
    let n = s.recv(&mut reply).unwrap();
    assert_eq!(&reply[..n], b"ERR Version 0 mconsole clients are not supported by this driver");
    // Oversized length.
    let mut big = vec![0u8; 524];
    big[..4].copy_from_slice(&0xCAFEBABEu32.to_ne_bytes());
    big[4..8].copy_from_slice(&2u32.to_ne_bytes());
    big[8..12].copy_from_slice(&5000u32.to_ne_bytes());
    s.send_to(&big, &m.socket).unwrap();
    let n = s.recv(&mut reply).unwrap();
    assert_eq!(&reply[..4], &1u32.to_ne_bytes(), "error reply");
    assert!(String::from_utf8_lossy(&reply[12..n]).contains("Request too large"));
    // A flood of garbage (bounded): the machine keeps running and answers the next request.
    for i in 0..300u32 {
        let junk: Vec<u8> = (0..(i % 700)).map(|j| (j * 31 + i) as u8).collect();
        let _ = s.send_to(&junk, &m.socket);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(m.uml_mconsole(&["version"]).0, Some(0));
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    assert_eq!(m.wait(), Some(0));
}

#[test]
fn umid_rules_modes_and_cleanup() {
    let base = TempDir::new("mc-umid");
    let m = start(base.path(), "one", &["selftest=none", "ticks=20000"]);
    let dir = base.path().join("one");
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&m.socket).unwrap().permissions().mode() & 0o777, 0o600);
    let pid: u32 = std::fs::read_to_string(dir.join("pid")).unwrap().trim().parse().unwrap();
    assert_eq!(pid, m.child.id());
    // A second machine with the same umid is refused.
    umlvm(&["run", "umid=one", "--uml-dir", base.path().to_str().unwrap(), "selftest=none"])
        .assert_one_line_error(&format!("umid \"one\" is already in use by pid {pid}"));
    // Another user cannot talk to it (run the client as nobody).
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "uml_mconsole"])
        .arg(&m.socket)
        .arg("version")
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("OK"),
        "another user reached the mconsole: {out:?}"
    );
    // SIGTERM (to our own child, by PID): the directory goes too.
    Command::new("kill").arg("-TERM").arg(m.child.id().to_string()).status().unwrap();
    assert_eq!(m.wait(), Some(128 + 15));
    assert!(!dir.exists(), "directory left after SIGTERM");

    // A stale directory (its pid is gone) is reused.
    std::fs::create_dir_all(base.path().join("stale")).unwrap();
    std::fs::write(base.path().join("stale/pid"), "999999999\n").unwrap();
    let m = start(base.path(), "stale", &["selftest=none", "ticks=20000"]);
    let pid: u32 = std::fs::read_to_string(base.path().join("stale/pid")).unwrap().trim().parse().unwrap();
    assert_eq!(pid, m.child.id());
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    assert_eq!(m.wait(), Some(0));

    // A guest panic ends the machine; the directory is removed as well.
    umlvm(&["run", "umid=crash", "--uml-dir", base.path().to_str().unwrap(), "selftest=none", "crash=panic"])
        .assert_status(101);
    assert!(!base.path().join("crash").exists());
}

#[test]
fn guest_side_commands_reach_the_kernel() {
    let base = TempDir::new("mc-guest");
    let m = start(base.path(), "guest", &["selftest=none", "ticks=20000"]);
    let (status, mem) = m.uml_mconsole(&["sysrq", "m"]);
    assert_eq!(status, Some(0), "{mem}");
    assert!(mem.starts_with("OK sysrq: Show Memory") && mem.contains("KiB free"), "{mem}");
    let (status, help) = m.uml_mconsole(&["sysrq", "h"]);
    assert_eq!(status, Some(0));
    assert!(help.contains("show-memory-usage(m)"), "{help}");
    let (status, uptime) = m.uml_mconsole(&["proc", "uptime"]);
    assert_eq!(status, Some(0));
    let secs: f64 = uptime.trim_start_matches("OK ").split_whitespace().next().unwrap().parse().unwrap();
    assert!(secs > 0.0 && secs < 60.0, "{uptime}");
    assert!(m.uml_mconsole(&["proc", "meminfo"]).1.contains("MemTotal: 65536 kB"));
    assert_eq!(m.uml_mconsole(&["proc", "nothing"]).0, Some(1));
    assert_eq!(m.uml_mconsole(&["log", "written by uml_mconsole"]).0, Some(0));
    m.wait_for("written by uml_mconsole");
    assert_eq!(m.uml_mconsole(&["cad"]).0, Some(0));
    m.wait_for("ctrl-alt-del: no init process to signal");
    // While stopped the guest cannot answer; the VMM says so instead of hanging.
    assert_eq!(m.uml_mconsole(&["stop"]).0, Some(0));
    assert_eq!(m.uml_mconsole(&["sysrq", "m"]), (Some(1), "ERR the machine is stopped; 'go' first".into()));
    assert_eq!(m.uml_mconsole(&["go"]).0, Some(0));
    // sysrq o powers the machine off after replying.
    assert_eq!(m.uml_mconsole(&["sysrq", "o"]), (Some(0), "OK sysrq: Power Off".into()));
    assert_eq!(m.wait(), Some(0));
}

/// With user space running, the guest-side commands see real processes: `sysrq t` lists
/// them, `stack PID` shows a sleeping task's kernel backtrace with function names, `proc`
/// reads the guest's /proc, `cad` sends SIGINT to init (here a shell that traps it), and
/// `sysrq i` kills everything but init.
#[test]
fn guest_side_commands_see_processes() {
    let base = TempDir::new("mc-procs");
    let initrd = umlvm_tests::busybox_initramfs(base.path(), &[]);
    let script =
        "trap 'echo init got SIGINT; exit 9' INT; echo ready; sleep 1000 & while :; do sleep 1; done";
    let m = start(
        base.path(),
        "procs",
        &["--initrd", initrd.to_str().unwrap(), "init=/bin/sh", "--", "-c", script],
    );
    m.wait_for("ready");
    // The children start right after "ready": ask until they are there (bounded).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, tasks) = loop {
        let (status, tasks) = m.uml_mconsole(&["sysrq", "t"]);
        if tasks.contains("sleep") || Instant::now() > deadline {
            break (status, tasks);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, Some(0), "{tasks}");
    assert!(tasks.contains("sh                  1"), "init is listed: {tasks}");
    assert!(tasks.contains("sleep"), "its children are listed: {tasks}");
    let (status, stack) = m.uml_mconsole(&["stack", "1"]);
    assert_eq!(status, Some(0), "{stack}");
    assert!(stack.contains("task 1 (sh)"), "{stack}");
    assert!(
        stack.contains("umlvm_kernel::process::sched::schedule"),
        "a sleeping task's stack names its frames: {stack}"
    );
    assert_eq!(m.uml_mconsole(&["stack", "4242"]).0, Some(1), "no such task is an error");
    assert_eq!(m.uml_mconsole(&["stack", "x"]).0, Some(1), "a bad pid is an error");
    let (status, st) = m.uml_mconsole(&["proc", "1/status"]);
    assert_eq!(status, Some(0));
    assert!(st.contains("Name:\tsh") && st.contains("PPid:\t0"), "{st}");
    assert!(m.uml_mconsole(&["proc", "mounts"]).1.contains("proc /proc proc"));
    let (status, killed) = m.uml_mconsole(&["sysrq", "i"]);
    assert_eq!(status, Some(0));
    assert!(killed.contains("tasks signalled"), "{killed}");
    assert_eq!(m.uml_mconsole(&["cad"]).0, Some(0));
    m.wait_for("init got SIGINT");
    assert_eq!(m.wait(), Some(9), "init's exit status is umlvm's");
}
