//! Program loading plans for `execve`: what to map where, and the initial user stack.
//!
//! Nothing here touches memory. [`parse_elf`] turns an ELF image into an [`ElfPlan`] (which
//! pages to map with which protections, which file bytes go where, the entry point and the
//! program-header facts the auxiliary vector reports); [`parse_shebang`] recognises `#!`
//! scripts; [`build_initial_stack`] lays out argc, argv, envp and the auxiliary vector
//! exactly as Linux does, as a byte image the kernel copies below the stack top.
//!
//! Only static executables are supported: static non-PIE (`ET_EXEC`) and static-PIE
//! (`ET_DYN` without `PT_INTERP`). A program that asks for an ELF interpreter is refused with
//! `ENOEXEC` and the distinguishable reason [`ElfError::NeedsInterpreter`].
//!
//! # Mapping a segment
//!
//! For each [`Segment`] the kernel maps the pages
//! `[page_start(), page_end())` = `[vaddr & !0xfff, round_up(vaddr + memsz, 4096))` with the
//! segment's [`Prot`], copies `filesz` bytes from `file_offset` of the image to `vaddr`, and
//! zeroes everything else in those pages: the bss tail `[vaddr + filesz, vaddr + memsz)`,
//! the rest of the last page after it, and the bytes of the first page below `vaddr` (Linux
//! shows file bytes there because it maps whole file pages; nothing depends on them). Using
//! freshly zeroed pages gives all of that for free. Segments are sorted by address and never
//! overlap (checked), but two segments may share the page at their boundary; the kernel then
//! maps that page once with the union of both protections and copies both segments into it.
//! The program break starts at `round_up(ElfPlan::end(), 4096)`.

use crate::errno::{Errno, KResult};
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;
use elf::abi::{
    ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, PT_GNU_STACK, PT_INTERP, PT_LOAD,
    PT_PHDR,
};
use elf::endian::LittleEndian;
use elf::file::FileHeader;
use elf::segment::{ProgramHeader, SegmentTable};

/// The page size the plans are aligned to.
pub const PAGE_SIZE: u64 = 4096;
/// The end of the user half of the address space (Linux's `TASK_SIZE` on x86-64: the top
/// page of the lower canonical half is never mapped).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;
/// The lowest address a program may map (Linux's default `vm.mmap_min_addr`).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
/// Where a position-independent executable's lowest page goes (what Linux uses without
/// address-space randomisation, familiar from gdb).
pub const PIE_LOAD_BASE: u64 = 0x5555_5555_4000;
/// The size of one ELF64 program header (`e_phentsize`).
pub const PHDR_SIZE: u64 = 56;
/// Largest program-header table Linux accepts, in bytes.
const MAX_PHDR_TABLE: u64 = 65536;
/// Size of the ELF64 file header.
const EHDR_SIZE: usize = 64;

/// Why an image is not a loadable program. [`ElfError::errno`] is what `execve` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic: not an ELF file at all (`ENOEXEC`).
    NotElf,
    /// A 32-bit ELF file (`ENOEXEC`).
    Not64Bit,
    /// A big-endian ELF file (`ENOEXEC`).
    NotLittleEndian,
    /// An ELF file for another machine, with its `e_machine` (`ENOEXEC`).
    WrongMachine(u16),
    /// Neither `ET_EXEC` nor `ET_DYN` (a relocatable object or core dump), with its
    /// `e_type` (`ENOEXEC`).
    NotExecutable(u16),
    /// A dynamically linked program: it has a `PT_INTERP` segment, and this kernel runs no
    /// ELF interpreter (`ENOEXEC`).
    NeedsInterpreter,
    /// The header or program-header table is damaged; the text says how (`ENOEXEC`).
    Malformed(&'static str),
    /// No `PT_LOAD` segment (`ENOEXEC`).
    NoLoadSegments,
    /// A segment's geometry is impossible: `filesz > memsz`, file bytes past the end of the
    /// image, overlapping or unsorted segments, or addresses outside the user half
    /// (`EINVAL`, as Linux's `elf_map` checks return).
    BadSegment(&'static str),
}

impl ElfError {
    /// The errno `execve` reports.
    pub const fn errno(self) -> Errno {
        match self {
            Self::BadSegment(_) => Errno::EINVAL,
            _ => Errno::ENOEXEC,
        }
    }
}

impl From<ElfError> for Errno {
    fn from(e: ElfError) -> Self {
        e.errno()
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not an ELF file"),
            Self::Not64Bit => f.write_str("32-bit ELF file"),
            Self::NotLittleEndian => f.write_str("big-endian ELF file"),
            Self::WrongMachine(m) => write!(f, "ELF file for machine {m}, not x86-64"),
            Self::NotExecutable(t) => write!(f, "ELF type {t} is not an executable"),
            Self::NeedsInterpreter => f.write_str("dynamically linked (PT_INTERP): no ELF interpreter"),
            Self::Malformed(why) => write!(f, "malformed ELF file: {why}"),
            Self::NoLoadSegments => f.write_str("ELF file without PT_LOAD segments"),
            Self::BadSegment(why) => write!(f, "bad ELF segment: {why}"),
        }
    }
}

/// Page protections of a segment (`PF_R`, `PF_W`, `PF_X`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot {
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
}

impl Prot {
    /// The protections in ELF `p_flags`.
    pub const fn from_flags(flags: u32) -> Self {
        Self { read: flags & PF_R != 0, write: flags & PF_W != 0, exec: flags & PF_X != 0 }
    }

    /// Both protections together (for a page two segments share).
    pub const fn union(self, other: Self) -> Self {
        Self {
            read: self.read || other.read,
            write: self.write || other.write,
            exec: self.exec || other.exec,
        }
    }
}

/// One `PT_LOAD` segment: `memsz` bytes at `vaddr`, the first `filesz` of them from the image
/// at `file_offset`, the rest zero. See the module documentation for how to map it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Virtual address of the first byte.
    pub vaddr: u64,
    /// Size in memory (at least `filesz`).
    pub memsz: u64,
    /// Offset of the segment's bytes in the image.
    pub file_offset: u64,
    /// Bytes that come from the image.
    pub filesz: u64,
    /// Page protections.
    pub prot: Prot,
}

impl Segment {
    /// The first page to map (`vaddr` rounded down).
    pub const fn page_start(&self) -> u64 {
        self.vaddr & !(PAGE_SIZE - 1)
    }

    /// The end of the last page to map (`vaddr + memsz` rounded up).
    pub const fn page_end(&self) -> u64 {
        round_up(self.vaddr + self.memsz)
    }

    /// The image bytes to copy to `vaddr`, as a range of the image (within it: checked).
    pub const fn file_range(&self) -> Range<usize> {
        self.file_offset as usize..(self.file_offset + self.filesz) as usize
    }

    /// The addresses that must read as zero after the copy: from the end of the file bytes
    /// to the end of the last page (the bss and the partial page after it).
    pub const fn zero_range(&self) -> Range<u64> {
        self.vaddr + self.filesz..self.page_end()
    }
}

/// What loading a static ELF executable takes. Addresses are final for `ET_EXEC`; for a
/// static-PIE (`is_pie`) they are relative to 0 until [`ElfPlan::with_bias`] moves them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfPlan {
    /// Entry point (`AT_ENTRY`, the first `rip`).
    pub entry: u64,
    /// The `PT_LOAD` segments, sorted by address, not overlapping.
    pub segments: Vec<Segment>,
    /// Where the program headers are in memory (`AT_PHDR`): `PT_PHDR`'s address, else
    /// computed from the `PT_LOAD` that holds `e_phoff`; 0 if no segment maps them.
    pub phdr_vaddr: u64,
    /// Size of one program header (`AT_PHENT`).
    pub phent: u16,
    /// Number of program headers (`AT_PHNUM`).
    pub phnum: u16,
    /// An `ET_DYN` (static-PIE) image that needs a load bias.
    pub is_pie: bool,
    /// `PT_GNU_STACK` asks for an executable stack (without it x86-64 stacks are not
    /// executable).
    pub stack_exec: bool,
}

/// Parses an ELF image into a loading plan; `execve`'s errno on failure. See
/// [`ElfPlan::parse`] for the detailed reason.
pub fn parse_elf(image: &[u8]) -> KResult<ElfPlan> {
    ElfPlan::parse(image).map_err(Errno::from)
}

/// Like [`parse_elf`] from the first bytes of a file of `file_size` bytes: the file header and
/// the program header table must lie in `head` (they do in the first page of any executable a
/// linker makes), segments are checked against `file_size`. The kernel reads only that much
/// at `execve`; the segments are paged in on demand.
pub fn parse_elf_head(head: &[u8], file_size: u64) -> KResult<ElfPlan> {
    ElfPlan::parse_head(head, file_size).map_err(Errno::from)
}

impl ElfPlan {
    /// Parses an ELF image, giving the exact reason for a refusal (for the kernel log).
    pub fn parse(image: &[u8]) -> Result<Self, ElfError> {
        Self::parse_head(image, image.len() as u64)
    }

    /// [`Self::parse`] from the first bytes `head` of a file of `file_size` bytes.
    pub fn parse_head(image: &[u8], file_size: u64) -> Result<Self, ElfError> {
        let ehdr = parse_header(image)?;
        if ehdr.e_phentsize as u64 != PHDR_SIZE {
            return Err(ElfError::Malformed("e_phentsize is not 56"));
        }
        let table_len = PHDR_SIZE * ehdr.e_phnum as u64;
        if table_len == 0 || table_len > MAX_PHDR_TABLE {
            return Err(ElfError::Malformed("program header count out of range"));
        }
        let table = ehdr
            .e_phoff
            .checked_add(table_len)
            .filter(|&end| end <= image.len() as u64)
            .map(|end| &image[ehdr.e_phoff as usize..end as usize])
            .ok_or(ElfError::Malformed("program headers past the end of the file (or of its first page)"))?;
        let phdrs: Vec<ProgramHeader> =
            SegmentTable::new(LittleEndian, elf::file::Class::ELF64, table).iter().collect();

        let mut segments: Vec<Segment> = Vec::new();
        let mut pt_phdr = None;
        let mut stack_exec = false;
        for ph in &phdrs {
            match ph.p_type {
                PT_INTERP => return Err(ElfError::NeedsInterpreter),
                PT_PHDR => pt_phdr = Some(ph.p_vaddr),
                PT_GNU_STACK => stack_exec = ph.p_flags & PF_X != 0,
                PT_LOAD => {
                    let seg = load_segment(ph, file_size.max(image.len() as u64))?;
                    if let Some(prev) = segments.last()
                        && seg.vaddr < prev.vaddr + prev.memsz
                    {
                        return Err(ElfError::BadSegment("PT_LOAD segments overlap or are unsorted"));
                    }
                    segments.push(seg);
                }
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(ElfError::NoLoadSegments);
        }

        let is_pie = ehdr.e_type == ET_DYN;
        if !is_pie && segments[0].page_start() < MMAP_MIN_ADDR {
            return Err(ElfError::BadSegment("segment below the lowest mappable address"));
        }
        let phdr_vaddr = pt_phdr.unwrap_or_else(|| {
            segments
                .iter()
                .find(|s| {
                    s.file_offset <= ehdr.e_phoff && ehdr.e_phoff + table_len <= s.file_offset + s.filesz
                })
                .map_or(0, |s| s.vaddr + (ehdr.e_phoff - s.file_offset))
        });
        Ok(Self {
            entry: ehdr.e_entry,
            segments,
            phdr_vaddr,
            phent: ehdr.e_phentsize,
            phnum: ehdr.e_phnum,
            is_pie,
            stack_exec,
        })
    }

    /// The bias the kernel should load this image with: for a static-PIE, what puts its
    /// lowest page at [`PIE_LOAD_BASE`]; 0 for a fixed-address executable.
    pub fn default_bias(&self) -> u64 {
        if self.is_pie { PIE_LOAD_BASE.saturating_sub(self.segments[0].page_start()) } else { 0 }
    }

    /// The plan moved up by `bias` bytes (for a static-PIE). `EINVAL` if `bias` is not
    /// page-aligned; `ENOMEM` if the moved image would leave `[MMAP_MIN_ADDR, USER_END)`.
    pub fn with_bias(&self, bias: u64) -> KResult<Self> {
        if !bias.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let last = self.segments.last().ok_or(Errno::EINVAL)?;
        let fits = last.page_end().checked_add(bias).is_some_and(|end| end <= USER_END)
            && self.segments[0].page_start() + bias >= MMAP_MIN_ADDR;
        if !fits {
            return Err(Errno::ENOMEM);
        }
        let moved = |addr: u64| if addr == 0 { 0 } else { addr + bias };
        Ok(Self {
            entry: self.entry.wrapping_add(bias),
            segments: self.segments.iter().map(|s| Segment { vaddr: s.vaddr + bias, ..*s }).collect(),
            phdr_vaddr: moved(self.phdr_vaddr),
            ..*self
        })
    }

    /// The end of the highest segment in memory (`vaddr + memsz`): the program break starts at
    /// this address rounded up to a page.
    pub fn end(&self) -> u64 {
        self.segments.last().map_or(0, |s| s.vaddr + s.memsz)
    }

    /// The auxiliary-vector entries that describe the image: `AT_PHDR`, `AT_PHENT`,
    /// `AT_PHNUM`, `AT_BASE` (0: no interpreter) and `AT_ENTRY`.
    pub fn auxv(&self) -> [(u64, u64); 5] {
        [
            (AT_PHDR, self.phdr_vaddr),
            (AT_PHENT, self.phent as u64),
            (AT_PHNUM, self.phnum as u64),
            (AT_BASE, 0),
            (AT_ENTRY, self.entry),
        ]
    }
}

/// `x` rounded up to a page (the caller guarantees no overflow).
const fn round_up(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// Checks the identification bytes and parses the file header.
fn parse_header(image: &[u8]) -> Result<FileHeader<LittleEndian>, ElfError> {
    if image.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(ElfError::NotElf);
    }
    let ident = image.get(..EHDR_SIZE).ok_or(ElfError::Malformed("file shorter than the ELF header"))?;
    if ident[elf::abi::EI_CLASS] != ELFCLASS64 {
        return Err(ElfError::Not64Bit);
    }
    if ident[elf::abi::EI_DATA] != ELFDATA2LSB {
        return Err(ElfError::NotLittleEndian);
    }
    let parsed = elf::file::parse_ident::<LittleEndian>(ident)
        .and_then(|id| FileHeader::parse_tail(id, &ident[elf::abi::EI_NIDENT..]))
        .map_err(|_| ElfError::Malformed("bad ELF identification or version"))?;
    if parsed.e_machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(parsed.e_machine));
    }
    if parsed.e_type != ET_EXEC && parsed.e_type != ET_DYN {
        return Err(ElfError::NotExecutable(parsed.e_type));
    }
    Ok(parsed)
}

/// Checks one `PT_LOAD` program header's geometry.
fn load_segment(ph: &ProgramHeader, image_len: u64) -> Result<Segment, ElfError> {
    if ph.p_filesz > ph.p_memsz {
        return Err(ElfError::BadSegment("filesz larger than memsz"));
    }
    if ph.p_offset.checked_add(ph.p_filesz).is_none_or(|end| end > image_len) {
        return Err(ElfError::BadSegment("file bytes past the end of the file"));
    }
    // USER_END is page-aligned, so an end at or below it rounds up without overflow.
    if ph.p_vaddr.checked_add(ph.p_memsz).is_none_or(|end| end > USER_END) {
        return Err(ElfError::BadSegment("segment outside the user address space"));
    }
    Ok(Segment {
        vaddr: ph.p_vaddr,
        memsz: ph.p_memsz,
        file_offset: ph.p_offset,
        filesz: ph.p_filesz,
        prot: Prot::from_flags(ph.p_flags),
    })
}

/// The interpreter line of a `#!` script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shebang {
    /// The interpreter's path.
    pub interp: Vec<u8>,
    /// The optional single argument (everything after the interpreter on the line, inner
    /// blanks kept).
    pub arg: Option<Vec<u8>>,
}

impl Shebang {
    /// The interpreter's argv for running `script` (the path given to `execve`) with the
    /// original argv `args`: `interp [arg] script args[1..]`.
    pub fn argv(&self, script: &[u8], args: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut argv = Vec::with_capacity(args.len() + 2);
        argv.push(self.interp.clone());
        argv.extend(self.arg.clone());
        argv.push(script.to_vec());
        argv.extend(args.iter().skip(1).map(|a| a.to_vec()));
        argv
    }
}

/// How much of a script Linux looks at for its `#!` line (`BINPRM_BUF_SIZE`).
pub const SHEBANG_MAX: usize = 256;

/// Recognises a `#!` script by Linux's rules: `None` if the image does not start with `#!`;
/// else the interpreter and optional argument from the first line, which must fit in the
/// first [`SHEBANG_MAX`] bytes. Blanks (space, tab) around them are trimmed; the interpreter
/// ends at a blank or NUL, the argument (inner blanks kept) at the end of the line or a NUL.
/// `ENOEXEC` if there is no interpreter, or if the line does not end within those bytes and
/// the interpreter's path may have been cut short there.
pub fn parse_shebang(image: &[u8]) -> Option<KResult<Shebang>> {
    image.starts_with(b"#!").then(|| shebang_line(image))
}

/// The work of [`parse_shebang`], on Linux's view of the file: its first [`SHEBANG_MAX`]
/// bytes, zero-padded, the last of them reserved for a terminating NUL.
fn shebang_line(image: &[u8]) -> KResult<Shebang> {
    let mut buf = [0u8; SHEBANG_MAX];
    let n = image.len().min(SHEBANG_MAX);
    buf[..n].copy_from_slice(&image[..n]);
    let last = SHEBANG_MAX - 1;
    let blank = |i: usize| buf[i] == b' ' || buf[i] == b'\t';
    let terminator = |i: usize| blank(i) || buf[i] == 0;

    let mut end = match buf.iter().position(|&c| c == b'\n') {
        Some(newline) => newline,
        None => {
            let name = (2..last).find(|&i| !blank(i)).ok_or(Errno::ENOEXEC)?;
            if !(name..last).any(terminator) {
                return Err(Errno::ENOEXEC);
            }
            last
        }
    };
    while end > 2 && blank(end - 1) {
        end -= 1;
    }
    let name = (2..end).find(|&i| !blank(i)).ok_or(Errno::ENOEXEC)?;
    let sep = (name..end).find(|&i| terminator(i));
    let interp = c_string(&buf[name..sep.unwrap_or(end)]);
    if interp.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    let arg = match sep {
        Some(sep) if buf[sep] != 0 => {
            (sep..end).find(|&i| !blank(i)).map(|a| c_string(&buf[a..end]).to_vec())
        }
        _ => None,
    };
    Ok(Shebang { interp: interp.to_vec(), arg })
}

/// `s` up to its first NUL, if any.
fn c_string(s: &[u8]) -> &[u8] {
    s.split(|&c| c == 0).next().unwrap_or(s)
}

/// End of the auxiliary vector.
pub const AT_NULL: u64 = 0;
/// Entry to ignore.
pub const AT_IGNORE: u64 = 1;
/// File descriptor of the program.
pub const AT_EXECFD: u64 = 2;
/// Address of the program headers.
pub const AT_PHDR: u64 = 3;
/// Size of one program header.
pub const AT_PHENT: u64 = 4;
/// Number of program headers.
pub const AT_PHNUM: u64 = 5;
/// Page size.
pub const AT_PAGESZ: u64 = 6;
/// Load address of the interpreter (0 without one).
pub const AT_BASE: u64 = 7;
/// Flags (0).
pub const AT_FLAGS: u64 = 8;
/// The program's entry point.
pub const AT_ENTRY: u64 = 9;
/// Set if the program is not ELF.
pub const AT_NOTELF: u64 = 10;
/// Real user id.
pub const AT_UID: u64 = 11;
/// Effective user id.
pub const AT_EUID: u64 = 12;
/// Real group id.
pub const AT_GID: u64 = 13;
/// Effective group id.
pub const AT_EGID: u64 = 14;
/// Address of the platform string (filled by [`build_initial_stack`]).
pub const AT_PLATFORM: u64 = 15;
/// CPU capability bits (CPUID 1 EDX on x86).
pub const AT_HWCAP: u64 = 16;
/// Clock ticks per second (`times`).
pub const AT_CLKTCK: u64 = 17;
/// Secure mode (setuid): 0 or 1.
pub const AT_SECURE: u64 = 23;
/// Address of the base platform string.
pub const AT_BASE_PLATFORM: u64 = 24;
/// Address of 16 random bytes (filled by [`build_initial_stack`]).
pub const AT_RANDOM: u64 = 25;
/// More CPU capability bits.
pub const AT_HWCAP2: u64 = 26;
/// Address of the executed file's name (filled by [`build_initial_stack`]).
pub const AT_EXECFN: u64 = 31;
/// Address of the vDSO.
pub const AT_SYSINFO_EHDR: u64 = 33;
/// Minimal signal stack size.
pub const AT_MINSIGSTKSZ: u64 = 51;

/// Longest single argument or environment string, NUL included (`MAX_ARG_STRLEN`).
pub const MAX_ARG_STRLEN: usize = 32 * PAGE_SIZE as usize;
/// Most bytes of argument and environment strings plus their pointers together: what Linux
/// allows with the default 8 MiB stack limit (a quarter of it), and what glibc's
/// `sysconf(_SC_ARG_MAX)` reports there.
pub const ARG_MAX: usize = 2 << 20;

/// The initial user stack: the bytes of `[sp, stack_top)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The memory image, `bytes[0]` at `sp`.
    pub bytes: Vec<u8>,
    /// The first `rsp`: points at argc, 16-byte aligned.
    pub sp: u64,
    /// Where the argument strings are (`/proc/PID/cmdline`).
    pub args: Range<u64>,
    /// Where the environment strings are (`/proc/PID/environ`).
    pub env: Range<u64>,
}

/// Lays out the initial stack below `stack_top` (16-byte aligned) as Linux does. From the
/// top down: 8 zero bytes, the `execfn` string, the environment strings, the argument
/// strings (`argv[0]` lowest), then after aligning to 16 the `platform` string and the 16
/// `random` bytes, then, ending 16-byte aligned at `sp`: argc, the argv pointers, NULL, the
/// envp pointers, NULL and the auxiliary vector.
///
/// The auxiliary vector is `auxv` in order plus the entries that point into the stack:
/// `AT_RANDOM`, `AT_EXECFN` and, if `platform` is not empty, `AT_PLATFORM`; the builder fills
/// their values (replacing the entry where `auxv` already has the key, else appending) and
/// ends the vector with `AT_NULL`. An empty argv gets one empty argument, as Linux does.
///
/// `E2BIG` if a string is longer than [`MAX_ARG_STRLEN`] or all strings plus pointers
/// exceed [`ARG_MAX`]; `EINVAL` if `stack_top` is not 16-byte aligned, too low for the
/// image, or `auxv` contains `AT_NULL`.
pub fn build_initial_stack(
    stack_top: u64,
    execfn: &[u8],
    args: &[&[u8]],
    envs: &[&[u8]],
    auxv: &[(u64, u64)],
    random: [u8; 16],
    platform: &[u8],
) -> KResult<InitialStack> {
    let empty: [&[u8]; 1] = [b""];
    let args = if args.is_empty() { &empty[..] } else { args };
    if !stack_top.is_multiple_of(16) || auxv.iter().any(|&(key, _)| key == AT_NULL) {
        return Err(Errno::EINVAL);
    }
    let mut total = 0usize;
    for s in args.iter().chain(envs).chain([&execfn]) {
        if s.len() >= MAX_ARG_STRLEN {
            return Err(Errno::E2BIG);
        }
        total += s.len() + 1 + 8;
    }
    if total > ARG_MAX || platform.len() >= MAX_ARG_STRLEN {
        return Err(Errno::E2BIG);
    }

    // Addresses, computed top-down as Linux does.
    let strings_len = |v: &[&[u8]]| v.iter().map(|s| s.len() as u64 + 1).sum::<u64>();
    let top = stack_top.checked_sub(8).ok_or(Errno::EINVAL)?;
    let execfn_at = top.checked_sub(execfn.len() as u64 + 1).ok_or(Errno::EINVAL)?;
    let env_start = execfn_at.checked_sub(strings_len(envs)).ok_or(Errno::EINVAL)?;
    let args_start = env_start.checked_sub(strings_len(args)).ok_or(Errno::EINVAL)?;
    let mut p = args_start & !15;
    let platform_at = if platform.is_empty() {
        None
    } else {
        p = p.checked_sub(platform.len() as u64 + 1).ok_or(Errno::EINVAL)?;
        Some(p)
    };
    let random_at = p.checked_sub(16).ok_or(Errno::EINVAL)?;

    let mut aux: Vec<(u64, u64)> = auxv.to_vec();
    let filled = [(AT_RANDOM, Some(random_at)), (AT_EXECFN, Some(execfn_at)), (AT_PLATFORM, platform_at)];
    for (key, value) in filled.into_iter().filter_map(|(k, v)| Some((k, v?))) {
        match aux.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => aux.push((key, value)),
        }
    }
    aux.push((AT_NULL, 0));

    let words = 1 + (args.len() + 1) + (envs.len() + 1) + 2 * aux.len();
    let sp = random_at.checked_sub(8 * words as u64).ok_or(Errno::EINVAL)? & !15;

    let mut bytes = alloc::vec![0u8; (stack_top - sp) as usize];
    let mut put = |addr: u64, data: &[u8]| {
        let at = (addr - sp) as usize;
        bytes[at..at + data.len()].copy_from_slice(data);
    };
    let mut table: Vec<u64> = Vec::with_capacity(words);
    table.push(args.len() as u64);
    let mut string_at = args_start;
    for list in [args, envs] {
        for s in list {
            table.push(string_at);
            put(string_at, s);
            string_at += s.len() as u64 + 1;
        }
        table.push(0);
    }
    table.extend(aux.iter().flat_map(|&(key, value)| [key, value]));
    put(execfn_at, execfn);
    if let Some(at) = platform_at {
        put(at, platform);
    }
    put(random_at, &random);
    for (i, word) in table.iter().enumerate() {
        put(sp + 8 * i as u64, &word.to_le_bytes());
    }

    Ok(InitialStack { bytes, sp, args: args_start..env_start, env: env_start..execfn_at })
}

#[cfg(test)]
mod tests;
