//! Building a new program image: ELF segments as file-backed areas, the heap, and the
//! initial stack Linux lays out (arguments, environment, auxiliary vector).

use crate::mm::vm::{Backing, MemSpace, STACK_SIZE, STACK_TOP};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use umlvm_kcore::areas::{Access, Area, PAGE};
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::exec::{self as kexec, ElfPlan};
use umlvm_kcore::vfs::{FileType, Inode};

/// Largest executable accepted (bytes).
const MAX_IMAGE: u64 = 1 << 30;
/// What `execve` reads of an executable: the ELF header and program headers are in it.
const HEAD_BYTES: u64 = 16 * 1024;

/// A program found for `execve`: its path, its file and its argument vector.
pub type Resolved = (Vec<u8>, Arc<dyn Inode>, Vec<Vec<u8>>);

/// Finds the program to run for `path` with `args`: follows `#!` interpreter lines (up to four
/// levels, as Linux) and returns the final path, its inode and its argument vector.
pub fn resolve(mut path: Vec<u8>, mut args: Vec<Vec<u8>>) -> KResult<Resolved> {
    for _ in 0..5 {
        let loc = crate::fs::lookup_at(None, &path, true)?;
        let inode = loc.inode.clone();
        let md = inode.metadata();
        if md.file_type() != FileType::Regular || md.mode & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        let mut head = [0u8; 256];
        let n = inode.read_at(0, &mut head)?;
        match kexec::parse_shebang(&head[..n]) {
            Some(sb) => {
                let sb = sb?;
                let all: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
                args = sb.argv(&path, &all);
                path = sb.interp.clone();
            }
            None => return Ok((path, inode, args)),
        }
    }
    Err(Errno::ELOOP)
}

/// Reads the first `limit` bytes (at most) of a regular file.
pub fn read_all(inode: &Arc<dyn Inode>, limit: u64) -> KResult<Vec<u8>> {
    let md = inode.metadata();
    if md.file_type() != FileType::Regular {
        return Err(Errno::EACCES);
    }
    let mut buf = vec![0u8; md.size.min(limit) as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = inode.read_at(done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Loads `inode` (the executable found at `path`) into a new address space; returns it with
/// the entry point and initial stack pointer.
pub fn load(
    inode: Arc<dyn Inode>,
    path: &[u8],
    args: &[Vec<u8>],
    envs: &[Vec<u8>],
) -> KResult<(MemSpace, u64, u64)> {
    let md = inode.metadata();
    if md.file_type() != FileType::Regular || md.mode & 0o111 == 0 {
        return Err(Errno::EACCES);
    }
    if md.size > MAX_IMAGE {
        return Err(Errno::E2BIG);
    }
    // Only the headers are read now; the segments are paged in from the file on demand.
    let image = read_all(&inode, HEAD_BYTES)?;
    let plan: ElfPlan = kexec::parse_elf_head(&image, md.size)?;
    let plan = plan.with_bias(plan.default_bias())?;
    drop(image);
    let mut mm = MemSpace::new()?;
    let mut highest = 0u64;
    for seg in &plan.segments {
        let start = seg.vaddr & !(PAGE - 1);
        let lead = seg.vaddr - start;
        let end = (seg.vaddr + seg.memsz).next_multiple_of(PAGE);
        let access = Access { read: seg.prot.read, write: seg.prot.write, exec: seg.prot.exec };
        let backing = Backing::File {
            inode: inode.clone(),
            offset: seg.file_offset - lead,
            file_bytes: seg.filesz + lead,
        };
        mm.map_area(Area { start, end, access, shared: false, backing })?;
        highest = highest.max(end);
    }
    mm.brk_start = highest;
    mm.brk = highest;
    mm.map_area(crate::process::anon_area(STACK_TOP - STACK_SIZE, STACK_TOP))?;
    let mut random = [0u8; 16];
    crate::dev::random::fill(&mut random);
    let auxv = [
        (kexec::AT_PHDR, plan.phdr_vaddr),
        (kexec::AT_PHENT, u64::from(plan.phent)),
        (kexec::AT_PHNUM, u64::from(plan.phnum)),
        (kexec::AT_PAGESZ, PAGE),
        (kexec::AT_BASE, 0),
        (kexec::AT_FLAGS, 0),
        (kexec::AT_ENTRY, plan.entry),
        (kexec::AT_UID, 0),
        (kexec::AT_EUID, 0),
        (kexec::AT_GID, 0),
        (kexec::AT_EGID, 0),
        (kexec::AT_HWCAP, hwcap()),
        (kexec::AT_CLKTCK, crate::process::sched::HZ),
        (kexec::AT_SECURE, 0),
    ];
    let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
    let envp: Vec<&[u8]> = envs.iter().map(|e| e.as_slice()).collect();
    let stack = kexec::build_initial_stack(STACK_TOP, path, &argv, &envp, &auxv, random, b"x86_64")?;
    mm.write(stack.sp, &stack.bytes)?;
    Ok((mm, plan.entry, stack.sp))
}

/// AT_HWCAP: CPUID leaf 1 EDX, as Linux reports it.
fn hwcap() -> u64 {
    u64::from(core::arch::x86_64::__cpuid(1).edx)
}
