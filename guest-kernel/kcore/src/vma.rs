//! Virtual memory areas of a user address space: which user addresses may be backed, and
//! with which permissions. Page faults inside an area are served (demand paging); faults
//! anywhere else kill the process.

/// Access rights of an area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Prot {
    /// Read-only data.
    pub const READ: Prot = Prot { write: false, exec: false };
    /// Read-write data.
    pub const READ_WRITE: Prot = Prot { write: true, exec: false };
    /// Read-execute code.
    pub const READ_EXEC: Prot = Prot { write: false, exec: true };
}

/// One area: `[start, end)`, page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Rights.
    pub prot: Prot,
}

/// Highest user address + 1 (the canonical lower half, minus its top page).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;
/// Lowest user address (the null page stays unmapped).
pub const USER_START: u64 = 0x1000;

/// Why an area could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmaError {
    /// Not page aligned, empty, or outside user space.
    BadRange,
    /// Overlaps an existing area.
    Overlap,
}

/// The areas of one address space, sorted and disjoint.
#[derive(Clone, Debug, Default)]
pub struct VmaList {
    areas: alloc_vec::Vec<Vma>,
}

#[cfg(target_os = "none")]
mod alloc_vec {
    extern crate alloc;
    pub use alloc::vec::Vec;
}
#[cfg(not(target_os = "none"))]
mod alloc_vec {
    pub use std::vec::Vec;
}

/// What a fault at an address means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultVerdict {
    /// Inside an area that allows the access: back the page.
    Populate(Prot),
    /// Outside every area, or an access the area forbids.
    Segv,
}

impl VmaList {
    /// An empty list.
    pub const fn new() -> Self {
        Self { areas: alloc_vec::Vec::new() }
    }

    /// Adds `[start, end)` with `prot`.
    pub fn add(&mut self, start: u64, end: u64, prot: Prot) -> Result<(), VmaError> {
        let aligned = start.is_multiple_of(4096) && end.is_multiple_of(4096);
        if !aligned || start >= end || start < USER_START || end > USER_END {
            return Err(VmaError::BadRange);
        }
        let i = self.areas.partition_point(|a| a.start < start);
        let overlaps_prev = i > 0 && self.areas[i - 1].end > start;
        let overlaps_next = i < self.areas.len() && self.areas[i].start < end;
        if overlaps_prev || overlaps_next {
            return Err(VmaError::Overlap);
        }
        self.areas.insert(i, Vma { start, end, prot });
        Ok(())
    }

    /// The area containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        let i = self.areas.partition_point(|a| a.start <= addr).checked_sub(1)?;
        let a = &self.areas[i];
        (addr < a.end).then_some(a)
    }

    /// What a fault at `addr` (a write if `write`, an instruction fetch if `exec`) means.
    pub fn fault(&self, addr: u64, write: bool, exec: bool) -> FaultVerdict {
        match self.find(addr) {
            Some(a) if (!write || a.prot.write) && (!exec || a.prot.exec) => FaultVerdict::Populate(a.prot),
            _ => FaultVerdict::Segv,
        }
    }

    /// The areas, in address order.
    pub fn areas(&self) -> &[Vma] {
        &self.areas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_stay_sorted_and_disjoint() {
        let mut l = VmaList::new();
        l.add(0x40_0000, 0x40_1000, Prot::READ_EXEC).unwrap();
        l.add(0x1000_0000, 0x1100_0000, Prot::READ_WRITE).unwrap();
        l.add(0x10_0000, 0x20_0000, Prot::READ).unwrap();
        let starts: Vec<u64> = l.areas().iter().map(|a| a.start).collect();
        assert_eq!(starts, [0x10_0000, 0x40_0000, 0x1000_0000]);
        assert_eq!(l.add(0x40_0000, 0x40_2000, Prot::READ), Err(VmaError::Overlap));
        assert_eq!(l.add(0x3f_f000, 0x40_1000, Prot::READ), Err(VmaError::Overlap));
        assert_eq!(l.add(0x1234, 0x2000, Prot::READ), Err(VmaError::BadRange));
        assert_eq!(l.add(0, 0x1000, Prot::READ), Err(VmaError::BadRange));
        assert_eq!(l.add(0x1000, 0x1000, Prot::READ), Err(VmaError::BadRange));
        assert_eq!(l.add(0x7fff_ffff_f000, 0x8000_0000_0000, Prot::READ), Err(VmaError::BadRange));
    }

    #[test]
    fn faults_are_judged_by_area_and_access() {
        let mut l = VmaList::new();
        l.add(0x40_0000, 0x40_1000, Prot::READ_EXEC).unwrap();
        l.add(0x1000_0000, 0x1100_0000, Prot::READ_WRITE).unwrap();
        assert_eq!(l.fault(0x1000_0fff, true, false), FaultVerdict::Populate(Prot::READ_WRITE));
        assert_eq!(l.fault(0x40_0010, false, true), FaultVerdict::Populate(Prot::READ_EXEC));
        assert_eq!(l.fault(0x40_0010, true, false), FaultVerdict::Segv, "code is not writable");
        assert_eq!(l.fault(0x1000_0000, false, true), FaultVerdict::Segv, "data is not executable");
        assert_eq!(l.fault(0x1100_0000, false, false), FaultVerdict::Segv, "end is exclusive");
        assert_eq!(l.fault(0xffff_8880_0000_0000, false, false), FaultVerdict::Segv);
    }
}
