//! Console channels: where a guest console or serial line meets the host, with UML's switch
//! syntax (`conN=`, `sslN=`, `con=`, `ssl=`; `IN,OUT` for different input and output).
//!
//! | channel | input | output |
//! |---|---|---|
//! | `fd:N` | host descriptor N | host descriptor N |
//! | `pty`, `pts` | a new pseudo-terminal (announced on stderr) | the same |
//! | `tty:DEV` | the terminal device | the same |
//! | `port:N` | a telnet connection on 127.0.0.1:N (several devices may share a port: each connection gets the next free one) | the same; up to 64 KiB are kept for the first connection |
//! | `file:PATH` | none | appended to PATH |
//! | `xterm` | a new terminal window running umlvm's helper, which passes the window's terminal back (see [`TerminalEmulator`]) | the same |
//! | `null` | none | discarded |
//! | `none` | no device at all | |

use super::device::{Console, InputBuffer};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Consoles (`con0`..) and serial lines (`ssl0`..) umlvm offers.
pub const MAX_UNITS: u8 = 4;

/// Console or serial line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsoleKind {
    /// `conN`, the guest's `ttyN`.
    Con,
    /// `sslN`, the guest's `ttySN`.
    Ssl,
}

/// `con1`, `ssl0`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsoleName {
    /// Kind.
    pub kind: ConsoleKind,
    /// Unit number.
    pub unit: u8,
}

impl std::fmt::Display for ConsoleName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            ConsoleKind::Con => "con",
            ConsoleKind::Ssl => "ssl",
        };
        write!(f, "{k}{}", self.unit)
    }
}

/// One side of a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSpec {
    /// A host file descriptor.
    Fd(RawFd),
    /// A new pseudo-terminal (`pty` and `pts` are the same here: Unix98 ptys).
    Pty,
    /// A terminal device.
    Tty(PathBuf),
    /// A telnet port on loopback.
    Port(u16),
    /// A terminal window of its own.
    Xterm,
    /// Output appended to a file.
    File(PathBuf),
    /// Discard output, no input.
    Null,
    /// No device.
    None,
}

/// A console's channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSpec {
    /// Where input comes from.
    pub input: ChannelSpec,
    /// Where output goes.
    pub output: ChannelSpec,
}

/// Why a channel was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The switch does not parse.
    #[error("{0}: {1}")]
    BadSwitch(String, &'static str),
    /// Opening or creating the channel failed.
    #[error("{0}")]
    Open(String, #[source] io::Error),
}

fn parse_channel(s: &str) -> Option<ChannelSpec> {
    Some(match s {
        "pty" | "pts" => ChannelSpec::Pty,
        "xterm" => ChannelSpec::Xterm,
        "null" => ChannelSpec::Null,
        "none" => ChannelSpec::None,
        _ => {
            let (kind, arg) = s.split_once(':')?;
            match kind {
                "fd" => ChannelSpec::Fd(arg.parse().ok().filter(|&n: &RawFd| n >= 0)?),
                "tty" if !arg.is_empty() => ChannelSpec::Tty(arg.into()),
                "port" => ChannelSpec::Port(arg.parse().ok().filter(|&p| p != 0)?),
                "file" if !arg.is_empty() => ChannelSpec::File(arg.into()),
                _ => return None,
            }
        }
    })
}

/// Parses `key=value` where key is `con`, `ssl`, `conN` or `sslN`; `Ok(None)` for other
/// switches. Returns the kind, the unit (None for the general switch) and the spec.
pub fn parse_switch(
    key: &str,
    value: &str,
) -> Result<Option<(ConsoleKind, Option<u8>, ConsoleSpec)>, ChannelError> {
    let (kind, rest) = if let Some(r) = key.strip_prefix("con") {
        (ConsoleKind::Con, r)
    } else if let Some(r) = key.strip_prefix("ssl") {
        (ConsoleKind::Ssl, r)
    } else {
        return Ok(None);
    };
    let input = format!("{key}={value}");
    let unit = if rest.is_empty() {
        None
    } else {
        match rest.parse::<u8>() {
            Ok(n) if n < MAX_UNITS => Some(n),
            Ok(_) => return Err(ChannelError::BadSwitch(input, "unit out of range (0 to 3)")),
            Err(_) => return Ok(None),
        }
    };
    let unknown = "unknown channel (fd:N, pty, pts, tty:DEV, port:N, xterm, file:PATH, null, none; IN,OUT for separate input and output)";
    let spec = match value.split_once(',') {
        Some((i, o)) => ConsoleSpec {
            input: parse_channel(i).ok_or_else(|| ChannelError::BadSwitch(input.clone(), unknown))?,
            output: parse_channel(o).ok_or_else(|| ChannelError::BadSwitch(input.clone(), unknown))?,
        },
        None => {
            let c = parse_channel(value).ok_or_else(|| ChannelError::BadSwitch(input.clone(), unknown))?;
            ConsoleSpec { input: c.clone(), output: c }
        }
    };
    Ok(Some((kind, unit, spec)))
}

/// Checks that no host input descriptor feeds two consoles (each keystroke would go to
/// whichever console reads first).
pub fn check_inputs(consoles: &[(ConsoleName, ConsoleSpec)]) -> Result<(), ChannelError> {
    for (i, (a, sa)) in consoles.iter().enumerate() {
        if let ChannelSpec::Fd(fd) = sa.input
            && let Some((b, _)) = consoles[..i].iter().find(|(_, sb)| sb.input == ChannelSpec::Fd(fd))
        {
            return Err(ChannelError::BadSwitch(
                format!("{a}=fd:{fd}"),
                if fd == 0 && b.unit == 0 {
                    "fd:0 is already con0's input; give it another input (e.g. con=null or conN=pty)"
                } else {
                    "this descriptor is already another console's input"
                },
            ));
        }
    }
    Ok(())
}

/// Applies UML's rules: the specific switch beats the general one, order does not matter;
/// by default con0 is `fd:0,fd:1` and everything else `none`. Returns the devices to create.
pub fn resolve(
    general: &HashMap<ConsoleKind, ConsoleSpec>,
    specific: &BTreeMap<ConsoleName, ConsoleSpec>,
) -> Vec<(ConsoleName, ConsoleSpec)> {
    let mut out = Vec::new();
    for kind in [ConsoleKind::Con, ConsoleKind::Ssl] {
        for unit in 0..MAX_UNITS {
            let name = ConsoleName { kind, unit };
            let default = if name == (ConsoleName { kind: ConsoleKind::Con, unit: 0 }) {
                ConsoleSpec { input: ChannelSpec::Fd(0), output: ChannelSpec::Fd(1) }
            } else {
                ConsoleSpec { input: ChannelSpec::None, output: ChannelSpec::None }
            };
            let spec = specific.get(&name).or_else(|| general.get(&kind)).cloned().unwrap_or(default);
            if spec.input != ChannelSpec::None || spec.output != ChannelSpec::None {
                out.push((name, spec));
            }
        }
    }
    out
}

/// Output that survives reboots and may be redirected (a port's connection comes later).
#[derive(Clone)]
pub struct SharedOutput(Arc<Mutex<OutputState>>);

enum OutputState {
    Writer(Box<dyn Write + Send>),
    /// A port without a connection yet: keep the last 64 KiB.
    Waiting(VecDeque<u8>),
    Connected(TcpStream),
}

impl Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.0.lock().map_err(|_| io::Error::other("console lock poisoned"))?;
        match &mut *state {
            OutputState::Writer(w) => w.write_all(buf)?,
            OutputState::Waiting(q) => {
                q.extend(buf);
                while q.len() > 64 * 1024 {
                    q.pop_front();
                }
            }
            OutputState::Connected(s) => match s.write(buf) {
                // The connection is non-blocking: a client that stops reading loses output
                // instead of stalling the machine.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => *state = OutputState::Waiting(VecDeque::new()),
            },
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.0.lock().map_err(|_| io::Error::other("console lock poisoned"))? {
            OutputState::Writer(w) => w.flush(),
            _ => Ok(()),
        }
    }
}

impl SharedOutput {
    /// The port connection went away: keep output for the next one.
    pub fn disconnect(&self) {
        if let Ok(mut state) = self.0.lock()
            && matches!(*state, OutputState::Connected(_))
        {
            *state = OutputState::Waiting(VecDeque::new());
        }
    }
}

/// The terminal emulator for `xterm` channels: UML's `xterm=PROGRAM,TITLE_SWITCH,EXEC_SWITCH`
/// switch (default `xterm,-T,-e`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalEmulator {
    /// The program.
    pub program: String,
    /// The switch that sets the window title.
    pub title_switch: String,
    /// The switch that runs a command instead of a shell.
    pub exec_switch: String,
}

impl Default for TerminalEmulator {
    fn default() -> Self {
        Self { program: "xterm".into(), title_switch: "-T".into(), exec_switch: "-e".into() }
    }
}

impl TerminalEmulator {
    /// Parses the value of `xterm=`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(',');
        let (p, t, e) = (parts.next()?, parts.next()?, parts.next()?);
        (parts.next().is_none() && !p.is_empty() && !t.is_empty() && !e.is_empty()).then(|| Self {
            program: p.into(),
            title_switch: t.into(),
            exec_switch: e.into(),
        })
    }
}

/// A terminal window umlvm started for a console; closed (by PID) when umlvm is done with it.
pub struct XtermWindow(Mutex<std::process::Child>);

impl Drop for XtermWindow {
    fn drop(&mut self) {
        if let Ok(child) = self.0.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a terminal window running `helper socket` (umlvm's xterm helper, which sends back
/// its terminal descriptor, as UML's port-helper does) and returns that terminal.
fn open_xterm(
    label: &str,
    emulator: &TerminalEmulator,
    helper: &std::path::Path,
) -> Result<(File, XtermWindow), ChannelError> {
    use std::os::unix::net::UnixDatagram;
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let fail = |what: &str, e: io::Error| ChannelError::Open(format!("{label}=xterm: {what}"), e);
    let dir = std::env::temp_dir();
    let socket = dir.join(format!("umlvm-xterm-{}-{label}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let sock = UnixDatagram::bind(&socket).map_err(|e| fail("cannot make the helper socket", e))?;
    let child = std::process::Command::new(&emulator.program)
        .arg(&emulator.title_switch)
        .arg(format!("umlvm {label}"))
        .arg(&emulator.exec_switch)
        .arg(helper)
        .arg("xterm-helper")
        .arg(&socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            let _ = std::fs::remove_file(&socket);
            fail(&format!("cannot start {}", emulator.program), e)
        })?;
    let window = XtermWindow(Mutex::new(child));
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut buf = [0u8; 16];
    let received = sock.recv_with_fd(&mut buf);
    let _ = std::fs::remove_file(&socket);
    match received {
        Ok((_, Some(tty))) => {
            let _ = crate::sys::make_raw(std::os::fd::AsRawFd::as_raw_fd(&tty));
            Ok((tty, window))
        }
        Ok((_, None)) => {
            Err(fail("the terminal's helper sent no descriptor", io::Error::from(io::ErrorKind::InvalidData)))
        }
        Err(e) => Err(fail(
            &format!("{} did not start its helper within 10 s (is DISPLAY set?)", emulator.program),
            io::Error::from_raw_os_error(e.errno()),
        )),
    }
}

/// A console device's host side, kept across reboots.
#[derive(Clone)]
pub struct OpenedChannel {
    /// Name (`con1`).
    pub name: ConsoleName,
    /// Output.
    pub output: SharedOutput,
    /// Bytes for the guest.
    pub input: InputBuffer,
    /// Readable input descriptor (fd, tty, pty), if any.
    pub input_fd: Option<Arc<File>>,
    /// The port it waits on, if any.
    pub port: Option<u16>,
    /// What to tell the user (`con1 attached to /dev/pts/3`).
    pub announce: Option<String>,
    /// The terminal window of an `xterm` channel.
    pub window: Option<Arc<XtermWindow>>,
    /// A pty's slave side, held open so the master does not report a hang-up while nobody
    /// is attached.
    pub pty_slave: Option<Arc<File>>,
}

impl OpenedChannel {
    /// A fresh console device over this channel.
    pub fn device(&self) -> Console {
        Console::new(Box::new(self.output.clone()), self.input.clone())
    }
}

fn dup_fd(fd: RawFd, what: &str) -> Result<File, ChannelError> {
    crate::sys::dup(fd)
        .map(File::from)
        .map_err(|e| ChannelError::Open(format!("{what}: cannot use descriptor {fd}"), e))
}

/// Listening telnet ports, shared by the devices attached to them.
#[derive(Default)]
pub struct PortServers {
    /// Listener per port.
    pub listeners: HashMap<u16, Arc<TcpListener>>,
    /// Devices waiting on each port, in order.
    pub waiting: HashMap<u16, Vec<OpenedChannel>>,
}

impl PortServers {
    /// Accepts a connection on `port` and gives it to the first device without one. Returns
    /// the connection's reader side for the event loop, and its device.
    pub fn accept(&mut self, port: u16) -> Option<(TcpStream, OpenedChannel)> {
        let listener = self.listeners.get(&port)?;
        let (mut stream, _) = listener.accept().ok()?;
        let devices = self.waiting.get(&port)?;
        let Some(dev) = devices
            .iter()
            .find(|d| {
                matches!(&*d.output.0.lock().unwrap_or_else(|e| e.into_inner()), OutputState::Waiting(_))
            })
            .cloned()
        else {
            let _ = stream.write_all(b"umlvm: no free console on this port\r\n");
            return None;
        };
        // Telnet: we echo, and no go-ahead (character mode), as UML's port channel does.
        let _ = stream.write_all(&[255, 251, 1, 255, 251, 3]);
        let _ = writeln!(stream, "umlvm {} (guest {})\r", env!("CARGO_PKG_VERSION"), dev.name);
        let mut state = dev.output.0.lock().unwrap_or_else(|e| e.into_inner());
        if let OutputState::Waiting(q) = &mut *state {
            let backlog: Vec<u8> = q.drain(..).collect();
            let _ = stream.write_all(&backlog);
        }
        let reader = stream.try_clone().ok()?;
        let _ = stream.set_nonblocking(true);
        *state = OutputState::Connected(stream);
        drop(state);
        Some((reader, dev))
    }
}

/// Strips telnet commands (IAC sequences) from client input and applies the NVT end-of-line
/// rule (a client's Enter arrives as CR LF or CR NUL, which mean one CR, as telnetd
/// delivers it to a terminal); returns the data bytes.
pub fn strip_telnet(input: &[u8], state: &mut u8) -> Vec<u8> {
    // state: 0 data, 1 after IAC, 2 after IAC + verb (one option byte follows), 3 in
    // subnegotiation, 4 IAC inside subnegotiation, 5 data right after a CR.
    let mut out = Vec::with_capacity(input.len());
    for &b in input {
        if *state == 5 {
            *state = 0;
            if b == b'\n' || b == 0 {
                continue;
            }
        }
        *state = match (*state, b) {
            (0, 255) => 1,
            (0, b'\r') => {
                out.push(b);
                5
            }
            (0, _) => {
                out.push(b);
                0
            }
            (1, 255) => {
                out.push(255);
                0
            }
            (1, 250) => 3,
            (1, 251..=254) => 2,
            (1, _) | (2, _) => 0,
            (3, 255) => 4,
            (3, _) => 3,
            (4, 240) => 0,
            (4, _) => 3,
            _ => 0,
        };
    }
    out
}

/// Where `xterm` channels get their terminal.
#[derive(Clone, Debug)]
pub struct XtermSetup {
    /// The emulator to start.
    pub emulator: TerminalEmulator,
    /// The umlvm binary, whose `xterm-helper` subcommand runs inside the window.
    pub helper: PathBuf,
}

/// Opens the channels of `name` per `spec`. Ports are bound in `ports` (a port already in use
/// by another program is an error).
pub fn open(
    name: ConsoleName,
    spec: &ConsoleSpec,
    ports: &mut PortServers,
    xterm: &XtermSetup,
) -> Result<OpenedChannel, ChannelError> {
    open_with(name, spec, ports, xterm, None)
}

/// Re-attaches the host side of `old` (a running console) to the channels of `spec`: opens
/// them as [`open`] does, then, only if that worked, moves the device's output to them (the
/// device keeps its output handle and input buffer) and lets go of the old channels (a port
/// stops serving this device; its listener goes when no device waits on it any more). On an
/// error nothing changes.
pub fn reattach(
    old: &OpenedChannel,
    spec: &ConsoleSpec,
    ports: &mut PortServers,
    xterm: &XtermSetup,
) -> Result<OpenedChannel, ChannelError> {
    open_with(old.name, spec, ports, xterm, Some(old))
}

impl PortServers {
    /// Stops serving `name` on `port`; the listener is closed (here: dropped from the map)
    /// when no other device waits on it, unless `keep`.
    fn leave(&mut self, port: u16, name: ConsoleName, keep: bool) {
        if let Some(w) = self.waiting.get_mut(&port) {
            w.retain(|c| c.name != name);
            if w.is_empty() && !keep {
                self.waiting.remove(&port);
                self.listeners.remove(&port);
            }
        }
    }
}

fn open_with(
    name: ConsoleName,
    spec: &ConsoleSpec,
    ports: &mut PortServers,
    xterm: &XtermSetup,
    old: Option<&OpenedChannel>,
) -> Result<OpenedChannel, ChannelError> {
    let label = format!("{name}");
    let mut input_fd = None;
    let mut port = None;
    let mut announce = None;
    let mut pty_master: Option<Arc<File>> = None;
    let mut pty_slave: Option<Arc<File>> = None;
    let mut window = None;
    let mut xterm_tty: Option<Arc<File>> = None;
    let mut open_window = |window: &mut Option<Arc<XtermWindow>>| -> Result<Arc<File>, ChannelError> {
        if let Some(t) = &xterm_tty {
            return Ok(t.clone());
        }
        let (tty, w) = open_xterm(&label, &xterm.emulator, &xterm.helper)?;
        let tty = Arc::new(tty);
        *window = Some(Arc::new(w));
        xterm_tty = Some(tty.clone());
        Ok(tty)
    };
    let mut open_pty = |announce: &mut Option<String>| -> Result<Arc<File>, ChannelError> {
        if let Some(m) = &pty_master {
            return Ok(m.clone());
        }
        let (master, path) = crate::sys::open_pty()
            .map_err(|e| ChannelError::Open(format!("{label}=pty: cannot allocate a pseudo-terminal"), e))?;
        *announce = Some(format!("{label} attached to {path}"));
        let m = Arc::new(File::from(master));
        pty_master = Some(m.clone());
        pty_slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .ok()
            .map(Arc::new);
        Ok(m)
    };
    match &spec.input {
        ChannelSpec::Fd(fd) => input_fd = Some(Arc::new(dup_fd(*fd, &format!("{label}=fd:{fd}"))?)),
        ChannelSpec::Pty => input_fd = Some(open_pty(&mut announce)?),
        ChannelSpec::Tty(dev) => {
            let f =
                OpenOptions::new().read(true).write(true).open(dev).map_err(|e| {
                    ChannelError::Open(format!("{label}=tty:{}: cannot open", dev.display()), e)
                })?;
            input_fd = Some(Arc::new(f));
        }
        ChannelSpec::Port(p) => port = Some(*p),
        ChannelSpec::Xterm => input_fd = Some(open_window(&mut window)?),
        ChannelSpec::File(_) | ChannelSpec::Null | ChannelSpec::None => {}
    }
    let output = match &spec.output {
        ChannelSpec::Fd(fd) => OutputState::Writer(Box::new(dup_fd(*fd, &format!("{label}=fd:{fd}"))?)),
        ChannelSpec::Pty => OutputState::Writer(Box::new(
            open_pty(&mut announce)?.try_clone().map_err(|e| ChannelError::Open(label.clone(), e))?,
        )),
        ChannelSpec::Tty(dev) => {
            let f = OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| ChannelError::Open(format!("{label}=tty:{}: cannot open", dev.display()), e))?;
            OutputState::Writer(Box::new(f))
        }
        ChannelSpec::Port(p) => {
            port = Some(*p);
            OutputState::Waiting(VecDeque::new())
        }
        ChannelSpec::Xterm => {
            let tty = open_window(&mut window)?;
            OutputState::Writer(Box::new(tty.try_clone().map_err(|e| ChannelError::Open(label.clone(), e))?))
        }
        ChannelSpec::File(path) => {
            let f = OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                ChannelError::Open(format!("{label}=file:{}: cannot open", path.display()), e)
            })?;
            OutputState::Writer(Box::new(f))
        }
        ChannelSpec::Null | ChannelSpec::None => OutputState::Writer(Box::new(io::sink())),
    };
    if let Some(p) = port
        && let std::collections::hash_map::Entry::Vacant(slot) = ports.listeners.entry(p)
    {
        let l = TcpListener::bind(("127.0.0.1", p))
            .map_err(|e| ChannelError::Open(format!("{label}=port:{p}: cannot listen"), e))?;
        l.set_nonblocking(true).map_err(|e| ChannelError::Open(format!("{label}=port:{p}"), e))?;
        slot.insert(Arc::new(l));
    }
    // Everything is open: from here on nothing fails.
    let (shared, input) = match old {
        Some(old) => {
            if let Some(p) = old.port {
                ports.leave(p, name, port == Some(p));
            }
            // The device writes through this handle: the new channel takes its place, and the
            // old writer (a pty, a connection, a file) is closed.
            let previous =
                std::mem::replace(&mut *old.output.0.lock().unwrap_or_else(|e| e.into_inner()), output);
            drop(previous);
            (old.output.clone(), old.input.clone())
        }
        None => (SharedOutput(Arc::new(Mutex::new(output))), InputBuffer::default()),
    };
    let opened = OpenedChannel { name, output: shared, input, input_fd, port, announce, window, pty_slave };
    if let Some(p) = port {
        ports.waiting.entry(p).or_default().push(opened.clone());
    }
    Ok(opened)
}

/// Reads what is available from a non-blocking descriptor; `None` at end of file.
pub fn read_available(f: &File) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match (&*f).read(&mut buf) {
        Ok(0) => None,
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
            Some(Vec::new())
        }
        // A pty whose other side is not open yet reads EIO: no data for now.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Some(Vec::new()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(i: ChannelSpec, o: ChannelSpec) -> ConsoleSpec {
        ConsoleSpec { input: i, output: o }
    }

    #[test]
    fn switches_parse_like_uml() {
        let (k, u, s) = parse_switch("con0", "fd:0,fd:1").unwrap().unwrap();
        assert_eq!((k, u, s), (ConsoleKind::Con, Some(0), spec(ChannelSpec::Fd(0), ChannelSpec::Fd(1))));
        let (k, u, s) = parse_switch("ssl", "pty").unwrap().unwrap();
        assert_eq!((k, u, s), (ConsoleKind::Ssl, None, spec(ChannelSpec::Pty, ChannelSpec::Pty)));
        assert_eq!(parse_switch("con1", "pts").unwrap().unwrap().2.input, ChannelSpec::Pty);
        assert_eq!(parse_switch("con2", "port:9000").unwrap().unwrap().2.output, ChannelSpec::Port(9000));
        assert_eq!(
            parse_switch("con2", "file:/tmp/x").unwrap().unwrap().2.output,
            ChannelSpec::File("/tmp/x".into())
        );
        assert_eq!(
            parse_switch("con2", "null,tty:/dev/tty1").unwrap().unwrap().2,
            spec(ChannelSpec::Null, ChannelSpec::Tty("/dev/tty1".into()))
        );
        assert!(parse_switch("mem", "64M").unwrap().is_none());
        assert!(parse_switch("console", "x").unwrap().is_none());
        for (k, v, why) in [
            ("con0", "bogus", "unknown channel"),
            ("con0", "fd:x", "unknown channel"),
            ("con0", "port:0", "unknown channel"),
            ("con9", "pty", "out of range"),
        ] {
            let e = parse_switch(k, v).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{k}={v}: ")) && e.contains(why), "{e}");
        }
    }

    #[test]
    fn specific_beats_general_and_defaults_apply() {
        let con = |u| ConsoleName { kind: ConsoleKind::Con, unit: u };
        let mut general = HashMap::new();
        general.insert(ConsoleKind::Con, spec(ChannelSpec::Pty, ChannelSpec::Pty));
        let mut specific = BTreeMap::new();
        specific.insert(con(0), spec(ChannelSpec::Fd(0), ChannelSpec::Fd(1)));
        specific.insert(con(2), spec(ChannelSpec::None, ChannelSpec::None));
        let r = resolve(&general, &specific);
        let names: Vec<String> = r.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["con0", "con1", "con3"]);
        assert_eq!(r[0].1, spec(ChannelSpec::Fd(0), ChannelSpec::Fd(1)));
        assert_eq!(r[1].1, spec(ChannelSpec::Pty, ChannelSpec::Pty));
        let defaults = resolve(&HashMap::new(), &BTreeMap::new());
        assert_eq!(defaults, vec![(con(0), spec(ChannelSpec::Fd(0), ChannelSpec::Fd(1)))]);
    }

    #[test]
    fn terminal_emulator_switch() {
        assert_eq!(TerminalEmulator::parse("gnome-terminal,-t,-x").unwrap().exec_switch, "-x");
        assert!(TerminalEmulator::parse("xterm,-T").is_none());
        assert!(TerminalEmulator::parse("a,b,c,d").is_none());
        assert_eq!(parse_switch("con1", "xterm").unwrap().unwrap().2.input, ChannelSpec::Xterm);
    }

    #[test]
    fn reattach_moves_output_and_keeps_the_old_channel_on_errors() {
        let dir = std::env::temp_dir().join(format!("umlvm-reattach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let name = ConsoleName { kind: ConsoleKind::Con, unit: 1 };
        let xterm = XtermSetup { emulator: TerminalEmulator::default(), helper: "umlvm".into() };
        let mut ports = PortServers::default();
        let file = |p: &std::path::Path| spec(ChannelSpec::Null, ChannelSpec::File(p.into()));
        let first = open(name, &file(&a), &mut ports, &xterm).unwrap();
        let mut device_output = first.output.clone();
        device_output.write_all(b"one ").unwrap();
        let second = reattach(&first, &file(&b), &mut ports, &xterm).unwrap();
        device_output.write_all(b"two").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"one ");
        assert_eq!(std::fs::read(&b).unwrap(), b"two");
        // A port another program holds: refused, output stays where it was.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = taken.local_addr().unwrap().port();
        let e = reattach(&second, &spec(ChannelSpec::Port(p), ChannelSpec::Port(p)), &mut ports, &xterm);
        assert!(e.err().unwrap().to_string().contains("cannot listen"));
        device_output.write_all(b"three").unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"twothree");
        // Onto a free port and off it again: the listener goes with its last device.
        drop(taken);
        let on_port =
            reattach(&second, &spec(ChannelSpec::Port(p), ChannelSpec::Port(p)), &mut ports, &xterm);
        let on_port = on_port.unwrap();
        assert!(ports.listeners.contains_key(&p) && ports.waiting[&p].len() == 1);
        let again = reattach(&on_port, &spec(ChannelSpec::Port(p), ChannelSpec::Port(p)), &mut ports, &xterm);
        assert!(again.is_ok() && ports.listeners.contains_key(&p) && ports.waiting[&p].len() == 1);
        reattach(&again.unwrap(), &spec(ChannelSpec::Null, ChannelSpec::Null), &mut ports, &xterm).unwrap();
        assert!(ports.listeners.is_empty() && ports.waiting.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn telnet_commands_are_stripped() {
        let mut st = 0;
        assert_eq!(
            strip_telnet(&[255, 253, 1, b'h', b'i', 255, 255, 255, 250, 24, 0, 255, 240, b'\r', 0], &mut st),
            b"hi\xff\r"
        );
        assert_eq!(strip_telnet(b"a\r\nb\r", &mut st), b"a\rb\r", "CR LF is one CR");
        assert_eq!(strip_telnet(b"\nc\n", &mut st), b"c\n", "also across reads; a lone LF stays");
    }
}
