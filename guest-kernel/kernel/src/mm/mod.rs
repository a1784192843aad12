//! Memory management: the physical frame allocator, the kernel heap, kernel page tables.

pub mod vm;

use crate::arch::memory::{DirectMapLinks, boot_bytes};
use crate::arch::sync::IrqMutex;
use crate::arch::{heap, paging};
use umlvm_boot::{BootInfo, MemoryKind};
use umlvm_kcore::frame::{Frame, FrameAllocator};

static FRAMES: IrqMutex<Option<FrameAllocator>> = IrqMutex::new(None);

/// What [`init`] set up.
#[derive(Clone, Copy, Debug)]
pub struct MemStats {
    /// Frames free after boot.
    pub free_frames: u64,
    /// Bytes given to the heap.
    pub heap_bytes: u64,
}

/// The heap: a quarter of RAM (at least 2 MiB, at most 256 MiB). It holds kernel stacks,
/// RAM file systems (initramfs, /tmp) and caches; user pages come from the frame allocator.
fn heap_size(mem_bytes: u64) -> u64 {
    (mem_bytes / 4).clamp(2 << 20, 256 << 20)
}

/// The kernel command line from the boot block (empty if it is not UTF-8).
pub fn cmdline(info: &BootInfo) -> &'static str {
    match core::str::from_utf8(boot_bytes(info.cmdline)) {
        Ok(s) => s,
        Err(_) => {
            log::warn!("kernel command line is not UTF-8; ignoring it");
            ""
        }
    }
}

/// Builds the frame allocator from the memory map, carves the heap out of the largest usable
/// region, and drops the boot identity map.
pub fn init(info: &BootInfo) -> MemStats {
    TOTAL_BYTES.store(info.mem_bytes, core::sync::atomic::Ordering::Relaxed);
    let usable = || {
        info.memory_regions()
            .iter()
            .filter(|r| MemoryKind::from_raw(r.kind) == Some(MemoryKind::Usable))
            .map(|r| (r.span.gpa, r.span.end()))
    };
    let phys_end = usable().map(|(_, e)| e).max().unwrap_or(0);
    PHYS_END.store(phys_end, core::sync::atomic::Ordering::Relaxed);
    let want = heap_size(info.mem_bytes);
    let heap_region = usable().filter(|&(s, e)| e - s >= want * 2).max_by_key(|&(s, e)| e - s);
    let heap_start = heap_region.map(|(s, _)| s.next_multiple_of(4096));
    let heap_bytes = match heap_start {
        Some(start) => heap::init(start, want),
        None => 0,
    };
    let frames = FrameAllocator::new(usable().map(|(s, e)| match heap_start {
        Some(h) if s.next_multiple_of(4096) == h => (h + want, e),
        _ => (s, e),
    }));
    let mut frames = frames;
    paging::drop_identity_map();
    paging::preallocate_kernel_roots(&mut frames);
    if let Err(e) = crate::arch::uspace::init(&mut frames) {
        log::error!("cannot build the user entry area: {e:?}");
    }
    let free_frames = frames.free_frames();
    *FRAMES.lock() = Some(frames);
    MemStats { free_frames, heap_bytes }
}

/// Allocates a physical frame.
pub fn alloc_frame() -> Option<Frame> {
    FRAMES.lock().as_mut()?.alloc(&DirectMapLinks)
}

/// Allocates `count` physically contiguous zeroed-on-arrival frames (DMA rings).
pub fn alloc_contiguous(count: u64) -> Option<u64> {
    FRAMES.lock().as_mut()?.alloc_contiguous(&mut DirectMapLinks, count)
}

/// Frees a frame from [`alloc_frame`].
pub fn free_frame(addr: u64) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.free(&mut DirectMapLinks, addr);
    }
}

/// Runs `f` with the frame allocator locked.
///
/// # Panics
/// Before [`init`].
pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> R {
    let mut guard = FRAMES.lock();
    f(guard.as_mut().expect("frame allocator initialised"))
}

/// Guest RAM in bytes.
pub fn total_bytes() -> u64 {
    TOTAL_BYTES.load(core::sync::atomic::Ordering::Relaxed)
}

static TOTAL_BYTES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Frames currently free.
pub fn free_frames() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.free_frames())
}

/// Maps `phys` at `vaddr` in the kernel's vmap area.
pub fn map_kernel_page(vaddr: u64, phys: u64) -> Result<(), &'static str> {
    let mut guard = FRAMES.lock();
    let frames = guard.as_mut().ok_or("frame allocator not ready")?;
    paging::map_kernel_page(frames, vaddr, phys).map_err(|_| "mapping failed")
}

/// Reference counts of frames mapped into user address spaces (one per mapping), indexed by
/// frame number. A frame with count 0 is not a user page.
static PAGE_REFS: IrqMutex<alloc::vec::Vec<u16>> = IrqMutex::new(alloc::vec::Vec::new());

/// One past the highest usable physical address.
static PHYS_END: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn with_refs<R>(f: impl FnOnce(&mut alloc::vec::Vec<u16>) -> R) -> R {
    let mut refs = PAGE_REFS.lock();
    if refs.is_empty() {
        // One counter per frame of RAM (2 bytes per 4 KiB page).
        let frames = PHYS_END.load(core::sync::atomic::Ordering::Relaxed).div_ceil(4096).max(1);
        refs.resize(frames as usize, 0);
    }
    f(&mut refs)
}

/// Allocates a frame for a user page, zeroed, with reference count 1.
pub fn alloc_user_page() -> Option<u64> {
    let f = alloc_frame()?;
    if !f.is_zero {
        crate::arch::memory::zero_frame(f.addr);
    }
    with_refs(|r| {
        if let Some(c) = r.get_mut((f.addr / 4096) as usize) {
            *c = 1;
        }
    });
    Some(f.addr)
}

/// Adds a mapping of user page `frame` (fork, shared mappings).
pub fn page_get(frame: u64) {
    with_refs(|r| {
        if let Some(c) = r.get_mut((frame / 4096) as usize) {
            *c = c.saturating_add(1);
        }
    });
}

/// The number of mappings of user page `frame`.
pub fn page_count(frame: u64) -> u16 {
    with_refs(|r| r.get((frame / 4096) as usize).copied().unwrap_or(0))
}

/// Drops a mapping of user page `frame`; frees it with the last one. `frames` is the locked
/// allocator (address-space teardown holds it).
pub fn page_put_locked(frames: &mut FrameAllocator, frame: u64) {
    let last = with_refs(|r| match r.get_mut((frame / 4096) as usize) {
        Some(c) if *c > 1 => {
            *c -= 1;
            false
        }
        Some(c) => {
            *c = 0;
            true
        }
        None => true,
    });
    if last {
        frames.free(&mut DirectMapLinks, frame);
    }
}

/// [`page_put_locked`] taking the allocator lock itself.
pub fn page_put(frame: u64) {
    with_frames(|f| page_put_locked(f, frame));
}
