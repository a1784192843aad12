//! A bounded write-back block cache, evicting the least recently used block.

use super::BlockDevice;
use crate::errno::{Errno, KResult};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;

/// How many blocks the cache holds at most.
pub(crate) const CACHE_BLOCKS: usize = 512;

struct Entry {
    data: Box<[u8]>,
    dirty: bool,
    tick: u64,
}

/// Cached blocks of one device, keyed by block number.
pub(crate) struct BlockCache {
    dev: Arc<dyn BlockDevice>,
    block_size: usize,
    capacity: usize,
    map: BTreeMap<u32, Entry>,
    /// Use order: tick of last use -> block.
    lru: BTreeMap<u64, u32>,
    tick: u64,
}

impl BlockCache {
    /// An empty cache of `capacity` blocks of `block_size` bytes.
    pub(crate) fn new(dev: Arc<dyn BlockDevice>, block_size: usize, capacity: usize) -> Self {
        Self {
            dev,
            block_size,
            capacity: capacity.max(8),
            map: BTreeMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
        }
    }

    fn offset(&self, blk: u32) -> u64 {
        u64::from(blk) * self.block_size as u64
    }

    /// Evicts least recently used blocks (writing dirty ones) until one more fits.
    fn make_room(&mut self) -> KResult<()> {
        while self.map.len() >= self.capacity {
            let Some((_, blk)) = self.lru.pop_first() else { break };
            if let Some(e) = self.map.remove(&blk)
                && e.dirty
            {
                self.dev.write(self.offset(blk), &e.data)?;
            }
        }
        Ok(())
    }

    /// The entry of `blk`, read from the device if `read` and not cached (else zeroed).
    fn load(&mut self, blk: u32, read: bool) -> KResult<&mut Entry> {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.map.get_mut(&blk) {
            let old = core::mem::replace(&mut e.tick, tick);
            self.lru.remove(&old);
        } else {
            self.make_room()?;
            let mut data = vec![0u8; self.block_size].into_boxed_slice();
            if read {
                self.dev.read(self.offset(blk), &mut data)?;
            }
            self.map.insert(blk, Entry { data, dirty: false, tick });
        }
        self.lru.insert(tick, blk);
        self.map.get_mut(&blk).ok_or(Errno::EIO)
    }

    /// The contents of block `blk`.
    pub(crate) fn read(&mut self, blk: u32) -> KResult<&[u8]> {
        Ok(&self.load(blk, true)?.data)
    }

    /// The contents of block `blk`, to modify (marked dirty).
    pub(crate) fn write(&mut self, blk: u32) -> KResult<&mut [u8]> {
        let e = self.load(blk, true)?;
        e.dirty = true;
        Ok(&mut e.data)
    }

    /// Block `blk` to be overwritten entirely: not read from the device if not cached, so
    /// its contents are unspecified (marked dirty).
    pub(crate) fn overwrite(&mut self, blk: u32) -> KResult<&mut [u8]> {
        let e = self.load(blk, false)?;
        e.dirty = true;
        Ok(&mut e.data)
    }

    /// Block `blk` filled with zeros (marked dirty).
    pub(crate) fn zeroed(&mut self, blk: u32) -> KResult<&mut [u8]> {
        let data = self.overwrite(blk)?;
        data.fill(0);
        Ok(data)
    }

    /// Drops block `blk` without writing it (it was freed).
    pub(crate) fn forget(&mut self, blk: u32) {
        if let Some(e) = self.map.remove(&blk) {
            self.lru.remove(&e.tick);
        }
    }

    /// Writes every dirty block, in block order (the device is not flushed).
    pub(crate) fn write_back(&mut self) -> KResult<()> {
        let bs = self.block_size as u64;
        for (&blk, e) in self.map.iter_mut().filter(|(_, e)| e.dirty) {
            self.dev.write(u64::from(blk) * bs, &e.data)?;
            e.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spinning_top::Spinlock;

    struct MemDev(Spinlock<alloc::vec::Vec<u8>>, Spinlock<usize>);

    impl BlockDevice for MemDev {
        fn read(&self, offset: u64, buf: &mut [u8]) -> KResult<()> {
            let d = self.0.lock();
            buf.copy_from_slice(&d[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
        fn write(&self, offset: u64, buf: &[u8]) -> KResult<()> {
            *self.1.lock() += 1;
            self.0.lock()[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&self) -> KResult<()> {
            Ok(())
        }
        fn size(&self) -> u64 {
            self.0.lock().len() as u64
        }
    }

    #[test]
    fn ext2_cache_evicts_lru_and_writes_back() {
        let dev = Arc::new(MemDev(Spinlock::new(vec![0; 64 * 16]), Spinlock::new(0)));
        let mut c = BlockCache::new(dev.clone(), 64, 8);
        for b in 0..8u32 {
            c.write(b).unwrap()[0] = b as u8 + 1;
        }
        assert_eq!(*dev.1.lock(), 0);
        c.read(0).unwrap(); // 0 is now the most recent; 1 goes first
        c.read(9).unwrap();
        assert_eq!(*dev.1.lock(), 1);
        assert_eq!(dev.0.lock()[64], 2);
        assert_eq!(c.read(0).unwrap()[0], 1);
        c.zeroed(3).unwrap();
        c.forget(4);
        c.write_back().unwrap();
        assert!(c.map.values().all(|e| !e.dirty));
        assert_eq!(dev.0.lock()[4 * 64], 0);
        assert_eq!(dev.0.lock()[5 * 64], 6);
        assert_eq!(c.read(1).unwrap()[0], 2);
    }
}
