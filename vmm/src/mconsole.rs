//! The management console: UML's mconsole protocol on `~/.uml/<umid>/mconsole` (a unix
//! datagram socket), wire-compatible with Debian's `uml_mconsole`, and umlvm's own client.
//!
//! Request: `{magic 0xCAFEBABE, version 2, len, data[512]}`; reply datagrams
//! `{err, more, len (with the NUL), data}` in host byte order, 511 bytes of text at most per
//! datagram (`docs/formats.md`).

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Request magic.
pub const MAGIC: u32 = 0xCAFE_BABE;
/// Protocol version.
pub const VERSION: u32 = 2;
/// Size of the request's data field.
pub const DATA_LEN: usize = 512;
/// Text per reply datagram.
const CHUNK: usize = 511;

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// A command line.
    Command(String),
    /// Magic without the header (a version-0 client).
    Version0,
    /// Right magic, other version: UML answers an error and still runs the command.
    WrongVersion(u32, String),
    /// Too large or malformed.
    Invalid(&'static str),
}

/// Parses a request datagram.
pub fn parse_request(b: &[u8]) -> Request {
    if b.len() < 12 {
        return if b.is_empty() { Request::Invalid("empty request") } else { Request::Version0 };
    }
    let word = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    if word(0) != MAGIC {
        return Request::Version0;
    }
    let len = word(8) as usize;
    if len >= DATA_LEN {
        return Request::Invalid("Request too large");
    }
    let data = &b[12..b.len().min(12 + len)];
    let text = String::from_utf8_lossy(data.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    match word(4) {
        VERSION => Request::Command(text),
        v => Request::WrongVersion(v, text),
    }
}

/// Encodes a request for `command`.
pub fn encode_request(command: &str) -> Vec<u8> {
    let mut b = vec![0u8; 12 + DATA_LEN];
    let text = &command.as_bytes()[..command.len().min(DATA_LEN - 1)];
    b[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
    b[4..8].copy_from_slice(&VERSION.to_ne_bytes());
    b[8..12].copy_from_slice(&(text.len() as u32).to_ne_bytes());
    b[12..12 + text.len()].copy_from_slice(text);
    b
}

/// Splits a reply into datagrams.
pub fn encode_reply(err: bool, text: &str) -> Vec<Vec<u8>> {
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = if bytes.is_empty() { vec![&[][..]] } else { bytes.chunks(CHUNK).collect() };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut d = Vec::with_capacity(12 + c.len() + 1);
            d.extend_from_slice(&u32::from(err && i == 0).to_ne_bytes());
            d.extend_from_slice(&u32::from(i + 1 < n).to_ne_bytes());
            d.extend_from_slice(&(c.len() as u32 + 1).to_ne_bytes());
            d.extend_from_slice(c);
            d.push(0);
            d
        })
        .collect()
}

/// A reply datagram: (err, more, text).
pub fn parse_reply(b: &[u8]) -> Option<(bool, bool, String)> {
    if b.len() < 12 {
        return None;
    }
    let word = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let len = (word(8) as usize).min(b.len() - 12);
    let text = String::from_utf8_lossy(b[12..12 + len].split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    Some((word(0) != 0, word(1) != 0, text))
}

/// Device work held back while the machine is stopped.
type Deferred = Box<dyn FnOnce() + Send>;

/// What the machine's control surface asks of the vCPU and the devices.
#[derive(Default)]
pub struct Control {
    paused: Mutex<bool>,
    deferred: Mutex<Vec<Deferred>>,
    resumed: Condvar,
    parked: AtomicBool,
    halt: AtomicBool,
    reboot: AtomicBool,
    /// Set by the vCPU loop when it took a halt or reboot request.
    taken: AtomicBool,
    /// The running vCPU thread (0: none); kicks happen under this lock, and the thread clears
    /// it before it ends, so a kick never reaches a thread that is gone.
    vcpu_thread: Mutex<u64>,
}

/// A request for the vCPU loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// End the machine (mconsole halt).
    Halt,
    /// Reboot it.
    Reboot,
}

impl Control {
    /// Called by the vCPU thread when it starts.
    pub fn vcpu_started(&self) {
        if let Ok(mut t) = self.vcpu_thread.lock() {
            *t = crate::sys::current_thread();
        }
    }

    /// Called by the vCPU thread before it ends.
    pub fn vcpu_ending(&self) {
        if let Ok(mut t) = self.vcpu_thread.lock() {
            *t = 0;
        }
    }

    /// Called by the vCPU loop before each KVM_RUN: waits while stopped; returns a pending
    /// halt or reboot.
    pub fn checkpoint(&self) -> Option<Stop> {
        if let Ok(mut paused) = self.paused.lock() {
            while *paused {
                self.parked.store(true, Ordering::SeqCst);
                paused = self.resumed.wait(paused).unwrap_or_else(|e| e.into_inner());
            }
            self.parked.store(false, Ordering::SeqCst);
        }
        let stop = if self.halt.load(Ordering::SeqCst) {
            Some(Stop::Halt)
        } else if self.reboot.swap(false, Ordering::SeqCst) {
            Some(Stop::Reboot)
        } else {
            None
        };
        if stop.is_some() {
            self.taken.store(true, Ordering::SeqCst);
        }
        stop
    }

    fn kick(&self) {
        if let Ok(t) = self.vcpu_thread.lock()
            && *t != 0
        {
            crate::sys::kick(*t);
        }
    }

    /// Whether the machine is stopped.
    pub fn is_stopped(&self) -> bool {
        self.paused.lock().map(|p| *p).unwrap_or(false)
    }

    /// Stops the vCPU; returns once it is parked (or after a second). Device work already
    /// queued still completes; with the vCPU stopped the guest queues nothing new.
    pub fn stop(&self) -> Result<(), &'static str> {
        {
            let mut p = self.paused.lock().map_err(|_| "lock poisoned")?;
            if *p {
                return Err("Already stopped");
            }
            *p = true;
        }
        // A kick that lands between the vCPU's check and KVM_RUN is lost, so kick until the
        // vCPU says it is parked.
        for _ in 0..2000 {
            if self.parked.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.kick();
            std::thread::sleep(Duration::from_millis(1));
        }
        if let Ok(mut p) = self.paused.lock() {
            *p = false;
        }
        Err("the vCPU did not stop")
    }

    /// Resumes a stopped machine, then runs the device work held back meanwhile.
    pub fn go(&self) -> Result<(), &'static str> {
        {
            let mut p = self.paused.lock().map_err(|_| "lock poisoned")?;
            if !*p {
                return Err("Not stopped");
            }
            *p = false;
            self.resumed.notify_all();
        }
        let work: Vec<Deferred> = self.deferred.lock().map(|mut d| d.drain(..).collect()).unwrap_or_default();
        for w in work {
            w();
        }
        Ok(())
    }

    /// Runs `work` now, or after `go` if the machine is stopped (device processing pauses
    /// with the vCPUs).
    pub fn run_or_defer(&self, work: impl FnOnce() + Send + 'static) {
        let stopped = self.paused.lock().map(|p| *p).unwrap_or(false);
        if stopped && let Ok(mut d) = self.deferred.lock() {
            d.push(Box::new(work));
            return;
        }
        work();
    }

    /// Asks the vCPU loop to end the machine, kicking it until it has taken the request (a
    /// single kick can be lost; an idle guest may never exit on its own).
    pub fn request(&self, what: Stop) {
        self.taken.store(false, Ordering::SeqCst);
        match what {
            Stop::Halt => self.halt.store(true, Ordering::SeqCst),
            Stop::Reboot => self.reboot.store(true, Ordering::SeqCst),
        }
        let _ = self.go();
        for _ in 0..2000 {
            if self.taken.load(Ordering::SeqCst) {
                return;
            }
            self.kick();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Commands and what they do, for `help`.
const HELP: &str = "Commands:
    version - Get kernel version
    help - Print this message
    halt - Halt UML
    reboot - Reboot UML
    config <dev>=<config> - Add a new device to UML; same syntax as command line
    config <dev> - Query the configuration of a device
    remove <dev> - Remove a device from UML
    sysrq <letter> - Performs the SysRq action controlled by the letter
    cad - invoke the Ctrl-Alt-Del handler
    stop - pause the UML; it will do nothing until it receives a 'go'
    go - continue the UML after a 'stop'
    log <string> - make UML enter <string> into the kernel log
    proc <file> - returns the contents of the UML's /proc/<file> (uptime, meminfo, version)
    stack <pid> - returns the stack of the specified pid
";

/// What the event loop does once the guest answered a hot-plug request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The guest was asked to take hot-plugged ubd N.
    Attach(u8),
    /// The guest was asked to let go of ubd N.
    Detach(u8),
}

/// A request the guest is answering.
struct Waiting {
    to: SocketAddr,
    since: std::time::Instant,
    action: Option<Action>,
}

/// A hot-plug request the guest answered (or did not, in time), for the event loop.
struct Finished {
    to: SocketAddr,
    error: bool,
    text: String,
    action: Action,
    timed_out: bool,
}

/// Guest-side requests in flight: the client waiting for the guest's reply. The vCPU thread
/// sends the reply when the guest reports it ([`umlvm_boot::ports::CONTROL_DONE`]); replies to
/// hot-plug requests go through the event loop, which owns the devices.
pub struct GuestRequests {
    sock: UnixDatagram,
    waiting: Mutex<Option<Waiting>>,
    seq: std::sync::atomic::AtomicU32,
    /// Where the guest kernel's symbols come from, and (built on first use: parsing them
    /// costs about 20 ms) the symbols themselves.
    symbols: Mutex<(Option<crate::config::KernelSource>, Option<Arc<crate::symbolize::Symbols>>)>,
    finished: Mutex<Vec<Finished>>,
    /// Wakes the event loop when `finished` has something.
    wake: vmm_sys_util::eventfd::EventFd,
}

/// How long the guest may take to answer before the request is given up.
const GUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl GuestRequests {
    fn new(sock: UnixDatagram) -> std::io::Result<Self> {
        Ok(Self {
            sock,
            waiting: Mutex::new(None),
            seq: std::sync::atomic::AtomicU32::new(0),
            symbols: Mutex::new((None, None)),
            finished: Mutex::new(Vec::new()),
            wake: vmm_sys_util::eventfd::EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK)?,
        })
    }

    /// Hands a hot-plug outcome to the event loop.
    fn finish(&self, w: Waiting, action: Action, error: bool, text: String, timed_out: bool) {
        if let Ok(mut f) = self.finished.lock() {
            f.push(Finished { to: w.to, error, text, action, timed_out });
        }
        let _ = self.wake.write(1);
    }

    /// Tells the client of `w` that the guest did not answer.
    fn give_up(&self, w: Waiting) {
        match w.action {
            Some(a) => self.finish(w, a, true, String::new(), true),
            None => {
                for d in encode_reply(true, "the guest did not answer") {
                    let _ = send_datagram(&self.sock, &d, &w.to);
                }
            }
        }
    }

    /// Where the guest kernel's symbols are, to name the addresses of `stack` replies.
    pub fn set_kernel(&self, kernel: crate::config::KernelSource) {
        if let Ok(mut s) = self.symbols.lock() {
            *s = (Some(kernel), None);
        }
    }

    /// The kernel's symbols, parsed the first time they are needed.
    fn symbols(&self) -> Option<Arc<crate::symbolize::Symbols>> {
        let mut s = self.symbols.lock().ok()?;
        if s.1.is_none() {
            let elf = match s.0.as_ref()? {
                crate::config::KernelSource::Embedded => crate::run::EMBEDDED_KERNEL.to_vec(),
                crate::config::KernelSource::File(p) => std::fs::read(p).ok()?,
            };
            s.1 = Some(Arc::new(crate::symbolize::Symbols::from_elf(&elf)));
        }
        s.1.clone()
    }

    /// The guest finished a request with `reply` (read from the mailbox by the caller).
    pub fn complete(&self, error: bool, reply: &str) {
        let Some(w) = self.waiting.lock().ok().and_then(|mut w| w.take()) else { return };
        if let Some(action) = w.action {
            self.finish(w, action, error, reply.to_string(), false);
            return;
        }
        let to = w.to;
        let wants_names = reply.lines().any(|l| l.trim_start().starts_with('#'));
        let symbols = if wants_names { self.symbols() } else { None };
        let reply = match symbols {
            Some(syms) => name_frames(reply, &syms),
            None => reply.to_string(),
        };
        for d in encode_reply(error, &reply) {
            let _ = send_datagram(&self.sock, &d, &to);
        }
    }

    /// Gives up a request the guest has not answered in time, telling its client.
    pub fn expire(&self) {
        let expired = {
            let Ok(mut w) = self.waiting.lock() else { return };
            if w.as_ref().is_some_and(|w| w.since.elapsed() >= GUEST_TIMEOUT) { w.take() } else { None }
        };
        if let Some(w) = expired {
            self.give_up(w);
        }
    }
}

/// Appends function names to backtrace lines (`  #N 0xADDRESS`) of a guest reply.
fn name_frames(reply: &str, syms: &crate::symbolize::Symbols) -> String {
    let mut out = String::with_capacity(reply.len() + 256);
    for line in reply.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let addr = body
            .trim_start()
            .strip_prefix('#')
            .and_then(|rest| rest.split_once(' '))
            .and_then(|(n, a)| n.parse::<u32>().ok().and(a.strip_prefix("0x")))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        out.push_str(body);
        if let Some(name) = addr.and_then(|a| syms.lookup_return(a)) {
            out.push(' ');
            out.push_str(&name);
        }
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Where the guest's side of the management console lives in the current machine.
pub struct GuestLink {
    /// Guest memory (for the mailbox).
    pub mem: vm_memory::GuestMemoryMmap,
    /// The control interrupt (an irqfd on [`umlvm_boot::layout::CONTROL_GSI`]).
    pub irq: vmm_sys_util::eventfd::EventFd,
    /// Where hot-plugged devices go.
    pub slots: crate::hotplug::Slots,
    /// The consoles' host side (`config conN=CHANNEL` re-attaches one).
    pub consoles: crate::devices::ConsoleHub,
}

/// The server: answers requests on the socket from the event loop.
pub struct Server {
    sock: UnixDatagram,
    control: Arc<Control>,
    version: String,
    devices: Vec<(String, String)>,
    requests: Arc<GuestRequests>,
    guest: Option<GuestLink>,
    /// Devices hot-plugged into this machine.
    hot: Vec<crate::hotplug::HotDevice>,
}

/// Event data of the hot-plugged devices' queue notifications: `NOTIFY_TAG | unit << 8 |
/// queue`; the socket and the wake-up eventfd carry 0 and 1.
const NOTIFY_TAG: u32 = 1 << 16;
/// Event data of the wake-up eventfd.
const WAKE_TAG: u32 = 1;

/// What the hot-plug commands made of a request.
enum Plug {
    /// Not a hot-plug command.
    NotMine,
    /// Answer now.
    Reply(bool, String),
    /// The guest was asked; the reply comes later.
    Asked,
}

impl Server {
    /// Binds `path` (mode 0600).
    pub fn bind(
        path: &Path,
        control: Arc<Control>,
        version: String,
        devices: Vec<(String, String)>,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let sock = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        sock.set_nonblocking(true)?;
        let requests = Arc::new(GuestRequests::new(sock.try_clone()?)?);
        Ok(Self { sock, control, version, devices, requests, guest: None, hot: Vec::new() })
    }

    /// A handle on the socket for a (new) machine whose guest side is `guest`.
    pub fn for_machine(&self, guest: GuestLink) -> std::io::Result<Self> {
        if let Ok(mut w) = self.requests.waiting.lock() {
            // A request the previous machine never answered is lost with it.
            w.take();
        }
        if let Ok(mut f) = self.requests.finished.lock() {
            f.clear();
        }
        Ok(Self {
            sock: self.sock.try_clone()?,
            control: self.control.clone(),
            version: self.version.clone(),
            devices: self.devices.clone(),
            requests: self.requests.clone(),
            guest: Some(guest),
            hot: Vec::new(),
        })
    }

    /// Where the vCPU thread delivers guest replies.
    pub fn guest_requests(&self) -> Arc<GuestRequests> {
        self.requests.clone()
    }

    fn reply(&self, to: &SocketAddr, err: bool, text: &str) {
        for d in encode_reply(err, text) {
            let _ = send_datagram(&self.sock, &d, to);
        }
    }

    /// Hands `line` to the guest; the reply goes out when the guest is done. Returns an
    /// immediate error reply if the guest cannot take it now.
    fn forward_to_guest(&self, line: &str, from: &SocketAddr, action: Option<Action>) -> Option<String> {
        use umlvm_boot::abi::control::{REQUEST, REQUEST_LEN, REQUEST_MAX, REQUEST_SEQ};
        use vm_memory::{Bytes, GuestAddress};
        let Some(guest) = &self.guest else { return Some("no machine".into()) };
        if self.control.is_stopped() {
            return Some("the machine is stopped; 'go' first".into());
        }
        let Ok(mut waiting) = self.requests.waiting.lock() else { return Some("internal error".into()) };
        if let Some(old) = waiting.as_ref() {
            if old.since.elapsed() < GUEST_TIMEOUT {
                return Some("busy: the guest is still answering another request".into());
            }
            // The guest never answered the previous request: tell that client and move on.
            if let Some(old) = waiting.take() {
                self.requests.give_up(old);
            }
        }
        let text = &line.as_bytes()[..line.len().min(REQUEST_MAX)];
        let base = umlvm_boot::layout::CONTROL_GPA;
        let seq = self.requests.seq.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        let written = guest.mem.write_obj(text.len() as u32, GuestAddress(base + REQUEST_LEN as u64)).is_ok()
            && guest.mem.write_slice(text, GuestAddress(base + REQUEST as u64)).is_ok()
            && guest.mem.write_obj(seq, GuestAddress(base + REQUEST_SEQ as u64)).is_ok();
        if !written {
            return Some("cannot reach the guest's mailbox".into());
        }
        *waiting = Some(Waiting { to: from.clone(), since: std::time::Instant::now(), action });
        drop(waiting);
        if guest.irq.write(1).is_err() {
            self.requests.waiting.lock().ok().and_then(|mut w| w.take());
            return Some("cannot interrupt the guest".into());
        }
        None
    }

    /// Answers one command; returns (error, text, action after replying).
    pub fn execute(&self, line: &str) -> (bool, String, Option<Stop>) {
        let line = line.trim();
        let (cmd, arg) = line.split_once(char::is_whitespace).map_or((line, ""), |(c, a)| (c, a.trim()));
        // Prefix matching in table order, as UML does.
        let table = [
            "version", "help", "halt", "reboot", "config", "remove", "sysrq", "cad", "stop", "go", "log",
            "proc", "stack",
        ];
        let Some(name) = table.iter().find(|t| !cmd.is_empty() && cmd.starts_with(**t)) else {
            return (true, "Unknown command".into(), None);
        };
        match *name {
            "version" => (false, self.version.clone(), None),
            "help" => (false, HELP.into(), None),
            "halt" => (false, String::new(), Some(Stop::Halt)),
            "reboot" => (false, String::new(), Some(Stop::Reboot)),
            "stop" => match self.control.stop() {
                Ok(()) => (false, "stopped".into(), None),
                Err(e) => (true, e.into(), None),
            },
            "go" => match self.control.go() {
                Ok(()) => (false, String::new(), None),
                Err(e) => (true, e.into(), None),
            },
            "config" if !arg.contains('=') => match self.describe(arg) {
                Some(spec) => (false, spec, None),
                None if arg.is_empty() => (true, "config: which device?".into(), None),
                None => (true, format!("{arg}: no such device"), None),
            },
            // Hot-plugging needs the event loop (`Server::plug`); without a machine:
            "config" | "remove" => (true, "no machine".into(), None),
            _ => (true, String::new(), None),
        }
    }

    /// How device `name` was configured: on the command line or hot-plugged.
    fn describe(&self, name: &str) -> Option<String> {
        if let Some(spec) = self.guest.as_ref().and_then(|g| g.consoles.describe(name)) {
            return Some(spec);
        }
        if let Some((_, spec)) = self.devices.iter().find(|(d, _)| d == name) {
            return Some(spec.clone());
        }
        self.hot
            .iter()
            .find(|h| h.attached && format!("ubd{}", h.unit()) == name)
            .map(|h| crate::run::describe_ubd(&h.spec))
    }

    /// `config DEV=SPEC` and `remove DEV`: hot-plugging.
    fn plug(&mut self, line: &str, from: &SocketAddr, ops: &mut EventOps) -> Plug {
        let line = line.trim();
        let (cmd, arg) = line.split_once(char::is_whitespace).map_or((line, ""), |(c, a)| (c, a.trim()));
        if cmd.starts_with("config") {
            let Some((key, value)) = arg.split_once('=') else { return Plug::NotMine };
            let (key, value) = (key.trim(), value.trim());
            if key.starts_with("con") || key.starts_with("ssl") {
                return match &self.guest {
                    Some(g) => match g.consoles.reattach(key, value) {
                        Ok(text) => Plug::Reply(false, text),
                        Err(e) => Plug::Reply(true, e),
                    },
                    None => Plug::Reply(true, "no machine".into()),
                };
            }
            return match self.config_device(key.trim(), value.trim(), from, ops) {
                Ok(()) => Plug::Asked,
                Err(e) => Plug::Reply(true, e),
            };
        }
        if cmd.starts_with("remove") {
            return match self.remove_device(arg, from) {
                Ok(()) => Plug::Asked,
                Err(e) => Plug::Reply(true, e),
            };
        }
        Plug::NotMine
    }

    /// Whether the guest can take a request now.
    fn guest_ready(&self) -> Result<(), String> {
        if self.guest.is_none() {
            return Err("no machine".into());
        }
        if self.control.is_stopped() {
            return Err("the machine is stopped; 'go' first".into());
        }
        if self.requests.waiting.lock().map(|w| w.is_some()).unwrap_or(true) {
            return Err("busy: the guest is still answering another request".into());
        }
        Ok(())
    }

    /// `config KEY=VALUE`.
    fn config_device(
        &mut self,
        key: &str,
        value: &str,
        from: &SocketAddr,
        ops: &mut EventOps,
    ) -> Result<(), String> {
        if key.starts_with("eth") {
            return Err(format!("{key}: network devices are not supported yet"));
        }
        let spec = match umlvm_devices::ubd::parse_switch(key, value) {
            Ok(Some(spec)) => spec,
            Ok(None) => {
                return Err(format!("config {key}={value}: unknown device (ubdN=FILE or ubdN=COW,BACKING)"));
            }
            Err(e) => return Err(e.to_string()),
        };
        let name = format!("ubd{}", spec.index);
        if self.devices.iter().any(|(d, _)| *d == name) || self.hot.iter().any(|h| h.unit() == spec.index) {
            return Err(format!("{name} is already attached"));
        }
        self.guest_ready()?;
        let Some(guest) = &self.guest else { return Err("no machine".into()) };
        let dev = guest.slots.add(spec)?;
        let unit = dev.unit();
        for (q, evt) in dev.notify().iter().enumerate() {
            let data = NOTIFY_TAG | u32::from(unit) << 8 | q as u32;
            if let Err(e) = ops.add(Events::with_data(evt, data, EventSet::IN)) {
                log::error!("{name}: cannot watch queue {q}: {e}");
            }
        }
        let request = dev.guest_request();
        self.hot.push(dev);
        if let Some(err) = self.forward_to_guest(&request, from, Some(Action::Attach(unit))) {
            self.drop_device(unit, ops);
            return Err(err);
        }
        Ok(())
    }

    /// `remove ubdN`.
    fn remove_device(&mut self, arg: &str, from: &SocketAddr) -> Result<(), String> {
        let unit = arg
            .strip_prefix("ubd")
            .and_then(|n| n.parse::<u8>().ok())
            .filter(|&n| n < umlvm_devices::ubd::MAX_UBD);
        let Some(unit) = unit else {
            return Err(match arg {
                "" => "remove: which device?".into(),
                a if a.starts_with("con") || a.starts_with("ssl") => {
                    format!("{a}: consoles cannot be removed (config {a}=CHANNEL re-attaches one)")
                }
                a if a.starts_with("eth") => format!("{a}: network devices are not supported yet"),
                a => format!("{a}: not a device umlvm can remove (ubd0 to ubd15)"),
            });
        };
        let name = format!("ubd{unit}");
        if !self.hot.iter().any(|h| h.unit() == unit) {
            return Err(if self.devices.iter().any(|(d, _)| *d == name) {
                format!("{name} was attached at boot; umlvm removes only hot-plugged devices")
            } else {
                format!("{name} is not attached")
            });
        }
        if !self.hot.iter().any(|h| h.unit() == unit && h.attached) {
            return Err(format!("{name} is still being attached"));
        }
        self.guest_ready()?;
        match self.forward_to_guest(&format!("unplug ubd {unit}"), from, Some(Action::Detach(unit))) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Takes hot-plugged ubd `unit` down.
    fn drop_device(&mut self, unit: u8, ops: &mut EventOps) {
        let Some(i) = self.hot.iter().position(|h| h.unit() == unit) else { return };
        let dev = self.hot.remove(i);
        for (q, evt) in dev.notify().iter().enumerate() {
            let data = NOTIFY_TAG | u32::from(unit) << 8 | q as u32;
            let _ = ops.remove(Events::with_data(evt, data, EventSet::IN));
        }
        if let Some(guest) = &self.guest {
            guest.slots.remove(dev);
        }
    }

    /// Finishes hot-plug requests the guest answered.
    fn finish_plugging(&mut self, ops: &mut EventOps) {
        let _ = self.requests.wake.read();
        let done: Vec<Finished> =
            self.requests.finished.lock().map(|mut f| f.drain(..).collect()).unwrap_or_default();
        for f in done {
            let (err, text) = match (f.action, f.error, f.timed_out) {
                (Action::Attach(unit), _, true) => {
                    // The guest may yet take it: leave it attached, so it can be removed.
                    if let Some(h) = self.hot.iter_mut().find(|h| h.unit() == unit) {
                        h.attached = true;
                    }
                    (
                        true,
                        format!(
                            "the guest did not answer; ubd{unit} stays attached ('remove ubd{unit}' detaches it)"
                        ),
                    )
                }
                (Action::Attach(unit), false, false) => {
                    if let Some(h) = self.hot.iter_mut().find(|h| h.unit() == unit) {
                        h.attached = true;
                    }
                    (false, f.text)
                }
                (Action::Attach(unit), true, false) => {
                    self.drop_device(unit, ops);
                    (true, f.text)
                }
                (Action::Detach(unit), _, true) => {
                    (true, format!("the guest did not answer; ubd{unit} stays attached"))
                }
                (Action::Detach(unit), false, false) => {
                    self.drop_device(unit, ops);
                    (false, f.text)
                }
                (Action::Detach(_), true, false) => (true, f.text),
            };
            self.reply(&f.to, err, &text);
        }
    }

    /// A hot-plugged device's queue notification.
    fn notify_hot(&mut self, data: u32) {
        let (unit, queue) = ((data >> 8 & 0xff) as u8, (data & 0xff) as usize);
        let Some(dev) = self.hot.iter().find(|h| h.unit() == unit) else { return };
        if let Some(evt) = dev.notify().get(queue) {
            let _ = evt.read();
        }
        let transport = dev.transport().clone();
        self.control.run_or_defer(move || {
            if let Ok(mut t) = transport.lock() {
                t.notify(queue);
            }
        });
    }

    /// Whether `line` is run by the guest kernel.
    fn is_guest_command(line: &str) -> bool {
        let cmd = line.split_whitespace().next().unwrap_or("");
        ["sysrq", "cad", "log", "proc", "stack"].iter().any(|c| cmd.starts_with(c))
    }
}

/// Sends `data` to a client address (a path or, as uml_mconsole uses, an abstract name).
fn send_datagram(sock: &UnixDatagram, data: &[u8], to: &SocketAddr) -> std::io::Result<usize> {
    match to.as_pathname() {
        Some(path) => sock.send_to(data, path),
        None => send_to_addr(sock, data, to),
    }
}

#[cfg(target_os = "linux")]
fn send_to_addr(sock: &UnixDatagram, data: &[u8], to: &SocketAddr) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    match to.as_abstract_name() {
        Some(name) => {
            let addr = SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(data, &addr)
        }
        None => Err(std::io::Error::from(std::io::ErrorKind::InvalidInput)),
    }
}

impl MutEventSubscriber for Server {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.sock, EventSet::IN)) {
            log::error!("cannot watch the mconsole socket: {e}");
        }
        if let Err(e) = ops.add(Events::with_data(&self.requests.wake, WAKE_TAG, EventSet::IN)) {
            log::error!("cannot watch the mconsole's wake-up eventfd: {e}");
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match events.data() {
            WAKE_TAG => return self.finish_plugging(ops),
            d if d & NOTIFY_TAG != 0 => return self.notify_hot(d),
            _ => {}
        }
        // Bounded per wake-up so a flood cannot starve the rest of the loop.
        let mut buf = [0u8; 12 + DATA_LEN + 64];
        for _ in 0..64 {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else { return };
            let (line, pre_error) = match parse_request(&buf[..n]) {
                Request::Command(c) => (c, None),
                Request::WrongVersion(_, c) => (c, Some("This driver only supports version 2 clients")),
                Request::Version0 => {
                    if let Some(p) = from.as_pathname() {
                        let _ = self
                            .sock
                            .send_to(b"ERR Version 0 mconsole clients are not supported by this driver", p);
                    } else {
                        let _ = send_to_addr(
                            &self.sock,
                            b"ERR Version 0 mconsole clients are not supported by this driver",
                            &from,
                        );
                    }
                    continue;
                }
                Request::Invalid(why) => {
                    self.reply(&from, true, why);
                    continue;
                }
            };
            if let Some(e) = pre_error {
                self.reply(&from, true, e);
            }
            match self.plug(&line, &from, ops) {
                Plug::NotMine => {}
                Plug::Reply(err, text) => {
                    self.reply(&from, err, &text);
                    continue;
                }
                Plug::Asked => continue,
            }
            if Self::is_guest_command(&line) {
                if let Some(err) = self.forward_to_guest(line.trim(), &from, None) {
                    self.reply(&from, true, &err);
                }
                continue;
            }
            let (err, text, action) = self.execute(&line);
            self.reply(&from, err, &text);
            if let Some(a) = action {
                self.control.request(a);
            }
        }
    }
}

/// umlvm's client: sends `command` to the socket of `target` (a umid or a socket path) and
/// returns (error, text).
pub fn send_command(socket: &Path, command: &str) -> std::io::Result<(bool, String)> {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("umlvm-mconsole-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let sock = UnixDatagram::bind_addr(&addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.send_to(&encode_request(command), socket)?;
    let mut text = String::new();
    let mut first_err = None;
    let mut buf = [0u8; 12 + DATA_LEN + 64];
    loop {
        let n = sock.recv(&mut buf)?;
        let Some((err, more, part)) = parse_reply(&buf[..n]) else { break };
        first_err.get_or_insert(err);
        text.push_str(&part);
        if !more {
            break;
        }
    }
    Ok((first_err.unwrap_or(true), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_classified() {
        assert_eq!(parse_request(&encode_request("version")), Request::Command("version".into()));
        let b = encode_request("version");
        assert_eq!(b.len(), 524);
        assert_eq!(&b[..12], &[0xbe, 0xba, 0xfe, 0xca, 2, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(parse_request(b"version"), Request::Version0);
        assert_eq!(parse_request(b""), Request::Invalid("empty request"));
        let mut big = encode_request("x");
        big[8..12].copy_from_slice(&600u32.to_ne_bytes());
        assert_eq!(parse_request(&big), Request::Invalid("Request too large"));
        let mut v3 = encode_request("go");
        v3[4] = 3;
        assert_eq!(parse_request(&v3), Request::WrongVersion(3, "go".into()));
        // A short datagram with a longer stated length is cut at what arrived.
        let mut short = encode_request("halt");
        short.truncate(14);
        assert_eq!(parse_request(&short), Request::Command("ha".into()));
    }

    #[test]
    fn long_replies_split_into_511_byte_chunks() {
        let text = "x".repeat(600);
        let d = encode_reply(false, &text);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].len(), 524);
        assert_eq!(parse_reply(&d[0]), Some((false, true, "x".repeat(511))));
        assert_eq!(parse_reply(&d[1]), Some((false, false, "x".repeat(89))));
        assert_eq!(encode_reply(false, ""), vec![vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]]);
        assert_eq!(
            parse_reply(&encode_reply(true, "Not stopped")[0]),
            Some((true, false, "Not stopped".into()))
        );
    }

    #[test]
    fn commands_match_by_prefix_and_unknown_ones_fail() {
        let sock = UnixDatagram::unbound().unwrap();
        let requests = Arc::new(GuestRequests::new(sock.try_clone().unwrap()).unwrap());
        let s = Server {
            sock,
            control: Arc::default(),
            version: "umlvm-kernel 0.1.0".into(),
            devices: vec![("ubd0".into(), "/tmp/root_fs".into())],
            requests,
            guest: None,
            hot: Vec::new(),
        };
        assert_eq!(s.execute("version").1, "umlvm-kernel 0.1.0");
        assert_eq!(s.execute("versionX").1, "umlvm-kernel 0.1.0");
        assert!(s.execute("help").1.contains("stop - pause"));
        assert_eq!(s.execute("config ubd0"), (false, "/tmp/root_fs".into(), None));
        assert!(s.execute("config ubd7").0);
        assert_eq!(s.execute("config ubd1=/tmp/x"), (true, "no machine".into(), None));
        assert_eq!(s.execute("remove ubd1"), (true, "no machine".into(), None));
        assert_eq!(s.execute("frobnicate"), (true, "Unknown command".into(), None));
        assert_eq!(s.execute("go"), (true, "Not stopped".into(), None));
        assert_eq!(s.execute("halt").2, Some(Stop::Halt));
        assert!(Server::is_guest_command("sysrq m") && Server::is_guest_command("log hello"));
        assert!(!Server::is_guest_command("version"));
    }
}
