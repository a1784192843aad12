//! Guest physical and virtual memory layout.
//!
//! Physical (what the VMM writes before the first instruction):
//!
//! | range | what |
//! |---|---|
//! | `0x0000..0x1000` | null page, reserved |
//! | `0x1000` | [`crate::BootInfo`] |
//! | `0x2000` | kernel command line (up to [`CMDLINE_MAX`] bytes) |
//! | `0x3000` | boot GDT |
//! | `0x4000` | boot TSS |
//! | `0x5000` | PVM VIF page |
//! | `0x6000` | early-console buffer ([`CONSOLE_LEN`] bytes) |
//! | `0x7000..0x8000` | boot stack (the kernel switches to its own at once) |
//! | `0x8000` | boot PML4 (8 KiB aligned: CR3 bit 12 must be clear on PVM hosts) |
//! | `0x9000` | IDT (256 gates; the kernel fills it in place) |
//! | `0xa000` | control mailbox (management-console requests to the guest) |
//! | `0xb000..0x100000` | page-table pool (PDPTs, PDs) |
//! | `0x200000..` | kernel image (ELF `p_paddr`) |
//! | `..min(RAM, 0xC000_0000)` | initrd, if any: page aligned, ending at the top of low RAM (`host::initrd`) |
//! | `0xC000_0000..0x1_0000_0000` | MMIO hole (IOAPIC at `0xFEC0_0000`, devices) |
//! | `0x1_0000_0000..` | RAM beyond 3 GiB |
//!
//! The VMM loads GDTR, IDTR and TR with the direct-map addresses of the GDT, IDT and TSS, so
//! the kernel never has to execute `lgdt`/`lidt`/`ltr` (privileged instructions that trap on
//! PVM hosts); it fills the IDT and TSS in place.
//!
//! Virtual: the boot page tables map physical memory three times with the same page
//! directories: identity at 0 (only for the first instructions; the kernel drops it), the
//! direct map at [`DIRECT_MAP_BASE`], and the kernel image window at [`KERNEL_VIRT_BASE`]
//! (physical 0..1 GiB, where the kernel is linked with the `kernel` code model).

/// Size of a small page.
pub const PAGE_SIZE: u64 = 4096;
/// Size of a large (2 MiB) page.
pub const LARGE_PAGE_SIZE: u64 = 2 << 20;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// Guest physical address of the [`crate::BootInfo`] block.
pub const BOOT_INFO_GPA: u64 = 0x1000;
/// Guest physical address of the kernel command line.
pub const CMDLINE_GPA: u64 = 0x2000;
/// Longest command line, in bytes.
pub const CMDLINE_MAX: usize = 4096;
/// Guest physical address of the boot GDT.
pub const GDT_GPA: u64 = 0x3000;
/// Guest physical address of the boot TSS.
pub const TSS_GPA: u64 = 0x4000;
/// Guest physical address of the PVM VIF page.
pub const VIF_GPA: u64 = 0x5000;
/// Guest physical address of the early-console buffer.
pub const CONSOLE_GPA: u64 = 0x6000;
/// Size of the early-console buffer.
pub const CONSOLE_LEN: u64 = 0x1000;
/// Initial stack pointer (top of the boot stack page).
pub const BOOT_STACK_TOP: u64 = 0x8000;
/// Boot PML4 (8 KiB aligned).
pub const PML4_GPA: u64 = 0x8000;
/// Guest physical address of the IDT page.
pub const IDT_GPA: u64 = 0x9000;
/// The control mailbox: the VMM writes a management request, the guest its reply.
pub const CONTROL_GPA: u64 = 0xa000;
/// Interrupt line that tells the guest a control request is waiting.
pub const CONTROL_GSI: u32 = 6;
/// Start of the page-table pool.
pub const PT_POOL_GPA: u64 = 0xb000;
/// End of the page-table pool (exclusive).
pub const PT_POOL_END: u64 = 0x10_0000;
/// End of the low boot area; everything below is [`crate::MemoryKind::Boot`] or reserved.
pub const BOOT_AREA_END: u64 = PT_POOL_END;
/// Lowest physical address a kernel segment may be loaded at.
pub const KERNEL_MIN_GPA: u64 = 0x20_0000;
/// Start of the MMIO hole; RAM above this moves to [`HIGH_RAM_GPA`].
pub const MMIO_HOLE_GPA: u64 = 0xC000_0000;
/// Where RAM continues above the MMIO hole.
pub const HIGH_RAM_GPA: u64 = 0x1_0000_0000;
/// First device MMIO window (virtio-mmio, 4 KiB each, in the MMIO hole).
pub const DEVICE_MMIO_BASE: u64 = 0xD000_0000;
/// Size of each device's MMIO window.
pub const DEVICE_MMIO_LEN: u64 = 0x1000;
/// First interrupt line (IOAPIC pin) for devices; pins below are left to legacy uses and
/// the kernel's self-test (pin 5).
pub const FIRST_DEVICE_GSI: u32 = 8;
/// Interrupt lines (IOAPIC pins) in all.
pub const GSI_COUNT: u32 = 24;
/// The in-kernel IOAPIC's MMIO base.
pub const IOAPIC_GPA: u64 = 0xFEC0_0000;

/// Virtual base of the direct map of all physical memory (Linux's `page_offset_base`).
pub const DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;
/// Virtual base of the kernel image window: virtual `KERNEL_VIRT_BASE + p` maps physical `p`.
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;
/// Size of the kernel image window.
pub const KERNEL_WINDOW: u64 = GIB;

/// Smallest guest RAM umlvm accepts.
pub const MIN_MEM_BYTES: u64 = 16 << 20;
/// Largest guest RAM umlvm accepts (bounded by the page-table pool).
pub const MAX_MEM_BYTES: u64 = 128 * GIB;

/// The guest-physical RAM ranges for `mem_bytes` of RAM: below the MMIO hole, then above 4 GiB.
pub fn ram_ranges(mem_bytes: u64) -> impl Iterator<Item = (u64, u64)> {
    let low = mem_bytes.min(MMIO_HOLE_GPA);
    let high = mem_bytes - low;
    [(0, low), (HIGH_RAM_GPA, high)].into_iter().filter(|&(_, len)| len > 0)
}

/// One past the highest guest-physical RAM address for `mem_bytes` of RAM.
pub fn ram_top(mem_bytes: u64) -> u64 {
    ram_ranges(mem_bytes).map(|(base, len)| base + len).max().unwrap_or(0)
}

// The layout's invariants, checked at compile time.
const _: () = {
    assert!(CONSOLE_GPA + CONSOLE_LEN <= BOOT_STACK_TOP - PAGE_SIZE);
    assert!(PML4_GPA & 0x1fff == 0, "PML4 must be 8 KiB aligned (PVM: CR3 bit 12 clear)");
    assert!(PML4_GPA + PAGE_SIZE <= IDT_GPA);
    assert!(IDT_GPA + PAGE_SIZE <= CONTROL_GPA);
    assert!(CONTROL_GPA + PAGE_SIZE <= PT_POOL_GPA);
    assert!(PT_POOL_END <= KERNEL_MIN_GPA);
    assert!(IOAPIC_GPA >= MMIO_HOLE_GPA && IOAPIC_GPA < HIGH_RAM_GPA);
    assert!(DEVICE_MMIO_BASE >= MMIO_HOLE_GPA);
    assert!(DEVICE_MMIO_BASE + 32 * DEVICE_MMIO_LEN <= IOAPIC_GPA);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_ram_is_one_range() {
        assert!(ram_ranges(64 << 20).eq([(0, 64 << 20)]));
        assert_eq!(ram_top(64 << 20), 64 << 20);
    }

    #[test]
    fn large_ram_skips_the_mmio_hole() {
        let mem = 5 * GIB;
        assert!(ram_ranges(mem).eq([(0, 3 * GIB), (4 * GIB, 2 * GIB)]));
        assert_eq!(ram_top(mem), 6 * GIB);
    }

    #[test]
    fn boot_structures_do_not_overlap() {
        let pages = [BOOT_INFO_GPA, CMDLINE_GPA, GDT_GPA, TSS_GPA, VIF_GPA, CONSOLE_GPA];
        for w in pages.windows(2) {
            assert!(w[0] + PAGE_SIZE <= w[1]);
        }
    }
}
