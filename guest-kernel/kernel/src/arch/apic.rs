//! The local APIC in x2APIC mode (MSR interface), the 8259 PIC (masked), and the APIC timer.

use super::cpu::{outb, rdmsr};
use super::mode::write_msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_ID: u32 = 0x802;
const X2APIC_EOI: u32 = 0x80b;
const X2APIC_SVR: u32 = 0x80f;
const X2APIC_LVT_TIMER: u32 = 0x832;
const X2APIC_LVT_LINT0: u32 = 0x835;
const X2APIC_LVT_LINT1: u32 = 0x836;
const X2APIC_TIMER_INIT: u32 = 0x838;
const X2APIC_TIMER_DIV: u32 = 0x83e;
const X2APIC_SELF_IPI: u32 = 0x83f;
const LVT_MASKED: u64 = 1 << 16;
const LVT_PERIODIC: u64 = 1 << 17;
const SVR_ENABLE: u64 = 1 << 8;

/// The spurious-interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Masks the legacy 8259 PICs (KVM starts them unmasked with LINT0 in ExtINT mode) and
/// enables the local APIC in x2APIC mode. Returns the APIC ID.
pub fn init() -> u32 {
    // SAFETY: writing 0xff to the PIC data ports masks every legacy line; nothing else.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
    // SAFETY: IA32_APIC_BASE exists on every x86-64 CPU; setting EN and EXTD enables the
    // x2APIC without moving anything in memory. The LVT/SVR writes only configure the APIC.
    unsafe {
        let base = rdmsr(IA32_APIC_BASE);
        write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        write_msr(X2APIC_LVT_LINT0, LVT_MASKED);
        write_msr(X2APIC_LVT_LINT1, LVT_MASKED);
        write_msr(X2APIC_LVT_TIMER, LVT_MASKED);
        write_msr(X2APIC_SVR, SVR_ENABLE | u64::from(SPURIOUS_VECTOR));
        rdmsr(X2APIC_ID) as u32
    }
}

/// How the APIC timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerMode {
    /// Once after the count.
    OneShot,
    /// Every count.
    Periodic,
}

/// Starts the APIC timer on `vector` with `count` bus ticks (divide by 1).
pub fn start_timer(vector: u8, count: u32, mode: TimerMode) {
    let periodic = if mode == TimerMode::Periodic { LVT_PERIODIC } else { 0 };
    // SAFETY: timer configuration registers of the x2APIC enabled by `init`.
    unsafe {
        write_msr(X2APIC_TIMER_DIV, 0b1011);
        write_msr(X2APIC_LVT_TIMER, u64::from(vector) | periodic);
        write_msr(X2APIC_TIMER_INIT, u64::from(count.max(1)));
    }
}

/// Stops the APIC timer.
pub fn stop_timer() {
    // SAFETY: masks the timer LVT and clears its count.
    unsafe {
        write_msr(X2APIC_LVT_TIMER, LVT_MASKED);
        write_msr(X2APIC_TIMER_INIT, 0);
    }
}

/// Sends `vector` to this CPU.
pub fn self_ipi(vector: u8) {
    // SAFETY: the x2APIC SELF IPI register only raises an interrupt.
    unsafe { write_msr(X2APIC_SELF_IPI, u64::from(vector)) };
}

/// Signals end of interrupt.
pub fn eoi() {
    // SAFETY: the x2APIC EOI register only retires the in-service interrupt.
    unsafe { write_msr(X2APIC_EOI, 0) };
}
