//! The virtio-console device (one port, no multiport): queue 0 carries input to the guest,
//! queue 1 output from it.

use super::TYPE_CONSOLE;
use crate::virtio::VirtioDevice;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

/// Bytes waiting to be delivered to the guest (filled by the channel's reader).
pub type InputBuffer = Arc<Mutex<VecDeque<u8>>>;

/// Most input bytes kept while the guest is not reading; older ones are dropped.
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// A console device.
pub struct Console {
    output: Box<dyn Write + Send>,
    input: InputBuffer,
    config: [u8; 8],
}

impl Console {
    /// A console writing guest output to `output` and delivering bytes pushed to `input`.
    pub fn new(output: Box<dyn Write + Send>, input: InputBuffer) -> Self {
        let mut config = [0u8; 8];
        config[0..2].copy_from_slice(&80u16.to_le_bytes());
        config[2..4].copy_from_slice(&25u16.to_le_bytes());
        Self { output, input, config }
    }

    /// Queues `bytes` for the guest (bounded).
    pub fn push_input(buffer: &InputBuffer, bytes: &[u8]) {
        if let Ok(mut q) = buffer.lock() {
            q.extend(bytes);
            while q.len() > MAX_PENDING_INPUT {
                q.pop_front();
            }
        }
    }

    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let Ok(mut pending) = self.input.lock() else { return false };
        let mut used = false;
        while !pending.is_empty() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else { break };
            let head = chain.head_index();
            let mut written = 0u32;
            for d in chain.take(16).filter(|d| d.is_write_only()) {
                let n = (d.len() as usize).min(pending.len());
                let bytes: Vec<u8> = pending.drain(..n).collect();
                if mem.write_slice(&bytes, d.addr()).is_err() {
                    break;
                }
                written += n as u32;
                if pending.is_empty() {
                    break;
                }
            }
            if queue.add_used(mem, head, written).is_err() {
                break;
            }
            used = true;
        }
        used
    }

    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            for d in chain.take(16).filter(|d| !d.is_write_only()) {
                let len = (d.len() as usize).min(64 * 1024);
                let mut buf = vec![0u8; len];
                if mem.read_slice(&mut buf, d.addr()).is_ok() {
                    // A closed or full host channel must not stall the guest.
                    let _ = self.output.write_all(&buf);
                }
            }
            let _ = self.output.flush();
            if queue.add_used(mem, head, 0).is_err() {
                break;
            }
            used = true;
        }
        used
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        TYPE_CONSOLE
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[64, 64]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let used = match index {
            0 => self.receive(queue, mem),
            1 => self.transmit(queue, mem),
            _ => false,
        };
        used && queue.needs_notification(mem).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_reaches_the_channel_and_input_the_guest() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let sink = Sink::default();
        let input: InputBuffer = Arc::default();
        let mut c = Console::new(Box::new(sink.clone()), input.clone());
        mem.write_slice(b"hello", GuestAddress(0x8000)).unwrap();
        let mock = MockSplitQueue::new(&mem, 16);
        mock.add_desc_chains(&[RawDescriptor::from(Descriptor::new(0x8000, 5, 0, 0))], 0).unwrap();
        let mut q: Queue = mock.create_queue().unwrap();
        assert!(c.process_queue(1, &mut q, &mem));
        assert_eq!(&*sink.0.lock().unwrap(), b"hello");

        Console::push_input(&input, b"typed");
        let mock = MockSplitQueue::new(&mem, 16);
        mock.add_desc_chains(&[RawDescriptor::from(Descriptor::new(0x9000, 3, 2, 0))], 0).unwrap();
        let mut q: Queue = mock.create_queue().unwrap();
        assert!(c.process_queue(0, &mut q, &mem));
        let mut got = [0u8; 3];
        mem.read_slice(&mut got, GuestAddress(0x9000)).unwrap();
        assert_eq!(&got, b"typ");
        assert_eq!(input.lock().unwrap().len(), 2, "the rest waits for the next buffer");
    }

    /// Random descriptor chains on both queues: no panic, no access outside guest memory
    /// (vm-memory refuses it; the assertion is that we get here with the queues drained).
    #[test]
    fn random_chains_never_panic() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let input: InputBuffer = Arc::default();
        let mut c = Console::new(Box::new(Sink::default()), input.clone());
        let mut seed = 0x0123_4567_89ab_cdefu64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..2000 {
            Console::push_input(&input, b"0123456789abcdef");
            let n = (next() % 5 + 1) as usize;
            let descs: Vec<RawDescriptor> = (0..n)
                .map(|i| {
                    let addr = if next() % 3 == 0 { next() } else { next() % (1 << 20) };
                    let flags = (next() % 4) as u16 | if i + 1 < n { 1 } else { 0 };
                    RawDescriptor::from(Descriptor::new(addr, (next() % 70000) as u32, flags, (i + 1) as u16))
                })
                .collect();
            let mock = MockSplitQueue::new(&mem, 16);
            if mock.add_desc_chains(&descs, 0).is_err() {
                continue;
            }
            let Ok(mut q) = mock.create_queue::<Queue>() else { continue };
            c.process_queue(round % 2, &mut q, &mem);
        }
    }
}
