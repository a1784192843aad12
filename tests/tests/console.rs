//! End-to-end: consoles and serial lines on every channel kind, with UML's switch syntax.
//! The guest's `contest=TTY` echoes lines typed on a terminal, so input is exercised too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use umlvm_tests::{TempDir, boot, require_kvm, umlvm, umlvm_bin};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(args: &[&str], stdin: Stdio) -> Child {
    require_kvm();
    Command::new(umlvm_bin())
        .arg("run")
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads from `r` until `needle` appears (or 10 s pass); returns everything read.
fn read_until(r: &mut impl Read, needle: &str) -> String {
    umlvm_tests::read_until(r, needle, Duration::from_secs(10))
}

/// Waits for `child` (which we started) to exit, with a time limit.
fn finish(mut child: Child) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.code(), out, err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("umlvm did not finish");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn con0_defaults_to_stdin_and_stdout_and_carries_the_kernel_log() {
    let r = boot(&["selftest=none"]);
    r.assert_status(0)
        .assert_stdout("terminals: tty0\n")
        .assert_stdout("console: kernel messages now go to tty0 (con0)\r\n")
        .assert_stdout("powering off (status 0)\r\n");
}

#[test]
fn file_null_and_none_channels() {
    let dir = TempDir::new("con-file");
    let log = dir.join("con0.log");
    let r = boot(&[&format!("con0=file:{}", log.display()), "selftest=none"]);
    r.assert_status(0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Kernel-only boot complete"), "{text}");
    assert!(
        !r.stdout.contains("Kernel-only boot complete"),
        "after con0 is up, output goes to the file\n{r}"
    );

    let r = boot(&["con0=null", "selftest=none"]);
    r.assert_status(0);
    assert!(!r.stdout.contains("Kernel-only boot complete"), "null discards\n{r}");

    // No con0: no tty0, the kernel log stays on the early console.
    let r = boot(&["con0=none", "selftest=none"]);
    r.assert_status(0).assert_stdout("Kernel-only boot complete");
    assert!(!r.stdout.contains("terminals:"), "{r}");
}

#[test]
fn specific_switches_beat_general_ones_in_any_order() {
    let r = boot(&["con0=fd:0,fd:1", "ssl=null", "con=null", "con2=none", "selftest=none"]);
    r.assert_status(0).assert_stdout("terminals: tty0 tty1 tty3 ttyS0 ttyS1 ttyS2 ttyS3");
}

#[test]
fn serial_line_on_descriptors_echoes_input() {
    // ssl0 reads our stdin and writes to stderr; con0 is silenced so only ssl0 reads stdin.
    let mut child = spawn(&["con0=null", "ssl0=fd:0,fd:2", "selftest=none", "contest=ttyS0"], Stdio::piped());
    let mut stdin = child.stdin.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    read_until(&mut err, "contest: type lines");
    stdin.write_all(b"over a pipe\nquit\n").unwrap();
    let seen = read_until(&mut err, "echo: over a pipe\r\n");
    assert!(seen.contains("over a pipe\r\n"), "input is echoed: {seen:?}");
    drop(stdin);
    child.stderr = Some(err);
    let (status, _, _) = finish(child);
    assert_eq!(status, Some(0));
}

#[test]
fn port_channel_serves_telnet_clients() {
    let port = free_port();
    let child = spawn(&[&format!("con1=port:{port}"), "selftest=none", "contest=tty1"], Stdio::null());
    let mut conn = loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let hello = read_until(&mut conn, "contest: type lines");
    assert!(hello.contains("umlvm ") && hello.contains("(guest con1)"), "{hello:?}");
    conn.write_all(b"typed over telnet\r\n").unwrap();
    read_until(&mut conn, "echo: typed over telnet\r\n");
    conn.write_all(b"quit\r\n").unwrap();
    let (status, out, _) = finish(child);
    assert_eq!(status, Some(0));
    assert!(out.contains("contest tty1: ok (1 lines echoed)"), "{out}");
}

#[test]
fn con0_on_a_port_waits_for_its_connection() {
    let port = free_port();
    let mut child = spawn(&[&format!("con0=port:{port}"), "selftest=none"], Stdio::null());
    let mut err = child.stderr.take().unwrap();
    read_until(&mut err, &format!("con0 is waiting for a connection on port {port}"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "the machine must wait for con0's connection");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    read_until(&mut conn, "Kernel-only boot complete");
    child.stderr = Some(err);
    let (status, _, _) = finish(child);
    assert_eq!(status, Some(0));
}

#[test]
fn pty_channel_is_announced_and_usable() {
    let mut child = spawn(&["con1=pty", "selftest=none", "contest=tty1"], Stdio::null());
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let path = line
        .trim()
        .strip_prefix("umlvm: con1 attached to ")
        .unwrap_or_else(|| panic!("no announcement: {line:?}"))
        .to_string();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    let mut pty = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    read_until(&mut pty, "contest: type lines");
    pty.write_all(b"via the pty\r").unwrap();
    read_until(&mut pty, "echo: via the pty\r\n");
    pty.write_all(b"quit\r").unwrap();
    child.stderr = Some(err.into_inner());
    let (status, _, _) = finish(child);
    assert_eq!(status, Some(0));
}

#[test]
fn bad_console_switches_are_refused() {
    umlvm(&["run", "con0=bogus"]).assert_one_line_error("con0=bogus: unknown channel");
    umlvm(&["run", "con7=pty"]).assert_one_line_error("con7=pty: unit out of range");
    umlvm(&["run", "con1=tty:/dev/does-not-exist"])
        .assert_one_line_error("con1=tty:/dev/does-not-exist: cannot open");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    umlvm(&["run", &format!("con1=port:{port}")])
        .assert_one_line_error(&format!("con1=port:{port}: cannot listen"));
}

/// con0 on a host terminal is put in raw mode and restored on every way out: a normal
/// power-off, a guest panic, and a signal.
#[test]
fn host_terminal_is_raw_while_running_and_restored_after() {
    use umlvm_tests::pty;
    for case in ["poweroff", "panic", "signal"] {
        let (_master, slave) = pty::open();
        assert!(pty::is_canonical(&slave));
        let switches: &[&str] = match case {
            "poweroff" => &["selftest=none"],
            "panic" => &["selftest=none", "crash=panic"],
            _ => &["selftest=none", "ticks=20000"],
        };
        let mut child = spawn(switches, Stdio::from(slave.try_clone().unwrap()));
        let mut out = child.stdout.take().unwrap();
        read_until(&mut out, "Boot time:");
        assert!(!pty::is_canonical(&slave), "{case}: con0's terminal is raw while the machine runs");
        if case == "signal" {
            pty::terminate(&child);
        }
        child.stdout = Some(out);
        let (status, _, _) = finish(child);
        let expected = match case {
            "poweroff" => 0,
            "panic" => 101,
            _ => 128 + 15,
        };
        assert_eq!(status, Some(expected), "{case}");
        assert!(pty::is_canonical(&slave), "{case}: terminal restored");
    }
}

#[test]
fn consoles_can_share_a_port() {
    // Two consoles on one port: each connection gets the next free console.
    let port = free_port();
    let child = spawn(
        &[&format!("con1=port:{port}"), &format!("con2=port:{port}"), "selftest=none", "contest=tty2"],
        Stdio::null(),
    );
    let connect = || loop {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            break c;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut first = connect();
    read_until(&mut first, "(guest con1)");
    let mut second = connect();
    let seen = read_until(&mut second, "contest: type lines");
    assert!(seen.contains("(guest con2)"), "{seen:?}");
    second.write_all(b"quit\r\n").unwrap();
    let (status, _, _) = finish(child);
    assert_eq!(status, Some(0));
}

/// A virtual X display for the xterm channel test, stopped (by PID) when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        // Xvfb picks a free display itself and writes its number to fd 1 once it is ready.
        let (reader, writer) = std::io::pipe().unwrap();
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0", "1024x768x24"])
            .stdout(writer)
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (package xvfb, installed by make) must be available");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(reader).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        let Ok(n) = line.trim().parse::<u32>() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Xvfb did not report a display within 10 s (got {line:?})");
        };
        Self { child, display: format!(":{n}") }
    }

    fn xdotool(&self, args: &[&str]) -> String {
        self.xdotool_ok(args).1
    }

    fn xdotool_ok(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .output()
            .expect("xdotool (installed by make)");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: Xvfb then removes its socket and lock file.
        umlvm_tests::pty::terminate(&self.child);
        let _ = self.child.wait();
    }
}

#[test]
fn xterm_channel_opens_a_terminal_window() {
    require_kvm();
    let x = Xvfb::start();
    let child = Command::new(umlvm_bin())
        .args(["run", "con1=xterm", "selftest=none", "contest=tty1"])
        .env("DISPLAY", &x.display)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    // Wait for the window to be on screen, then give it the keyboard focus (there is no
    // window manager to do it).
    loop {
        let ids = x.xdotool(&["search", "--onlyvisible", "--name", "^umlvm con1$"]);
        if let Some(id) = ids.lines().next()
            && x.xdotool_ok(&["windowfocus", "--sync", id]).0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no visible xterm window titled 'umlvm con1'");
        std::thread::sleep(Duration::from_millis(50));
    }
    x.xdotool(&["type", "--delay", "20", "typed in a window"]);
    x.xdotool(&["key", "Return"]);
    x.xdotool(&["type", "--delay", "20", "quit"]);
    x.xdotool(&["key", "Return"]);
    let (status, out, err) = finish(child);
    assert_eq!(status, Some(0), "{out}\n{err}");
    assert!(out.contains("contest tty1: ok (1 lines echoed)"), "{out}");
    // umlvm closed the window it opened.
    std::thread::sleep(Duration::from_millis(300));
    assert!(x.xdotool(&["search", "--name", "^umlvm con1$"]).trim().is_empty(), "the xterm outlived umlvm");
}

#[test]
fn missing_terminal_emulator_is_reported() {
    umlvm(&["run", "xterm=no-such-terminal,-T,-e", "con1=xterm"])
        .assert_one_line_error("con1=xterm: cannot start no-such-terminal");
    umlvm(&["run", "xterm=xterm,-T"])
        .assert_one_line_error("xterm=xterm,-T: expected xterm=PROGRAM,TITLE_SWITCH,EXEC_SWITCH");
}
