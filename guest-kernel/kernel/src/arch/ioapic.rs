//! The IOAPIC (KVM's in-kernel one at 0xFEC0_0000): routes device interrupt lines (GSIs)
//! to local APIC vectors.

use super::memory::{mmio_read32, mmio_write32};
use umlvm_boot::layout::IOAPIC_GPA;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;

/// How a line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge triggered.
    Edge,
    /// Level triggered, active high.
    Level,
}

fn read(reg: u32) -> u32 {
    // SAFETY: IOREGSEL/IOWIN of the in-kernel IOAPIC in the uncached MMIO hole; selecting and
    // reading a register has no memory-safety effect.
    unsafe {
        mmio_write32(IOAPIC_GPA + IOREGSEL, reg);
        mmio_read32(IOAPIC_GPA + IOWIN)
    }
}

fn write(reg: u32, value: u32) {
    // SAFETY: as in `read`; redirection entries only steer interrupts.
    unsafe {
        mmio_write32(IOAPIC_GPA + IOREGSEL, reg);
        mmio_write32(IOAPIC_GPA + IOWIN, value);
    }
}

/// Number of redirection entries.
pub fn pin_count() -> u32 {
    ((read(REG_VERSION) >> 16) & 0xff) + 1
}

/// Routes `pin` to `vector` on APIC `dest`, unmasked.
pub fn route(pin: u32, vector: u8, trigger: Trigger, dest: u32) {
    let level = if trigger == Trigger::Level { RTE_LEVEL } else { 0 };
    let rte = u64::from(vector) | level | (u64::from(dest) << 56);
    write(0x11 + 2 * pin, (rte >> 32) as u32);
    write(0x10 + 2 * pin, rte as u32);
}

/// Masks `pin`.
pub fn mask(pin: u32) {
    write(0x10 + 2 * pin, RTE_MASKED as u32);
}
