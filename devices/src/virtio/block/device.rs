//! The virtio-blk device: configuration space, features, and request execution on a
//! [`Disk`].

use super::request::{Request, RequestType};
use super::{
    MAX_SEGMENTS, QUEUE_SIZE, SECTOR_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
};
use crate::disk::Disk;
use crate::virtio::{TYPE_BLOCK, VIRTIO_RING_F_INDIRECT_DESC, VirtioDevice};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

/// A block device over a disk.
pub struct Block {
    disk: Box<dyn Disk>,
    id: [u8; 20],
    config: [u8; 24],
    /// Requests completed (for statistics).
    pub completed: u64,
    /// Requests refused as malformed.
    pub malformed: u64,
}

impl Block {
    /// A device over `disk`, with `id` (up to 20 bytes) as its serial.
    pub fn new(disk: Box<dyn Disk>, id: &str) -> Self {
        let mut idb = [0u8; 20];
        let n = id.len().min(20);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        let capacity = disk.size() / SECTOR_SIZE;
        let mut config = [0u8; 24];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[12..16].copy_from_slice(&MAX_SEGMENTS.to_le_bytes()); // seg_max
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes()); // blk_size
        Self { disk, id: idb, config, completed: 0, malformed: 0 }
    }

    fn capacity(&self) -> u64 {
        self.disk.size() / SECTOR_SIZE
    }

    /// Runs a validated request; returns the status and the bytes written to the guest.
    fn execute(&mut self, req: &Request, mem: &GuestMemoryMmap) -> (u8, u32) {
        match req.kind {
            RequestType::In => {
                let mut pos = req.sector * SECTOR_SIZE;
                let mut written = 0u32;
                for &(addr, len) in &req.data {
                    if self.disk.read_to_guest(mem, addr, len as usize, pos).is_err() {
                        return (VIRTIO_BLK_S_IOERR, written);
                    }
                    pos += u64::from(len);
                    written += len;
                }
                (VIRTIO_BLK_S_OK, written)
            }
            RequestType::Out => {
                if self.disk.read_only() {
                    return (VIRTIO_BLK_S_IOERR, 0);
                }
                let mut pos = req.sector * SECTOR_SIZE;
                for &(addr, len) in &req.data {
                    if self.disk.write_from_guest(mem, addr, len as usize, pos).is_err() {
                        return (VIRTIO_BLK_S_IOERR, 0);
                    }
                    pos += u64::from(len);
                }
                (VIRTIO_BLK_S_OK, 0)
            }
            RequestType::Flush => match self.disk.flush() {
                Ok(()) => (VIRTIO_BLK_S_OK, 0),
                Err(_) => (VIRTIO_BLK_S_IOERR, 0),
            },
            RequestType::GetId => {
                let Some(&(addr, len)) = req.data.first() else { return (VIRTIO_BLK_S_IOERR, 0) };
                let n = (len as usize).min(self.id.len());
                match mem.write_slice(&self.id[..n], addr) {
                    Ok(()) => (VIRTIO_BLK_S_OK, n as u32),
                    Err(_) => (VIRTIO_BLK_S_IOERR, 0),
                }
            }
            RequestType::Unsupported(_) => (VIRTIO_BLK_S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.disk.read_only() { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_SEG_MAX | ro | (1 << 6) /* BLK_SIZE */ | VIRTIO_RING_F_INDIRECT_DESC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        // While we work the driver need not notify us (each notification is a VM exit);
        // re-enabling tells us whether more arrived meanwhile.
        let mut used_any = false;
        loop {
            let _ = queue.disable_notification(mem);
            used_any |= self.drain(queue, mem);
            match queue.enable_notification(mem) {
                Ok(true) => continue,
                _ => break,
            }
        }
        used_any && queue.needs_notification(mem).unwrap_or(true)
    }
}

impl Block {
    /// Completes every available request; returns whether any was.
    fn drain(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> bool {
        let mut used_any = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            // The iterator stops at loops and bad indices; cap the length ourselves too.
            let descs: Vec<_> = chain.take(MAX_SEGMENTS as usize + 3).collect();
            let (status, written) = match Request::parse(&descs, mem, self.capacity()) {
                Ok(req) => {
                    let (status, written) = self.execute(&req, mem);
                    if mem.write_obj(status, req.status).is_err() {
                        self.malformed += 1;
                    }
                    (status, written + 1)
                }
                Err(e) => {
                    log::debug!("virtio-blk: refusing request: {e}");
                    self.malformed += 1;
                    // Report an error if there is a writable last byte to put it in.
                    if let Some(last) = descs.last().filter(|d| d.is_write_only() && d.len() >= 1) {
                        let _ = mem.write_obj(VIRTIO_BLK_S_IOERR, last.addr());
                    }
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            };
            let _ = status;
            if queue.add_used(mem, head, written).is_err() {
                return used_any;
            }
            self.completed += 1;
            used_any = true;
        }
        used_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::Disk;
    use std::io;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    struct MemDisk(Vec<u8>, bool);
    impl Disk for MemDisk {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
            crate::disk::check_range(off, buf.len(), self.size())?;
            buf.copy_from_slice(&self.0[off as usize..off as usize + buf.len()]);
            Ok(())
        }
        fn write_at(&mut self, buf: &[u8], off: u64) -> io::Result<()> {
            crate::disk::check_range(off, buf.len(), self.size())?;
            self.0[off as usize..off as usize + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn read_only(&self) -> bool {
            self.1
        }
    }

    fn run(dev: &mut Block, m: &GuestMemoryMmap, descs: &[Descriptor]) -> u8 {
        let mock = MockSplitQueue::new(m, 16);
        let raw: Vec<RawDescriptor> = descs.iter().map(|d| RawDescriptor::from(*d)).collect();
        mock.add_desc_chains(&raw, 0).unwrap();
        let mut q: Queue = mock.create_queue().unwrap();
        dev.process_queue(0, &mut q, m);
        m.read_obj(descs.last().unwrap().addr()).unwrap()
    }

    fn hdr(m: &GuestMemoryMmap, kind: u32, sector: u64) -> Descriptor {
        m.write_obj(kind, GuestAddress(0x10000)).unwrap();
        m.write_obj(sector, GuestAddress(0x10008)).unwrap();
        Descriptor::new(0x10000, 16, 1, 1)
    }

    #[test]
    fn reads_writes_flushes_and_ids() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut dev = Block::new(Box::new(MemDisk(vec![7u8; 8192], false)), "ubd0");
        m.write_slice(&[0x5a; 512], GuestAddress(0x20000)).unwrap();
        let st = Descriptor::new(0x30000, 1, 2, 0);
        assert_eq!(
            run(&mut dev, &m, &[hdr(&m, 1, 2), Descriptor::new(0x20000, 512, 1, 2), st]),
            VIRTIO_BLK_S_OK
        );
        assert_eq!(
            run(&mut dev, &m, &[hdr(&m, 0, 1), Descriptor::new(0x40000, 1024, 3, 2), st]),
            VIRTIO_BLK_S_OK
        );
        let mut got = [0u8; 1024];
        m.read_slice(&mut got, GuestAddress(0x40000)).unwrap();
        assert!(got[..512].iter().all(|&b| b == 7) && got[512..].iter().all(|&b| b == 0x5a));
        assert_eq!(run(&mut dev, &m, &[hdr(&m, 4, 0), st]), VIRTIO_BLK_S_OK);
        assert_eq!(
            run(&mut dev, &m, &[hdr(&m, 8, 0), Descriptor::new(0x40000, 20, 3, 2), st]),
            VIRTIO_BLK_S_OK
        );
        let mut id = [0u8; 4];
        m.read_slice(&mut id, GuestAddress(0x40000)).unwrap();
        assert_eq!(&id, b"ubd0");
        assert_eq!(run(&mut dev, &m, &[hdr(&m, 99, 0), st]), VIRTIO_BLK_S_UNSUPP);
        assert_eq!(
            run(&mut dev, &m, &[hdr(&m, 0, 16), Descriptor::new(0x40000, 512, 3, 2), st]),
            VIRTIO_BLK_S_IOERR
        );
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 16);
    }

    #[test]
    fn read_only_disks_refuse_writes_and_advertise_it() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut dev = Block::new(Box::new(MemDisk(vec![0u8; 4096], true)), "ro");
        assert_ne!(dev.features() & VIRTIO_BLK_F_RO, 0);
        let st = Descriptor::new(0x30000, 1, 2, 0);
        assert_eq!(
            run(&mut dev, &m, &[hdr(&m, 1, 0), Descriptor::new(0x20000, 512, 1, 2), st]),
            VIRTIO_BLK_S_IOERR
        );
    }

    /// Random descriptor chains: the device never panics and never writes outside guest
    /// memory (vm-memory refuses out-of-range accesses; the assertion is that we get here).
    #[test]
    fn random_chains_never_panic() {
        let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let mut dev = Block::new(Box::new(MemDisk(vec![0u8; 64 * 1024], false)), "fuzz");
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let n = (next() % 6 + 1) as usize;
            let descs: Vec<Descriptor> = (0..n)
                .map(|i| {
                    let addr = match next() % 4 {
                        0 => next(),
                        1 => (1 << 20) - (next() % 64),
                        _ => next() % (1 << 20),
                    };
                    let len = (next() % 4096) as u32;
                    let flags = (next() % 4) as u16 | if i + 1 < n { 1 } else { 0 };
                    Descriptor::new(addr, len, flags, (i + 1) as u16)
                })
                .collect();
            let _ = m.write_obj((next() % 10) as u32, GuestAddress((next() % (1 << 20)) & !7));
            let mock = MockSplitQueue::new(&m, 16);
            let raw: Vec<RawDescriptor> = descs.iter().map(|d| RawDescriptor::from(*d)).collect();
            if mock.add_desc_chains(&raw, 0).is_err() {
                continue;
            }
            let Ok(mut q) = mock.create_queue::<Queue>() else { continue };
            dev.process_queue(0, &mut q, &m);
        }
        assert!(dev.completed > 0);
    }
}
