//! Where the initial RAM disk goes in guest memory, and loading it there.
//!
//! As Linux boot loaders do, the initrd goes page-aligned at the top of the RAM below the MMIO
//! hole: far from the kernel image (which grows up from 2 MiB) and the boot area (below
//! 1 MiB), and out of the way of the kernel's own allocations, which start low. Its pages are
//! [`crate::MemoryKind::Initrd`] in the memory map, so the frame allocator never hands them
//! out. The bytes are read straight from the file into guest memory, without a bounce buffer.

use crate::Span;
use crate::layout::{MIN_MEM_BYTES, MMIO_HOLE_GPA, PAGE_SIZE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, ReadVolatile};

/// RAM the kernel must keep for itself besides the kernel image and the initrd (the smallest
/// machine umlvm boots).
pub const MIN_FREE_BYTES: u64 = MIN_MEM_BYTES;

/// Why an initrd cannot be placed or loaded.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// An initrd of no bytes: there is nothing to place.
    #[error("the initrd is empty")]
    Empty,
    /// It does not fit this much RAM, but would fit `needed_mem_bytes`.
    #[error("an initrd of {len} bytes needs at least {needed_mem_bytes} bytes of guest RAM")]
    NeedsMoreMemory {
        /// Initrd size.
        len: u64,
        /// The smallest guest RAM it fits, with the kernel and [`MIN_FREE_BYTES`].
        needed_mem_bytes: u64,
    },
    /// It does not fit below the MMIO hole above the kernel, however much RAM there is.
    #[error(
        "an initrd of {len} bytes is larger than the {max_len} bytes of RAM it may use below the MMIO hole"
    )]
    LargerThanLowRam {
        /// Initrd size.
        len: u64,
        /// The largest initrd this kernel leaves room for.
        max_len: u64,
    },
    /// The source ended before `len` bytes were read.
    #[error("the initrd ended after {read} of {len} bytes")]
    Short {
        /// Bytes read.
        read: u64,
        /// Bytes expected.
        len: u64,
    },
    /// Reading into guest memory failed.
    #[error("reading the initrd into guest memory")]
    Read(#[source] vm_memory::GuestMemoryError),
}

/// Where an initrd of `len` bytes goes in a guest with `mem_bytes` of RAM whose kernel image
/// occupies `kernel`: the returned span holds exactly `len` bytes at a page-aligned address,
/// and its page-rounded end is the end of RAM below the MMIO hole.
pub fn place(mem_bytes: u64, kernel: Span, len: u64) -> Result<Span, InitrdError> {
    if len == 0 {
        return Err(InitrdError::Empty);
    }
    let pages = len.checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX);
    let low_end = mem_bytes.min(MMIO_HOLE_GPA) & !(PAGE_SIZE - 1);
    let max_pages = MMIO_HOLE_GPA - kernel.end();
    if pages > max_pages {
        return Err(InitrdError::LargerThanLowRam { len, max_len: max_pages });
    }
    let free = mem_bytes.saturating_sub(kernel.end()).saturating_sub(pages);
    if low_end < kernel.end() + pages || free < MIN_FREE_BYTES {
        return Err(InitrdError::NeedsMoreMemory { len, needed_mem_bytes: needed_mem_bytes(kernel, len) });
    }
    Ok(Span::new(low_end - pages, len))
}

/// The smallest guest RAM that holds the kernel image `kernel`, an initrd of `len` bytes and
/// [`MIN_FREE_BYTES`] for the kernel to run in.
pub fn needed_mem_bytes(kernel: Span, len: u64) -> u64 {
    kernel.end().saturating_add(len.next_multiple_of(PAGE_SIZE)).saturating_add(MIN_FREE_BYTES)
}

/// The memory-map entry for a placed initrd: its span rounded up to whole pages.
pub fn pages(initrd: Span) -> Span {
    Span::new(initrd.gpa, initrd.len.next_multiple_of(PAGE_SIZE))
}

/// Reads `initrd.len` bytes from `src` (a file at offset 0, or bytes in tests) straight into
/// guest memory at `initrd.gpa`. A regular file smaller than 2 GiB takes one `read(2)`.
pub fn load<M: GuestMemoryBackend, R: ReadVolatile>(
    mem: &M,
    initrd: Span,
    src: &mut R,
) -> Result<(), InitrdError> {
    let mut done = 0u64;
    while done < initrd.len {
        let n = mem
            .read_volatile_from(GuestAddress(initrd.gpa + done), src, (initrd.len - done) as usize)
            .map_err(InitrdError::Read)?;
        if n == 0 {
            return Err(InitrdError::Short { read: done, len: initrd.len });
        }
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::test_util::guest_memory;
    use crate::layout::{BOOT_AREA_END, GIB, PT_POOL_END};

    const KERNEL: Span = Span::new(0x20_0000, 0x40_0000);

    #[test]
    fn goes_page_aligned_at_the_top_of_low_ram() {
        let s = place(64 << 20, KERNEL, 2 << 20).unwrap();
        assert_eq!(s, Span::new((64 << 20) - (2 << 20), 2 << 20));
        let s = place(64 << 20, KERNEL, 5000).unwrap();
        assert_eq!(s.gpa % PAGE_SIZE, 0);
        assert_eq!(s.len, 5000, "the span holds the exact bytes");
        assert_eq!(pages(s).end(), 64 << 20, "its pages end where RAM ends");
        assert_eq!(pages(s).len, 2 * PAGE_SIZE);
    }

    #[test]
    fn stays_below_the_mmio_hole_with_large_ram() {
        let s = place(6 * GIB, KERNEL, 1 << 20).unwrap();
        assert_eq!(pages(s).end(), MMIO_HOLE_GPA);
    }

    #[test]
    fn never_overlaps_the_kernel_or_boot_area() {
        for mem in [32u64 << 20, 64 << 20, 1 << 30, 5 * GIB] {
            for len in [1, 4095, 4096, 4097, 1 << 20, 10 << 20] {
                let Ok(s) = place(mem, KERNEL, len) else { continue };
                assert!(s.gpa >= KERNEL.end(), "{mem} {len}: {s:?} overlaps the kernel");
                assert!(s.gpa >= BOOT_AREA_END && s.gpa >= PT_POOL_END);
                assert!(pages(s).end() <= mem.min(MMIO_HOLE_GPA));
            }
        }
    }

    #[test]
    fn refuses_empty_and_too_large_with_the_ram_it_needs() {
        assert!(matches!(place(64 << 20, KERNEL, 0), Err(InitrdError::Empty)));
        let len = 300 << 20;
        match place(128 << 20, KERNEL, len) {
            Err(InitrdError::NeedsMoreMemory { needed_mem_bytes, .. }) => {
                assert_eq!(needed_mem_bytes, KERNEL.end() + len + MIN_FREE_BYTES);
                assert!(place(needed_mem_bytes, KERNEL, len).is_ok(), "the advice works");
                assert!(place(needed_mem_bytes - PAGE_SIZE, KERNEL, len).is_err(), "and is the least");
            }
            other => panic!("{other:?}"),
        }
        // Fits in RAM but leaves the kernel less than MIN_FREE_BYTES.
        assert!(matches!(place(32 << 20, KERNEL, 20 << 20), Err(InitrdError::NeedsMoreMemory { .. })));
        assert!(matches!(place(8 * GIB, KERNEL, 3 * GIB), Err(InitrdError::LargerThanLowRam { .. })));
        assert!(matches!(place(8 * GIB, KERNEL, u64::MAX), Err(InitrdError::LargerThanLowRam { .. })));
    }

    #[test]
    fn loads_the_bytes_and_refuses_a_short_source() {
        let mem = guest_memory(64 << 20);
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let s = place(64 << 20, KERNEL, data.len() as u64).unwrap();
        load(&mem, s, &mut &data[..]).unwrap();
        let mut got = vec![0u8; data.len()];
        mem.read_slice(&mut got, GuestAddress(s.gpa)).unwrap();
        assert_eq!(got, data);
        let long = Span::new(s.gpa, data.len() as u64 + 1);
        assert!(matches!(load(&mem, long, &mut &data[..]), Err(InitrdError::Short { read: 10_000, .. })));
    }
}
