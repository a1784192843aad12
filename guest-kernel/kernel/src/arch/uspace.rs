//! User address spaces: page-table roots, user mappings, and the PVM user view.
//!
//! Every address space has an 8 KiB-aligned pair of top-level tables. The first is the
//! kernel's view: the user half (PML4 slots 0-255) plus the kernel half shared with every
//! other space (slots 256-511, copied from the boot tables, whose lower-level tables never
//! change identity). In PVM mode the second is the user's view: the same user half (the slot
//! entries are copied, so both point at the same lower-level tables) and, of the kernel, only
//! the entry area — entry code, the entry data pages, GDT, IDT and TSS — mapped read-only
//! except the trampoline page. In native mode the U bit isolates and the user view is the
//! kernel view.

use super::memory::{DirectMapLinks, kernel_virt_to_phys, phys_to_virt, zero_frame};
use super::mode::{self, ExecMode};
use core::sync::atomic::{AtomicU64, Ordering};
use umlvm_boot::layout::{DIRECT_MAP_BASE, GDT_GPA, IDT_GPA, TSS_GPA};
use umlvm_boot::x86::pte;
use umlvm_kcore::frame::FrameAllocator;
use x86_64::structures::paging::mapper::{MapToError, Translate, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame,
    Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

/// Freed top-level table pairs, reused before fresh memory (pairs must be 8 KiB aligned, which
/// the frame allocator's free list cannot promise).
static FREE_PAIRS: crate::arch::sync::IrqMutex<alloc::vec::Vec<u64>> =
    crate::arch::sync::IrqMutex::new(alloc::vec::Vec::new());

/// The kernel-only root (the boot tables, identity map removed).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);
/// PVM: a root whose kernel half is the entry area only; copied into every user view.
static USER_TEMPLATE: AtomicU64 = AtomicU64::new(0);

struct Frames<'a>(&'a mut FrameAllocator);

// SAFETY: frames come from the kernel's allocator, are unused RAM, and are zeroed here.
unsafe impl X86FrameAllocator<Size4KiB> for Frames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = self.0.alloc(&DirectMapLinks)?;
        if !f.is_zero {
            zero_frame(f.addr);
        }
        Some(PhysFrame::containing_address(PhysAddr::new(f.addr)))
    }
}

/// An `OffsetPageTable` over the table at physical `root`.
///
/// # Safety
/// `root` must be a page table this module owns, with no other live reference to it.
unsafe fn table_at(root: u64) -> OffsetPageTable<'static> {
    // SAFETY: per the contract, `root` is an owned page-table frame in RAM, which the direct
    // map covers; the returned mapper is the only reference while it lives.
    unsafe {
        let table = &mut *(phys_to_virt(root) as *mut PageTable);
        OffsetPageTable::new(table, VirtAddr::new(DIRECT_MAP_BASE))
    }
}

fn entry_ptr(root: u64, index: usize) -> *mut u64 {
    assert!(index < 512);
    (phys_to_virt(root) + 8 * index as u64) as *mut u64
}

fn user_bit() -> PageTableFlags {
    PageTableFlags::USER_ACCESSIBLE
}

/// Records the kernel root and, in PVM mode, builds the user-view template.
pub fn init(frames: &mut FrameAllocator) -> Result<(), MapToError<Size4KiB>> {
    KERNEL_ROOT.store(super::cpu::read_cr3() & pte::ADDR_MASK, Ordering::Relaxed);
    if mode::current() != ExecMode::Pvm {
        return Ok(());
    }
    let template = Frames(frames).allocate_frame().ok_or(MapToError::FrameAllocationFailed)?;
    let root = template.start_address().as_u64();
    // SAFETY: a fresh frame owned by this function.
    let mut t = unsafe { table_at(root) };
    let parents = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | user_bit();
    let ro = PageTableFlags::PRESENT | user_bit();
    let mut map = |vaddr: u64, phys: u64, flags: PageTableFlags| -> Result<(), MapToError<Size4KiB>> {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(vaddr));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        // SAFETY: the template is not active; the frames are the kernel's entry pages and
        // descriptor tables, mapped with the rights the user view may have.
        unsafe { t.map_to_with_table_flags(page, frame, flags, parents, &mut Frames(frames))?.ignore() };
        Ok(())
    };
    let ((text, text_end), ro_page, rw_page) = super::user::entry_area();
    let phys = |v: u64| kernel_virt_to_phys(v).expect("entry area lies in the kernel window");
    for v in (text..text_end).step_by(4096) {
        map(v, phys(v), ro)?;
    }
    map(ro_page, phys(ro_page), ro | PageTableFlags::NO_EXECUTE)?;
    map(rw_page, phys(rw_page), ro | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE)?;
    for gpa in [GDT_GPA, IDT_GPA, TSS_GPA] {
        map(DIRECT_MAP_BASE + gpa, gpa, ro | PageTableFlags::NO_EXECUTE)?;
    }
    USER_TEMPLATE.store(root, Ordering::Relaxed);
    Ok(())
}

/// The kernel-only root.
pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Relaxed)
}

/// Loads the kernel view of an address space (`AddressSpace::kernel_root`) or the kernel-only
/// root, unless it is loaded already.
pub fn activate_root(root: u64) {
    if mode::loaded_root() != root {
        // SAFETY: callers pass roots from `AddressSpace::kernel_root` or `kernel_root`, whose
        // kernel halves are copies of the boot tables' (see `AddressSpace::new`).
        unsafe { mode::load_cr3(root) };
    }
}

/// Switches to the kernel-only page tables (after a task ended).
pub fn activate_kernel() {
    let root = KERNEL_ROOT.load(Ordering::Relaxed);
    // SAFETY: the kernel root maps the kernel exactly as every address space does.
    unsafe { mode::load_cr3(root) };
}

/// A user address space.
#[derive(Debug)]
pub struct AddressSpace {
    pair: u64,
}

/// Reads entry `index` of the table at `root`.
fn read_entry(root: u64, index: usize) -> u64 {
    // SAFETY: `root` is a page-table frame in RAM (direct-mapped); index < 512.
    unsafe { entry_ptr(root, index).read_volatile() }
}

/// Writes entry `index` of a table this module owns.
fn write_entry(root: u64, index: usize, value: u64) {
    // SAFETY: `root` is a page-table frame owned by an address space; index < 512.
    unsafe { entry_ptr(root, index).write_volatile(value) }
}

impl AddressSpace {
    /// A new, empty user address space.
    pub fn new(frames: &mut FrameAllocator) -> Option<Self> {
        let pair = match FREE_PAIRS.lock().pop() {
            Some(p) => {
                zero_frame(p);
                zero_frame(p + 4096);
                p
            }
            None => frames.alloc_pair(&mut DirectMapLinks)?,
        };
        let kernel_root = KERNEL_ROOT.load(Ordering::Relaxed);
        let template = USER_TEMPLATE.load(Ordering::Relaxed);
        for i in 256..512 {
            write_entry(pair, i, read_entry(kernel_root, i));
            if template != 0 {
                write_entry(pair + 4096, i, read_entry(template, i));
            }
        }
        Some(Self { pair })
    }

    /// Root of the kernel's view.
    pub fn kernel_root(&self) -> u64 {
        self.pair
    }

    /// Root the CPU uses in user mode.
    pub fn user_root(&self) -> u64 {
        if USER_TEMPLATE.load(Ordering::Relaxed) != 0 { self.pair + 4096 } else { self.pair }
    }

    /// The frame and rights behind user address `vaddr`: (physical address, writable).
    pub fn translate(&self, vaddr: u64) -> Option<(u64, bool)> {
        if vaddr >= 0x0000_8000_0000_0000 {
            return None;
        }
        // SAFETY: read-only use of this space's own tables.
        let t = unsafe { table_at(self.pair) };
        match t.translate(VirtAddr::new(vaddr)) {
            TranslateResult::Mapped { frame, offset, flags } => flags
                .contains(PageTableFlags::USER_ACCESSIBLE)
                .then(|| (frame.start_address().as_u64() + offset, flags.contains(PageTableFlags::WRITABLE))),
            _ => None,
        }
    }

    /// The leaf entry for user page `vaddr`, if its tables exist.
    fn leaf(&self, vaddr: u64, create: Option<&mut FrameAllocator>) -> Option<*mut u64> {
        let mut table = self.pair;
        let mut frames = create;
        for level in [39u64, 30, 21] {
            let index = ((vaddr >> level) & 0x1ff) as usize;
            let mut e = read_entry(table, index);
            if e & pte::PRESENT == 0 {
                let f = frames.as_deref_mut()?.alloc(&DirectMapLinks)?;
                if !f.is_zero {
                    zero_frame(f.addr);
                }
                e = f.addr | pte::PRESENT | pte::WRITABLE | pte::USER;
                write_entry(table, index, e);
                if level == 39 && self.user_root() != self.pair {
                    write_entry(self.user_root(), index, e);
                }
            } else if e & pte::HUGE != 0 {
                return None;
            }
            table = e & pte::ADDR_MASK;
        }
        Some(entry_ptr(table, ((vaddr >> 12) & 0x1ff) as usize))
    }

    /// The raw leaf entry of user page `vaddr` (0 if none).
    pub fn pte(&self, vaddr: u64) -> u64 {
        match self.leaf(vaddr, None) {
            // SAFETY: a leaf slot of this space's own tables, in RAM (direct map).
            Some(p) => unsafe { p.read_volatile() },
            None => 0,
        }
    }

    /// Replaces the leaf entry of an already mapped user page (COW resolution, protection
    /// changes) and flushes its TLB entry.
    pub fn set_pte(&mut self, vaddr: u64, value: u64) {
        if let Some(p) = self.leaf(vaddr, None) {
            // SAFETY: as in `pte`; the space is owned mutably.
            unsafe { p.write_volatile(value) };
            mode::flush_tlb_page(vaddr);
        }
    }

    /// Maps `phys` at `vaddr` with a raw leaf entry value's flags (`value` includes the
    /// address), creating tables as needed.
    pub fn map_raw(&mut self, frames: &mut FrameAllocator, vaddr: u64, value: u64) -> Result<(), ()> {
        assert!(vaddr < 0x0000_8000_0000_0000, "{vaddr:#x} is not a user address");
        let p = self.leaf(vaddr, Some(frames)).ok_or(())?;
        // SAFETY: as in `set_pte`.
        unsafe { p.write_volatile(value) };
        mode::flush_tlb_page(vaddr);
        Ok(())
    }

    /// Calls `f(vaddr, &mut entry)` for every present user page in `[start, end)`; `f` may
    /// change or clear the entry. The caller flushes the TLB afterwards.
    pub fn for_each_page(&mut self, start: u64, end: u64, mut f: impl FnMut(u64, &mut u64)) {
        let end = end.min(0x0000_8000_0000_0000);
        let mut va = start & !0xfff;
        while va < end {
            let mut table = self.pair;
            let mut skip = 0u64;
            for level in [39u64, 30, 21] {
                let e = read_entry(table, ((va >> level) & 0x1ff) as usize);
                if e & pte::PRESENT == 0 || e & pte::HUGE != 0 {
                    skip = 1 << level;
                    break;
                }
                table = e & pte::ADDR_MASK;
            }
            if skip != 0 {
                va = (va & !(skip - 1)) + skip;
                continue;
            }
            let p = entry_ptr(table, ((va >> 12) & 0x1ff) as usize);
            // SAFETY: a leaf slot of this space's own tables.
            let mut e = unsafe { p.read_volatile() };
            if e & pte::PRESENT != 0 {
                let before = e;
                f(va, &mut e);
                if e != before {
                    // SAFETY: as above; the space is owned mutably.
                    unsafe { p.write_volatile(e) };
                }
            }
            va += 4096;
        }
    }

    /// Reloads this space's roots so that changes made by [`Self::for_each_page`] take
    /// effect, if it is the active space.
    pub fn flush_all(&self) {
        let active = mode::loaded_root() == self.pair;
        if active {
            // SAFETY: reloading the active root maps the kernel as before.
            unsafe { mode::load_cr3(self.pair) };
        }
    }

    /// Frees the user-half tables and the roots; `release` is called with every mapped
    /// frame (the caller keeps page reference counts). The space must not be active.
    pub fn destroy(self, frames: &mut FrameAllocator, mut release: impl FnMut(&mut FrameAllocator, u64)) {
        let mut links = DirectMapLinks;
        let table = |e: u64| e & pte::ADDR_MASK;
        for i in 0..256 {
            let l4 = read_entry(self.pair, i);
            if l4 & pte::PRESENT == 0 {
                continue;
            }
            for j in 0..512 {
                let l3 = read_entry(table(l4), j);
                if l3 & pte::PRESENT == 0 || l3 & pte::HUGE != 0 {
                    continue;
                }
                for k in 0..512 {
                    let l2 = read_entry(table(l3), k);
                    if l2 & pte::PRESENT == 0 || l2 & pte::HUGE != 0 {
                        continue;
                    }
                    for l in 0..512 {
                        let l1 = read_entry(table(l2), l);
                        if l1 & pte::PRESENT != 0 {
                            release(frames, table(l1));
                        }
                    }
                    frames.free(&mut links, table(l2));
                }
                frames.free(&mut links, table(l3));
            }
            frames.free(&mut links, table(l4));
        }
        FREE_PAIRS.lock().push(self.pair);
    }
}

/// Copies bytes of user memory at `uaddr` into `buf` through the direct map (no faults in the
/// kernel); fails if any byte is not mapped for user access.
pub fn copy_from_user(space: &AddressSpace, uaddr: u64, buf: &mut [u8]) -> Result<(), ()> {
    let mut done = 0usize;
    while done < buf.len() {
        let addr = uaddr.checked_add(done as u64).ok_or(())?;
        let (phys, _) = space.translate(addr).ok_or(())?;
        let chunk = ((4096 - (addr % 4096)) as usize).min(buf.len() - done);
        // SAFETY: `phys..phys+chunk` lies in one user frame of this space (translated above),
        // RAM covered by the direct map; we only read it.
        let src = unsafe { core::slice::from_raw_parts(phys_to_virt(phys) as *const u8, chunk) };
        buf[done..done + chunk].copy_from_slice(src);
        done += chunk;
    }
    Ok(())
}

/// Copies `bytes` into a frame the caller owns, at `offset`.
pub fn write_frame(frame: u64, offset: usize, bytes: &[u8]) {
    assert!(frame.is_multiple_of(4096) && offset + bytes.len() <= 4096);
    // SAFETY: the caller owns the frame (fresh from the allocator, not yet mapped anywhere
    // else); the range is inside it (checked); the direct map covers RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (phys_to_virt(frame) + offset as u64) as *mut u8,
            bytes.len(),
        )
    };
}

/// Copies `buf` into user memory at `uaddr` through the direct map; fails if any byte is not
/// mapped writable for the user (the caller resolves faults first: see the kernel's
/// `mm::user` helpers).
pub fn copy_to_user(space: &AddressSpace, uaddr: u64, buf: &[u8]) -> Result<(), ()> {
    let mut done = 0usize;
    while done < buf.len() {
        let addr = uaddr.checked_add(done as u64).ok_or(())?;
        let (phys, writable) = space.translate(addr).ok_or(())?;
        if !writable {
            return Err(());
        }
        let chunk = ((4096 - (addr % 4096)) as usize).min(buf.len() - done);
        // SAFETY: `phys..phys+chunk` lies in one writable user frame of this space (translated
        // above), RAM covered by the direct map; user memory is plain bytes.
        let dst = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(phys) as *mut u8, chunk) };
        dst.copy_from_slice(&buf[done..done + chunk]);
        done += chunk;
    }
    Ok(())
}

/// Copies a whole frame (copy-on-write).
pub fn copy_frame(dst: u64, src: u64) {
    assert!(dst.is_multiple_of(4096) && src.is_multiple_of(4096) && dst != src);
    // SAFETY: two distinct RAM frames (direct map); `dst` is owned by the caller.
    unsafe {
        core::ptr::copy_nonoverlapping(phys_to_virt(src) as *const u8, phys_to_virt(dst) as *mut u8, 4096)
    };
}
