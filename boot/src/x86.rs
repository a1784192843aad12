//! x86 descriptor-table constants shared by the VMM's boot GDT and the guest kernel's GDT.
//!
//! The selector layout follows Linux's (`__KERNEL_CS` = 0x10, `__USER_CS` = 0x33), which is
//! what PVM hosts were observed to work with; `syscall`/`sysret` need the user selectors in
//! this order.

/// Kernel 64-bit code segment selector.
pub const KERNEL_CS: u16 = 0x10;
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = 0x18;
/// User 32-bit code segment (the base `sysret` computes from, unused otherwise).
pub const USER32_CS: u16 = 0x23;
/// User data segment selector (RPL 3).
pub const USER_DS: u16 = 0x2b;
/// User 64-bit code segment selector (RPL 3).
pub const USER_CS: u16 = 0x33;
/// Task state segment selector (a 16-byte system descriptor).
pub const TSS_SEL: u16 = 0x38;
/// Number of 8-byte GDT slots (the TSS takes two).
pub const GDT_ENTRIES: usize = 9;

/// GDT descriptor: 64-bit kernel code (P, DPL0, S, code exec/read, L).
pub const DESC_KERNEL_CODE64: u64 = 0x00af_9b00_0000_ffff;
/// GDT descriptor: kernel data (P, DPL0, S, data read/write).
pub const DESC_KERNEL_DATA: u64 = 0x00cf_9300_0000_ffff;
/// GDT descriptor: 32-bit user code (P, DPL3).
pub const DESC_USER_CODE32: u64 = 0x00cf_fb00_0000_ffff;
/// GDT descriptor: user data (P, DPL3).
pub const DESC_USER_DATA: u64 = 0x00cf_f300_0000_ffff;
/// GDT descriptor: 64-bit user code (P, DPL3, L).
pub const DESC_USER_CODE64: u64 = 0x00af_fb00_0000_ffff;

/// Size of a 64-bit TSS (limit + 1).
pub const TSS_SIZE: u64 = 0x68;

/// The two GDT slots of an available 64-bit TSS at `base` with limit `TSS_SIZE - 1`.
pub const fn tss_descriptor(base: u64) -> [u64; 2] {
    let limit = TSS_SIZE - 1;
    let low = (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (0x89 << 40)
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [low, base >> 32]
}

/// The full GDT both sides use, with the TSS at `tss_base`.
pub const fn gdt(tss_base: u64) -> [u64; GDT_ENTRIES] {
    let tss = tss_descriptor(tss_base);
    [
        0,
        0,
        DESC_KERNEL_CODE64,
        DESC_KERNEL_DATA,
        DESC_USER_CODE32,
        DESC_USER_DATA,
        DESC_USER_CODE64,
        tss[0],
        tss[1],
    ]
}

/// Page-table entry bits.
pub mod pte {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub const WRITABLE: u64 = 1 << 1;
    /// User-accessible (required on supervisor mappings in PVM mode).
    pub const USER: u64 = 1 << 2;
    /// Write-through.
    pub const PWT: u64 = 1 << 3;
    /// Cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const ACCESSED: u64 = 1 << 5;
    /// Dirty.
    pub const DIRTY: u64 = 1 << 6;
    /// Large page (2 MiB in a PD entry, 1 GiB in a PDPT entry).
    pub const HUGE: u64 = 1 << 7;
    /// Global.
    pub const GLOBAL: u64 = 1 << 8;
    /// No-execute.
    pub const NX: u64 = 1 << 63;
    /// Physical-address bits of an entry.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_descriptor_slots() {
        let g = gdt(0x1234_5678_9abc);
        assert_eq!(g[(KERNEL_CS >> 3) as usize], DESC_KERNEL_CODE64);
        assert_eq!(g[(KERNEL_DS >> 3) as usize], DESC_KERNEL_DATA);
        assert_eq!(g[(USER_DS >> 3) as usize], DESC_USER_DATA);
        assert_eq!(g[(USER_CS >> 3) as usize], DESC_USER_CODE64);
        // sysret: CS = STAR[63:48] + 16, SS = STAR[63:48] + 8, with STAR[63:48] = USER32_CS.
        assert_eq!(USER32_CS + 16, USER_CS);
        assert_eq!(USER32_CS + 8, USER_DS);
    }

    #[test]
    fn tss_descriptor_encodes_base_limit_type() {
        let [lo, hi] = tss_descriptor(0xffff_8880_1234_5678);
        assert_eq!(lo & 0xffff, TSS_SIZE - 1);
        assert_eq!((lo >> 16) & 0xff_ffff, 0x34_5678);
        assert_eq!((lo >> 56) & 0xff, 0x12);
        assert_eq!((lo >> 40) & 0xff, 0x89, "present, DPL0, available 64-bit TSS");
        assert_eq!(hi, 0xffff_8880);
    }
}
