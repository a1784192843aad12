//! Physical frame allocator bookkeeping.
//!
//! Built from the boot memory map without touching the memory it manages (the VMM hands over
//! RAM that is already zero, and every instruction before PVM mode is emulated): frames are
//! handed out by a bump pointer through the usable regions, and freed frames go on an
//! intrusive free list whose links live in the frames themselves, reached through
//! [`FrameLinks`]. Fresh frames are known to be zero; recycled ones are not, and the caller is
//! told which it got.

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;
/// Most usable regions the allocator tracks.
pub const MAX_REGIONS: usize = 32;

/// Reads and writes the free-list link stored in a free frame.
pub trait FrameLinks {
    /// The link stored in `frame`.
    fn read_link(&self, frame: u64) -> u64;
    /// Stores `next` in `frame`.
    fn write_link(&mut self, frame: u64, next: u64);
}

/// One allocated frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Physical address, frame aligned.
    pub addr: u64,
    /// Whether the frame is known to hold zeros.
    pub is_zero: bool,
}

/// Frame allocator state.
#[derive(Debug)]
pub struct FrameAllocator {
    regions: [(u64, u64); MAX_REGIONS],
    region_count: usize,
    current: usize,
    bump: u64,
    free_head: Option<u64>,
    free_listed: u64,
    total: u64,
    allocated: u64,
}

impl FrameAllocator {
    /// An allocator over `usable` physical ranges (`(start, end)`, end exclusive). Ranges are
    /// shrunk to whole frames; frame 0 is never handed out; regions beyond [`MAX_REGIONS`]
    /// are ignored.
    pub fn new(usable: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut a = Self {
            regions: [(0, 0); MAX_REGIONS],
            region_count: 0,
            current: 0,
            bump: 0,
            free_head: None,
            free_listed: 0,
            total: 0,
            allocated: 0,
        };
        for (start, end) in usable {
            let start = start.max(FRAME_SIZE).next_multiple_of(FRAME_SIZE);
            let end = end & !(FRAME_SIZE - 1);
            if start >= end || a.region_count == MAX_REGIONS {
                continue;
            }
            a.regions[a.region_count] = (start, end);
            a.region_count += 1;
            a.total += (end - start) / FRAME_SIZE;
        }
        a.regions[..a.region_count].sort_unstable();
        a.bump = a.regions[0].0;
        a
    }

    /// Allocates one frame, or `None` when memory is exhausted.
    pub fn alloc<L: FrameLinks>(&mut self, links: &L) -> Option<Frame> {
        if let Some(head) = self.free_head {
            let next = links.read_link(head);
            self.free_head = (next != 0).then_some(next);
            self.free_listed -= 1;
            self.allocated += 1;
            return Some(Frame { addr: head, is_zero: false });
        }
        while self.current < self.region_count {
            let (_, end) = self.regions[self.current];
            if self.bump < end {
                let addr = self.bump;
                self.bump += FRAME_SIZE;
                self.allocated += 1;
                return Some(Frame { addr, is_zero: true });
            }
            self.current += 1;
            if self.current < self.region_count {
                self.bump = self.regions[self.current].0;
            }
        }
        None
    }

    /// Allocates two physically adjacent frames, the first 8 KiB aligned (a page-table pair:
    /// PVM hosts need the top-level table's address to have bit 12 clear, and a KPTI-style
    /// user table sits 4 KiB above the kernel one). Both come fresh (zeroed) from the bump
    /// pointer; a frame skipped for alignment goes on the free list.
    pub fn alloc_pair<L: FrameLinks>(&mut self, links: &mut L) -> Option<u64> {
        self.alloc_run(links, 2, 2 * FRAME_SIZE)
    }

    /// Allocates `count` physically contiguous fresh (zeroed) frames from the bump pointer
    /// (for DMA rings); frames of a region too short for them go on the free list.
    pub fn alloc_contiguous<L: FrameLinks>(&mut self, links: &mut L, count: u64) -> Option<u64> {
        if count == 0 {
            return None;
        }
        self.alloc_run(links, count, FRAME_SIZE)
    }

    /// Takes `count` fresh frames starting at a multiple of `align` from the bump pointer.
    /// Frames skipped for alignment, and the tail of a region too short for the run, go on
    /// the free list.
    fn alloc_run<L: FrameLinks>(&mut self, links: &mut L, count: u64, align: u64) -> Option<u64> {
        while self.current < self.region_count {
            let (_, end) = self.regions[self.current];
            while !self.bump.is_multiple_of(align) && self.bump < end {
                self.bump_to_free_list(links);
            }
            if self.bump + count * FRAME_SIZE <= end {
                let addr = self.bump;
                self.bump += count * FRAME_SIZE;
                self.allocated += count;
                return Some(addr);
            }
            while self.bump < end {
                self.bump_to_free_list(links);
            }
            self.current += 1;
            if self.current < self.region_count {
                self.bump = self.regions[self.current].0;
            }
        }
        None
    }

    /// Moves the frame at the bump pointer onto the free list.
    fn bump_to_free_list<L: FrameLinks>(&mut self, links: &mut L) {
        let frame = self.bump;
        self.bump += FRAME_SIZE;
        self.allocated += 1;
        self.free(links, frame);
    }

    /// Returns `frame` to the allocator.
    ///
    /// # Panics
    /// If `frame` is unaligned or outside every managed region: that is a kernel bug.
    pub fn free<L: FrameLinks>(&mut self, links: &mut L, frame: u64) {
        assert!(
            frame.is_multiple_of(FRAME_SIZE) && self.contains(frame),
            "freeing frame {frame:#x} that this allocator does not manage"
        );
        links.write_link(frame, self.free_head.unwrap_or(0));
        self.free_head = Some(frame);
        self.free_listed += 1;
        self.allocated -= 1;
    }

    /// Whether `addr` lies in a managed region.
    pub fn contains(&self, addr: u64) -> bool {
        self.regions[..self.region_count].iter().any(|&(s, e)| (s..e).contains(&addr))
    }

    /// Frames managed in total.
    pub const fn total_frames(&self) -> u64 {
        self.total
    }

    /// Frames currently free.
    pub const fn free_frames(&self) -> u64 {
        self.total - self.allocated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Links(HashMap<u64, u64>);
    impl FrameLinks for Links {
        fn read_link(&self, frame: u64) -> u64 {
            self.0[&frame]
        }
        fn write_link(&mut self, frame: u64, next: u64) {
            self.0.insert(frame, next);
        }
    }

    #[test]
    fn bumps_through_regions_in_order_then_runs_out() {
        let mut links = Links::default();
        // Unsorted, unaligned input; the zero frame is excluded.
        let mut a = FrameAllocator::new([(0x10_0100, 0x10_3000), (0, 0x2000)]);
        assert_eq!(a.total_frames(), 1 + 2);
        let got: Vec<u64> = std::iter::from_fn(|| a.alloc(&links).map(|f| f.addr)).collect();
        assert_eq!(got, [0x1000, 0x10_1000, 0x10_2000]);
        assert_eq!(a.free_frames(), 0);
        a.free(&mut links, 0x10_1000);
        a.free(&mut links, 0x1000);
        assert_eq!(a.free_frames(), 2);
        let f = a.alloc(&links).unwrap();
        assert_eq!(f, Frame { addr: 0x1000, is_zero: false });
        assert_eq!(a.alloc(&links).unwrap().addr, 0x10_1000);
        assert_eq!(a.alloc(&links), None);
    }

    #[test]
    fn fresh_frames_are_zero_and_distinct() {
        let links = Links::default();
        let mut a = FrameAllocator::new([(0x20_0000, 0x40_0000)]);
        let mut seen = std::collections::HashSet::new();
        while let Some(f) = a.alloc(&links) {
            assert!(f.is_zero);
            assert_eq!(f.addr % FRAME_SIZE, 0);
            assert!(seen.insert(f.addr));
        }
        assert_eq!(seen.len(), 512);
    }

    #[test]
    fn pairs_are_aligned_adjacent_and_waste_nothing() {
        let mut links = Links::default();
        let mut a = FrameAllocator::new([(0x1000, 0x6000), (0x10_0000, 0x10_3000)]);
        assert_eq!(a.alloc_pair(&mut links), Some(0x2000));
        // 0x4000..0x6000 is the next aligned pair.
        assert_eq!(a.alloc_pair(&mut links), Some(0x4000));
        // The next region has only 0x10_0000 + 0x10_1000 aligned; 0x10_2000 is left.
        assert_eq!(a.alloc_pair(&mut links), Some(0x10_0000));
        assert_eq!(a.alloc_pair(&mut links), None);
        // The skipped frame (0x1000) and the leftover (0x10_2000) are still allocatable.
        let rest: Vec<u64> = std::iter::from_fn(|| a.alloc(&links).map(|f| f.addr)).collect();
        assert_eq!(rest, [0x10_2000, 0x1000]);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn contiguous_runs_come_from_the_bump_pointer() {
        let mut links = Links::default();
        let mut a = FrameAllocator::new([(0x1000, 0x4000), (0x10_0000, 0x10_8000)]);
        assert_eq!(a.alloc_contiguous(&mut links, 2), Some(0x1000));
        // One frame left in the first region: it goes on the free list.
        assert_eq!(a.alloc_contiguous(&mut links, 4), Some(0x10_0000));
        assert_eq!(a.alloc_contiguous(&mut links, 8), None);
        // The failed request left the region's tail on the free list (last freed first).
        assert_eq!(a.alloc(&links).unwrap().addr, 0x10_7000);
        assert_eq!(a.free_frames(), 1 + 3);
        assert_eq!(a.alloc_contiguous(&mut links, 0), None);
    }

    #[test]
    #[should_panic(expected = "does not manage")]
    fn freeing_a_foreign_frame_is_a_bug() {
        let mut links = Links::default();
        let mut a = FrameAllocator::new([(0x20_0000, 0x40_0000)]);
        a.free(&mut links, 0x1000);
    }

    #[test]
    fn empty_and_degenerate_regions_are_skipped() {
        let links = Links::default();
        let mut a = FrameAllocator::new([(0x1800, 0x1fff), (0x5000, 0x6000)]);
        assert_eq!(a.total_frames(), 1);
        assert_eq!(a.alloc(&links).unwrap().addr, 0x5000);
        assert!(a.alloc(&links).is_none());
    }
}
