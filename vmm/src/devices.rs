//! The machine's devices: virtio-mmio transports at fixed windows in the MMIO hole, each with
//! an irqfd (its interrupt line) and one ioeventfd per queue (notifications are handled in
//! the event loop, so no vCPU ever blocks on device I/O). Console input from host channels
//! (descriptors, ptys, telnet ports) is read in the event loop too.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::collections::HashMap;
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
use umlvm_devices::virtio::console::{self, ConsoleKind, ConsoleName, OpenedChannel, PortServers};
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
    channel: &OpenedChannel,
    transport: Option<&Arc<Mutex<MmioTransport>>>,
    bytes: &[u8],
    control: &crate::mconsole::Control,
) {
    if bytes.is_empty() {
        return;
    }
    umlvm_devices::virtio::console::Console::push_input(&channel.input, bytes);
    if let Some(t) = transport.cloned() {
        control.run_or_defer(move || {
            if let Ok(mut t) = t.lock() {
                t.notify(0);
            }
        });
    }
}

/// Reads console input from a host descriptor (fd, tty, pty).
pub struct ConsoleInput {
    file: Arc<File>,
    channel: OpenedChannel,
    transport: Option<Arc<Mutex<MmioTransport>>>,
    control: Arc<crate::mconsole::Control>,
}

impl ConsoleInput {
    /// Watches `channel`'s input descriptor for the current machine's device.
    pub fn new(
        channel: &OpenedChannel,
        transports: &HashMap<ConsoleName, Arc<Mutex<MmioTransport>>>,
        control: Arc<crate::mconsole::Control>,
    ) -> Option<Self> {
        Some(Self {
            file: channel.input_fd.clone()?,
            channel: channel.clone(),
            transport: transports.get(&channel.name).cloned(),
            control,
        })
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn init(&mut self, ops: &mut EventOps) {
        // Regular files and /dev/null cannot be polled; there is no input from them.
        if ops.add(Events::new(&*self.file, EventSet::IN)).is_err() {
            log::debug!("{}: input is not pollable; ignoring it", self.channel.name);
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match console::read_available(&self.file) {
            // A hang-up with data still buffered reads the data first; only the end of input
            // (or an error) stops the watch.
            Some(bytes) if !bytes.is_empty() => {
                deliver(&self.channel, self.transport.as_ref(), &bytes, &self.control)
            }
            Some(_) if events.event_set().contains(EventSet::HANG_UP) => {
                let _ = ops.remove(events);
            }
            Some(_) => {}
            None => {
                // End of input: stop watching (a closed stdin must not spin the loop).
                let _ = ops.remove(events);
            }
        }
    }
}

/// Connections accepted on telnet ports, kept across reboots.
#[derive(Default)]
pub struct PortConnections {
    /// The listening ports and the devices waiting on them.
    pub servers: PortServers,
    /// Open connections: reader, its console, telnet parser state.
    pub conns: Vec<(TcpStream, OpenedChannel, u8)>,
}

/// Serves the telnet ports: accepts connections and reads their input.
pub struct PortSubscriber {
    state: Arc<Mutex<PortConnections>>,
    transports: HashMap<ConsoleName, Arc<Mutex<MmioTransport>>>,
    control: Arc<crate::mconsole::Control>,
}

impl PortSubscriber {
    /// Serves `state` for the current machine.
    pub fn new(
        state: Arc<Mutex<PortConnections>>,
        transports: HashMap<ConsoleName, Arc<Mutex<MmioTransport>>>,
        control: Arc<crate::mconsole::Control>,
    ) -> Self {
        Self { state, transports, control }
    }
}

/// Event data tags: listeners carry their port; connections carry `CONN_TAG | fd`.
const CONN_TAG: u32 = 1 << 31;

impl MutEventSubscriber for PortSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        let Ok(state) = self.state.lock() else { return };
        for (port, l) in &state.servers.listeners {
            let _ = ops.add(Events::with_data(&**l, u32::from(*port), EventSet::IN));
        }
        for (s, _, _) in &state.conns {
            let _ = ops.add(Events::with_data(s, CONN_TAG | s.as_raw_fd() as u32, EventSet::IN));
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let Ok(mut state) = self.state.lock() else { return };
        let data = events.data();
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
                deliver(channel, self.transports.get(&channel.name), &bytes, &self.control);
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
