//! Physical memory access through the direct map, and the kernel's static stacks.

use super::entry::KERNEL_STACK_SIZE;
use core::sync::atomic::{AtomicBool, Ordering};
use umlvm_boot::BootInfo;
use umlvm_boot::layout::{DIRECT_MAP_BASE, MMIO_HOLE_GPA};
use umlvm_kcore::frame::{FRAME_SIZE, FrameLinks};

/// A stack: 16-byte aligned bytes.
#[repr(C, align(16))]
pub struct Stack<const N: usize>(pub [u8; N]);

/// The boot CPU's kernel stack (`_start` switches to it).
pub static mut BOOT_CPU_STACK: Stack<KERNEL_STACK_SIZE> = Stack([0; KERNEL_STACK_SIZE]);
/// Size of the double-fault stack.
pub const FAULT_STACK_SIZE: usize = 16 * 1024;
/// The double-fault stack (IST1), so a kernel stack overflow is still reported.
pub static mut FAULT_STACK: Stack<FAULT_STACK_SIZE> = Stack([0; FAULT_STACK_SIZE]);

/// Virtual address of physical `phys` in the direct map.
pub const fn phys_to_virt(phys: u64) -> u64 {
    DIRECT_MAP_BASE + phys
}

/// Physical address of a kernel-image virtual address (the kernel window maps physical
/// `p` at `KERNEL_VIRT_BASE + p`); `None` outside the window.
pub fn kernel_virt_to_phys(vaddr: u64) -> Option<u64> {
    use umlvm_boot::layout::{KERNEL_VIRT_BASE, KERNEL_WINDOW};
    vaddr.checked_sub(KERNEL_VIRT_BASE).filter(|&p| p < KERNEL_WINDOW)
}

/// (start, end) of the boot CPU's kernel stack.
pub fn kernel_stack_bounds() -> (u64, u64) {
    let start = (&raw const BOOT_CPU_STACK) as u64;
    (start, start + KERNEL_STACK_SIZE as u64)
}

/// (start, end) of the double-fault stack.
pub fn fault_stack_bounds() -> (u64, u64) {
    let start = (&raw const FAULT_STACK) as u64;
    (start, start + FAULT_STACK_SIZE as u64)
}

/// The VMM's boot information block at physical `phys`.
pub fn boot_info(phys: u64) -> &'static BootInfo {
    let addr = phys_to_virt(phys);
    assert!(
        addr.is_multiple_of(core::mem::align_of::<BootInfo>() as u64) && phys < MMIO_HOLE_GPA,
        "boot info at {phys:#x} is misaligned or outside RAM"
    );
    // SAFETY: the VMM wrote a BootInfo at this RAM address, mapped by the direct map, aligned
    // (checked above); any byte pattern is a valid BootInfo (integers only), and the kernel
    // never writes or frees the boot area, so a shared 'static reference is sound.
    unsafe { &*(addr as *const BootInfo) }
}

/// Reads the u64 at kernel virtual address `addr` if it lies inside `bounds` (a stack the
/// kernel owns), for backtraces.
pub fn read_stack_word(addr: u64, bounds: (u64, u64)) -> Option<u64> {
    if !addr.is_multiple_of(8) || addr < bounds.0 || addr.checked_add(8)? > bounds.1 {
        return None;
    }
    // SAFETY: `addr` is aligned and inside a kernel stack, which is mapped for the kernel's
    // lifetime; a volatile read of an integer cannot be invalid.
    Some(unsafe { core::ptr::read_volatile(addr as *const u64) })
}

/// Fills the frame at physical `frame` with zeros.
pub fn zero_frame(frame: u64) {
    assert!(frame.is_multiple_of(FRAME_SIZE) && !(MMIO_HOLE_GPA..1 << 32).contains(&frame));
    // SAFETY: the caller owns the frame (it came from the frame allocator), which is RAM mapped
    // by the direct map; nothing else references it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame) as *mut u8, 0, FRAME_SIZE as usize) };
}

/// The early-console buffer the VMM reserved, handed out once.
pub fn take_console_buffer(info: &BootInfo) -> Option<&'static mut [u8]> {
    static TAKEN: AtomicBool = AtomicBool::new(false);
    let span = info.console;
    if span.is_empty() || span.end() > MMIO_HOLE_GPA || TAKEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    // SAFETY: the VMM reserved this RAM range for the console buffer (MemoryKind::Boot, never
    // allocated); the direct map covers it; the AtomicBool makes this the only reference.
    Some(unsafe { core::slice::from_raw_parts_mut(phys_to_virt(span.gpa) as *mut u8, span.len as usize) })
}

/// Free-list links of the frame allocator, stored in the free frames via the direct map.
#[derive(Debug, Default)]
pub struct DirectMapLinks;

impl FrameLinks for DirectMapLinks {
    fn read_link(&self, frame: u64) -> u64 {
        // SAFETY: the allocator only asks for frames on its free list: RAM it owns, mapped by
        // the direct map, aligned.
        unsafe { core::ptr::read_volatile(phys_to_virt(frame) as *const u64) }
    }

    fn write_link(&mut self, frame: u64, next: u64) {
        // SAFETY: as above: the frame was just given back and belongs to the allocator.
        unsafe { core::ptr::write_volatile(phys_to_virt(frame) as *mut u64, next) }
    }
}

/// 32-bit MMIO read at physical `phys` (in the uncached MMIO hole).
///
/// # Safety
/// `phys` must be a device register whose read has no memory-safety effect.
pub unsafe fn mmio_read32(phys: u64) -> u32 {
    // SAFETY: the caller vouches for the register; the MMIO hole is mapped uncached.
    unsafe { core::ptr::read_volatile(phys_to_virt(phys) as *const u32) }
}

/// 32-bit MMIO write at physical `phys`.
///
/// # Safety
/// As for [`mmio_read32`].
pub unsafe fn mmio_write32(phys: u64, value: u32) {
    // SAFETY: the caller vouches for the register.
    unsafe { core::ptr::write_volatile(phys_to_virt(phys) as *mut u32, value) }
}

/// The bytes of a span inside the VMM's boot area (command line, initrd), which the kernel
/// never writes or frees.
pub fn boot_bytes(span: umlvm_boot::Span) -> &'static [u8] {
    if span.is_empty() || span.end() > MMIO_HOLE_GPA || span.end() < span.gpa {
        return &[];
    }
    // SAFETY: the range is RAM below the MMIO hole (checked), covered by the direct map, and
    // the boot area it lies in is never written or freed by the kernel, so a shared 'static
    // slice of it stays valid.
    unsafe { core::slice::from_raw_parts(phys_to_virt(span.gpa) as *const u8, span.len as usize) }
}
