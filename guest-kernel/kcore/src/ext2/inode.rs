//! On-disk inodes, the block map (direct, indirect, double and triple indirect blocks),
//! and file data: read, write, truncate, free.

use super::{State, get16, get32, put16, put32};
use crate::errno::{Errno, KResult};
use crate::vfs::{FileType, Timespec, major, makedev, minor};
use alloc::vec;
use alloc::vec::Vec;

/// Direct block pointers in `i_block`.
pub(crate) const NDIR: usize = 12;
/// `i_flags`: hashed-tree directory.
pub(crate) const INDEX_FL: u32 = 0x1000;
/// Most hard links an inode may have.
pub(crate) const LINK_MAX: u16 = 32000;
/// Bytes of `i_block`, the room of a fast symlink.
pub(crate) const IBLOCK_BYTES: usize = 60;
/// Size of an xattr block header magic.
const XATTR_MAGIC: u32 = 0xEA02_0000;

/// One on-disk inode, kept whole (128 bytes or more) so unknown fields survive.
#[derive(Clone, Debug)]
pub(crate) struct RawInode {
    b: Vec<u8>,
}

/// Extra-space offsets of 256-byte inodes: (`i_extra_isize` needed, offset).
const CTIME_EXTRA: (u16, usize) = (8, 132);
const MTIME_EXTRA: (u16, usize) = (12, 136);
const ATIME_EXTRA: (u16, usize) = (16, 140);
/// `i_crtime_extra` (after `i_crtime` at 144).
const CRTIME: (u16, usize) = (24, 148);

impl RawInode {
    /// A zeroed inode of `size` bytes (extra space sized like mke2fs does).
    pub(crate) fn zeroed(size: usize) -> Self {
        let mut b = vec![0u8; size];
        if size > 128 {
            put16(&mut b, 128, 32.min(size as u16 - 128));
        }
        Self { b }
    }

    pub(crate) fn mode(&self) -> u16 {
        get16(&self.b, 0)
    }
    pub(crate) fn set_mode(&mut self, m: u16) {
        put16(&mut self.b, 0, m)
    }
    pub(crate) fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(u32::from(self.mode()))
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.file_type() == Some(FileType::Directory)
    }
    pub(crate) fn is_reg(&self) -> bool {
        self.file_type() == Some(FileType::Regular)
    }
    pub(crate) fn uid(&self) -> u32 {
        u32::from(get16(&self.b, 2)) | u32::from(get16(&self.b, 120)) << 16
    }
    pub(crate) fn set_uid(&mut self, v: u32) {
        put16(&mut self.b, 2, v as u16);
        put16(&mut self.b, 120, (v >> 16) as u16);
    }
    pub(crate) fn gid(&self) -> u32 {
        u32::from(get16(&self.b, 24)) | u32::from(get16(&self.b, 122)) << 16
    }
    pub(crate) fn set_gid(&mut self, v: u32) {
        put16(&mut self.b, 24, v as u16);
        put16(&mut self.b, 122, (v >> 16) as u16);
    }
    /// Size in bytes (the high half only counts for regular files, as in Linux's ext2).
    pub(crate) fn size(&self) -> u64 {
        let lo = u64::from(get32(&self.b, 4));
        if self.is_reg() { lo | u64::from(get32(&self.b, 108)) << 32 } else { lo }
    }
    pub(crate) fn set_size(&mut self, v: u64) {
        put32(&mut self.b, 4, v as u32);
        if self.is_reg() {
            put32(&mut self.b, 108, (v >> 32) as u32);
        }
    }
    pub(crate) fn links(&self) -> u16 {
        get16(&self.b, 26)
    }
    pub(crate) fn set_links(&mut self, v: u16) {
        put16(&mut self.b, 26, v)
    }
    /// `i_blocks`: 512-byte units.
    pub(crate) fn sectors(&self) -> u32 {
        get32(&self.b, 28)
    }
    pub(crate) fn add_sectors(&mut self, delta: i64) {
        let v = (i64::from(self.sectors()) + delta).max(0);
        put32(&mut self.b, 28, v as u32)
    }
    pub(crate) fn flags(&self) -> u32 {
        get32(&self.b, 32)
    }
    pub(crate) fn set_flags(&mut self, v: u32) {
        put32(&mut self.b, 32, v)
    }
    pub(crate) fn block(&self, i: usize) -> u32 {
        get32(&self.b, 40 + 4 * i)
    }
    pub(crate) fn set_block(&mut self, i: usize, v: u32) {
        put32(&mut self.b, 40 + 4 * i, v)
    }
    /// The 60 bytes of `i_block`.
    pub(crate) fn iblock_bytes(&self) -> &[u8] {
        &self.b[40..40 + IBLOCK_BYTES]
    }
    pub(crate) fn iblock_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.b[40..40 + IBLOCK_BYTES]
    }
    pub(crate) fn file_acl(&self) -> u32 {
        get32(&self.b, 104)
    }
    pub(crate) fn set_file_acl(&mut self, v: u32) {
        put32(&mut self.b, 104, v)
    }
    pub(crate) fn set_dtime(&mut self, v: u32) {
        put32(&mut self.b, 20, v)
    }

    fn extra_isize(&self) -> u16 {
        if self.b.len() > 130 { get16(&self.b, 128) } else { 0 }
    }

    fn time(&self, base: usize, extra: (u16, usize)) -> Timespec {
        let mut sec = i64::from(get32(&self.b, base) as i32);
        let mut nsec = 0;
        if self.extra_isize() >= extra.0 {
            let x = get32(&self.b, extra.1);
            sec += i64::from(x & 3) << 32;
            nsec = (x >> 2).min(999_999_999);
        }
        Timespec { sec, nsec }
    }

    fn set_time(&mut self, base: usize, extra: (u16, usize), t: Timespec) {
        put32(&mut self.b, base, t.sec as u32);
        if self.extra_isize() >= extra.0 {
            let epoch = ((t.sec - i64::from(t.sec as i32)) >> 32) as u32 & 3;
            put32(&mut self.b, extra.1, epoch | t.nsec.min(999_999_999) << 2);
        }
    }

    pub(crate) fn atime(&self) -> Timespec {
        self.time(8, ATIME_EXTRA)
    }
    pub(crate) fn ctime(&self) -> Timespec {
        self.time(12, CTIME_EXTRA)
    }
    pub(crate) fn mtime(&self) -> Timespec {
        self.time(16, MTIME_EXTRA)
    }
    pub(crate) fn set_atime(&mut self, t: Timespec) {
        self.set_time(8, ATIME_EXTRA, t)
    }
    pub(crate) fn set_ctime(&mut self, t: Timespec) {
        self.set_time(12, CTIME_EXTRA, t)
    }
    pub(crate) fn set_mtime(&mut self, t: Timespec) {
        self.set_time(16, MTIME_EXTRA, t)
    }
    /// Creation time, kept only in the extra space of large inodes.
    pub(crate) fn set_crtime(&mut self, t: Timespec) {
        if self.extra_isize() >= CRTIME.0 {
            self.set_time(144, CRTIME, t)
        }
    }

    /// Device number (Linux's old encoding in `i_block[0]`, else the new one in `i_block[1]`).
    pub(crate) fn rdev(&self) -> u64 {
        let old = self.block(0);
        if old != 0 {
            makedev((old >> 8) & 0xff, old & 0xff)
        } else {
            let new = self.block(1);
            makedev((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00))
        }
    }

    pub(crate) fn set_rdev(&mut self, dev: u64) {
        let (ma, mi) = (major(dev), minor(dev));
        if ma < 256 && mi < 256 {
            self.set_block(0, ma << 8 | mi);
            self.set_block(1, 0);
        } else {
            self.set_block(0, 0);
            self.set_block(1, (mi & 0xff) | (ma << 8) | ((mi & !0xff) << 12));
            self.set_block(2, 0);
        }
    }

    /// Whether `i_block` holds block pointers (not a device number or a fast symlink).
    pub(crate) fn has_block_map(&self, block_size: u32) -> bool {
        match self.file_type() {
            Some(FileType::Regular | FileType::Directory) => true,
            Some(FileType::Symlink) => !self.is_fast_symlink(block_size),
            _ => false,
        }
    }

    /// A symlink whose target sits in `i_block` (no data blocks besides an xattr block).
    pub(crate) fn is_fast_symlink(&self, block_size: u32) -> bool {
        let ea = if self.file_acl() != 0 { block_size / 512 } else { 0 };
        self.file_type() == Some(FileType::Symlink) && self.sectors() == ea
    }
}

/// Where a logical block sits in the tree: the `i_block` slot and the indices below it.
fn block_path(ptrs: u64, lblk: u64) -> KResult<(usize, [u64; 3], usize)> {
    if lblk < NDIR as u64 {
        return Ok((lblk as usize, [0; 3], 0));
    }
    let mut l = lblk - NDIR as u64;
    if l < ptrs {
        return Ok((12, [l, 0, 0], 1));
    }
    l -= ptrs;
    if l < ptrs * ptrs {
        return Ok((13, [l / ptrs, l % ptrs, 0], 2));
    }
    l -= ptrs * ptrs;
    if l < ptrs * ptrs * ptrs {
        return Ok((14, [l / (ptrs * ptrs), (l / ptrs) % ptrs, l % ptrs], 3));
    }
    Err(Errno::EFBIG)
}

impl State {
    fn inode_location(&self, ino: u32) -> KResult<(u32, usize)> {
        if ino == 0 || ino > self.geo.inodes_count {
            log::warn!("ext2: inode number {ino} out of range");
            return Err(Errno::EUCLEAN);
        }
        let g = self.inode_group(ino);
        let index = u64::from((ino - 1) % self.geo.inodes_per_group);
        let byte = index * u64::from(self.geo.inode_size);
        let bs = u64::from(self.geo.block_size);
        let blk = self.groups[g as usize].inode_table + (byte / bs) as u32;
        Ok((blk, (byte % bs) as usize))
    }

    /// Reads inode `ino`.
    pub(crate) fn read_inode(&mut self, ino: u32) -> KResult<RawInode> {
        let (blk, off) = self.inode_location(ino)?;
        let size = self.geo.inode_size as usize;
        Ok(RawInode { b: self.cache.read(blk)?[off..off + size].to_vec() })
    }

    /// Writes inode `ino`.
    pub(crate) fn write_inode(&mut self, ino: u32, inode: &RawInode) -> KResult<()> {
        let (blk, off) = self.inode_location(ino)?;
        let size = self.geo.inode_size as usize;
        self.cache.write(blk)?[off..off + size].copy_from_slice(&inode.b);
        Ok(())
    }

    /// Largest file size: what the block map can address, and `i_blocks` can count.
    pub(crate) fn max_file_size(&self) -> u64 {
        let p = self.geo.ptrs();
        let blocks = NDIR as u64 + p + p * p + p * p * p;
        let bs = u64::from(self.geo.block_size);
        (blocks * bs).min((u64::from(u32::MAX) * 512) / bs * bs - bs * (2 + p))
    }

    /// Sectors per block.
    fn sectors_per_block(&self) -> i64 {
        i64::from(self.geo.block_size / 512)
    }

    /// The physical block of logical block `lblk`, 0 for a hole.
    pub(crate) fn bmap(&mut self, inode: &RawInode, lblk: u64) -> KResult<u32> {
        let (slot, idx, depth) = block_path(self.geo.ptrs(), lblk)?;
        let mut blk = inode.block(slot);
        for &i in &idx[..depth] {
            if blk == 0 {
                return Ok(0);
            }
            self.check_block(blk)?;
            blk = get32(self.cache.read(blk)?, i as usize * 4);
        }
        if blk != 0 {
            self.check_block(blk)?;
        }
        Ok(blk)
    }

    /// The physical block of logical block `lblk`, allocating it (and indirect blocks) near
    /// `goal` if it is a hole. Returns the block and whether it is new (contents
    /// unspecified: the caller fills it).
    pub(crate) fn bmap_alloc(&mut self, inode: &mut RawInode, lblk: u64, goal: u32) -> KResult<(u32, bool)> {
        let (slot, idx, depth) = block_path(self.geo.ptrs(), lblk)?;
        let spb = self.sectors_per_block();
        let mut blk = inode.block(slot);
        let mut new = false;
        if blk == 0 {
            blk = self.alloc_block(goal)?;
            if depth > 0 {
                self.cache.zeroed(blk)?;
            }
            inode.set_block(slot, blk);
            inode.add_sectors(spb);
            new = true;
        }
        for (level, &i) in idx[..depth].iter().enumerate() {
            self.check_block(blk)?;
            let off = i as usize * 4;
            let child = get32(self.cache.read(blk)?, off);
            if child != 0 {
                blk = child;
                new = false;
                continue;
            }
            let child = self.alloc_block(blk.saturating_add(1))?;
            if level + 1 < depth {
                self.cache.zeroed(child)?;
            }
            put32(self.cache.write(blk)?, off, child);
            inode.add_sectors(spb);
            blk = child;
            new = true;
        }
        Ok((blk, new))
    }

    /// Reads file data at `off` (holes read as zeros); returns the bytes read.
    pub(crate) fn read_data(&mut self, inode: &RawInode, off: u64, buf: &mut [u8]) -> KResult<usize> {
        let size = inode.size();
        if off >= size {
            return Ok(0);
        }
        let n = buf.len().min((size - off).min(usize::MAX as u64) as usize);
        let bs = u64::from(self.geo.block_size);
        let mut done = 0;
        while done < n {
            let pos = off + done as u64;
            let (lblk, boff) = (pos / bs, (pos % bs) as usize);
            let chunk = (bs as usize - boff).min(n - done);
            let phys = self.bmap(inode, lblk)?;
            let dst = &mut buf[done..done + chunk];
            if phys == 0 {
                dst.fill(0);
            } else {
                dst.copy_from_slice(&self.cache.read(phys)?[boff..boff + chunk]);
            }
            done += chunk;
        }
        Ok(n)
    }

    /// Writes file data at `off`, allocating blocks and growing the size; returns the bytes
    /// written (short if the disk fills after some were written).
    pub(crate) fn write_data(
        &mut self,
        ino: u32,
        inode: &mut RawInode,
        off: u64,
        buf: &[u8],
    ) -> KResult<usize> {
        let end = off.checked_add(buf.len() as u64).ok_or(Errno::EFBIG)?;
        if end > self.max_file_size() {
            return Err(Errno::EFBIG);
        }
        if end > 0x7fff_ffff && inode.is_reg() {
            self.need_large_file()?;
        }
        let bs = u64::from(self.geo.block_size);
        let mut goal = self.geo.group_first_block(self.inode_group(ino));
        if off >= bs {
            let prev = self.bmap(inode, off / bs - 1)?;
            if prev != 0 {
                goal = prev + 1;
            }
        }
        let mut done = 0;
        let mut result = Ok(());
        while done < buf.len() {
            let pos = off + done as u64;
            let (lblk, boff) = (pos / bs, (pos % bs) as usize);
            let chunk = (bs as usize - boff).min(buf.len() - done);
            let (phys, new) = match self.bmap_alloc(inode, lblk, goal) {
                Ok(x) => x,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            goal = phys + 1;
            let src = &buf[done..done + chunk];
            if chunk == bs as usize {
                self.cache.overwrite(phys)?.copy_from_slice(src);
            } else {
                let data = if new { self.cache.zeroed(phys)? } else { self.cache.write(phys)? };
                data[boff..boff + chunk].copy_from_slice(src);
            }
            done += chunk;
        }
        if off + done as u64 > inode.size() {
            inode.set_size(off + done as u64);
        }
        match result {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }

    /// Sets the `large_file` feature (needed for a file past 2 GiB), or `EFBIG` on revision 0.
    fn need_large_file(&mut self) -> KResult<()> {
        let ro = self.sb.feature_ro_compat();
        if ro & super::superblock::RO_COMPAT_LARGE_FILE != 0 {
            return Ok(());
        }
        if self.geo.rev == 0 {
            return Err(Errno::EFBIG);
        }
        self.sb.set_feature_ro_compat(ro | super::superblock::RO_COMPAT_LARGE_FILE);
        self.features_dirty = true;
        Ok(())
    }

    /// Sets the size of a regular file: shrinking frees the blocks past the end (and zeroes
    /// the tail of the last block), growing leaves a hole.
    pub(crate) fn truncate(&mut self, inode: &mut RawInode, size: u64) -> KResult<()> {
        if size > self.max_file_size() {
            return Err(Errno::EFBIG);
        }
        if size > 0x7fff_ffff {
            self.need_large_file()?;
        }
        let old = inode.size();
        let bs = u64::from(self.geo.block_size);
        if size < old {
            if !size.is_multiple_of(bs) {
                let phys = self.bmap(inode, size / bs)?;
                if phys != 0 {
                    self.cache.write(phys)?[(size % bs) as usize..].fill(0);
                }
            }
            self.free_blocks_from(inode, size.div_ceil(bs))?;
        }
        inode.set_size(size);
        Ok(())
    }

    /// Frees every block of logical number `from` or above, and indirect blocks left empty.
    pub(crate) fn free_blocks_from(&mut self, inode: &mut RawInode, from: u64) -> KResult<()> {
        let spb = self.sectors_per_block();
        let mut freed = 0i64;
        for i in (from.min(NDIR as u64) as usize)..NDIR {
            let b = inode.block(i);
            if b != 0 {
                self.free_block(b)?;
                inode.set_block(i, 0);
                freed += 1;
            }
        }
        let p = self.geo.ptrs();
        let (mut base, mut span) = (NDIR as u64, p);
        for (slot, depth) in [(12usize, 1u32), (13, 2), (14, 3)] {
            let b = inode.block(slot);
            if b != 0 && from < base + span {
                let empty = self.free_tree(b, depth, base, from, &mut freed)?;
                if empty {
                    self.free_block(b)?;
                    inode.set_block(slot, 0);
                    freed += 1;
                }
            }
            base += span;
            span *= p;
        }
        inode.add_sectors(-freed * spb);
        Ok(())
    }

    /// Frees what indirect block `blk` (of `depth` levels, mapping from logical block `base`)
    /// holds at or past `from`; returns whether it is now empty.
    fn free_tree(&mut self, blk: u32, depth: u32, base: u64, from: u64, freed: &mut i64) -> KResult<bool> {
        self.check_block(blk)?;
        let p = self.geo.ptrs();
        let child_span = p.pow(depth - 1);
        let mut ptrs: Vec<u32> = self.cache.read(blk)?.chunks_exact(4).map(|c| get32(c, 0)).collect();
        let (mut changed, mut empty) = (false, true);
        for (j, ptr) in ptrs.iter_mut().enumerate() {
            let c = *ptr;
            if c == 0 {
                continue;
            }
            let cbase = base + j as u64 * child_span;
            if cbase + child_span <= from {
                empty = false;
                continue;
            }
            let free_child = depth == 1 || self.free_tree(c, depth - 1, cbase, from, freed)?;
            if free_child {
                self.free_block(c)?;
                *freed += 1;
                *ptr = 0;
                changed = true;
            } else {
                empty = false;
            }
        }
        if changed && !empty {
            let data = self.cache.write(blk)?;
            for (j, v) in ptrs.iter().enumerate() {
                put32(data, j * 4, *v);
            }
        }
        Ok(empty)
    }

    /// Releases inode `ino` for good: its blocks, its xattr block, its bitmap bit.
    pub(crate) fn free_inode(&mut self, ino: u32) -> KResult<()> {
        let mut inode = self.read_inode(ino)?;
        if inode.has_block_map(self.geo.block_size) {
            self.free_blocks_from(&mut inode, 0)?;
        }
        self.release_xattr_block(&mut inode)?;
        let dir = inode.is_dir();
        let now = self.now();
        inode.set_links(0);
        inode.set_dtime(now.sec as u32);
        inode.set_size(0);
        self.write_inode(ino, &inode)?;
        self.free_inode_bit(ino, dir)
    }

    /// Drops this inode's reference to its extended-attribute block (freed with its last one).
    fn release_xattr_block(&mut self, inode: &mut RawInode) -> KResult<()> {
        let blk = inode.file_acl();
        if blk == 0 {
            return Ok(());
        }
        self.check_block(blk)?;
        let data = self.cache.read(blk)?;
        let (magic, refs) = (get32(data, 0), get32(data, 4));
        if magic == XATTR_MAGIC && refs > 1 {
            put32(self.cache.write(blk)?, 4, refs - 1);
        } else {
            self.free_block(blk)?;
        }
        inode.set_file_acl(0);
        inode.add_sectors(-self.sectors_per_block());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext2_block_paths() {
        let p = 256;
        assert_eq!(block_path(p, 0).unwrap(), (0, [0; 3], 0));
        assert_eq!(block_path(p, 12).unwrap(), (12, [0, 0, 0], 1));
        assert_eq!(block_path(p, 12 + 255).unwrap(), (12, [255, 0, 0], 1));
        assert_eq!(block_path(p, 12 + 256).unwrap(), (13, [0, 0, 0], 2));
        assert_eq!(block_path(p, 12 + 256 + 257).unwrap(), (13, [1, 1, 0], 2));
        let t = 12 + 256 + 65536;
        assert_eq!(block_path(p, t).unwrap(), (14, [0, 0, 0], 3));
        assert_eq!(block_path(p, t + 65536 + 257).unwrap(), (14, [1, 1, 1], 3));
        assert_eq!(block_path(p, t + 256 * 65536), Err(Errno::EFBIG));
    }

    #[test]
    fn ext2_device_numbers_both_encodings() {
        let mut i = RawInode::zeroed(128);
        for dev in [makedev(4, 64), makedev(259, 3), makedev(8, 300), makedev(4095, 1 << 19)] {
            i.set_rdev(dev);
            assert_eq!(i.rdev(), dev);
        }
        i.set_rdev(makedev(1, 3));
        assert_eq!(i.block(0), 0x103);
    }

    #[test]
    fn ext2_times_with_extra_space() {
        let mut i = RawInode::zeroed(256);
        let t = Timespec { sec: 1_700_000_000, nsec: 123_456_789 };
        i.set_mtime(t);
        assert_eq!(i.mtime(), t);
        let mut small = RawInode::zeroed(128);
        small.set_mtime(t);
        assert_eq!(small.mtime(), Timespec { sec: t.sec, nsec: 0 });
        let late = Timespec { sec: 1 << 32, nsec: 5 };
        i.set_atime(late);
        assert_eq!(i.atime(), late);
    }
}
