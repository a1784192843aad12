//! The kernel entry points the hardware layer calls: traps, a new task's first entry, DMA
//! memory and the clock for device waits. The kernel installs them once, first thing in
//! `kmain`, so that `arch/` depends on nothing above it (the boot entry's call of `kmain` is
//! the only call upwards).

use super::trap::TrapFrame;
use core::sync::atomic::{AtomicPtr, Ordering};

/// What the kernel above provides to the hardware layer.
pub struct KernelHooks {
    /// A trap or interrupt taken in kernel mode.
    pub kernel_trap: fn(&mut TrapFrame),
    /// A syscall, trap or interrupt taken in user mode (on the task's kernel stack).
    pub user_trap: fn(&mut TrapFrame),
    /// What a new task runs before its first return to user mode.
    pub first_entry: fn(&mut TrapFrame),
    /// `pages` physically contiguous, page-aligned frames (their physical address).
    pub dma_alloc: fn(pages: u64) -> Option<u64>,
    /// Gives back one frame of a [`KernelHooks::dma_alloc`] range.
    pub dma_free: fn(phys: u64),
    /// Nanoseconds since the VMM started.
    pub now_ns: fn() -> u64,
    /// Waits for an interrupt, at most until the deadline (nanoseconds since start).
    pub wait_interrupt_until: fn(deadline_ns: u64),
}

static HOOKS: AtomicPtr<KernelHooks> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the kernel's entry points (before the first trap the kernel expects).
pub fn install(hooks: &'static KernelHooks) {
    HOOKS.store(core::ptr::from_ref(hooks).cast_mut(), Ordering::Release);
}

/// The installed hooks.
pub(super) fn get() -> &'static KernelHooks {
    let p = HOOKS.load(Ordering::Acquire);
    assert!(!p.is_null(), "a trap before the kernel installed its entry points");
    // SAFETY: the only value ever stored is a `&'static KernelHooks` (see `install`), so a
    // non-null pointer is valid for reads for the rest of the kernel's life and never
    // written through.
    unsafe { &*p }
}
