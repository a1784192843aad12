//! Kernel page tables: the boot tables the VMM built, taken over and edited with the `x86_64`
//! crate's `OffsetPageTable` through the direct map.

use super::memory::{DirectMapLinks, phys_to_virt, zero_frame};
use super::mode;
use umlvm_boot::layout::DIRECT_MAP_BASE;
use umlvm_boot::x86::pte;
use umlvm_kcore::frame::FrameAllocator;
use x86_64::structures::paging::mapper::{MapToError, Translate, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Adapts the kernel's frame allocator to the `x86_64` crate; page-table frames are zeroed.
struct TableFrames<'a>(&'a mut FrameAllocator);

// SAFETY: frames come from the kernel's allocator, are unused RAM, and are zeroed before use.
unsafe impl X86FrameAllocator<Size4KiB> for TableFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = self.0.alloc(&DirectMapLinks)?;
        if !f.is_zero {
            zero_frame(f.addr);
        }
        Some(PhysFrame::containing_address(PhysAddr::new(f.addr)))
    }
}

/// Start of the kernel's page-mapping area (Linux's vmalloc base); the only range
/// [`map_kernel_page`], [`unmap_kernel_page`] and [`write_owned_u64`] accept.
pub const VMAP_BASE: u64 = 0xffff_c900_0000_0000;
/// End of the page-mapping area.
pub const VMAP_END: u64 = VMAP_BASE + (1 << 40);

fn in_vmap(vaddr: u64) -> bool {
    (VMAP_BASE..VMAP_END).contains(&vaddr)
}

/// Whether kernel mappings need the U bit (PVM mode).
fn supervisor_flags() -> PageTableFlags {
    match mode::current() {
        mode::ExecMode::Pvm => PageTableFlags::USER_ACCESSIBLE,
        mode::ExecMode::Native => PageTableFlags::empty(),
    }
}

fn mapper() -> OffsetPageTable<'static> {
    let pml4 = super::cpu::read_cr3() & pte::ADDR_MASK;
    // SAFETY: CR3 points at the active PML4, which lies in RAM covered by the direct map at
    // DIRECT_MAP_BASE. The kernel is single-threaded with respect to page-table edits (they
    // only happen with the frame-allocator lock held by the caller), so this is the only live
    // mutable reference.
    unsafe {
        let table = &mut *(phys_to_virt(pml4) as *mut PageTable);
        OffsetPageTable::new(table, VirtAddr::new(DIRECT_MAP_BASE))
    }
}

/// Removes the boot identity map (PML4 slot 0) so low addresses are free for user space.
pub fn drop_identity_map() {
    let pml4 = super::cpu::read_cr3() & pte::ADDR_MASK;
    // SAFETY: slot 0 of the active PML4 holds only the boot identity map; nothing runs from or
    // points into it any more (stack, tables and boot info are used through higher-half
    // addresses). Reloading CR3 with the same table flushes the stale entries; the kernel
    // itself stays mapped identically.
    unsafe {
        (phys_to_virt(pml4) as *mut u64).write_volatile(0);
        mode::load_cr3(pml4);
    }
}

/// Gives the vmap area its top-level entry now, so address spaces created later (which copy
/// the kernel half of the top-level table) see every kernel mapping made after them.
pub fn preallocate_kernel_roots(frames: &mut FrameAllocator) {
    let pml4 = super::cpu::read_cr3() & pte::ADDR_MASK;
    let slot = (VMAP_BASE >> 39) & 0x1ff;
    let entry = (phys_to_virt(pml4) + 8 * slot) as *mut u64;
    // SAFETY: reading a slot of the active PML4 through the direct map.
    if unsafe { entry.read_volatile() } & pte::PRESENT != 0 {
        return;
    }
    let Some(table) = TableFrames(frames).allocate_frame() else { return };
    let user = if mode::current() == mode::ExecMode::Pvm { pte::USER } else { 0 };
    let value = table.start_address().as_u64() | pte::PRESENT | pte::WRITABLE | user;
    // SAFETY: the slot was empty; the new table is a zeroed frame we own.
    unsafe { entry.write_volatile(value) };
}

/// Maps the 4 KiB page at `vaddr` (inside the vmap area) to `phys`, writable, not
/// executable, kernel-only (U=1 in PVM mode).
pub fn map_kernel_page(
    frames: &mut FrameAllocator,
    vaddr: u64,
    phys: u64,
) -> Result<(), MapToError<Size4KiB>> {
    assert!(in_vmap(vaddr), "{vaddr:#x} is outside the vmap area");
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
    let frame = PhysFrame::containing_address(PhysAddr::new(phys));
    let user = supervisor_flags();
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE | user;
    let parents = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | user;
    // SAFETY: `vaddr` is in the kernel's own mapping area, which no Rust reference covers
    // until the mapping exists; the frame belongs to the caller.
    let flush =
        unsafe { mapper().map_to_with_table_flags(page, frame, flags, parents, &mut TableFrames(frames))? };
    flush.ignore();
    mode::flush_tlb_page(vaddr);
    Ok(())
}

/// Unmaps the page at `vaddr`; returns the frame it mapped.
pub fn unmap_kernel_page(vaddr: u64) -> Result<u64, UnmapError> {
    assert!(in_vmap(vaddr), "{vaddr:#x} is outside the vmap area");
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
    let (frame, flush) = mapper().unmap(page)?;
    flush.ignore();
    mode::flush_tlb_page(vaddr);
    Ok(frame.start_address().as_u64())
}

/// Translates a kernel virtual address with the active tables.
pub fn translate(vaddr: u64) -> Option<u64> {
    mapper().translate_addr(VirtAddr::new(vaddr)).map(|p| p.as_u64())
}

/// Reads the u64 at a kernel virtual address that maps RAM (checked by a table walk).
pub fn read_mapped_u64(vaddr: u64) -> Option<u64> {
    translate(vaddr)?;
    if !vaddr.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the walk above found a present mapping for this aligned address, so the read
    // cannot fault; reading an integer is valid for any bytes.
    Some(unsafe { core::ptr::read_volatile(vaddr as *const u64) })
}

/// Writes the u64 at a mapped address of the vmap area (which holds no Rust objects).
pub fn write_owned_u64(vaddr: u64, value: u64) -> bool {
    if !in_vmap(vaddr) || translate(vaddr).is_none() || !vaddr.is_multiple_of(8) {
        return false;
    }
    // SAFETY: the mapping is present and in the vmap area (checked), where no Rust reference
    // points: pages there are only reached through these raw accessors.
    unsafe { core::ptr::write_volatile(vaddr as *mut u64, value) };
    true
}
