//! virtio devices over the virtio-mmio transport.

pub mod block;
pub mod console;
pub mod mmio;

use std::io;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// VIRTIO_F_VERSION_1: a modern (1.x) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// VIRTIO_RING_F_INDIRECT_DESC: descriptor chains may use indirect tables (virtio-queue
/// follows them, with the same checks).
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// virtio device type of a block device.
pub const TYPE_BLOCK: u32 = 2;

/// Raises the device's interrupt (an irqfd in the VMM, a counter in tests).
pub trait Interrupt: Send {
    /// Signals the guest.
    fn trigger(&self) -> io::Result<()>;
}

impl Interrupt for vmm_sys_util::eventfd::EventFd {
    fn trigger(&self) -> io::Result<()> {
        self.write(1)
    }
}

/// Copies the part of a read-only configuration space `config` that a guest read of
/// `data.len()` bytes at `offset` covers; bytes past its end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    if let Some(tail) = usize::try_from(offset).ok().and_then(|start| config.get(start..)) {
        let n = data.len().min(tail.len());
        data[..n].copy_from_slice(&tail[..n]);
    }
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// virtio device type.
    fn device_type(&self) -> u32;
    /// Feature bits offered.
    fn features(&self) -> u64;
    /// Maximum size of each queue (one entry per queue).
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (ignored by devices without writable config).
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Processes the available buffers of queue `index`; returns whether the guest must be
    /// interrupted.
    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool;
}

#[cfg(test)]
mod tests {
    use super::read_config_bytes;

    #[test]
    fn config_reads_are_clipped_and_zero_filled() {
        let config = [1u8, 2, 3, 4];
        let mut data = [0xFFu8; 4];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read_config_bytes(&config, 9, &mut data);
        assert_eq!(data, [0; 4]);
        read_config_bytes(&config, u64::MAX, &mut data);
        assert_eq!(data, [0; 4]);
    }
}
