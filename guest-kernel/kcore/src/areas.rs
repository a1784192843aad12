//! The memory areas of a process (`mmap`, `munmap`, `mprotect`, `brk`): a sorted,
//! non-overlapping set of page-aligned ranges, each with access rights and a backing that
//! knows how to describe a sub-range of itself. Splitting, replacing and searching for free
//! space live here; page tables are the kernel's business.

use crate::errno::{Errno, KResult};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Page size.
pub const PAGE: u64 = 4096;

/// Access rights (`PROT_READ`/`PROT_WRITE`/`PROT_EXEC`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Access {
    /// From `PROT_*` bits (1 read, 2 write, 4 exec).
    pub const fn from_prot(prot: u64) -> Self {
        Self { read: prot & 1 != 0, write: prot & 2 != 0, exec: prot & 4 != 0 }
    }

    /// Whether any access is allowed (`PROT_NONE` is not).
    pub const fn any(self) -> bool {
        self.read || self.write || self.exec
    }

    /// `rwx` letters for `/proc/PID/maps`.
    pub fn letters(self) -> [u8; 3] {
        [
            if self.read { b'r' } else { b'-' },
            if self.write { b'w' } else { b'-' },
            if self.exec { b'x' } else { b'-' },
        ]
    }
}

/// A backing that can be cut: the part of it that starts `delta` bytes later.
pub trait Backing: Clone {
    /// The backing of the sub-area that starts `delta` bytes after this one's start.
    fn advanced(&self, delta: u64) -> Self;
}

/// One area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area<B> {
    /// First byte (page aligned).
    pub start: u64,
    /// One past the last byte (page aligned).
    pub end: u64,
    /// Rights.
    pub access: Access,
    /// Shared (`MAP_SHARED`): fork shares the pages instead of copying them.
    pub shared: bool,
    /// What fills the pages.
    pub backing: B,
}

impl<B: Backing> Area<B> {
    /// The part `[from, to)` of this area (which must lie inside it).
    fn slice(&self, from: u64, to: u64) -> Self {
        Area {
            start: from,
            end: to,
            access: self.access,
            shared: self.shared,
            backing: self.backing.advanced(from - self.start),
        }
    }
}

/// The areas of one address space.
#[derive(Clone, Debug)]
pub struct Areas<B> {
    map: BTreeMap<u64, Area<B>>,
    /// Lowest address for areas placed by the kernel.
    pub floor: u64,
    /// Highest address + 1 for areas placed by the kernel (the mmap base, below the stack).
    pub ceiling: u64,
}

impl<B: Backing> Areas<B> {
    /// No areas; kernel-chosen addresses lie in `[floor, ceiling)`.
    pub fn new(floor: u64, ceiling: u64) -> Self {
        Self { map: BTreeMap::new(), floor, ceiling }
    }

    /// The area containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Area<B>> {
        self.map.range(..=addr).next_back().map(|(_, a)| a).filter(|a| addr < a.end)
    }

    /// All areas in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Area<B>> {
        self.map.values()
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes `[start, end)` from every area (splitting those that straddle it) and returns
    /// the removed pieces, so the caller can unmap their pages.
    pub fn remove_range(&mut self, start: u64, end: u64) -> Vec<Area<B>> {
        let mut removed = Vec::new();
        if start >= end {
            return removed;
        }
        let keys: Vec<u64> =
            self.map.range(..end).rev().take_while(|(_, a)| a.end > start).map(|(&k, _)| k).collect();
        for k in keys {
            let a = self.map.remove(&k).expect("key listed above");
            if a.start < start {
                self.map.insert(a.start, a.slice(a.start, start));
            }
            if a.end > end {
                self.map.insert(end, a.slice(end, a.end));
            }
            removed.push(a.slice(a.start.max(start), a.end.min(end)));
        }
        removed.reverse();
        removed
    }

    /// Inserts an area, replacing whatever overlapped it (`MAP_FIXED`); returns the replaced
    /// pieces.
    pub fn insert(&mut self, area: Area<B>) -> KResult<Vec<Area<B>>> {
        check_range(area.start, area.end)?;
        let removed = self.remove_range(area.start, area.end);
        self.map.insert(area.start, area);
        Ok(removed)
    }

    /// Whether any area overlaps `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.map.range(..end).next_back().is_some_and(|(_, a)| a.end > start)
    }

    /// The highest free gap of `len` bytes below the ceiling (or at `hint` if that is free and
    /// allowed), as Linux's top-down mmap placement does.
    pub fn find_free(&self, len: u64, hint: u64) -> KResult<u64> {
        if len == 0 || !len.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if hint != 0
            && hint.is_multiple_of(PAGE)
            && let Some(end) = hint.checked_add(len)
            && hint >= self.floor
            && end <= crate::vma::USER_END
            && !self.overlaps(hint, end)
        {
            return Ok(hint);
        }
        let mut top = self.ceiling;
        for a in self.map.values().rev() {
            if a.start >= top {
                continue;
            }
            if a.end <= top && top - a.end >= len {
                return Ok(top - len);
            }
            top = top.min(a.start);
        }
        if top >= self.floor + len { Ok(top - len) } else { Err(Errno::ENOMEM) }
    }

    /// Changes the rights of `[start, end)`; every byte must be mapped (else `ENOMEM`, as
    /// Linux's mprotect). Returns the affected pieces with their new rights.
    pub fn protect(&mut self, start: u64, end: u64, access: Access) -> KResult<Vec<Area<B>>> {
        check_range(start, end)?;
        let mut at = start;
        while at < end {
            let a = self.find(at).ok_or(Errno::ENOMEM)?;
            at = a.end;
        }
        let mut pieces = self.remove_range(start, end);
        for p in &mut pieces {
            p.access = access;
            self.map.insert(p.start, p.clone());
        }
        Ok(pieces)
    }

    /// Resizes the area starting at `start` to end at `new_end` in place, if the space is
    /// free (`mremap` without moving, `brk`).
    pub fn resize(&mut self, start: u64, new_end: u64) -> KResult<Vec<Area<B>>> {
        let a = self.map.get(&start).ok_or(Errno::EFAULT)?.clone();
        check_range(start, new_end)?;
        if new_end <= a.end {
            return Ok(self.remove_range(new_end, a.end));
        }
        if self.overlaps(a.end, new_end) {
            return Err(Errno::ENOMEM);
        }
        self.map.get_mut(&start).expect("present").end = new_end;
        Ok(Vec::new())
    }
}

fn check_range(start: u64, end: u64) -> KResult<()> {
    if !start.is_multiple_of(PAGE)
        || !end.is_multiple_of(PAGE)
        || start >= end
        || start < crate::vma::USER_START
        || end > crate::vma::USER_END
    {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Off(u64);
    impl Backing for Off {
        fn advanced(&self, delta: u64) -> Self {
            Off(self.0 + delta)
        }
    }

    const RW: Access = Access { read: true, write: true, exec: false };
    const R: Access = Access { read: true, write: false, exec: false };

    fn area(start: u64, end: u64, off: u64) -> Area<Off> {
        Area { start, end, access: RW, shared: false, backing: Off(off) }
    }

    #[test]
    fn unmapping_the_middle_splits_and_keeps_offsets() {
        let mut a = Areas::new(0x10000, 0x7000_0000);
        a.insert(area(0x10000, 0x20000, 0)).unwrap();
        let removed = a.remove_range(0x14000, 0x15000);
        assert_eq!(removed, [area(0x14000, 0x15000, 0x4000)]);
        let left: Vec<_> = a.iter().cloned().collect();
        assert_eq!(left, [area(0x10000, 0x14000, 0), area(0x15000, 0x20000, 0x5000)]);
        assert!(a.find(0x14800).is_none());
        assert_eq!(a.find(0x15000).unwrap().backing, Off(0x5000));
    }

    #[test]
    fn fixed_insert_replaces_overlaps() {
        let mut a = Areas::new(0x10000, 0x7000_0000);
        a.insert(area(0x10000, 0x13000, 0)).unwrap();
        a.insert(area(0x13000, 0x16000, 0)).unwrap();
        let replaced = a.insert(area(0x12000, 0x14000, 100)).unwrap();
        assert_eq!(replaced, [area(0x12000, 0x13000, 0x2000), area(0x13000, 0x14000, 0)]);
        assert_eq!(a.len(), 3);
        assert_eq!(a.find(0x14000).unwrap().backing, Off(0x1000));
    }

    #[test]
    fn free_space_is_found_top_down() {
        let mut a: Areas<Off> = Areas::new(0x10000, 0x100000);
        assert_eq!(a.find_free(0x2000, 0).unwrap(), 0xfe000);
        a.insert(area(0xfe000, 0x100000, 0)).unwrap();
        a.insert(area(0xf0000, 0xfd000, 0)).unwrap();
        assert_eq!(a.find_free(0x1000, 0).unwrap(), 0xfd000);
        assert_eq!(a.find_free(0x2000, 0).unwrap(), 0xee000);
        assert_eq!(a.find_free(0x2000, 0x50000).unwrap(), 0x50000, "a free hint is honoured");
        assert_eq!(a.find_free(0x2000, 0xfc000).unwrap(), 0xee000, "a busy hint is not");
        assert_eq!(a.find_free(0x10_0000, 0), Err(Errno::ENOMEM));
    }

    #[test]
    fn protect_needs_every_page_mapped() {
        let mut a = Areas::new(0x10000, 0x100000);
        a.insert(area(0x10000, 0x14000, 0)).unwrap();
        assert_eq!(a.protect(0x12000, 0x16000, R), Err(Errno::ENOMEM));
        let p = a.protect(0x11000, 0x12000, R).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(a.find(0x11000).unwrap().access, R);
        assert_eq!(a.find(0x12000).unwrap().access, RW);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn resize_grows_into_free_space_only() {
        let mut a = Areas::new(0x10000, 0x100000);
        a.insert(area(0x10000, 0x12000, 0)).unwrap();
        a.insert(area(0x20000, 0x21000, 0)).unwrap();
        a.resize(0x10000, 0x18000).unwrap();
        assert_eq!(a.find(0x17000).unwrap().start, 0x10000);
        assert_eq!(a.resize(0x10000, 0x22000), Err(Errno::ENOMEM));
        let cut = a.resize(0x10000, 0x11000).unwrap();
        assert_eq!(cut, [area(0x11000, 0x18000, 0x1000)]);
        assert_eq!(a.insert(area(0x10000, 0x10000, 0)), Err(Errno::EINVAL));
    }
}
