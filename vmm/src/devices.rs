//! The machine's devices: virtio-mmio transports at fixed windows in the MMIO hole, each with
//! an irqfd (its interrupt line) and one ioeventfd per queue (notifications are handled in
//! the event loop, so no vCPU ever blocks on device I/O). Console input from host channels
//! (descriptors, ptys, telnet ports) is read in the event loop too.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use umlvm_boot::abi::{device_kind, device_role};
use umlvm_boot::layout::{DEVICE_MMIO_BASE, DEVICE_MMIO_LEN, FIRST_DEVICE_GSI, GSI_COUNT};
use umlvm_boot::{DeviceEntry, Span};
use umlvm_devices::disk::SharedDisk;
use umlvm_devices::ubd::UbdSpec;
use umlvm_devices::virtio::VirtioDevice;
use umlvm_devices::virtio::block::Block;
use umlvm_devices::virtio::console::{
    self, ConsoleKind, ConsoleName, ConsoleSpec, OpenedChannel, PortServers,
};
use umlvm_devices::virtio::mmio::MmioTransport;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Offset of QueueNotify in a virtio-mmio window.
const QUEUE_NOTIFY: u64 = 0x50;

/// Why devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Too many devices for the interrupt lines.
    #[error("too many devices ({0}): at most {1} block devices, consoles and serial lines together")]
    TooMany(usize, usize),
    /// An eventfd could not be made.
    #[error("eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM refused an irqfd or ioeventfd.
    #[error("{0} failed")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
}

/// One device on the bus.
pub struct DeviceSlot {
    /// MMIO window base.
    pub base: u64,
    /// Interrupt line.
    pub gsi: u32,
    /// Role tag for the guest ([`device_role`]).
    pub role: u32,
    /// The transport (shared by the vCPU thread and the event loop).
    pub transport: Arc<Mutex<MmioTransport>>,
    /// Queue-notification eventfds, one per queue.
    pub notify: Vec<EventFd>,
    /// The console this device serves, if it is one.
    pub console: Option<ConsoleName>,
    /// The interrupt line's irqfd (the transport raises it through a clone).
    pub irq: EventFd,
}

/// The devices of one machine.
pub struct Devices {
    /// Slots in window order.
    pub slots: Vec<DeviceSlot>,
    /// The management-console interrupt ([`umlvm_boot::layout::CONTROL_GSI`]).
    control_irq: EventFd,
    /// The MMIO windows, shared with the vCPU thread (hot-plugging changes them).
    bus: MmioBus,
}

/// Device windows (and interrupt lines) in all: window `i` is at
/// `DEVICE_MMIO_BASE + i * DEVICE_MMIO_LEN` with line `FIRST_DEVICE_GSI + i`.
pub const DEVICE_SLOTS: usize = (GSI_COUNT - FIRST_DEVICE_GSI) as usize;

/// The virtio-blk device for a ubd.
pub fn block_device(spec: &UbdSpec, disk: &SharedDisk) -> Box<dyn VirtioDevice> {
    Box::new(Block::new(Box::new(disk.clone()), &spec.guest_name()))
}

/// The guest's role tag for a ubd.
pub fn block_role(spec: &UbdSpec) -> u32 {
    device_role::make(device_role::UBD, u32::from(spec.index))
}

/// Puts `device` in window `i`: its interrupt line as an irqfd and one ioeventfd per queue.
pub fn wire(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    i: usize,
    device: Box<dyn VirtioDevice>,
    role: u32,
    console: Option<ConsoleName>,
) -> Result<DeviceSlot, DeviceError> {
    let base = DEVICE_MMIO_BASE + i as u64 * DEVICE_MMIO_LEN;
    let gsi = FIRST_DEVICE_GSI + i as u32;
    let queues = device.queue_max_sizes().len();
    let irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
    let raise = irq.try_clone().map_err(DeviceError::EventFd)?;
    vm.register_irqfd(&irq, gsi).map_err(|e| DeviceError::Kvm("KVM_IRQFD", e))?;
    let mut slot = DeviceSlot {
        base,
        gsi,
        role,
        transport: Arc::new(Mutex::new(MmioTransport::new(device, mem.clone(), Box::new(raise)))),
        notify: Vec::with_capacity(queues),
        console,
        irq,
    };
    for q in 0..queues {
        let registered = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd).and_then(|evt| {
            vm.register_ioevent(&evt, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), q as u32)
                .map_err(|e| DeviceError::Kvm("KVM_IOEVENTFD", e))
                .map(|()| evt)
        });
        match registered {
            Ok(evt) => slot.notify.push(evt),
            Err(e) => {
                unwire(vm, &slot);
                return Err(e);
            }
        }
    }
    Ok(slot)
}

/// Undoes [`wire`]: the guest's writes to the queue registers and the interrupt line no
/// longer reach the device.
pub fn unwire(vm: &VmFd, slot: &DeviceSlot) {
    for (q, evt) in slot.notify.iter().enumerate() {
        if let Err(e) = vm.unregister_ioevent(evt, &IoEventAddress::Mmio(slot.base + QUEUE_NOTIFY), q as u32)
        {
            log::warn!("window {:#x}: KVM_IOEVENTFD (deassign): {e}", slot.base);
        }
    }
    if let Err(e) = vm.unregister_irqfd(&slot.irq, slot.gsi) {
        log::warn!("GSI {}: KVM_IRQFD (deassign): {e}", slot.gsi);
    }
}

/// A device to create.
enum Spec<'a> {
    Block(&'a UbdSpec, &'a SharedDisk),
    Console(&'a OpenedChannel),
}

impl Devices {
    /// Creates a virtio-blk device for every ubd and a virtio-console for every console or
    /// serial line, wired to `vm`.
    pub fn create(
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        ubds: &[(UbdSpec, SharedDisk)],
        consoles: &[OpenedChannel],
    ) -> Result<Self, DeviceError> {
        let specs: Vec<Spec<'_>> =
            ubds.iter().map(|(s, d)| Spec::Block(s, d)).chain(consoles.iter().map(Spec::Console)).collect();
        if specs.len() > DEVICE_SLOTS {
            return Err(DeviceError::TooMany(specs.len(), DEVICE_SLOTS));
        }
        let mut slots = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let (device, role, console): (Box<dyn VirtioDevice>, u32, Option<ConsoleName>) = match spec {
                Spec::Block(s, disk) => (block_device(s, disk), block_role(s), None),
                Spec::Console(c) => {
                    let class = match c.name.kind {
                        ConsoleKind::Con => device_role::CON,
                        ConsoleKind::Ssl => device_role::SSL,
                    };
                    (Box::new(c.device()), device_role::make(class, u32::from(c.name.unit)), Some(c.name))
                }
            };
            slots.push(wire(vm, mem, i, device, role, console)?);
        }
        let bus = MmioBus::default();
        for s in &slots {
            bus.insert(s.base, s.transport.clone());
        }
        let control_irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        vm.register_irqfd(&control_irq, umlvm_boot::layout::CONTROL_GSI)
            .map_err(|e| DeviceError::Kvm("KVM_IRQFD", e))?;
        Ok(Self { slots, control_irq, bus })
    }

    /// A handle on the management-console interrupt.
    pub fn control_irq(&self) -> Result<EventFd, DeviceError> {
        self.control_irq.try_clone().map_err(DeviceError::EventFd)
    }

    /// The device table for `BootInfo`.
    pub fn table(&self) -> Vec<DeviceEntry> {
        self.slots
            .iter()
            .map(|s| DeviceEntry {
                kind: device_kind::VIRTIO_MMIO,
                gsi: s.gsi,
                mmio: Span::new(s.base, DEVICE_MMIO_LEN),
                role: s.role,
                _pad: 0,
            })
            .collect()
    }

    /// The bus the vCPU thread dispatches MMIO exits on.
    pub fn bus(&self) -> MmioBus {
        self.bus.clone()
    }

    /// The console devices' transports, by console name.
    pub fn console_transports(&self) -> HashMap<ConsoleName, Arc<Mutex<MmioTransport>>> {
        self.slots.iter().filter_map(|s| Some((s.console?, s.transport.clone()))).collect()
    }
}

/// `virtio_mmio.device=4K@0xd0000000:8 ...` for a device table (what a Linux guest needs).
pub fn linux_cmdline(table: &[DeviceEntry]) -> String {
    table
        .iter()
        .map(|d| format!("virtio_mmio.device={}K@{:#x}:{}", d.mmio.len / 1024, d.mmio.gpa, d.gsi))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A device window on the bus.
type Window = (u64, Arc<Mutex<MmioTransport>>);

/// MMIO dispatch for the vCPU thread; clones share the windows, so a device hot-plugged from
/// the event loop appears to the vCPU at once.
#[derive(Clone, Default)]
pub struct MmioBus {
    windows: Arc<std::sync::RwLock<Vec<Window>>>,
}

impl MmioBus {
    fn find(&self, addr: u64) -> Option<(u64, Arc<Mutex<MmioTransport>>)> {
        let windows = self.windows.read().ok()?;
        windows
            .iter()
            .find(|(base, _)| (*base..base + DEVICE_MMIO_LEN).contains(&addr))
            .map(|(base, t)| (addr - base, t.clone()))
    }

    /// Adds a window at `base`.
    pub fn insert(&self, base: u64, transport: Arc<Mutex<MmioTransport>>) {
        if let Ok(mut w) = self.windows.write() {
            w.push((base, transport));
        }
    }

    /// Removes the window at `base`.
    pub fn remove(&self, base: u64) {
        if let Ok(mut w) = self.windows.write() {
            w.retain(|(b, _)| *b != base);
        }
    }

    /// Whether a window is at `base`.
    pub fn has(&self, base: u64) -> bool {
        self.windows.read().is_ok_and(|w| w.iter().any(|(b, _)| *b == base))
    }

    /// Handles a guest read; `false` if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((off, t)) => {
                if let Ok(mut t) = t.lock() {
                    t.read(off, data);
                }
                true
            }
            None => false,
        }
    }

    /// Handles a guest write; `false` if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((off, t)) => {
                if let Ok(mut t) = t.lock() {
                    t.write(off, data);
                }
                true
            }
            None => false,
        }
    }
}

/// Processes a device's queue when the guest notifies it (event-loop side); while the
/// machine is stopped the work waits for `go`.
pub struct QueueNotifier {
    evt: EventFd,
    queue: usize,
    transport: Arc<Mutex<MmioTransport>>,
    control: Arc<crate::mconsole::Control>,
}

impl QueueNotifier {
    /// Watches `slot`'s notification eventfd for `queue`.
    pub fn new(
        slot: &DeviceSlot,
        queue: usize,
        control: Arc<crate::mconsole::Control>,
    ) -> std::io::Result<Self> {
        Ok(Self { evt: slot.notify[queue].try_clone()?, queue, transport: slot.transport.clone(), control })
    }
}

impl MutEventSubscriber for QueueNotifier {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            log::error!("cannot watch a device queue: {e}");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.event_set().contains(EventSet::IN) {
            let _ = self.evt.read();
            let (transport, queue) = (self.transport.clone(), self.queue);
            self.control.run_or_defer(move || {
                if let Ok(mut t) = transport.lock() {
                    t.notify(queue);
                }
            });
        }
    }
}

/// Hands bytes to a console device and has them delivered (after `go` if stopped).
fn deliver(
    input: &console::InputBuffer,
    transport: Option<&Arc<Mutex<MmioTransport>>>,
    bytes: &[u8],
    control: &crate::mconsole::Control,
) {
    if bytes.is_empty() {
        return;
    }
    umlvm_devices::virtio::console::Console::push_input(input, bytes);
    if let Some(t) = transport.cloned() {
        control.run_or_defer(move || {
            if let Ok(mut t) = t.lock() {
                t.notify(0);
            }
        });
    }
}

/// The host side of the consoles, kept across reboots: their channels, the telnet ports and
/// the connections accepted on them.
#[derive(Default)]
pub struct PortConnections {
    /// The listening ports and the devices waiting on them.
    pub servers: PortServers,
    /// Open connections: reader, its console, telnet parser state.
    pub conns: Vec<(TcpStream, OpenedChannel, u8)>,
    /// Every console's channel (a re-attach replaces its entry).
    pub channels: Vec<OpenedChannel>,
    /// Every console's channel spec, for `config conN`.
    pub specs: BTreeMap<ConsoleName, ConsoleSpec>,
    /// Connections a re-attach closed, for the event loop to stop watching.
    closing: Vec<TcpStream>,
}

/// The consoles' host side, shared by the management console (which re-attaches channels)
/// and the event loop (which reads their input); a wake-up tells the loop to pick up changes.
#[derive(Clone)]
pub struct ConsoleHub {
    /// Channels, ports, connections.
    pub state: Arc<Mutex<PortConnections>>,
    wake: Arc<EventFd>,
    xterm: console::XtermSetup,
}

/// Why `config conN=...` failed, with its causes on one line (as the command line says it).
fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

impl ConsoleHub {
    /// A hub over the channels opened at boot.
    pub fn new(state: PortConnections, xterm: console::XtermSetup) -> Result<Self, DeviceError> {
        let wake = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
        Ok(Self { state: Arc::new(Mutex::new(state)), wake: Arc::new(wake), xterm })
    }

    /// The consoles' channels now (for a new machine's devices).
    pub fn channels(&self) -> Vec<OpenedChannel> {
        self.state.lock().map(|s| s.channels.clone()).unwrap_or_default()
    }

    /// The channel spec of console `name` (`con1`), as the command line writes it.
    pub fn describe(&self, name: &str) -> Option<String> {
        let state = self.state.lock().ok()?;
        state.specs.iter().find(|(n, _)| n.to_string() == name).map(|(_, s)| crate::run::describe_console(s))
    }

    /// `config conN=CHANNEL`: re-attaches console `key`'s host side; returns the reply (what
    /// boot would have announced).
    pub fn reattach(&self, key: &str, value: &str) -> Result<String, String> {
        let unit = key.strip_prefix("con").or_else(|| key.strip_prefix("ssl")).unwrap_or("");
        if unit.is_empty() {
            return Err(format!("config {key}={value}: name one console (conN or sslN)"));
        }
        let mut state =
            self.state.lock().map_err(|_| "internal error: console state poisoned".to_string())?;
        let Some(i) = state.channels.iter().position(|c| c.name.to_string() == key) else {
            return Err(format!("{key}: no such console; consoles cannot be hot-added"));
        };
        let name = state.channels[i].name;
        let spec = match console::parse_switch(key, value) {
            Ok(Some((_, Some(_), spec))) => spec,
            Ok(_) => return Err(format!("{key}: no such console; consoles cannot be hot-added")),
            Err(e) => return Err(error_line(&e)),
        };
        let mut specs = state.specs.clone();
        specs.insert(name, spec.clone());
        let all: Vec<(ConsoleName, ConsoleSpec)> = specs.into_iter().collect();
        console::check_inputs(&all).map_err(|e| error_line(&e))?;
        let st = &mut *state;
        let opened = console::reattach(&st.channels[i], &spec, &mut st.servers, &self.xterm)
            .map_err(|e| error_line(&e))?;
        // The old connection (if any) ends: its client sees the connection close.
        let (gone, kept): (Vec<_>, Vec<_>) = st.conns.drain(..).partition(|(_, c, _)| c.name == name);
        st.conns = kept;
        for (stream, _, _) in gone {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            log::info!("{name}: telnet connection closed (re-attached)");
            st.closing.push(stream);
        }
        let reply = match (&opened.announce, opened.port) {
            (Some(a), _) => a.clone(),
            (None, Some(p)) => format!("{name} waiting for a connection on port {p} (telnet 127.0.0.1 {p})"),
            (None, None) => String::new(),
        };
        st.channels[i] = opened;
        st.specs.insert(name, spec);
        drop(state);
        let _ = self.wake.write(1);
        Ok(reply)
    }
}

/// Event data tags: listeners carry their port; connections `CONN_TAG | fd`, input
/// descriptors `INPUT_TAG | fd`.
const CONN_TAG: u32 = 1 << 31;
const INPUT_TAG: u32 = 1 << 30;
const WAKE_TAG: u32 = 1 << 29;

/// A console input descriptor (fd, tty, pty, xterm) the loop reads.
struct Input {
    name: ConsoleName,
    file: Arc<File>,
    buffer: console::InputBuffer,
    /// Whether it is in the epoll set (regular files and /dev/null cannot be polled; an input
    /// that ended is no longer watched).
    watched: bool,
}

/// What con0 gets when its input ends and it is not a terminal (a pipe, a file, /dev/null):
/// two VEOF characters, so a program reading the guest's terminal in canonical mode sees the
/// end of its input, as if it had been typed (the first one ends a partial last line).
const END_OF_INPUT: &[u8] = b"\x04\x04";

/// Whether `name` is con0 fed by something other than a terminal, whose end the guest must
/// learn about.
fn tells_guest_about_eof(name: ConsoleName, file: &File) -> bool {
    name.kind == console::ConsoleKind::Con && name.unit == 0 && !std::io::IsTerminal::is_terminal(file)
}

/// Serves the consoles' host side in the event loop: reads input descriptors, accepts telnet
/// connections and reads them, and follows re-attaches.
pub struct ConsoleSubscriber {
    hub: ConsoleHub,
    transports: HashMap<ConsoleName, Arc<Mutex<MmioTransport>>>,
    control: Arc<crate::mconsole::Control>,
    inputs: Vec<Input>,
    listeners: Vec<(u16, Arc<std::net::TcpListener>)>,
}

impl ConsoleSubscriber {
    /// Serves `hub` for the current machine.
    pub fn new(
        hub: ConsoleHub,
        transports: HashMap<ConsoleName, Arc<Mutex<MmioTransport>>>,
        control: Arc<crate::mconsole::Control>,
    ) -> Self {
        Self { hub, transports, control, inputs: Vec::new(), listeners: Vec::new() }
    }

    /// Makes the epoll set match the channels: stops watching what a re-attach closed (before
    /// the descriptors are dropped) and starts watching what it opened.
    fn sync(&mut self, ops: &mut EventOps) {
        let Ok(mut state) = self.hub.state.lock() else { return };
        for s in state.closing.drain(..) {
            let _ = ops.remove(Events::with_data(&s, CONN_TAG | s.as_raw_fd() as u32, EventSet::IN));
        }
        let current: Vec<(ConsoleName, Arc<File>, console::InputBuffer)> = state
            .channels
            .iter()
            .filter_map(|c| Some((c.name, c.input_fd.clone()?, c.input.clone())))
            .collect();
        self.inputs.retain(|i| {
            let keep = current.iter().any(|(_, f, _)| Arc::ptr_eq(f, &i.file));
            if !keep && i.watched {
                let _ = ops.remove(Events::with_data(
                    &*i.file,
                    INPUT_TAG | i.file.as_raw_fd() as u32,
                    EventSet::IN,
                ));
            }
            keep
        });
        for (name, file, buffer) in current {
            if self.inputs.iter().any(|i| Arc::ptr_eq(&i.file, &file)) {
                continue;
            }
            let watched =
                ops.add(Events::with_data(&*file, INPUT_TAG | file.as_raw_fd() as u32, EventSet::IN)).is_ok();
            if !watched && tells_guest_about_eof(name, &file) {
                // A regular file or /dev/null: it cannot be polled, so hand over what it holds
                // (up to the device's input buffer) and then its end.
                let mut data = Vec::new();
                while let Some(bytes) = console::read_available(&file) {
                    if bytes.is_empty() || data.len() > 64 * 1024 {
                        break;
                    }
                    data.extend_from_slice(&bytes);
                }
                if data.len() > 64 * 1024 {
                    eprintln!(
                        "umlvm: {name}: input is a file larger than 64 KiB; only its start reaches the guest (pipe it instead: cat FILE | umlvm ...)"
                    );
                    data.truncate(64 * 1024);
                }
                deliver(&buffer, self.transports.get(&name), &data, &self.control);
                deliver(&buffer, self.transports.get(&name), END_OF_INPUT, &self.control);
            } else if !watched {
                log::debug!("{name}: input is not pollable; ignoring it");
            }
            self.inputs.push(Input { name, file, buffer, watched });
        }
        let listeners = &state.servers.listeners;
        self.listeners.retain(|(port, l)| {
            let keep = listeners.get(port).is_some_and(|c| Arc::ptr_eq(c, l));
            if !keep {
                let _ = ops.remove(Events::with_data(&**l, u32::from(*port), EventSet::IN));
            }
            keep
        });
        for (port, l) in listeners {
            if !self.listeners.iter().any(|(_, m)| Arc::ptr_eq(m, l)) {
                if let Err(e) = ops.add(Events::with_data(&**l, u32::from(*port), EventSet::IN)) {
                    log::error!("port {port}: cannot watch it: {e}");
                }
                self.listeners.push((*port, l.clone()));
            }
        }
    }

    fn read_input(&mut self, events: Events, ops: &mut EventOps) {
        let fd = (events.data() & !INPUT_TAG) as i32;
        let Some(input) = self.inputs.iter_mut().find(|i| i.file.as_raw_fd() == fd) else { return };
        match console::read_available(&input.file) {
            // A hang-up with data still buffered reads the data first; only the end of input
            // (or an error) stops the watch.
            Some(bytes) if !bytes.is_empty() => {
                deliver(&input.buffer, self.transports.get(&input.name), &bytes, &self.control)
            }
            Some(_) if events.event_set().contains(EventSet::HANG_UP) => {
                let _ = ops.remove(events);
                input.watched = false;
                if tells_guest_about_eof(input.name, &input.file) {
                    deliver(&input.buffer, self.transports.get(&input.name), END_OF_INPUT, &self.control);
                }
            }
            Some(_) => {}
            None => {
                // End of input: stop watching (a closed stdin must not spin the loop), and
                // tell the guest.
                let _ = ops.remove(events);
                input.watched = false;
                if tells_guest_about_eof(input.name, &input.file) {
                    deliver(&input.buffer, self.transports.get(&input.name), END_OF_INPUT, &self.control);
                }
            }
        }
    }
}

impl MutEventSubscriber for ConsoleSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data(&*self.hub.wake, WAKE_TAG, EventSet::IN)) {
            log::error!("cannot watch the consoles' wake-up eventfd: {e}");
        }
        if let Ok(state) = self.hub.state.lock() {
            for (s, _, _) in &state.conns {
                let _ = ops.add(Events::with_data(s, CONN_TAG | s.as_raw_fd() as u32, EventSet::IN));
            }
        }
        self.sync(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let data = events.data();
        if data == WAKE_TAG {
            let _ = self.hub.wake.read();
            return self.sync(ops);
        }
        if data & INPUT_TAG != 0 {
            return self.read_input(events, ops);
        }
        let Ok(mut state) = self.hub.state.lock() else { return };
        if data & CONN_TAG == 0 {
            if let Some((stream, channel)) = state.servers.accept(data as u16) {
                log::info!("{}: telnet connection on port {data}", channel.name);
                let _ =
                    ops.add(Events::with_data(&stream, CONN_TAG | stream.as_raw_fd() as u32, EventSet::IN));
                state.conns.push((stream, channel, 0));
            }
            return;
        }
        let fd = (data & !CONN_TAG) as i32;
        let Some(i) = state.conns.iter().position(|(s, _, _)| s.as_raw_fd() == fd) else { return };
        let mut buf = [0u8; 4096];
        let (stream, channel, telnet) = &mut state.conns[i];
        match stream.read(&mut buf) {
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(n) if n > 0 => {
                let bytes = console::strip_telnet(&buf[..n], telnet);
                deliver(&channel.input, self.transports.get(&channel.name), &bytes, &self.control);
            }
            _ => {
                let _ = ops.remove(events);
                let (_, channel, _) = state.conns.remove(i);
                log::info!("{}: telnet connection closed", channel.name);
                channel.output.disconnect();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_cmdline_describes_each_window() {
        let e = |gsi, gpa| DeviceEntry { kind: 1, gsi, mmio: Span::new(gpa, 0x1000), role: 0, _pad: 0 };
        let table = [e(8, 0xd000_0000), e(9, 0xd000_1000)];
        assert_eq!(
            linux_cmdline(&table),
            "virtio_mmio.device=4K@0xd0000000:8 virtio_mmio.device=4K@0xd0001000:9"
        );
    }
}
