//! Kernel ELF validation and loading.
//!
//! linux-loader does the loading; before it runs we check what it does not: that the file is
//! a 64-bit little-endian x86-64 executable whose segments sit in the kernel window (virtual
//! `KERNEL_VIRT_BASE + p` for physical `p`), above the boot area and inside guest RAM.

use crate::Span;
use crate::layout::{KERNEL_MIN_GPA, KERNEL_VIRT_BASE, KERNEL_WINDOW, PAGE_SIZE};
use linux_loader::loader::{Elf, KernelLoader};
use std::io::Cursor;
use vm_memory::{GuestAddress, GuestMemoryBackend};

const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const PT_LOAD: u32 = 1;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;

/// Why a kernel image was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// Not an ELF file at all.
    #[error("not an ELF file")]
    NotElf,
    /// 32-bit, big-endian or another architecture.
    #[error("not a 64-bit little-endian x86-64 ELF ({0})")]
    WrongArchitecture(&'static str),
    /// A relocatable, shared or core file.
    #[error("ELF type {0} is not an executable (ET_EXEC)")]
    NotExecutable(u16),
    /// Truncated or inconsistent headers.
    #[error("malformed ELF: {0}")]
    Malformed(&'static str),
    /// No loadable segment.
    #[error("no loadable segment")]
    NoSegments,
    /// A segment outside the kernel window or below the boot area.
    #[error("segment at physical {paddr:#x} (virtual {vaddr:#x}) is outside the kernel window")]
    BadSegment {
        /// Segment physical address.
        paddr: u64,
        /// Segment virtual address.
        vaddr: u64,
    },
    /// The entry point is not inside a loaded segment.
    #[error("entry point {0:#x} is not inside the kernel")]
    BadEntry(u64),
    /// The kernel does not fit in guest RAM.
    #[error("kernel needs memory up to {needed:#x} but guest RAM below the MMIO hole ends at {available:#x}")]
    TooBig {
        /// One past the kernel's last byte.
        needed: u64,
        /// One past the last low RAM byte.
        available: u64,
    },
    /// linux-loader refused it.
    #[error("loading segments: {0}")]
    Loader(String),
}

/// A validated kernel image, ready to load.
#[derive(Debug)]
pub struct KernelImage<'a> {
    bytes: &'a [u8],
    /// Virtual entry point.
    pub entry: u64,
    /// Physical range the segments (with `.bss`) occupy, page aligned.
    pub phys: Span,
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

impl<'a> KernelImage<'a> {
    /// Validates `bytes` as a umlvm guest kernel.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
            return Err(LoadError::NotElf);
        }
        if bytes.len() < EHDR_LEN {
            return Err(LoadError::Malformed("truncated ELF header"));
        }
        if bytes[4] != 2 {
            return Err(LoadError::WrongArchitecture("32-bit ELF"));
        }
        if bytes[5] != 1 {
            return Err(LoadError::WrongArchitecture("big-endian ELF"));
        }
        let machine = u16_at(bytes, 18);
        if machine != EM_X86_64 {
            return Err(LoadError::WrongArchitecture(match machine {
                3 => "i386",
                40 => "ARM",
                183 => "AArch64",
                243 => "RISC-V",
                _ => "machine is not x86-64",
            }));
        }
        let etype = u16_at(bytes, 16);
        if etype != ET_EXEC {
            return Err(LoadError::NotExecutable(etype));
        }
        let entry = u64_at(bytes, 24);
        let phoff = u64_at(bytes, 32) as usize;
        let phentsize = u16_at(bytes, 54) as usize;
        let phnum = u16_at(bytes, 56) as usize;
        if phentsize != PHDR_LEN {
            return Err(LoadError::Malformed("program header size"));
        }
        let ph_end = phnum
            .checked_mul(PHDR_LEN)
            .and_then(|n| n.checked_add(phoff))
            .ok_or(LoadError::Malformed("program header table overflows"))?;
        if phoff < EHDR_LEN || ph_end > bytes.len() {
            return Err(LoadError::Malformed("program header table outside the file"));
        }
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        let mut entry_ok = false;
        for i in 0..phnum {
            let ph = &bytes[phoff + i * PHDR_LEN..phoff + (i + 1) * PHDR_LEN];
            if u32_at(ph, 0) != PT_LOAD {
                continue;
            }
            let (offset, vaddr, paddr) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 24));
            let (filesz, memsz) = (u64_at(ph, 32), u64_at(ph, 40));
            let file_end = offset.checked_add(filesz);
            if filesz > memsz || file_end.is_none_or(|e| e > bytes.len() as u64) {
                return Err(LoadError::Malformed("segment outside the file"));
            }
            let end = paddr.checked_add(memsz).ok_or(LoadError::Malformed("segment overflows"))?;
            if paddr < KERNEL_MIN_GPA || end > KERNEL_WINDOW || vaddr != KERNEL_VIRT_BASE.wrapping_add(paddr)
            {
                return Err(LoadError::BadSegment { paddr, vaddr });
            }
            if (vaddr..vaddr + memsz).contains(&entry) {
                entry_ok = true;
            }
            lo = lo.min(paddr);
            hi = hi.max(end);
        }
        if hi == 0 {
            return Err(LoadError::NoSegments);
        }
        if !entry_ok {
            return Err(LoadError::BadEntry(entry));
        }
        let lo = lo & !(PAGE_SIZE - 1);
        let hi = hi.next_multiple_of(PAGE_SIZE);
        Ok(Self { bytes, entry, phys: Span::new(lo, hi - lo) })
    }

    /// Copies the segments into guest memory (`.bss` stays as the zeroed RAM it already is).
    pub fn load<M: GuestMemoryBackend>(&self, mem: &M, low_ram_end: u64) -> Result<(), LoadError> {
        if self.phys.end() > low_ram_end {
            return Err(LoadError::TooBig { needed: self.phys.end(), available: low_ram_end });
        }
        let mut cursor = Cursor::new(self.bytes);
        Elf::load(mem, None, &mut cursor, Some(GuestAddress(0)))
            .map_err(|e| LoadError::Loader(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::host::test_util::guest_memory;
    use vm_memory::Bytes;

    /// A minimal valid kernel ELF: one PT_LOAD of `code` at physical 2 MiB, plus `bss` bytes.
    pub fn tiny_kernel(code: &[u8], bss: u64) -> Vec<u8> {
        let paddr = 0x20_0000u64;
        let vaddr = KERNEL_VIRT_BASE + paddr;
        let mut f = vec![0u8; EHDR_LEN + PHDR_LEN];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[20..24].copy_from_slice(&1u32.to_le_bytes());
        f[24..32].copy_from_slice(&vaddr.to_le_bytes());
        f[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes());
        f[52..54].copy_from_slice(&(EHDR_LEN as u16).to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let off = (EHDR_LEN + PHDR_LEN) as u64;
        let ph = &mut f[EHDR_LEN..];
        ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        ph[4..8].copy_from_slice(&7u32.to_le_bytes());
        ph[8..16].copy_from_slice(&off.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&paddr.to_le_bytes());
        ph[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        ph[40..48].copy_from_slice(&(code.len() as u64 + bss).to_le_bytes());
        f.extend_from_slice(code);
        f
    }

    #[test]
    fn loads_segments_at_their_physical_address() {
        let img = tiny_kernel(&[0xf4, 0xeb, 0xfd], 0x3000);
        let k = KernelImage::parse(&img).unwrap();
        assert_eq!(k.entry, KERNEL_VIRT_BASE + 0x20_0000);
        assert_eq!(k.phys, Span::new(0x20_0000, 0x4000));
        let mem = guest_memory(16 << 20);
        k.load(&mem, 16 << 20).unwrap();
        let mut got = [0u8; 3];
        mem.read_slice(&mut got, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(got, [0xf4, 0xeb, 0xfd]);
    }

    #[test]
    fn refuses_non_elf_wrong_arch_and_bad_layouts() {
        assert_eq!(KernelImage::parse(b"hello world").unwrap_err(), LoadError::NotElf);
        assert_eq!(KernelImage::parse(b"\x7fELF").unwrap_err(), LoadError::Malformed("truncated ELF header"));
        let good = tiny_kernel(&[0xf4], 0);
        let mut arm = good.clone();
        arm[18] = 183;
        assert_eq!(KernelImage::parse(&arm).unwrap_err(), LoadError::WrongArchitecture("AArch64"));
        let mut elf32 = good.clone();
        elf32[4] = 1;
        assert!(matches!(KernelImage::parse(&elf32), Err(LoadError::WrongArchitecture(_))));
        let mut dyn_ = good.clone();
        dyn_[16] = 3;
        assert_eq!(KernelImage::parse(&dyn_).unwrap_err(), LoadError::NotExecutable(3));
        let mut low = good.clone();
        // Move the segment to physical 0x1000 (inside the boot area).
        low[EHDR_LEN + 24..EHDR_LEN + 32].copy_from_slice(&0x1000u64.to_le_bytes());
        assert!(matches!(KernelImage::parse(&low), Err(LoadError::BadSegment { .. })));
        let mut entry = good.clone();
        entry[24..32].copy_from_slice(&0x40_0000u64.to_le_bytes());
        assert_eq!(KernelImage::parse(&entry).unwrap_err(), LoadError::BadEntry(0x40_0000));
        let truncated = &good[..good.len() - 1];
        assert!(matches!(KernelImage::parse(truncated), Err(LoadError::Malformed(_))));
    }

    #[test]
    fn refuses_a_kernel_larger_than_ram() {
        let img = tiny_kernel(&[0xf4], 64 << 20);
        let k = KernelImage::parse(&img).unwrap();
        let mem = guest_memory(16 << 20);
        assert!(matches!(k.load(&mem, 16 << 20), Err(LoadError::TooBig { .. })));
    }
}
