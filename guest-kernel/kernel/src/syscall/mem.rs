//! Memory syscalls: mmap, munmap, mprotect, mremap, brk.

use super::Args;
use crate::mm::vm::Backing;
use crate::process::sched;
use umlvm_kcore::areas::{Access, Area, PAGE};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::FileType;

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

fn mm() -> KResult<alloc::sync::Arc<spinning_top::Spinlock<crate::mm::vm::MemSpace>>> {
    sched::current().proc.mm().ok_or(Errno::ENOMEM)
}

pub fn mmap(a: Args) -> KResult<u64> {
    let [addr, len, prot, flags, fd, off] = a;
    if len == 0 || off % PAGE != 0 {
        return Err(Errno::EINVAL);
    }
    let len = len.checked_next_multiple_of(PAGE).ok_or(Errno::ENOMEM)?;
    let shared = match flags & 3 {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        _ => return Err(Errno::EINVAL),
    };
    let access = Access::from_prot(prot);
    let backing = if flags & MAP_ANONYMOUS != 0 {
        Backing::Anon
    } else {
        let f = sched::current().proc.fd_table().lock().get(fd as i32)?;
        let inode = f.inode().ok_or(Errno::ENODEV)?.clone();
        if inode.metadata().file_type() != FileType::Regular {
            return Err(Errno::ENODEV);
        }
        if !f.can_read() {
            return Err(Errno::EACCES);
        }
        if shared && access.write {
            // Writing through a shared file mapping would need a page cache with write-back.
            log::warn!("mmap: writable MAP_SHARED file mappings are not supported");
            return Err(Errno::ENODEV);
        }
        Backing::File { inode, offset: off, file_bytes: u64::MAX }
    };
    // A read-only shared file mapping behaves like a private one.
    let shared = shared && matches!(backing, Backing::Anon);
    let mm = mm()?;
    let mut m = mm.lock();
    let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
        if addr % PAGE != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_FIXED_NOREPLACE != 0 && m.areas.overlaps(addr, addr + len) {
            return Err(Errno::EEXIST);
        }
        addr
    } else {
        m.areas.find_free(len, addr & !(PAGE - 1))?
    };
    m.map_area(Area { start, end: start + len, access, shared, backing })?;
    Ok(start)
}

pub fn munmap(addr: u64, len: u64) -> KResult<u64> {
    mm()?.lock().unmap(addr, len)?;
    Ok(0)
}

pub fn mprotect(addr: u64, len: u64, prot: u64) -> KResult<u64> {
    mm()?.lock().protect(addr, len, Access::from_prot(prot))?;
    Ok(0)
}

pub fn mremap(old: u64, old_len: u64, new_len: u64, flags: u64) -> KResult<u64> {
    const MREMAP_MAYMOVE: u64 = 1;
    if flags & !MREMAP_MAYMOVE != 0 {
        return Err(Errno::EINVAL);
    }
    mm()?.lock().remap(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0)
}

pub fn brk(addr: u64) -> KResult<u64> {
    let mm = mm()?;
    let mut m = mm.lock();
    if addr == 0 {
        return Ok(m.brk);
    }
    Ok(m.set_brk(addr))
}
