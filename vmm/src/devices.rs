//! The machine's devices: virtio-mmio transports at fixed windows in the MMIO hole, each with
//! an irqfd (its interrupt line) and an ioeventfd (queue notifications, handled in the event
//! loop so no vCPU ever blocks on device I/O).

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::sync::{Arc, Mutex};
use umlvm_boot::DeviceEntry;
use umlvm_boot::Span;
use umlvm_boot::abi::device_kind;
use umlvm_boot::layout::{DEVICE_MMIO_BASE, DEVICE_MMIO_LEN, FIRST_DEVICE_GSI, GSI_COUNT};
use umlvm_devices::disk::SharedDisk;
use umlvm_devices::ubd::UbdSpec;
use umlvm_devices::virtio::block::Block;
use umlvm_devices::virtio::mmio::MmioTransport;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Offset of QueueNotify in a virtio-mmio window.
const QUEUE_NOTIFY: u64 = 0x50;

/// Why devices could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Too many devices for the interrupt lines.
    #[error("too many devices ({0}): at most {1}")]
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
    /// The transport (shared by the vCPU thread and the event loop).
    pub transport: Arc<Mutex<MmioTransport>>,
    /// Queue-notification eventfd.
    pub notify: EventFd,
}

/// The devices of one machine.
#[derive(Default)]
pub struct Devices {
    /// Slots in window order.
    pub slots: Vec<DeviceSlot>,
}

impl Devices {
    /// Creates a virtio-blk device for every ubd, wired to `vm`.
    pub fn create(
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        ubds: &[(UbdSpec, SharedDisk)],
    ) -> Result<Self, DeviceError> {
        let max = (GSI_COUNT - FIRST_DEVICE_GSI) as usize;
        if ubds.len() > max {
            return Err(DeviceError::TooMany(ubds.len(), max));
        }
        let mut slots = Vec::with_capacity(ubds.len());
        for (i, (spec, disk)) in ubds.iter().enumerate() {
            let base = DEVICE_MMIO_BASE + i as u64 * DEVICE_MMIO_LEN;
            let gsi = FIRST_DEVICE_GSI + i as u32;
            let irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
            vm.register_irqfd(&irq, gsi).map_err(|e| DeviceError::Kvm("KVM_IRQFD", e))?;
            let notify = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
            vm.register_ioevent(&notify, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), 0u32)
                .map_err(|e| DeviceError::Kvm("KVM_IOEVENTFD", e))?;
            let block = Block::new(Box::new(disk.clone()), &spec.guest_name());
            let transport = MmioTransport::new(Box::new(block), mem.clone(), Box::new(irq));
            slots.push(DeviceSlot { base, gsi, transport: Arc::new(Mutex::new(transport)), notify });
        }
        Ok(Self { slots })
    }

    /// The device table for `BootInfo`.
    pub fn table(&self) -> Vec<DeviceEntry> {
        self.slots
            .iter()
            .map(|s| DeviceEntry {
                kind: device_kind::VIRTIO_MMIO,
                gsi: s.gsi,
                mmio: Span::new(s.base, DEVICE_MMIO_LEN),
            })
            .collect()
    }

    /// The bus the vCPU thread dispatches MMIO exits on.
    pub fn bus(&self) -> MmioBus {
        MmioBus { windows: self.slots.iter().map(|s| (s.base, s.transport.clone())).collect() }
    }
}

/// `virtio_mmio.device=4K@0xd0000000:8 ...` for a device table.
pub fn linux_cmdline(table: &[DeviceEntry]) -> String {
    table
        .iter()
        .map(|d| format!("virtio_mmio.device={}K@{:#x}:{}", d.mmio.len / 1024, d.mmio.gpa, d.gsi))
        .collect::<Vec<_>>()
        .join(" ")
}

/// MMIO dispatch for the vCPU thread.
#[derive(Clone, Default)]
pub struct MmioBus {
    windows: Vec<(u64, Arc<Mutex<MmioTransport>>)>,
}

impl MmioBus {
    fn find(&self, addr: u64) -> Option<(u64, &Arc<Mutex<MmioTransport>>)> {
        self.windows
            .iter()
            .find(|(base, _)| (*base..base + DEVICE_MMIO_LEN).contains(&addr))
            .map(|(base, t)| (addr - base, t))
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

/// Processes a device's queue when the guest notifies it (event-loop side).
pub struct QueueNotifier {
    evt: EventFd,
    transport: Arc<Mutex<MmioTransport>>,
}

impl QueueNotifier {
    /// Watches `slot`'s notification eventfd.
    pub fn new(slot: &DeviceSlot) -> std::io::Result<Self> {
        Ok(Self { evt: slot.notify.try_clone()?, transport: slot.transport.clone() })
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
            if let Ok(mut t) = self.transport.lock() {
                t.notify(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_cmdline_describes_each_window() {
        let table = [
            DeviceEntry { kind: 1, gsi: 8, mmio: Span::new(0xd000_0000, 0x1000) },
            DeviceEntry { kind: 1, gsi: 9, mmio: Span::new(0xd000_1000, 0x1000) },
        ];
        assert_eq!(
            linux_cmdline(&table),
            "virtio_mmio.device=4K@0xd0000000:8 virtio_mmio.device=4K@0xd0001000:9"
        );
    }
}
