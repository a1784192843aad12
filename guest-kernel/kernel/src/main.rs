//! umlvm's para-virtual guest kernel.
//!
//! Entered by the VMM directly in 64-bit mode (see `umlvm_boot`), it brings up traps, memory,
//! interrupts and a clock, runs its self-checks and powers off. All `unsafe` code lives in
//! [`arch`]; everything else is safe Rust.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

#[allow(unsafe_code, reason = "the hardware layer: every unsafe block carries a SAFETY comment")]
mod arch;
mod console;
mod dev;
mod fs;
mod init;
mod irq;
mod logger;
mod mgmt;
mod mm;
mod panic;
mod process;
mod selftest;
mod syscall;
mod sysinfo;
mod time;
mod trap;
mod tty;

use arch::BootEntry;
use dev::block;
use process::sched;
use umlvm_kcore::cmdline::Cmdline;

/// The kernel's version, printed in the banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The kernel's entry points for the hardware layer.
static HOOKS: arch::hooks::KernelHooks = arch::hooks::KernelHooks {
    kernel_trap: trap::dispatch,
    user_trap: sched::on_user_trap,
    first_entry: sched::on_first_entry,
    dma_alloc: mm::alloc_contiguous,
    dma_free: mm::free_frame,
    now_ns: time::now_ns,
    wait_interrupt_until: time::wait_interrupt_until,
};

/// The machine-independent kernel main, called by the entry code.
pub fn kmain(entry: BootEntry) -> ! {
    arch::hooks::install(&HOOKS);
    let info = entry.boot_info;
    let main_ns = time::init(info, entry.entry_tsc);
    console::init(info);
    if let Err(e) = info.validate() {
        kprintln!("umlvm-kernel: refusing boot information: {e}");
        arch::pv::power_off(crate::EXIT_BAD_BOOT_INFO);
    }
    let cmdline_text = mm::cmdline(info);
    let cmdline = Cmdline::new(cmdline_text);
    logger::init(&cmdline);
    let verbose = logger::verbose();
    let mode = arch::mode::current();
    if cmdline.get("pvm_flip") == Some("off") {
        arch::mode::disable_host_cr3_flip();
    }
    let host = if arch::mode::pvm_host() { "kvm_pvm host" } else { "hardware-virtualisation host" };
    if verbose {
        kprintln!("umlvm-kernel {VERSION} ({} mode on a {host})", mode.name());
    }
    if verbose && mode == arch::mode::ExecMode::Pvm {
        let flip = if arch::mode::host_flips_cr3() { "user-root flip on" } else { "user-root flip off" };
        kprintln!("PVM: VIF MSR {:#x} ({flip})", arch::mode::vif_msr());
    }
    trap::init();
    let mem = mm::init(info);
    if verbose {
        kprintln!(
            "Memory: {} MiB RAM, {} KiB free in {} frames, {} KiB heap",
            info.mem_bytes >> 20,
            mem.free_frames * 4,
            mem.free_frames,
            mem.heap_bytes >> 10
        );
        kprintln!("Command line: {cmdline_text}");
        kprintln!(
            "Boot time: kernel main reached {} us after VMM start (boot {})",
            main_ns / 1000,
            info.boot_count
        );
    }
    sched::init();
    irq::init(info);
    block::init(info);
    tty::init(info);
    irq::route_pin(umlvm_boot::layout::CONTROL_GSI as u8, arch::ioapic::Trigger::Edge);
    mgmt::poll();

    if let Some(what) = cmdline.get("crash") {
        selftest::crash::trigger(what);
    }
    // A machine that boots user space runs the self-checks only when asked (`selftest=`).
    let userland = init::wants_user_space(info, &cmdline);
    let failures = if userland {
        0
    } else {
        selftest::run(&cmdline) + block::selftest(&cmdline) + tty::selftest(&cmdline)
    };
    selftest::bench::run(&cmdline);
    if let Some(Ok(beats)) = cmdline.get_u64("heartbeat") {
        // A visible sign of life every 100 ms (management-console tests watch it stop).
        for k in 1..=beats {
            time::sleep_until(time::now_ns() + 100_000_000);
            log::info!("heartbeat {k}");
        }
    }
    if let Some(ms) = cmdline.get_u64("ticks") {
        match ms {
            Ok(ms) => time::report_ticks(ms, &cmdline),
            Err(bad) => log::warn!("ticks={bad}: not a number of milliseconds, ignored"),
        }
    }
    if init::start(info, cmdline_text) {
        sched::idle_loop();
    }
    let reboots = match cmdline.get_u64("reboots") {
        Some(Ok(n)) => n,
        Some(Err(bad)) => {
            log::warn!("reboots={bad}: not a number, ignored");
            0
        }
        None => 0,
    };
    let status = if failures == 0 { 0 } else { 1 };
    if failures > 0 {
        log::error!("{failures} self-check(s) failed");
    }
    kprintln!("Kernel-only boot complete after {} us; powering off (status {status})", time::now_ns() / 1000);
    console::flush();
    if status == 0 && u64::from(info.boot_count) < reboots {
        kprintln!("Rebooting ({} of {reboots})", info.boot_count + 1);
        console::flush();
        arch::pv::reboot();
    }
    arch::pv::power_off(status)
}

/// Exit status when no init could be started from the initramfs.
pub const EXIT_NO_INIT: u8 = 121;

/// Exit status when the root file system cannot be mounted.
pub const EXIT_NO_ROOT: u8 = 122;

/// Exit status when the boot information block is refused.
pub const EXIT_BAD_BOOT_INFO: u8 = 120;
