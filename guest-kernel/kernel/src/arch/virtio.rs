//! virtio-mmio devices through the `virtio-drivers` crate: its `Hal` (DMA from the frame
//! allocator, addresses through the direct map) and an interrupt-driven block device wrapper.
//!
//! The crate's non-blocking calls (`*_nb`) are `unsafe` because the request buffers stay
//! borrowed by the device until completion; [`VirtioBlock::transfer`] keeps them pinned in
//! one place until every request it submitted has completed, which makes the safe API sound.

use super::memory::{kernel_virt_to_phys, phys_to_virt, zero_frame};
use alloc::vec::Vec;
use core::ptr::NonNull;
use umlvm_boot::layout::{DIRECT_MAP_BASE, MMIO_HOLE_GPA};
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// The kernel's `Hal` for virtio-drivers.
pub struct KernelHal;

/// Physical address of a kernel buffer (direct map or kernel image), if it is one.
fn buffer_phys(vaddr: u64) -> Option<u64> {
    if (DIRECT_MAP_BASE..DIRECT_MAP_BASE + (1 << 46)).contains(&vaddr) {
        Some(vaddr - DIRECT_MAP_BASE)
    } else {
        kernel_virt_to_phys(vaddr)
    }
}

// SAFETY: dma_alloc returns zeroed, page-aligned, physically contiguous frames that nothing
// else uses (fresh from the frame allocator) and their direct-map address; share translates
// buffers that are physically contiguous (heap, kernel image and stacks are; anything else
// panics); mmio_phys_to_virt maps MMIO-hole addresses through the uncached direct map.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let phys = (super::hooks::get().dma_alloc)(pages as u64).expect("out of memory for DMA");
        for i in 0..pages as u64 {
            zero_frame(phys + i * 4096);
        }
        let virt = NonNull::new(phys_to_virt(phys) as *mut u8).expect("direct map is not null");
        (phys as PhysAddr, virt)
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        for i in 0..pages as u64 {
            (super::hooks::get().dma_free)(paddr + i * 4096);
        }
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        assert!((MMIO_HOLE_GPA..1 << 32).contains(&paddr), "MMIO outside the hole");
        NonNull::new(phys_to_virt(paddr) as *mut u8).expect("direct map is not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let vaddr = buffer.as_ptr() as *mut u8 as u64;
        buffer_phys(vaddr).expect("DMA buffer outside the direct map and kernel image") as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The device reported an I/O error (e.g. a write to a read-only device).
    Io,
    /// The request was malformed (length, range).
    Invalid,
}

/// One request for [`VirtioBlock::transfer`].
pub struct IoRequest<'a> {
    /// Read into or write from `buf`.
    pub write: bool,
    /// First sector.
    pub sector: u64,
    /// Data, a multiple of 512 bytes, in the heap or kernel image.
    pub buf: &'a mut [u8],
    /// Outcome, filled in by `transfer`.
    pub result: Result<(), BlockError>,
}

/// A virtio block device.
pub struct VirtioBlock {
    dev: VirtIOBlk<KernelHal, MmioTransport<'static>>,
}

/// The virtio-mmio transport of the window at physical `base`, if a device of type `kind`
/// is there.
fn probe_transport(base: u64, len: u64, kind: DeviceType) -> Option<MmioTransport<'static>> {
    if !(MMIO_HOLE_GPA..1 << 32).contains(&base) {
        return None;
    }
    let header = NonNull::new(phys_to_virt(base) as *mut VirtIOHeader)?;
    // SAFETY: the VMM's device table says a virtio-mmio window of `len` bytes is at `base`
    // (checked to be in the MMIO hole, mapped uncached by the direct map); a window has one
    // transport at a time (boot probes each window once; a hot-plugged window is probed when
    // it is attached, after the driver of an earlier device there was dropped), so the
    // transport is its only user.
    let transport = unsafe { MmioTransport::new(header, len as usize) }.ok()?;
    (transport.device_type() == kind).then_some(transport)
}

/// Probes the virtio-mmio window at physical `base`: `Some` for a block device.
pub fn probe_block(base: u64, len: u64) -> Option<VirtioBlock> {
    let transport = probe_transport(base, len, DeviceType::Block)?;
    let mut dev = VirtIOBlk::<KernelHal, _>::new(transport).ok()?;
    dev.enable_interrupts();
    Some(VirtioBlock { dev })
}

impl VirtioBlock {
    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.dev.capacity()
    }

    /// Whether the device refuses writes.
    pub fn read_only(&self) -> bool {
        self.dev.readonly()
    }

    /// Flushes the device's write cache.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        self.dev.flush().map_err(|_| BlockError::Io)
    }

    /// Runs `reqs` through the queue: keeps as many in flight as the ring takes and waits
    /// (halted, woken by the device's interrupt) for their completions.
    pub fn transfer(&mut self, reqs: &mut [IoRequest<'_>]) {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum State {
            Waiting,
            InFlight(u16),
            Done,
        }
        // Allocated once and never resized: the device holds pointers into it.
        let mut meta: Vec<(BlkReq, BlkResp, State)> =
            (0..reqs.len()).map(|_| (BlkReq::default(), BlkResp::default(), State::Waiting)).collect();
        let capacity = self.capacity();
        for (r, m) in reqs.iter_mut().zip(meta.iter_mut()) {
            let sectors = (r.buf.len() / SECTOR_SIZE) as u64;
            if r.buf.is_empty()
                || r.buf.len() % SECTOR_SIZE != 0
                || r.sector.saturating_add(sectors) > capacity
            {
                r.result = Err(BlockError::Invalid);
                m.2 = State::Done;
            }
        }
        let deadline = (super::hooks::get().now_ns)() + 10_000_000_000;
        let mut next = 0;
        loop {
            // Submit until the ring is full.
            while next < reqs.len() {
                if meta[next].2 != State::Waiting {
                    next += 1;
                    continue;
                }
                let r = &mut reqs[next];
                let (req, resp, state) = &mut meta[next];
                // SAFETY: `req` and `resp` live in `meta`, which is neither moved nor resized
                // until every submitted request completed; `r.buf` is exclusively borrowed for
                // all of `transfer`. None of them is touched until this token is popped.
                let submitted = unsafe {
                    if r.write {
                        self.dev.write_blocks_nb(r.sector as usize, req, r.buf, resp)
                    } else {
                        self.dev.read_blocks_nb(r.sector as usize, req, r.buf, resp)
                    }
                };
                match submitted {
                    Ok(token) => *state = State::InFlight(token),
                    Err(virtio_drivers::Error::QueueFull) => break,
                    Err(_) => {
                        r.result = Err(BlockError::Io);
                        *state = State::Done;
                    }
                }
                next += 1;
            }
            let in_flight = meta.iter().filter(|m| matches!(m.2, State::InFlight(_))).count();
            if in_flight == 0 {
                if next >= reqs.len() {
                    return;
                }
                continue;
            }
            // Drain completions first; only when none is left acknowledge the interrupt
            // (each register access is an exit to the VMM) and wait for the next one.
            let mut next_done = self.dev.peek_used();
            if next_done.is_none() {
                let _ = self.dev.ack_interrupt();
                next_done = self.dev.peek_used();
            }
            let Some(done) = next_done else {
                if (super::hooks::get().now_ns)() > deadline {
                    // The buffers may still be in the device's hands and must never be reused.
                    panic!("virtio-blk: device stopped answering with {in_flight} requests in flight");
                }
                // Woken by the device's interrupt (or any other); at most a millisecond if an
                // edge was missed.
                (super::hooks::get().wait_interrupt_until)((super::hooks::get().now_ns)() + 1_000_000);
                continue;
            };
            let Some(i) = meta.iter().position(|m| m.2 == State::InFlight(done)) else {
                panic!("virtio-blk: completion for unknown token {done}");
            };
            let (req, resp, state) = &mut meta[i];
            let r = &mut reqs[i];
            // SAFETY: the same buffers as at submission, and `done` is complete.
            let outcome = unsafe {
                if r.write {
                    self.dev.complete_write_blocks(done, req, r.buf, resp)
                } else {
                    self.dev.complete_read_blocks(done, req, r.buf, resp)
                }
            };
            r.result = outcome.map_err(|_| BlockError::Io);
            *state = State::Done;
        }
    }
}

/// A virtio console (one port).
pub struct VirtioConsole {
    dev: virtio_drivers::device::console::VirtIOConsole<KernelHal, MmioTransport<'static>>,
}

/// Probes the virtio-mmio window at physical `base`: `Some` for a console device.
pub fn probe_console(base: u64, len: u64) -> Option<VirtioConsole> {
    let transport = probe_transport(base, len, DeviceType::Console)?;
    let dev = virtio_drivers::device::console::VirtIOConsole::<KernelHal, _>::new(transport).ok()?;
    Some(VirtioConsole { dev })
}

impl VirtioConsole {
    /// Sends bytes (waits until the device took them).
    pub fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(2048) {
            if self.dev.send_bytes(chunk).is_err() {
                return;
            }
        }
    }

    /// The next input byte, if one arrived. Acknowledges the device's interrupt first.
    pub fn read_byte(&mut self) -> Option<u8> {
        let _ = self.dev.ack_interrupt();
        self.dev.recv(true).ok().flatten()
    }
}
