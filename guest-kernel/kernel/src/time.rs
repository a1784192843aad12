//! Time: a monotonic clock from the TSC (frequency from the VMM), and the periodic tick.

use crate::arch::{apic, cpu, mode};
use crate::irq::TIMER_VECTOR;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use umlvm_boot::BootInfo;
use umlvm_kcore::cmdline::Cmdline;
use umlvm_kcore::time::TscClock;

static UNIX_AT_ORIGIN: AtomicU64 = AtomicU64::new(0);
/// Adjustment of the wall clock set by `settimeofday`/`clock_settime` (ns, signed).
static WALL_OFFSET: core::sync::atomic::AtomicI64 = core::sync::atomic::AtomicI64::new(0);

/// Wall-clock time: nanoseconds since the Unix epoch (the VMM's clock at start, advanced by
/// the TSC).
pub fn unix_ns() -> u64 {
    let base = UNIX_AT_ORIGIN.load(Ordering::Relaxed) + now_ns();
    base.saturating_add_signed(WALL_OFFSET.load(Ordering::Relaxed))
}

/// TSC frequency in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static ORIGIN_TSC: AtomicU64 = AtomicU64::new(0);
static APIC_BUS_HZ: AtomicU64 = AtomicU64::new(1_000_000_000);
static TICKS: AtomicU64 = AtomicU64::new(0);
static ONE_SHOT_FIRED: AtomicBool = AtomicBool::new(false);
static PERIODIC_HZ: AtomicU64 = AtomicU64::new(0);

/// Default tick rate.
pub const DEFAULT_HZ: u64 = 100;

fn clock() -> TscClock {
    TscClock { tsc_khz: TSC_KHZ.load(Ordering::Relaxed), origin: ORIGIN_TSC.load(Ordering::Relaxed) }
}

/// Sets the clock up; returns nanoseconds from VMM start to `entry_tsc` (kernel main).
pub fn init(info: &BootInfo, entry_tsc: u64) -> u64 {
    UNIX_AT_ORIGIN.store(info.host_start_unix_ns, Ordering::Relaxed);
    TSC_KHZ.store(info.tsc_khz, Ordering::Relaxed);
    ORIGIN_TSC.store(info.host_start_tsc, Ordering::Relaxed);
    if info.apic_bus_hz != 0 {
        APIC_BUS_HZ.store(info.apic_bus_hz, Ordering::Relaxed);
    }
    clock().ns_at(entry_tsc)
}

/// Nanoseconds since the VMM started.
pub fn now_ns() -> u64 {
    clock().ns_at(cpu::rdtsc())
}

/// Nanoseconds for `ticks` TSC ticks.
pub fn tsc_to_ns(ticks: u64) -> u64 {
    umlvm_kcore::time::ticks_to_ns(ticks, TSC_KHZ.load(Ordering::Relaxed))
}

/// TSC ticks for `ns` nanoseconds.
pub fn ns_to_tsc(ns: u64) -> u64 {
    umlvm_kcore::time::ns_to_ticks(ns, TSC_KHZ.load(Ordering::Relaxed))
}

fn bus_ticks(ns: u64) -> u32 {
    let hz = APIC_BUS_HZ.load(Ordering::Relaxed);
    ((ns as u128 * hz as u128) / 1_000_000_000).clamp(1, u32::MAX as u128) as u32
}

/// Timer interrupt.
pub fn on_timer_interrupt() {
    if PERIODIC_HZ.load(Ordering::Relaxed) != 0 {
        TICKS.fetch_add(1, Ordering::Relaxed);
        if crate::process::sched::started() {
            crate::process::sched::on_tick();
        }
    } else {
        ONE_SHOT_FIRED.store(true, Ordering::Relaxed);
    }
}

/// Ticks since the periodic timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Starts the periodic tick at `hz`.
pub fn start_periodic(hz: u64) {
    let hz = hz.clamp(1, 10_000);
    PERIODIC_HZ.store(hz, Ordering::Relaxed);
    apic::start_timer(TIMER_VECTOR, bus_ticks(1_000_000_000 / hz), apic::TimerMode::Periodic);
}

/// Stops the periodic tick.
pub fn stop_periodic() {
    apic::stop_timer();
    PERIODIC_HZ.store(0, Ordering::Relaxed);
}

/// Sleeps (halted, interrupts enabled only while waiting) until `now_ns() >= deadline_ns`.
/// Uses the periodic tick when it runs, else a one-shot timer.
pub fn sleep_until(deadline_ns: u64) {
    while now_ns() < deadline_ns {
        wait_interrupt_until(deadline_ns);
    }
}

/// Waits for one interrupt, or until `deadline_ns` at the latest (device polling).
pub fn wait_interrupt_until(deadline_ns: u64) {
    let now = now_ns();
    if now >= deadline_ns {
        return;
    }
    if PERIODIC_HZ.load(Ordering::Relaxed) == 0 {
        ONE_SHOT_FIRED.store(false, Ordering::Relaxed);
        apic::start_timer(TIMER_VECTOR, bus_ticks(deadline_ns - now), apic::TimerMode::OneShot);
    }
    mode::wait_for_interrupt();
}

/// Whether the last one-shot timer fired.
pub fn one_shot_fired() -> bool {
    ONE_SHOT_FIRED.load(Ordering::Relaxed)
}

/// `ticks=MS`: runs the periodic tick for MS milliseconds (halted) and reports the count.
pub fn report_ticks(ms: u64, cmdline: &Cmdline<'_>) {
    let hz = match cmdline.get_u64("hz") {
        Some(Ok(hz)) if (1..=10_000).contains(&hz) => hz,
        _ => DEFAULT_HZ,
    };
    let before = ticks();
    let t0 = now_ns();
    start_periodic(hz);
    sleep_until(t0 + ms * 1_000_000);
    stop_periodic();
    let elapsed_us = (now_ns() - t0) / 1000;
    let n = ticks() - before;
    log::info!("timer: {n} ticks in {elapsed_us} us at {hz} Hz (expected {})", elapsed_us * hz / 1_000_000);
}
