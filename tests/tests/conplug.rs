//! End-to-end: re-attaching a running guest's console to another host channel through the
//! management console (`config conN=CHANNEL`), with Debian's `uml_mconsole` (package
//! uml-utilities) and `umlvm mconsole`. The guest's `contest=tty1` echoes lines typed on its
//! tty1, which starts on `null` and moves to a telnet port, back to `null`, then to a pty.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use umlvm_tests::{TempDir, require_kvm, umlvm, umlvm_bin};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A machine we started (killed by PID if the test fails).
struct Machine {
    child: Child,
    socket: PathBuf,
}

impl Machine {
    fn start(base: &TempDir, umid: &str, extra: &[&str]) -> Self {
        require_kvm();
        let child = Command::new(umlvm_bin())
            .args(["run", &format!("umid={umid}"), "--uml-dir", base.path().to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let socket = base.join(umid).join("mconsole");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "no mconsole socket at {}", socket.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { child, socket }
    }

    /// Debian's uml_mconsole: (exit status, output).
    fn mc(&self, command: &[&str]) -> (Option<i32>, String) {
        umlvm_tests::uml_mconsole_at(&self.socket, command, String::new)
    }

    /// Waits for the machine's end: (status, stdout).
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                return (status.code(), out);
            }
            assert!(Instant::now() < deadline, "the machine did not end");
            std::thread::sleep(Duration::from_millis(10));
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

fn read_until(r: &mut impl Read, needle: &str) -> String {
    umlvm_tests::read_until(r, needle, Duration::from_secs(10))
}

/// Reads until the peer closes the connection (or panics after 10 s).
fn wait_closed(conn: &mut TcpStream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 1024];
    loop {
        assert!(Instant::now() < deadline, "the connection stayed open");
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

#[test]
fn config_con_reattaches_a_running_console() {
    let base = TempDir::new("conplug");
    let m = Machine::start(&base, "cp", &["con1=null", "selftest=none", "contest=tty1"]);
    assert_eq!(m.mc(&["config", "con1"]), (Some(0), "OK null".into()));

    // Onto a telnet port: the guest's tty1 answers there.
    let port = free_port();
    let (status, text) = m.mc(&["config", &format!("con1=port:{port}")]);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains(&format!("port {port}")), "{text}");
    assert_eq!(m.mc(&["config", "con1"]), (Some(0), format!("OK port:{port}")));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(read_until(&mut conn, "(guest con1)").contains("umlvm "));
    conn.write_all(b"over the port\r\n").unwrap();
    read_until(&mut conn, "echo: over the port\r\n");

    // Refusals leave the channel as it was.
    assert_eq!(
        m.mc(&["config", "con5=pty"]),
        (Some(1), "ERR con5: no such console; consoles cannot be hot-added".into())
    );
    assert_eq!(
        m.mc(&["config", "ssl0=null"]),
        (Some(1), "ERR ssl0: no such console; consoles cannot be hot-added".into())
    );
    let (status, text) = m.mc(&["config", "con=pty"]);
    assert_eq!(status, Some(1));
    assert!(text.contains("name one console"), "{text}");
    let (status, text) = m.mc(&["config", "con1=fd:0"]);
    assert_eq!(status, Some(1));
    assert!(text.contains("already con0's input"), "{text}");
    let (status, text) = m.mc(&["config", "con1=bogus"]);
    assert_eq!(status, Some(1));
    assert!(text.starts_with("ERR con1=bogus: unknown channel"), "{text}");
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let (status, text) = m.mc(&["config", &format!("con1=port:{busy_port}")]);
    assert_eq!(status, Some(1));
    assert!(text.starts_with(&format!("ERR con1=port:{busy_port}: cannot listen")), "{text}");
    assert_eq!(m.mc(&["config", "con1"]), (Some(0), format!("OK port:{port}")));
    conn.write_all(b"still here\r\n").unwrap();
    read_until(&mut conn, "echo: still here\r\n");

    // Detached: the connection closes and the port is free again.
    assert_eq!(m.mc(&["config", "con1=null"]), (Some(0), "OK".into()));
    wait_closed(&mut conn);
    assert_eq!(m.mc(&["config", "con1"]), (Some(0), "OK null".into()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} is still held");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Through umlvm's own client, onto a pty (announced in the reply).
    let sock = m.socket.to_str().unwrap().to_string();
    let r = umlvm(&["mconsole", &sock, "config", "con1=pty"]);
    r.assert_status(0).assert_stdout("OK con1 attached to /dev/pts/");
    let path = r.stdout.trim().strip_prefix("OK con1 attached to ").unwrap().to_string();
    let mut pty = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    pty.write_all(b"via the pty\r").unwrap();
    read_until(&mut pty, "echo: via the pty\r\n");
    umlvm(&["mconsole", &sock, "config", "con1"]).assert_status(0).assert_stdout("OK pty");
    pty.write_all(b"quit\r").unwrap();
    let (status, out) = m.finish();
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains("contest tty1: ok (3 lines echoed)"), "{out}");
}

/// A re-attached channel outlives a guest reboot: the next boot's tty1 is on the port too.
#[test]
fn a_reattached_console_survives_a_reboot() {
    let base = TempDir::new("conplug-reboot");
    let m = Machine::start(&base, "cpr", &["con1=null", "selftest=none", "contest=tty1"]);
    let port = free_port();
    assert_eq!(m.mc(&["config", &format!("con1=port:{port}")]).0, Some(0));
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    read_until(&mut conn, "(guest con1)");
    // The first boot's contest is reading (anything it printed before came before the echo).
    conn.write_all(b"before\r\n").unwrap();
    read_until(&mut conn, "echo: before\r\n");
    assert_eq!(m.mc(&["reboot"]).0, Some(0));
    read_until(&mut conn, "contest: type lines");
    assert_eq!(m.mc(&["config", "con1"]), (Some(0), format!("OK port:{port}")));
    conn.write_all(b"quit\r\n").unwrap();
    let (status, out) = m.finish();
    assert_eq!(status, Some(0), "{out}");
}
