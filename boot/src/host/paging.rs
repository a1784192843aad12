//! Boot page tables, built by the VMM at host speed.
//!
//! One set of page directories (2 MiB pages) maps physical memory and is shared by three
//! windows: identity, the direct map and the kernel image window (see [`crate::layout`]).
//! Sharing keeps the pool small: 4 GiB of RAM needs six pages of tables.

use crate::layout::{
    DIRECT_MAP_BASE, GIB, HIGH_RAM_GPA, KERNEL_VIRT_BASE, LARGE_PAGE_SIZE, MMIO_HOLE_GPA, PAGE_SIZE,
    PML4_GPA, PT_POOL_END, PT_POOL_GPA, ram_top,
};
use crate::x86::pte;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

/// Entries in one page-table page.
const ENTRIES: usize = 512;

/// Whether supervisor mappings carry the U bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupervisorAccess {
    /// U=0: the normal x86 kernel layout (native mode, VMX/SVM hosts).
    SupervisorOnly,
    /// U=1 at every level: PVM mode, where native supervisor code runs at hardware CPL 3 and
    /// faults forever on U=0 pages. Isolation then comes from separate user page tables.
    UserBitSet,
}

/// Why the page tables could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PageTableError {
    /// The pool below 1 MiB is exhausted (too much RAM to map).
    #[error("page-table pool exhausted mapping {0} bytes")]
    PoolExhausted(u64),
    /// Writing guest memory failed.
    #[error("writing page tables to guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// What [`build`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTables {
    /// Physical address of the PML4 (goes to CR3).
    pub pml4_gpa: u64,
    /// End of the part of the pool used.
    pub pool_end_gpa: u64,
    /// Bytes of physical address space mapped (at least 4 GiB, to cover the MMIO hole).
    pub mapped_bytes: u64,
}

/// Index of `vaddr` in the page-table level whose entries span `1 << shift` bytes.
const fn index(vaddr: u64, shift: u32) -> usize {
    ((vaddr >> shift) & 0x1ff) as usize
}

/// Builds the boot page tables for `mem_bytes` of RAM into `mem`.
pub fn build<M: GuestMemoryBackend>(
    mem: &M,
    mem_bytes: u64,
    access: SupervisorAccess,
) -> Result<PageTables, PageTableError> {
    let user = match access {
        SupervisorAccess::SupervisorOnly => 0,
        SupervisorAccess::UserBitSet => pte::USER,
    };
    let table_flags = pte::PRESENT | pte::WRITABLE | user;
    let mapped_bytes = ram_top(mem_bytes).max(HIGH_RAM_GPA).next_multiple_of(GIB);
    let gib_count = (mapped_bytes / GIB) as usize;

    let mut next = PT_POOL_GPA;
    let mut alloc = || {
        let page = next;
        next += PAGE_SIZE;
        if next > PT_POOL_END {
            return Err(PageTableError::PoolExhausted(mapped_bytes));
        }
        Ok(page)
    };
    let write = |gpa: u64, table: &[u64; ENTRIES]| {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(gpa)).map_err(PageTableError::Write)
    };

    let phys_pdpt = alloc()?;
    let mut pdpt = [0u64; ENTRIES];
    let mut first_pd = 0;
    for (gib, slot) in pdpt.iter_mut().enumerate().take(gib_count) {
        let pd_gpa = alloc()?;
        if gib == 0 {
            first_pd = pd_gpa;
        }
        let mut pd = [0u64; ENTRIES];
        for (i, entry) in pd.iter_mut().enumerate() {
            let phys = gib as u64 * GIB + i as u64 * LARGE_PAGE_SIZE;
            let cache = if (MMIO_HOLE_GPA..HIGH_RAM_GPA).contains(&phys) { pte::PCD | pte::PWT } else { 0 };
            *entry = phys | table_flags | pte::HUGE | cache;
        }
        write(pd_gpa, &pd)?;
        *slot = pd_gpa | table_flags;
    }
    write(phys_pdpt, &pdpt)?;

    // Kernel window: the last PML4 slot, PDPT slot 510 = physical 0..1 GiB.
    let kernel_pdpt = alloc()?;
    let mut kpdpt = [0u64; ENTRIES];
    kpdpt[index(KERNEL_VIRT_BASE, 30)] = first_pd | table_flags;
    write(kernel_pdpt, &kpdpt)?;

    let mut pml4 = [0u64; ENTRIES];
    pml4[0] = phys_pdpt | table_flags;
    pml4[index(DIRECT_MAP_BASE, 39)] = phys_pdpt | table_flags;
    pml4[index(KERNEL_VIRT_BASE, 39)] = kernel_pdpt | table_flags;
    write(PML4_GPA, &pml4)?;

    Ok(PageTables { pml4_gpa: PML4_GPA, pool_end_gpa: next, mapped_bytes })
}

/// Walks the tables in `mem` like the MMU would and returns (physical address, leaf flags).
/// Used by tests and by the VMM's register dumps.
pub fn translate<M: GuestMemoryBackend>(mem: &M, cr3: u64, vaddr: u64) -> Option<(u64, u64)> {
    let mut table = cr3 & pte::ADDR_MASK;
    let mut flags_and = u64::MAX;
    for (level, shift) in [39u32, 30, 21, 12].into_iter().enumerate() {
        let entry: u64 = mem.read_obj(GuestAddress(table + 8 * index(vaddr, shift) as u64)).ok()?;
        if entry & pte::PRESENT == 0 {
            return None;
        }
        flags_and &= entry & (pte::USER | pte::WRITABLE | pte::PRESENT);
        let leaf = shift == 12 || (level > 0 && entry & pte::HUGE != 0);
        if leaf {
            let offset_mask = (1u64 << shift) - 1;
            let phys = (entry & pte::ADDR_MASK & !offset_mask) | (vaddr & offset_mask);
            return Some((phys, flags_and | (entry & (pte::PCD | pte::PWT | pte::HUGE))));
        }
        table = entry & pte::ADDR_MASK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_util::guest_memory;

    #[test]
    fn maps_identity_direct_and_kernel_windows() {
        let mem = guest_memory(64 << 20);
        let pt = build(&mem, 64 << 20, SupervisorAccess::SupervisorOnly).unwrap();
        assert_eq!(pt.pml4_gpa & 0x1fff, 0);
        assert_eq!(pt.mapped_bytes, 4 * GIB);
        // PDPT + 4 PDs + kernel PDPT.
        assert_eq!(pt.pool_end_gpa, PT_POOL_GPA + 6 * PAGE_SIZE);
        for phys in [0x1000u64, 0x20_1234, 0x3ff_ffff] {
            let (p, f) = translate(&mem, pt.pml4_gpa, phys).unwrap();
            assert_eq!(p, phys);
            assert_eq!(f & pte::USER, 0);
            assert_eq!(translate(&mem, pt.pml4_gpa, DIRECT_MAP_BASE + phys).unwrap().0, phys);
            assert_eq!(translate(&mem, pt.pml4_gpa, KERNEL_VIRT_BASE + phys).unwrap().0, phys);
        }
        assert!(translate(&mem, pt.pml4_gpa, 0x0000_7fff_0000_0000).is_none());
        assert!(translate(&mem, pt.pml4_gpa, DIRECT_MAP_BASE + 4 * GIB).is_none());
    }

    #[test]
    fn mmio_hole_is_uncached_and_ram_is_not() {
        let mem = guest_memory(64 << 20);
        let pt = build(&mem, 64 << 20, SupervisorAccess::SupervisorOnly).unwrap();
        let (_, ram) = translate(&mem, pt.pml4_gpa, DIRECT_MAP_BASE + 0x100_0000).unwrap();
        assert_eq!(ram & (pte::PCD | pte::PWT), 0);
        let (p, io) = translate(&mem, pt.pml4_gpa, DIRECT_MAP_BASE + crate::layout::IOAPIC_GPA).unwrap();
        assert_eq!(p, crate::layout::IOAPIC_GPA);
        assert_eq!(io & (pte::PCD | pte::PWT), pte::PCD | pte::PWT);
    }

    #[test]
    fn pvm_layout_sets_user_bit_at_every_level() {
        let mem = guest_memory(64 << 20);
        let pt = build(&mem, 64 << 20, SupervisorAccess::UserBitSet).unwrap();
        for v in [0x20_0000, DIRECT_MAP_BASE + 0x5000, KERNEL_VIRT_BASE + 0x20_0000] {
            let (_, f) = translate(&mem, pt.pml4_gpa, v).unwrap();
            assert_eq!(f & pte::USER, pte::USER, "{v:#x}");
            assert_eq!(f & pte::WRITABLE, pte::WRITABLE);
        }
    }

    #[test]
    fn large_memory_maps_above_the_hole_and_pool_limit_holds() {
        let mem = guest_memory(64 << 20);
        let pt = build(&mem, 6 * GIB, SupervisorAccess::SupervisorOnly).unwrap();
        assert_eq!(pt.mapped_bytes, 7 * GIB);
        let v = DIRECT_MAP_BASE + 6 * GIB + 0x1234;
        assert_eq!(translate(&mem, pt.pml4_gpa, v).unwrap().0, 6 * GIB + 0x1234);
        assert!(build(&mem, 128 * GIB, SupervisorAccess::SupervisorOnly).is_ok());
        assert!(matches!(
            build(&mem, 400 * GIB, SupervisorAccess::SupervisorOnly),
            Err(PageTableError::PoolExhausted(_))
        ));
    }
}
