//! Interrupt vectors, the local APIC and IOAPIC set-up, and interrupt dispatch.

use crate::arch::{apic, ioapic};
use core::sync::atomic::{AtomicU64, Ordering};
use umlvm_boot::BootInfo;

/// The APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x30;
/// First vector for IOAPIC pins (pin N arrives on `IOAPIC_VECTOR_BASE + N`).
pub const IOAPIC_VECTOR_BASE: u8 = 0x40;
/// IOAPIC pins the kernel can route.
pub const IOAPIC_PINS: u8 = 24;
/// Self-test IPI vector.
pub const TEST_IPI_VECTOR: u8 = 0xf0;

static IPI_COUNT: AtomicU64 = AtomicU64::new(0);
static PIN_COUNTS: [AtomicU64; IOAPIC_PINS as usize] = [const { AtomicU64::new(0) }; IOAPIC_PINS as usize];
static UNEXPECTED: AtomicU64 = AtomicU64::new(0);

/// Vectors with gates in the IDT (besides the exceptions).
pub fn vectors() -> impl Iterator<Item = u8> {
    [TIMER_VECTOR, TEST_IPI_VECTOR, apic::SPURIOUS_VECTOR]
        .into_iter()
        .chain(IOAPIC_VECTOR_BASE..IOAPIC_VECTOR_BASE + IOAPIC_PINS)
}

/// Masks the PIC, enables the x2APIC, masks every IOAPIC pin.
pub fn init(_info: &BootInfo) {
    let apic_id = apic::init();
    let pins = ioapic::pin_count().min(u32::from(IOAPIC_PINS));
    for pin in 0..pins {
        ioapic::mask(pin);
    }
    log::info!("interrupts: x2APIC id {apic_id}, IOAPIC with {pins} pins");
}

/// Routes IOAPIC `pin` to its vector on this CPU.
pub fn route_pin(pin: u8, trigger: ioapic::Trigger) {
    ioapic::route(u32::from(pin), IOAPIC_VECTOR_BASE + pin, trigger, 0);
}

/// Interrupts seen on IOAPIC `pin`.
pub fn pin_count(pin: u8) -> u64 {
    PIN_COUNTS.get(usize::from(pin)).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Self-test IPIs received.
pub fn ipi_count() -> u64 {
    IPI_COUNT.load(Ordering::Relaxed)
}

/// Handles interrupt `vector` (>= 32).
pub fn handle(vector: u8) {
    match vector {
        apic::SPURIOUS_VECTOR => return, // no EOI for spurious interrupts
        TIMER_VECTOR => crate::time::on_timer_interrupt(),
        TEST_IPI_VECTOR => {
            IPI_COUNT.fetch_add(1, Ordering::Relaxed);
        }
        v if v == IOAPIC_VECTOR_BASE + umlvm_boot::layout::CONTROL_GSI as u8 => {
            // EOI first: the request may end in a reboot or power-off.
            apic::eoi();
            crate::mgmt::on_interrupt();
            return;
        }
        v if (IOAPIC_VECTOR_BASE..IOAPIC_VECTOR_BASE + IOAPIC_PINS).contains(&v) => {
            PIN_COUNTS[usize::from(v - IOAPIC_VECTOR_BASE)].fetch_add(1, Ordering::Relaxed);
            apic::eoi();
            // Console input: into the line discipline, waking readers.
            crate::tty::pump();
            return;
        }
        _ => {
            UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    apic::eoi();
}
