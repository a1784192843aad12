//! The virtio-mmio transport, version 2 (virtio 1.x "modern" register layout).
//!
//! Register accesses come from the vCPU thread (MMIO exits); queue notifications come from
//! ioeventfds in the event loop. Every value the driver writes is checked: a bad queue
//! configuration leaves the queue not ready, a bad feature set leaves FEATURES_OK clear, and a
//! device that fails is marked NEEDS_RESET; nothing here panics on guest input.

use super::{Interrupt, VIRTIO_F_VERSION_1, VirtioDevice};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

/// Size of a device's MMIO window.
pub const MMIO_LEN: u64 = 0x1000;
const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x554d_4c56; // "UMLV"

/// Device status bits.
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation done.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and must be reset.
    pub const NEEDS_RESET: u32 = 0x40;
    /// The driver gave up.
    pub const FAILED: u32 = 0x80;
}

/// A device plus its transport state.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Box<dyn Interrupt>,
    queues: Vec<Queue>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    config_generation: u32,
}

impl MmioTransport {
    /// Wraps `device`; queues get the device's maximum sizes.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMemoryMmap, interrupt: Box<dyn Interrupt>) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&max| Queue::new(max).expect("device queue sizes are powers of two"))
            .collect();
        Self {
            device,
            mem,
            interrupt,
            queues,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.status = 0;
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn features_negotiable(&self) -> bool {
        self.status & status::FEATURES_OK == 0 && self.status & status::DRIVER != 0
    }

    fn queue_configurable(&self) -> bool {
        self.status & status::FEATURES_OK != 0 && self.status & status::DRIVER_OK == 0
    }

    /// Handles a read of `data.len()` bytes at `offset` in the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let v: u32 = match offset {
            0x000 => MAGIC,
            0x004 => 2,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => {
                let f = self.device.features() | VIRTIO_F_VERSION_1;
                match self.device_features_sel {
                    0 => f as u32,
                    1 => (f >> 32) as u32,
                    _ => 0,
                }
            }
            0x034 => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            0x044 => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// Handles a write of `data` at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= 0x100 {
            self.device.write_config(offset - 0x100, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else { return };
        let v = u32::from_le_bytes(bytes);
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 if self.features_negotiable() => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32),
                _ => {}
            },
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 if self.queue_configurable() => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(v as u16);
                }
            }
            // A driver may take a queue out of service at any time (virtio 1.2, 4.2.2.2: it
            // writes 0 and reads QueueReady back until it is 0), e.g. as it lets go of a
            // device that is being unplugged.
            0x044 if v == 0 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(false);
                }
            }
            0x044 if self.queue_configurable() => {
                let mem = self.mem.clone();
                if let Some(q) = self.selected_queue() {
                    // Only a queue whose rings lie in guest memory becomes ready.
                    q.set_ready(v == 1);
                    if v == 1 && !q.is_valid(&mem) {
                        q.set_ready(false);
                    }
                }
            }
            0x050 => self.notify(v as usize),
            0x064 => self.interrupt_status &= !v,
            0x070 => self.set_status(v),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 if self.queue_configurable() => {
                if let Some(q) = self.selected_queue() {
                    let (lo, hi) = if offset.is_multiple_of(8) { (Some(v), None) } else { (None, Some(v)) };
                    match offset {
                        0x080 | 0x084 => q.set_desc_table_address(lo, hi),
                        0x090 | 0x094 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => log::debug!("virtio-mmio: ignored write {v:#x} at {offset:#x}"),
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let mut v = v;
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let offered = self.device.features() | VIRTIO_F_VERSION_1;
            let ok = self.driver_features & !offered == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                v &= !status::FEATURES_OK;
            }
        }
        self.status = v;
    }

    /// The driver notified queue `index` (also called by the ioeventfd handler).
    pub fn notify(&mut self, index: usize) {
        if self.status & status::DRIVER_OK == 0 || self.status & status::NEEDS_RESET != 0 {
            return;
        }
        let Some(queue) = self.queues.get_mut(index) else { return };
        if !queue.ready() {
            return;
        }
        if self.device.process_queue(index, queue, &self.mem) {
            self.interrupt_status |= 1;
            if let Err(e) = self.interrupt.trigger() {
                log::warn!("virtio-mmio: cannot raise the interrupt: {e}");
            }
        }
    }

    /// Marks the device broken after a host-side failure; the guest must reset it.
    pub fn needs_reset(&mut self) {
        self.status |= status::NEEDS_RESET;
        self.interrupt_status |= 2;
        self.config_generation = self.config_generation.wrapping_add(1);
        let _ = self.interrupt.trigger();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use vm_memory::GuestAddress;

    /// Counts interrupts.
    #[derive(Clone, Default)]
    pub struct CountingInterrupt(pub Arc<AtomicU32>);
    impl Interrupt for CountingInterrupt {
        fn trigger(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A device that completes every chain with length 0.
    struct Dummy {
        processed: Arc<AtomicU32>,
    }
    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            42
        }
        fn features(&self) -> u64 {
            1 << 3
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write_config(&mut self, _: u64, _: &[u8]) {}
        fn process_queue(&mut self, _: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
            while let Some(chain) = queue.pop_descriptor_chain(mem) {
                queue.add_used(mem, chain.head_index(), 0).unwrap();
                self.processed.fetch_add(1, Ordering::SeqCst);
            }
            true
        }
    }

    pub fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    /// Drives the transport through the driver's initialisation sequence.
    pub fn bring_up(t: &mut MmioTransport, features_hi: u32, queue_addrs: (u64, u64, u64), size: u32) {
        w(t, 0x070, status::ACKNOWLEDGE | status::DRIVER);
        w(t, 0x024, 1);
        w(t, 0x020, features_hi);
        w(t, 0x070, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        w(t, 0x030, 0);
        w(t, 0x038, size);
        for (off, addr) in [(0x080, queue_addrs.0), (0x090, queue_addrs.1), (0x0a0, queue_addrs.2)] {
            w(t, off, addr as u32);
            w(t, off + 4, (addr >> 32) as u32);
        }
        w(t, 0x044, 1);
        w(t, 0x070, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
    }

    fn transport() -> (MmioTransport, Arc<AtomicU32>, Arc<AtomicU32>) {
        let processed = Arc::new(AtomicU32::new(0));
        let irq = CountingInterrupt::default();
        let count = irq.0.clone();
        let t = MmioTransport::new(Box::new(Dummy { processed: processed.clone() }), mem(), Box::new(irq));
        (t, processed, count)
    }

    #[test]
    fn identification_registers() {
        let (mut t, _, _) = transport();
        assert_eq!(r(&mut t, 0), MAGIC);
        assert_eq!(r(&mut t, 4), 2);
        assert_eq!(r(&mut t, 8), 42);
        w(&mut t, 0x014, 1);
        assert_eq!(r(&mut t, 0x010), 1, "VERSION_1 in the high word");
        w(&mut t, 0x014, 0);
        assert_eq!(r(&mut t, 0x010), 1 << 3);
        assert_eq!(r(&mut t, 0x034), 16);
        let mut cfg = [0u8; 2];
        t.read(0x104, &mut cfg);
        assert_eq!(cfg, [4, 4]);
    }

    #[test]
    fn features_without_version_1_are_refused() {
        let (mut t, _, _) = transport();
        w(&mut t, 0x070, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, 0x024, 0);
        w(&mut t, 0x020, 1 << 3);
        w(&mut t, 0x070, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        assert_eq!(r(&mut t, 0x070) & status::FEATURES_OK, 0);
        // Unknown feature bits are refused too.
        w(&mut t, 0x070, 0);
        w(&mut t, 0x070, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, 0x024, 1);
        w(&mut t, 0x020, 1 | 2);
        w(&mut t, 0x070, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        assert_eq!(r(&mut t, 0x070) & status::FEATURES_OK, 0);
    }

    #[test]
    fn queue_outside_memory_never_becomes_ready() {
        let (mut t, processed, _) = transport();
        bring_up(&mut t, 1, (0xffff_0000_0000, 0x2000, 0x3000), 16);
        assert_eq!(r(&mut t, 0x044), 0);
        t.notify(0);
        assert_eq!(processed.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn notify_processes_and_interrupts_and_reset_clears() {
        use virtio_queue::mock::MockSplitQueue;
        let (mut t, processed, irqs) = transport();
        let m = t.mem.clone();
        let mut mock = MockSplitQueue::new(&m, 16);
        mock.add_chain(2).unwrap();
        let addrs = (mock.desc_table_addr().0, mock.avail_addr().0, mock.used_addr().0);
        bring_up(&mut t, 1, addrs, 16);
        assert_eq!(r(&mut t, 0x044), 1);
        w(&mut t, 0x050, 0);
        assert_eq!(processed.load(Ordering::SeqCst), 1);
        assert_eq!(irqs.load(Ordering::SeqCst), 1);
        assert_eq!(r(&mut t, 0x060), 1);
        w(&mut t, 0x064, 1);
        assert_eq!(r(&mut t, 0x060), 0);
        w(&mut t, 0x070, 0);
        assert_eq!(r(&mut t, 0x070), 0);
        assert_eq!(r(&mut t, 0x044), 0);
        // Out-of-range queue index and odd-width register accesses are ignored.
        t.notify(7);
        t.write(0x070, &[1]);
        let mut b = [0u8; 2];
        t.read(0x000, &mut b);
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn a_live_queue_can_be_taken_out_of_service() {
        use virtio_queue::mock::MockSplitQueue;
        let (mut t, processed, _) = transport();
        let m = t.mem.clone();
        let mock = MockSplitQueue::new(&m, 16);
        let addrs = (mock.desc_table_addr().0, mock.avail_addr().0, mock.used_addr().0);
        bring_up(&mut t, 1, addrs, 16);
        assert_eq!(r(&mut t, 0x044), 1);
        // After DRIVER_OK a queue cannot be made ready again, but it can be stopped.
        w(&mut t, 0x044, 0);
        assert_eq!(r(&mut t, 0x044), 0);
        w(&mut t, 0x044, 1);
        assert_eq!(r(&mut t, 0x044), 0);
        t.notify(0);
        assert_eq!(processed.load(Ordering::SeqCst), 0);
    }
}
