//! Hot-plugging ubd devices into a running machine (`config ubdN=SPEC`, `remove ubdN`).
//!
//! The device windows and interrupt lines the boot devices leave free are the spare slots
//! (window `i` at `DEVICE_MMIO_BASE + 4 KiB * i` with GSI `8 + i`, 16 in all). `config
//! ubdN=SPEC` opens and locks the image exactly as a boot-time ubd, wires a virtio-blk device
//! into the first free slot (irqfd, ioeventfds, the MMIO bus) and asks the guest to take it
//! (`hotplug ubd N GPA LEN GSI` through the control mailbox); if the guest refuses, the device
//! is taken down again. `remove ubdN` asks the guest to let go (`unplug ubd N`), which it
//! refuses while the device is mounted or open; only after it agreed is the device taken down:
//! unwired, flushed, and its image closed (which drops its lock).
//!
//! Hot-plugged devices belong to one machine: a reboot builds the machine from the command
//! line again, as UML's reboot does.

use crate::devices::{self, DEVICE_SLOTS, DeviceSlot, MmioBus};
use kvm_ioctls::VmFd;
use std::sync::Arc;
use umlvm_devices::disk::{Disk, SharedDisk};
use umlvm_devices::ubd::UbdSpec;
use vm_memory::GuestMemoryMmap;

/// What hot-plugging needs of the current machine.
pub struct Slots {
    /// The VM, for irqfds and ioeventfds.
    pub vm: Arc<VmFd>,
    /// Guest memory, for the device's queues.
    pub mem: GuestMemoryMmap,
    /// The vCPU's MMIO dispatch.
    pub bus: MmioBus,
}

/// A hot-plugged ubd.
pub struct HotDevice {
    /// The switch it came from.
    pub spec: UbdSpec,
    /// Whether the guest took it (until then it is being added).
    pub attached: bool,
    disk: SharedDisk,
    slot: DeviceSlot,
}

impl HotDevice {
    /// The ubd unit.
    pub fn unit(&self) -> u8 {
        self.spec.index
    }

    /// The window's queue-notification eventfds.
    pub fn notify(&self) -> &[vmm_sys_util::eventfd::EventFd] {
        &self.slot.notify
    }

    /// The transport, for queue notifications.
    pub fn transport(&self) -> &Arc<std::sync::Mutex<umlvm_devices::virtio::mmio::MmioTransport>> {
        &self.slot.transport
    }

    /// The request that asks the guest to take this device.
    pub fn guest_request(&self) -> String {
        format!(
            "hotplug ubd {} {:#x} {:#x} {}",
            self.spec.index,
            self.slot.base,
            umlvm_boot::layout::DEVICE_MMIO_LEN,
            self.slot.gsi
        )
    }
}

impl Slots {
    /// The first window no device uses.
    fn free_window(&self) -> Option<usize> {
        use umlvm_boot::layout::{DEVICE_MMIO_BASE, DEVICE_MMIO_LEN};
        (0..DEVICE_SLOTS).find(|&i| !self.bus.has(DEVICE_MMIO_BASE + i as u64 * DEVICE_MMIO_LEN))
    }

    /// Opens `spec`'s image (locked, as at boot) and wires a virtio-blk device for it into a
    /// free slot.
    pub fn add(&self, spec: UbdSpec) -> Result<HotDevice, String> {
        let name = format!("ubd{}", spec.index);
        let Some(i) = self.free_window() else {
            return Err(format!(
                "{name}: no free device slot (all {DEVICE_SLOTS} device windows and interrupt lines are in use)"
            ));
        };
        let disk = SharedDisk::new(umlvm_devices::ubd::open(&spec).map_err(|e| e.to_string())?);
        let device = devices::block_device(&spec, &disk);
        let slot = devices::wire(&self.vm, &self.mem, i, device, devices::block_role(&spec), None)
            .map_err(|e| format!("{name}: {e}"))?;
        self.bus.insert(slot.base, slot.transport.clone());
        log::info!("{name}: hot-plugged at {:#x}, GSI {}", slot.base, slot.gsi);
        Ok(HotDevice { spec, attached: false, disk, slot })
    }

    /// Takes `dev` down: off the bus, unwired, flushed; dropping it closes (and unlocks) the
    /// image.
    pub fn remove(&self, mut dev: HotDevice) {
        self.bus.remove(dev.slot.base);
        devices::unwire(&self.vm, &dev.slot);
        if let Err(e) = dev.disk.flush() {
            log::warn!("ubd{}: flush on removal: {e}", dev.unit());
        }
        log::info!("ubd{}: removed from {:#x}", dev.unit(), dev.slot.base);
    }
}
