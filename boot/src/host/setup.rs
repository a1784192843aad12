//! Puts everything the first guest instruction needs into guest memory.

use super::elf::{KernelImage, LoadError};
use super::initrd::{self, InitrdError};
use super::paging::{self, PageTableError, SupervisorAccess};
use crate::abi::{
    BootInfo, FLAG_PVM_HOST, FLAG_PVM_MODE, PVM_VIF_FEATURE_CR2_CELL, PVM_VIF_FEATURES_USER_ROOT_FLIP,
};
use crate::layout::{
    BOOT_AREA_END, BOOT_INFO_GPA, BOOT_STACK_TOP, CMDLINE_GPA, CMDLINE_MAX, CONSOLE_GPA, CONSOLE_LEN,
    DIRECT_MAP_BASE, GDT_GPA, HIGH_RAM_GPA, IDT_GPA, MMIO_HOLE_GPA, PAGE_SIZE, PT_POOL_GPA, TSS_GPA, VIF_GPA,
    ram_ranges,
};
use crate::x86::{self, TSS_SIZE};
use crate::{MemoryKind, Span};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend};

// SAFETY: BootInfo is #[repr(C)], made only of integers and arrays of #[repr(C)] integer
// structs with no implicit padding (checked by the layout tests), so every byte pattern is a
// valid value and it may be copied to and from guest memory as bytes.
#[allow(unsafe_code)]
unsafe impl ByteValued for BootInfo {}

// SAFETY: PanicRecord is #[repr(C)] and made only of u64s: no padding, every byte pattern is
// a valid value.
#[allow(unsafe_code)]
unsafe impl ByteValued for crate::PanicRecord {}

/// Which execution mode the guest kernel will use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecutionMode {
    /// A ring-0 kernel: VMX/SVM hosts, or `pvm=off` on a PVM host (kernel-only work there).
    Native,
    /// PVM para-virtual mode: the guest registers its VIF page first thing.
    Pvm,
}

/// What kind of KVM the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// Hardware virtualisation (VMX or SVM).
    Hardware,
    /// `kvm_pvm`: CPL 0 is emulated until the guest registers a VIF page.
    Pvm,
}

/// Inputs to [`build_boot`] beyond memory and kernel.
#[derive(Clone, Debug)]
pub struct BootParams<'a> {
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Host kind, reported to the guest.
    pub host: HostKind,
    /// Execution mode the guest must use.
    pub mode: ExecutionMode,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// LAPIC timer input frequency in Hz.
    pub apic_bus_hz: u64,
    /// VMM start in the guest TSC time base.
    pub host_start_tsc: u64,
    /// VMM start, ns since the Unix epoch.
    pub host_start_unix_ns: u64,
    /// Reboots so far.
    pub boot_count: u32,
    /// Devices for the device table.
    pub devices: &'a [crate::DeviceEntry],
    /// Size of the initrd to make room for (0: none). [`build_boot`] places it and reserves
    /// its pages; the caller loads the bytes into [`BootInfo::initrd`] with
    /// [`initrd::load`].
    pub initrd_len: u64,
}

/// Why the boot setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The kernel image was refused.
    #[error(transparent)]
    Kernel(#[from] LoadError),
    /// The page tables could not be built.
    #[error(transparent)]
    PageTables(#[from] PageTableError),
    /// The initrd does not fit.
    #[error(transparent)]
    Initrd(#[from] InitrdError),
    /// The command line is too long.
    #[error("kernel command line is {0} bytes, longer than the {CMDLINE_MAX}-byte limit")]
    CmdlineTooLong(usize),
    /// Guest memory could not be written.
    #[error("writing boot structures to guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

/// The vCPU state for a direct 64-bit entry; the VMM copies it into KVM's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    /// Entry point (virtual).
    pub rip: u64,
    /// Initial stack pointer (identity-mapped boot stack).
    pub rsp: u64,
    /// First argument: physical address of the [`BootInfo`].
    pub rdi: u64,
    /// RFLAGS (interrupts off).
    pub rflags: u64,
    /// CR0: PG AM WP NE ET MP PE.
    pub cr0: u64,
    /// CR3: the boot PML4.
    pub cr3: u64,
    /// CR4: PAE PGE OSFXSR OSXMMEXCPT.
    pub cr4: u64,
    /// EFER: SCE LME LMA NXE.
    pub efer: u64,
    /// GDT base (direct-map virtual address).
    pub gdt_base: u64,
    /// GDT limit.
    pub gdt_limit: u16,
    /// IDT base (direct-map virtual address; the kernel fills the gates).
    pub idt_base: u64,
    /// IDT limit.
    pub idt_limit: u16,
    /// TSS base (direct-map virtual address).
    pub tss_base: u64,
    /// Kernel code selector.
    pub cs: u16,
    /// Kernel data selector (SS, DS, ES, FS, GS).
    pub ds: u16,
    /// TSS selector.
    pub tr: u16,
}

/// The result of [`build_boot`].
#[derive(Clone, Debug)]
pub struct BootSetup {
    /// vCPU state for the first instruction.
    pub entry: EntryState,
    /// The block written at [`BOOT_INFO_GPA`].
    pub boot_info: BootInfo,
}

/// Loads the kernel and writes all boot structures into `mem`.
pub fn build_boot<M: GuestMemoryBackend>(
    mem: &M,
    kernel: &[u8],
    params: &BootParams<'_>,
) -> Result<BootSetup, SetupError> {
    if params.cmdline.len() > CMDLINE_MAX {
        return Err(SetupError::CmdlineTooLong(params.cmdline.len()));
    }
    let image = KernelImage::parse(kernel)?;
    let low_ram_end = params.mem_bytes.min(MMIO_HOLE_GPA);
    image.load(mem, low_ram_end)?;
    let initrd = match params.initrd_len {
        0 => Span::default(),
        len => initrd::place(params.mem_bytes, image.phys, len)?,
    };

    let access = match params.mode {
        ExecutionMode::Native => SupervisorAccess::SupervisorOnly,
        ExecutionMode::Pvm => SupervisorAccess::UserBitSet,
    };
    let tables = paging::build(mem, params.mem_bytes, access)?;

    let w = |bytes: &[u8], gpa: u64| mem.write_slice(bytes, GuestAddress(gpa));
    let gdt: Vec<u8> = x86::gdt(DIRECT_MAP_BASE + TSS_GPA).iter().flat_map(|d| d.to_le_bytes()).collect();
    w(&gdt, GDT_GPA).map_err(SetupError::Write)?;
    let mut tss = [0u8; TSS_SIZE as usize];
    tss[4..12].copy_from_slice(&BOOT_STACK_TOP.to_le_bytes()); // RSP0
    tss[0x66..0x68].copy_from_slice(&(TSS_SIZE as u16).to_le_bytes()); // no I/O bitmap
    w(&tss, TSS_GPA).map_err(SetupError::Write)?;
    w(params.cmdline.as_bytes(), CMDLINE_GPA).map_err(SetupError::Write)?;

    let mut info = BootInfo::new();
    if params.host == HostKind::Pvm {
        info.flags |= FLAG_PVM_HOST;
    }
    if params.mode == ExecutionMode::Pvm {
        info.flags |= FLAG_PVM_MODE;
        info.pvm_vif_msr_value = VIF_GPA | PVM_VIF_FEATURE_CR2_CELL | PVM_VIF_FEATURES_USER_ROOT_FLIP;
    }
    info.host_start_tsc = params.host_start_tsc;
    info.host_start_unix_ns = params.host_start_unix_ns;
    info.tsc_khz = params.tsc_khz;
    info.apic_bus_hz = params.apic_bus_hz;
    info.mem_bytes = params.mem_bytes;
    info.boot_count = params.boot_count;
    info.vcpu_count = 1;
    info.cmdline = Span::new(CMDLINE_GPA, params.cmdline.len() as u64);
    info.console = Span::new(CONSOLE_GPA, CONSOLE_LEN);
    info.initrd = initrd;
    info.kernel = image.phys;
    info.page_tables = Span::new(PT_POOL_GPA, tables.pool_end_gpa - PT_POOL_GPA);
    info.pml4_gpa = tables.pml4_gpa;
    info.direct_map_base = DIRECT_MAP_BASE;
    info.direct_map_bytes = tables.mapped_bytes;
    fill_memory_map(&mut info, params.mem_bytes, image.phys, initrd);
    for (slot, dev) in info.devices.iter_mut().zip(params.devices) {
        *slot = *dev;
    }
    info.device_count = params.devices.len().min(crate::abi::MAX_DEVICES) as u32;
    mem.write_obj(info, GuestAddress(BOOT_INFO_GPA)).map_err(SetupError::Write)?;

    let entry = EntryState {
        rip: image.entry,
        rsp: BOOT_STACK_TOP,
        rdi: BOOT_INFO_GPA,
        rflags: 0x2,
        cr0: 0x8005_0033,
        cr3: tables.pml4_gpa,
        cr4: 0x6a0,
        efer: 0xd01,
        gdt_base: DIRECT_MAP_BASE + GDT_GPA,
        gdt_limit: (x86::GDT_ENTRIES * 8 - 1) as u16,
        idt_base: DIRECT_MAP_BASE + IDT_GPA,
        idt_limit: (256 * 16 - 1) as u16,
        tss_base: DIRECT_MAP_BASE + TSS_GPA,
        cs: x86::KERNEL_CS,
        ds: x86::KERNEL_DS,
        tr: x86::TSS_SEL,
    };
    Ok(BootSetup { entry, boot_info: info })
}

/// The physical memory map: null page, boot area, RAM around the kernel and the initrd (an
/// empty span when there is none; else at the top of low RAM), the MMIO hole.
fn fill_memory_map(info: &mut BootInfo, mem_bytes: u64, kernel: Span, initrd: Span) {
    let mut push = |span: Span, kind| {
        if !span.is_empty() {
            // The map has room for every region this function can produce.
            let pushed = info.push_memory_region(span, kind);
            debug_assert!(pushed);
        }
    };
    push(Span::new(0, PAGE_SIZE), MemoryKind::Reserved);
    push(Span::new(PAGE_SIZE, BOOT_AREA_END - PAGE_SIZE), MemoryKind::Boot);
    for (base, len) in ram_ranges(mem_bytes) {
        let end = base + len;
        if base == 0 {
            push(Span::new(BOOT_AREA_END, kernel.gpa - BOOT_AREA_END), MemoryKind::Usable);
            push(kernel, MemoryKind::Kernel);
            let initrd_pages = initrd::pages(initrd);
            let usable_end = if initrd.is_empty() { end } else { initrd_pages.gpa };
            push(Span::new(kernel.end(), usable_end.saturating_sub(kernel.end())), MemoryKind::Usable);
            push(initrd_pages, MemoryKind::Initrd);
        } else {
            push(Span::new(MMIO_HOLE_GPA, HIGH_RAM_GPA - MMIO_HOLE_GPA), MemoryKind::Mmio);
            push(Span::new(base, len), MemoryKind::Usable);
        }
    }
    if mem_bytes <= MMIO_HOLE_GPA {
        push(Span::new(MMIO_HOLE_GPA, HIGH_RAM_GPA - MMIO_HOLE_GPA), MemoryKind::Mmio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::elf::tests::tiny_kernel;
    use crate::host::test_util::guest_memory;
    use crate::layout::{GIB, KERNEL_VIRT_BASE};

    fn params(mem_bytes: u64, mode: ExecutionMode) -> BootParams<'static> {
        BootParams {
            mem_bytes,
            cmdline: "mem=64M console=early",
            host: HostKind::Pvm,
            mode,
            tsc_khz: 2_596_134,
            apic_bus_hz: 1_000_000_000,
            host_start_tsc: 42,
            host_start_unix_ns: 7,
            boot_count: 0,
            devices: &[],
            initrd_len: 0,
        }
    }

    #[test]
    fn writes_boot_info_cmdline_gdt_and_entry_state() {
        let mem = guest_memory(64 << 20);
        let img = tiny_kernel(&[0xf4], 0x1_0000);
        let setup = build_boot(&mem, &img, &params(64 << 20, ExecutionMode::Pvm)).unwrap();
        let info: BootInfo = mem.read_obj(GuestAddress(BOOT_INFO_GPA)).unwrap();
        assert_eq!(info.validate(), Ok(()));
        assert!(info.pvm_mode() && info.pvm_host());
        assert_eq!(
            info.pvm_vif_msr_value,
            VIF_GPA | PVM_VIF_FEATURE_CR2_CELL | PVM_VIF_FEATURES_USER_ROOT_FLIP
        );
        assert_eq!(info.host_start_tsc, 42);
        let mut cmdline = vec![0u8; info.cmdline.len as usize];
        mem.read_slice(&mut cmdline, GuestAddress(info.cmdline.gpa)).unwrap();
        assert_eq!(cmdline, b"mem=64M console=early");
        let cs: u64 = mem.read_obj(GuestAddress(GDT_GPA + x86::KERNEL_CS as u64)).unwrap();
        assert_eq!(cs, x86::DESC_KERNEL_CODE64);
        assert_eq!(setup.entry.rip, KERNEL_VIRT_BASE + 0x20_0000);
        assert_eq!(setup.entry.rdi, BOOT_INFO_GPA);
        assert_eq!(setup.entry.cr3 & 0x1fff, 0);
        let rsp0: u64 = mem.read_obj(GuestAddress(TSS_GPA + 4)).unwrap();
        assert_eq!(rsp0, BOOT_STACK_TOP);
    }

    #[test]
    fn native_mode_has_no_vif() {
        let mem = guest_memory(64 << 20);
        let img = tiny_kernel(&[0xf4], 0);
        let setup = build_boot(&mem, &img, &params(64 << 20, ExecutionMode::Native)).unwrap();
        assert!(!setup.boot_info.pvm_mode());
        assert_eq!(setup.boot_info.pvm_vif_msr_value, 0);
    }

    #[test]
    fn memory_map_is_sorted_disjoint_and_covers_ram() {
        for mem_bytes in [64u64 << 20, 5 * GIB] {
            let mut info = BootInfo::new();
            fill_memory_map(&mut info, mem_bytes, Span::new(0x20_0000, 0x10_0000), Span::default());
            let regions = info.memory_regions();
            for w in regions.windows(2) {
                assert!(w[0].span.end() <= w[1].span.gpa, "{w:?}");
            }
            let ram: u64 =
                regions.iter().filter(|r| r.kind != MemoryKind::Mmio as u32).map(|r| r.span.len).sum();
            assert_eq!(ram, mem_bytes, "every RAM byte is described once");
            let kernel = regions.iter().find(|r| r.kind == MemoryKind::Kernel as u32).unwrap();
            assert_eq!(kernel.span, Span::new(0x20_0000, 0x10_0000));
        }
    }

    #[test]
    fn overlong_cmdline_is_refused() {
        let mem = guest_memory(64 << 20);
        let long = "x".repeat(CMDLINE_MAX + 1);
        let mut p = params(64 << 20, ExecutionMode::Native);
        p.cmdline = &long;
        let err = build_boot(&mem, &tiny_kernel(&[0xf4], 0), &p).unwrap_err();
        assert!(matches!(err, SetupError::CmdlineTooLong(_)));
    }

    #[test]
    fn initrd_is_placed_reserved_and_announced() {
        for mem_bytes in [64u64 << 20, 5 * GIB] {
            let mem = guest_memory(mem_bytes.min(MMIO_HOLE_GPA));
            let mut p = params(mem_bytes, ExecutionMode::Pvm);
            p.initrd_len = (2 << 20) + 123;
            let setup = build_boot(&mem, &tiny_kernel(&[0xf4], 0x1_0000), &p).unwrap();
            let info: BootInfo = mem.read_obj(GuestAddress(BOOT_INFO_GPA)).unwrap();
            assert_eq!(info.initrd, setup.boot_info.initrd);
            let initrd = info.initrd;
            assert_eq!(initrd.len, (2 << 20) + 123, "the exact size");
            assert_eq!(initrd.gpa % PAGE_SIZE, 0);
            let regions = info.memory_regions();
            for w in regions.windows(2) {
                assert!(w[0].span.end() <= w[1].span.gpa, "sorted and disjoint: {w:?}");
            }
            let entries: Vec<_> =
                regions.iter().filter(|r| r.kind == MemoryKind::Initrd as u32).map(|r| r.span).collect();
            assert_eq!(entries, [initrd::pages(initrd)], "one Initrd entry covering its pages");
            assert_eq!(entries[0].end(), mem_bytes.min(MMIO_HOLE_GPA), "at the top of low RAM");
            for r in regions.iter().filter(|r| r.kind != MemoryKind::Initrd as u32) {
                let overlap = r.span.gpa < entries[0].end() && entries[0].gpa < r.span.end();
                assert!(!overlap, "{r:?} overlaps the initrd");
            }
            for other in [info.kernel, info.page_tables, info.cmdline, info.console] {
                assert!(other.end() <= initrd.gpa, "{other:?} overlaps the initrd");
            }
            let ram: u64 =
                regions.iter().filter(|r| r.kind != MemoryKind::Mmio as u32).map(|r| r.span.len).sum();
            assert_eq!(ram, mem_bytes, "every RAM byte is described once");
        }
    }

    #[test]
    fn no_initrd_leaves_the_span_empty_and_the_map_without_one() {
        let mem = guest_memory(64 << 20);
        let setup =
            build_boot(&mem, &tiny_kernel(&[0xf4], 0), &params(64 << 20, ExecutionMode::Native)).unwrap();
        assert!(setup.boot_info.initrd.is_empty());
        assert!(setup.boot_info.memory_regions().iter().all(|r| r.kind != MemoryKind::Initrd as u32));
    }

    #[test]
    fn an_initrd_too_large_for_ram_is_refused() {
        let mem = guest_memory(64 << 20);
        let mut p = params(64 << 20, ExecutionMode::Native);
        p.initrd_len = 60 << 20;
        let err = build_boot(&mem, &tiny_kernel(&[0xf4], 0), &p).unwrap_err();
        assert!(matches!(err, SetupError::Initrd(InitrdError::NeedsMoreMemory { .. })), "{err:?}");
    }
}
