//! The kernel heap: `talc` over a physically contiguous range handed over at boot.
//!
//! Allocation is not allowed in interrupt handlers (the heap lock does not mask interrupts).

use super::memory::phys_to_virt;
use talc::TalcLock;
use talc::source::Manual;

#[global_allocator]
static HEAP: TalcLock<spinning_top::RawSpinlock, Manual> = TalcLock::new(Manual);

/// Gives the heap `len` bytes of RAM at physical `phys`; returns the bytes it could use.
///
/// # Panics
/// If called twice for overlapping memory would be unsound, so a second call panics.
pub fn init(phys: u64, len: u64) -> u64 {
    use core::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    assert!(!DONE.swap(true, Ordering::AcqRel), "heap initialised twice");
    let base = phys_to_virt(phys) as *mut u8;
    // SAFETY: the caller took [phys, phys+len) out of the frame allocator's reach, it is RAM
    // mapped by the direct map, and this runs once (checked above), so talc owns it alone.
    match unsafe { HEAP.lock().claim(base, len as usize) } {
        Some(_) => len,
        None => 0,
    }
}
