//! Block and inode allocation from the group bitmaps, keeping the free counts of the group
//! descriptors and the superblock exact.

use super::State;
use crate::errno::{Errno, KResult};

/// The first clear bit in `bits[..nbits]` at or after `start`, wrapping around.
fn find_clear(bits: &[u8], nbits: u32, start: u32) -> Option<u32> {
    let scan = |from: u32, to: u32| {
        let mut i = from;
        while i < to {
            let byte = bits[(i / 8) as usize];
            if byte == 0xff && i.is_multiple_of(8) {
                i += 8;
                continue;
            }
            if byte & (1 << (i % 8)) == 0 {
                return Some(i);
            }
            i += 1;
        }
        None
    };
    let start = start.min(nbits);
    scan(start, nbits).or_else(|| scan(0, start))
}

impl State {
    /// Allocates a block, preferring `goal` and then the groups after it. The block's
    /// contents are not touched.
    pub(crate) fn alloc_block(&mut self, goal: u32) -> KResult<u32> {
        if self.sb.free_blocks() == 0 {
            return Err(Errno::ENOSPC);
        }
        let geo = self.geo;
        let goal = goal.clamp(geo.first_data_block, geo.blocks_count - 1);
        let g0 = (goal - geo.first_data_block) / geo.blocks_per_group;
        for i in 0..geo.groups {
            let g = (g0 + i) % geo.groups;
            let desc = self.groups[g as usize];
            if desc.free_blocks == 0 {
                continue;
            }
            let nbits = geo.blocks_in_group(g);
            let start = if i == 0 { goal - geo.group_first_block(g) } else { 0 };
            let bitmap = self.cache.read(desc.block_bitmap)?;
            let Some(bit) = find_clear(bitmap, nbits, start) else {
                log::warn!("ext2: group {g} claims {} free blocks but its bitmap is full", desc.free_blocks);
                continue;
            };
            self.cache.write(desc.block_bitmap)?[(bit / 8) as usize] |= 1 << (bit % 8);
            self.groups[g as usize].free_blocks -= 1;
            self.sb.set_free_blocks(self.sb.free_blocks() - 1);
            self.gd_dirty = true;
            return Ok(geo.group_first_block(g) + bit);
        }
        Err(Errno::ENOSPC)
    }

    /// Whether `blk` may be a data or indirect block.
    pub(crate) fn check_block(&self, blk: u32) -> KResult<()> {
        if blk < self.geo.first_data_block || blk >= self.geo.blocks_count {
            log::warn!("ext2: block number {blk} out of range");
            return Err(Errno::EUCLEAN);
        }
        Ok(())
    }

    /// Frees block `blk` (and drops it from the cache).
    pub(crate) fn free_block(&mut self, blk: u32) -> KResult<()> {
        self.check_block(blk)?;
        let geo = self.geo;
        let g = (blk - geo.first_data_block) / geo.blocks_per_group;
        let bit = blk - geo.group_first_block(g);
        let desc = self.groups[g as usize];
        let byte = &mut self.cache.write(desc.block_bitmap)?[(bit / 8) as usize];
        if *byte & (1 << (bit % 8)) == 0 {
            log::warn!("ext2: freeing free block {blk}");
            return Ok(());
        }
        *byte &= !(1 << (bit % 8));
        self.cache.forget(blk);
        self.groups[g as usize].free_blocks += 1;
        self.sb.set_free_blocks(self.sb.free_blocks() + 1);
        self.gd_dirty = true;
        Ok(())
    }

    /// The group of inode `ino`.
    pub(crate) fn inode_group(&self, ino: u32) -> u32 {
        (ino - 1) / self.geo.inodes_per_group
    }

    /// Allocates an inode number, preferring group `pref`; counts a directory in its group.
    pub(crate) fn alloc_inode(&mut self, pref: u32, dir: bool) -> KResult<u32> {
        if self.sb.free_inodes() == 0 {
            return Err(Errno::ENOSPC);
        }
        let geo = self.geo;
        for i in 0..geo.groups {
            let g = (pref + i) % geo.groups;
            let desc = self.groups[g as usize];
            if desc.free_inodes == 0 {
                continue;
            }
            // Inodes below first_ino are reserved (mke2fs marks them used anyway).
            let start = if g == 0 { geo.first_ino - 1 } else { 0 };
            let bitmap = self.cache.read(desc.inode_bitmap)?;
            let Some(bit) = find_clear(bitmap, geo.inodes_per_group, start).filter(|&b| b >= start) else {
                log::warn!("ext2: group {g} claims {} free inodes but its bitmap is full", desc.free_inodes);
                continue;
            };
            self.cache.write(desc.inode_bitmap)?[(bit / 8) as usize] |= 1 << (bit % 8);
            let d = &mut self.groups[g as usize];
            d.free_inodes -= 1;
            if dir {
                d.used_dirs += 1;
            }
            self.sb.set_free_inodes(self.sb.free_inodes() - 1);
            self.gd_dirty = true;
            return Ok(g * geo.inodes_per_group + bit + 1);
        }
        Err(Errno::ENOSPC)
    }

    /// Clears inode `ino` in its bitmap and counts it free (and one directory fewer).
    pub(crate) fn free_inode_bit(&mut self, ino: u32, dir: bool) -> KResult<()> {
        let g = self.inode_group(ino);
        let bit = (ino - 1) % self.geo.inodes_per_group;
        let desc = self.groups[g as usize];
        let byte = &mut self.cache.write(desc.inode_bitmap)?[(bit / 8) as usize];
        if *byte & (1 << (bit % 8)) == 0 {
            log::warn!("ext2: freeing free inode {ino}");
            return Ok(());
        }
        *byte &= !(1 << (bit % 8));
        let d = &mut self.groups[g as usize];
        d.free_inodes += 1;
        if dir {
            d.used_dirs = d.used_dirs.saturating_sub(1);
        }
        self.sb.set_free_inodes(self.sb.free_inodes() + 1);
        self.gd_dirty = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::find_clear;

    #[test]
    fn ext2_bitmap_search_wraps() {
        let bits = [0xff, 0b1110_1111, 0xff, 0x00];
        assert_eq!(find_clear(&bits, 32, 0), Some(12));
        assert_eq!(find_clear(&bits, 32, 13), Some(24));
        assert_eq!(find_clear(&bits, 24, 13), Some(12));
        assert_eq!(find_clear(&[0xff, 0xff], 16, 3), None);
        assert_eq!(find_clear(&[0xff, 0x0f], 12, 0), None);
    }
}
