//! Process memory: an address space and its areas, demand paging, copy-on-write fork,
//! `mmap`/`munmap`/`mprotect`/`mremap`/`brk`, and checked copies to and from user memory.

use crate::arch::trap::TrapFrame;
use crate::arch::uspace::{self, AddressSpace};
use crate::mm;
use alloc::sync::Arc;
use alloc::vec::Vec;
use umlvm_boot::x86::pte;
use umlvm_kcore::areas::{Access, Area, Areas, PAGE};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::Inode;

/// Top of the user stack area.
pub const STACK_TOP: u64 = 0x7fff_ff00_0000;
/// Size reserved for the user stack (RLIMIT_STACK).
pub const STACK_SIZE: u64 = 8 << 20;
/// Top of the area the kernel places mappings in (below a gap under the stack).
pub const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (1 << 30);
/// Lowest address the kernel places mappings at.
pub const MMAP_FLOOR: u64 = 0x1_0000_0000;

/// What fills an area's pages.
#[derive(Clone)]
pub enum Backing {
    /// Zero-filled memory.
    Anon,
    /// File contents from `offset`; bytes of the area beyond `file_bytes` read as zero (the
    /// `.bss` tail of an ELF segment).
    File {
        /// The file.
        inode: Arc<dyn Inode>,
        /// File offset of the area's first byte.
        offset: u64,
        /// Bytes of the area (from its start) that come from the file.
        file_bytes: u64,
    },
}

impl umlvm_kcore::areas::Backing for Backing {
    fn advanced(&self, delta: u64) -> Self {
        match self {
            Self::Anon => Self::Anon,
            Self::File { inode, offset, file_bytes } => Self::File {
                inode: inode.clone(),
                offset: offset + delta,
                file_bytes: file_bytes.saturating_sub(delta),
            },
        }
    }
}

/// Why a user access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No area there (SEGV_MAPERR).
    Unmapped,
    /// The area forbids this access (SEGV_ACCERR).
    Denied,
    /// Out of memory.
    NoMemory,
}

/// A process's memory.
pub struct MemSpace {
    /// Page tables.
    pub space: AddressSpace,
    /// Areas.
    pub areas: Areas<Backing>,
    /// Start of the heap (`brk` area).
    pub brk_start: u64,
    /// Current program break.
    pub brk: u64,
    /// Bytes of memory faulted in (for /proc).
    pub resident_pages: u64,
}

const PTE_NX: u64 = 1 << 63;

fn leaf_flags(access: Access, writable: bool) -> u64 {
    let mut v = pte::PRESENT;
    if access.any() {
        v |= pte::USER;
    }
    if writable {
        v |= pte::WRITABLE;
    }
    if !access.exec {
        v |= PTE_NX;
    }
    v
}

impl MemSpace {
    /// An empty address space.
    pub fn new() -> KResult<Self> {
        let space = mm::with_frames(AddressSpace::new).ok_or(Errno::ENOMEM)?;
        Ok(Self { space, areas: Areas::new(MMAP_FLOOR, MMAP_TOP), brk_start: 0, brk: 0, resident_pages: 0 })
    }

    /// Adds an area (replacing what it overlaps).
    pub fn map_area(&mut self, area: Area<Backing>) -> KResult<()> {
        let replaced = self.areas.insert(area)?;
        for r in replaced {
            self.release_pages(r.start, r.end);
        }
        Ok(())
    }

    /// Unmaps and frees the pages in `[start, end)`.
    fn release_pages(&mut self, start: u64, end: u64) {
        let mut freed = Vec::new();
        self.space.for_each_page(start, end, |_, e| {
            freed.push(*e & pte::ADDR_MASK);
            *e = 0;
        });
        self.resident_pages = self.resident_pages.saturating_sub(freed.len() as u64);
        if !freed.is_empty() {
            self.space.flush_all();
            mm::with_frames(|f| freed.iter().for_each(|&p| mm::page_put_locked(f, p)));
        }
    }

    /// Serves a fault at `addr`: demand paging and copy-on-write.
    pub fn fault(&mut self, addr: u64, write: bool, exec: bool) -> Result<(), FaultError> {
        let area = self.areas.find(addr).ok_or(FaultError::Unmapped)?;
        let a = area.access;
        if !a.any() || (write && !a.write) || (exec && !a.exec) {
            return Err(FaultError::Denied);
        }
        let page = addr & !(PAGE - 1);
        let e = self.space.pte(page);
        if e & pte::PRESENT != 0 {
            if write && e & pte::WRITABLE == 0 {
                let frame = e & pte::ADDR_MASK;
                if area.shared || mm::page_count(frame) <= 1 {
                    self.space.set_pte(page, e | pte::WRITABLE);
                } else {
                    let new = mm::alloc_user_page().ok_or(FaultError::NoMemory)?;
                    uspace::copy_frame(new, frame);
                    self.space.set_pte(page, (e & !pte::ADDR_MASK) | new | pte::WRITABLE);
                    mm::page_put(frame);
                }
            } else {
                // Another path already mapped it (or a stale TLB entry): retry.
                crate::arch::mode::flush_tlb_page(page);
            }
            return Ok(());
        }
        let new = mm::alloc_user_page().ok_or(FaultError::NoMemory)?;
        if let Backing::File { inode, offset, file_bytes } = &area.backing {
            let into = page - area.start;
            if into < *file_bytes {
                let n = (*file_bytes - into).min(PAGE) as usize;
                let mut buf = [0u8; PAGE as usize];
                let got = inode.read_at(offset + into, &mut buf[..n]).unwrap_or(0);
                uspace::write_frame(new, 0, &buf[..got]);
            }
        }
        // Private pages are our own copy: writable at once if the area is.
        let value = new | leaf_flags(a, a.write);
        if mm::with_frames(|f| self.space.map_raw(f, page, value)).is_err() {
            mm::page_put(new);
            return Err(FaultError::NoMemory);
        }
        self.resident_pages += 1;
        Ok(())
    }

    /// A copy-on-write duplicate (fork): private pages become read-only in both spaces and
    /// shared by reference; shared areas stay writable.
    pub fn fork(&mut self) -> KResult<MemSpace> {
        let mut child = MemSpace::new()?;
        child.areas = self.areas.clone();
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        child.resident_pages = self.resident_pages;
        let mut pages: Vec<(u64, u64)> = Vec::new();
        let ranges: Vec<(u64, u64, bool)> = self.areas.iter().map(|a| (a.start, a.end, a.shared)).collect();
        for (start, end, shared) in ranges {
            self.space.for_each_page(start, end, |va, e| {
                if !shared {
                    *e &= !pte::WRITABLE;
                }
                pages.push((va, *e));
            });
        }
        self.space.flush_all();
        let mut failed = false;
        mm::with_frames(|f| {
            for &(va, e) in &pages {
                if child.space.map_raw(f, va, e).is_err() {
                    failed = true;
                    break;
                }
            }
        });
        for &(va, e) in &pages {
            if child.space.pte(va) == e {
                mm::page_get(e & pte::ADDR_MASK);
            }
        }
        if failed {
            child.destroy();
            return Err(Errno::ENOMEM);
        }
        Ok(child)
    }

    /// Frees everything (the space must not be active).
    pub fn destroy(self) {
        mm::with_frames(|f| self.space.destroy(f, mm::page_put_locked));
    }

    /// `munmap`.
    pub fn unmap(&mut self, start: u64, len: u64) -> KResult<()> {
        if !start.is_multiple_of(PAGE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(len.next_multiple_of(PAGE)).ok_or(Errno::EINVAL)?;
        for r in self.areas.remove_range(start, end) {
            self.release_pages(r.start, r.end);
        }
        Ok(())
    }

    /// `mprotect`.
    pub fn protect(&mut self, start: u64, len: u64, access: Access) -> KResult<()> {
        if !start.is_multiple_of(PAGE) {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let end = start.checked_add(len.next_multiple_of(PAGE)).ok_or(Errno::ENOMEM)?;
        let pieces = self.areas.protect(start, end, access)?;
        for p in pieces {
            // Write permission is granted lazily by the fault path (copy-on-write).
            self.space.for_each_page(p.start, p.end, |_, e| {
                let frame = *e & pte::ADDR_MASK;
                let keep_w = *e & pte::WRITABLE != 0 && access.write;
                *e = frame | leaf_flags(access, keep_w);
            });
        }
        self.space.flush_all();
        Ok(())
    }

    /// `brk`: moves the program break; returns the break in effect.
    pub fn set_brk(&mut self, new: u64) -> u64 {
        if new < self.brk_start || new > self.brk_start + (1 << 36) {
            return self.brk;
        }
        let old_end = self.brk.next_multiple_of(PAGE);
        let new_end = new.next_multiple_of(PAGE);
        if new_end > old_end {
            if self.areas.overlaps(old_end, new_end) {
                return self.brk;
            }
            let rw = Access { read: true, write: true, exec: false };
            let area =
                Area { start: old_end, end: new_end, access: rw, shared: false, backing: Backing::Anon };
            if self.areas.insert(area).is_err() {
                return self.brk;
            }
        } else if new_end < old_end {
            for r in self.areas.remove_range(new_end, old_end) {
                self.release_pages(r.start, r.end);
            }
        }
        self.brk = new;
        new
    }

    /// `mremap`: resizes the mapping at `old` (moving it if `may_move`).
    pub fn remap(&mut self, old: u64, old_len: u64, new_len: u64, may_move: bool) -> KResult<u64> {
        if !old.is_multiple_of(PAGE) || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = old_len.next_multiple_of(PAGE);
        let new_len = new_len.next_multiple_of(PAGE);
        let area = self.areas.find(old).ok_or(Errno::EFAULT)?.clone();
        if area.start != old || area.end < old + old_len {
            return Err(Errno::EFAULT);
        }
        if new_len <= old_len {
            self.unmap(old + new_len, old_len - new_len)?;
            return Ok(old);
        }
        // Split off exactly [old, old+old_len) so the area can grow or move alone.
        if area.end > old + old_len {
            let rest = self.areas.remove_range(old + old_len, area.end);
            for r in rest {
                self.areas.insert(r)?;
            }
        }
        if self.areas.resize(old, old + new_len).is_ok() {
            return Ok(old);
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let dest = self.areas.find_free(new_len, 0)?;
        let mut moved = self.areas.remove_range(old, old + old_len);
        let mut pages = Vec::new();
        self.space.for_each_page(old, old + old_len, |va, e| {
            pages.push((va - old + dest, *e));
            *e = 0;
        });
        self.space.flush_all();
        let mut piece = moved.remove(0);
        piece.start = dest;
        piece.end = dest + new_len;
        self.areas.insert(piece)?;
        mm::with_frames(|f| {
            for (va, e) in pages {
                let _ = self.space.map_raw(f, va, e);
            }
        });
        Ok(dest)
    }

    /// Makes `[addr, addr+len)` present for a kernel access (`write`: writable); EFAULT if
    /// the process may not access it so.
    pub fn fault_in(&mut self, addr: u64, len: u64, write: bool) -> KResult<()> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(Errno::EFAULT)?;
        if end > umlvm_kcore::vma::USER_END {
            return Err(Errno::EFAULT);
        }
        let mut page = addr & !(PAGE - 1);
        while page < end {
            let e = self.space.pte(page);
            let ok = e & pte::PRESENT != 0 && e & pte::USER != 0 && (!write || e & pte::WRITABLE != 0);
            if !ok {
                self.fault(page, write, false).map_err(|_| Errno::EFAULT)?;
            }
            page += PAGE;
        }
        Ok(())
    }

    /// Copies user memory into `buf`.
    pub fn read(&mut self, addr: u64, buf: &mut [u8]) -> KResult<()> {
        if uspace::copy_from_user(&self.space, addr, buf).is_ok() {
            return Ok(());
        }
        self.fault_in(addr, buf.len() as u64, false)?;
        uspace::copy_from_user(&self.space, addr, buf).map_err(|()| Errno::EFAULT)
    }

    /// Copies `buf` into user memory.
    pub fn write(&mut self, addr: u64, buf: &[u8]) -> KResult<()> {
        if uspace::copy_to_user(&self.space, addr, buf).is_ok() {
            return Ok(());
        }
        self.fault_in(addr, buf.len() as u64, true)?;
        uspace::copy_to_user(&self.space, addr, buf).map_err(|()| Errno::EFAULT)
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstr(&mut self, addr: u64, max: usize) -> KResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let chunk = (PAGE - at % PAGE) as usize;
            let mut buf = [0u8; PAGE as usize];
            self.read(at, &mut buf[..chunk])?;
            if let Some(n) = buf[..chunk].iter().position(|&b| b == 0) {
                out.extend_from_slice(&buf[..n]);
                return Ok(out);
            }
            out.extend_from_slice(&buf[..chunk]);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            at += chunk as u64;
        }
    }
}

/// A page fault in user mode: serve it or signal the task.
pub fn user_page_fault(frame: &mut TrapFrame) {
    let addr = crate::arch::mode::fault_address();
    let code = frame.error_code;
    let (write, exec) = (code & 2 != 0, code & 16 != 0);
    let me = crate::process::sched::current();
    let result = match me.proc.mm() {
        Some(mm) => mm.lock().fault(addr, write, exec),
        None => Err(FaultError::Unmapped),
    };
    match result {
        Ok(()) => me.proc.inner.lock().stats.page_faults += 1,
        Err(FaultError::NoMemory) => {
            log::warn!("pid {}: out of memory at {addr:#x}; killed", me.pid);
            crate::process::signal::force(&me, umlvm_kcore::signal::SIGKILL, 0, addr);
        }
        Err(e) => {
            let code = if e == FaultError::Unmapped { 1 } else { 2 };
            crate::process::signal::force_fault(&me, frame, umlvm_kcore::signal::SIGSEGV, code, addr);
        }
    }
}
