//! Built-in self-checks, run on every kernel-only boot: frames, heap, paging, exceptions,
//! IPIs, the APIC timer, IOAPIC routing, the clock, user mode (syscalls, demand paging, timer
//! interrupts in user mode) and kernel/user isolation. Each prints one line.

pub mod bench;
pub mod crash;

use crate::arch::programs::{DATA_BASE, Program};
use crate::arch::{apic, ioapic, memory, paging, pv};
use crate::process::builtin::{self, TaskExit};
use crate::{irq, mm, time, trap};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};
use umlvm_kcore::cmdline::Cmdline;

/// Waits (halted) until `done()` or `timeout_ns` passed; returns whether `done()` held.
fn wait_until(done: impl Fn() -> bool, timeout_ns: u64) -> bool {
    let deadline = time::now_ns() + timeout_ns;
    loop {
        if done() {
            return true;
        }
        if time::now_ns() >= deadline {
            return false;
        }
        // Bounded wait: a one-shot timer wakes us at the deadline at the latest.
        time::sleep_until((time::now_ns() + 200_000).min(deadline));
    }
}

type Check = fn() -> Result<String, String>;

/// Runs the checks (all, or those named in `selftest=a,b`; `selftest=none` skips them);
/// returns how many failed.
pub fn run(cmdline: &Cmdline<'_>) -> u32 {
    let checks: [(&str, Check); 11] = [
        ("frames", frames),
        ("heap", heap),
        ("paging", paging_check),
        ("breakpoint", breakpoint),
        ("ipi", ipi),
        ("timer", timer),
        ("ioapic", ioapic_check),
        ("clock", clock),
        ("cpuid", cpuid),
        ("user", user),
        ("isolation", isolation),
    ];
    let only = cmdline.get("selftest");
    if only == Some("none") {
        return 0;
    }
    let mut failed = 0;
    let mut passed = 0;
    for (name, check) in checks {
        if only.is_some_and(|list| !list.split(',').any(|n| n == name)) {
            continue;
        }
        match check() {
            Ok(detail) => {
                passed += 1;
                log::info!("selfcheck {name}: ok ({detail})");
            }
            Err(why) => {
                failed += 1;
                log::error!("selfcheck {name}: FAILED: {why}");
            }
        }
    }
    log::info!("selfchecks: {passed} passed, {failed} failed");
    failed
}

fn frames() -> Result<String, String> {
    let before = mm::free_frames();
    let a: Vec<_> = (0..3).filter_map(|_| mm::alloc_frame()).collect();
    if a.len() != 3 {
        return Err("could not allocate 3 frames".into());
    }
    if a.iter().any(|f| f.addr % 4096 != 0) || a[0].addr == a[1].addr || a[1].addr == a[2].addr {
        return Err(alloc::format!("bad frames {a:?}"));
    }
    mm::free_frame(a[1].addr);
    let again = mm::alloc_frame().ok_or("re-allocation failed")?;
    if again.addr != a[1].addr || again.is_zero {
        return Err(alloc::format!("freed frame {:#x} not reused (got {again:?})", a[1].addr));
    }
    for f in [a[0], again, a[2]] {
        mm::free_frame(f.addr);
    }
    if mm::free_frames() != before {
        return Err("free count changed".into());
    }
    Ok(alloc::format!("{before} free"))
}

fn heap() -> Result<String, String> {
    let v: Vec<u64> = (0..256).collect();
    let sum: u64 = v.iter().sum();
    let mut m = BTreeMap::new();
    for i in 0..16u32 {
        m.insert(i.wrapping_mul(2_654_435_761), i);
    }
    let mut s = String::new();
    let _ = write!(s, "{}", m.len());
    if sum != 256 * 255 / 2 || m.len() != 16 || s != "16" {
        return Err("heap data corrupted".into());
    }
    let big = alloc::vec![0xa5u8; 8 * 1024];
    if big.iter().any(|&b| b != 0xa5) {
        return Err("large allocation corrupted".into());
    }
    Ok("vec, btree, string, 8 KiB block".into())
}

fn paging_check() -> Result<String, String> {
    let frame = mm::alloc_frame().ok_or("no frame")?;
    let vaddr = paging::VMAP_BASE + 0x1000;
    mm::map_kernel_page(vaddr, frame.addr)?;
    if paging::translate(vaddr) != Some(frame.addr) {
        return Err("new mapping does not translate".into());
    }
    let pattern = 0x5eed_f00d_cafe_0001u64;
    if !paging::write_owned_u64(vaddr + 8, pattern) {
        return Err("write through new mapping failed".into());
    }
    let via_direct = paging::read_mapped_u64(memory::phys_to_virt(frame.addr) + 8);
    if via_direct != Some(pattern) {
        return Err(alloc::format!("direct map reads {via_direct:x?}"));
    }
    let unmapped = paging::unmap_kernel_page(vaddr).map_err(|_| "unmap failed")?;
    if unmapped != frame.addr || paging::translate(vaddr).is_some() {
        return Err("unmap left a mapping".into());
    }
    if paging::translate(0x20_0000).is_some() {
        return Err("boot identity map still present".into());
    }
    mm::free_frame(frame.addr);
    Ok("map, write, alias read, unmap; identity map gone".into())
}

fn breakpoint() -> Result<String, String> {
    if !crate::arch::mode::breakpoints_supported() {
        return Ok("skipped: kvm_pvm's CPL-0 emulator cannot execute int3 (native mode on a PVM host)".into());
    }
    let before = trap::breakpoints();
    trap::expect_breakpoints(1);
    crate::arch::cpu::crash::breakpoint();
    trap::expect_breakpoints(0);
    if trap::breakpoints() != before + 1 {
        return Err("int3 was not handled".into());
    }
    Ok("int3 trapped and resumed".into())
}

fn ipi() -> Result<String, String> {
    let before = irq::ipi_count();
    let t0 = time::now_ns();
    apic::self_ipi(irq::TEST_IPI_VECTOR);
    if !wait_until(|| irq::ipi_count() > before, 50_000_000) {
        return Err("self-IPI not delivered within 50 ms".into());
    }
    Ok(alloc::format!("self-IPI delivered after {} us", (time::now_ns() - t0) / 1000))
}

fn timer() -> Result<String, String> {
    // 2 ms: long enough that arming the timer fits well inside it even where CPL 0 is
    // emulated on a busy host (else the deadline passes before the timer is armed).
    const WAIT_NS: u64 = 2_000_000;
    let t0 = time::now_ns();
    time::sleep_until(t0 + WAIT_NS);
    // Another interrupt (console output) may end the wait just at the deadline, before the
    // timer's own interrupt is handled: give that one a moment.
    let grace = time::now_ns() + 20_000_000;
    // The one-shot armed last is still pending, so an interrupt does come; nothing re-arms it.
    while !time::one_shot_fired() && time::now_ns() < grace {
        crate::arch::mode::wait_for_interrupt();
    }
    let waited = time::now_ns() - t0;
    if !time::one_shot_fired() {
        return Err(alloc::format!("one-shot timer did not fire (woke after {} us)", waited / 1000));
    }
    if waited < WAIT_NS {
        return Err(alloc::format!("woke after {waited} ns, before the deadline"));
    }
    Ok(alloc::format!("{} us one-shot fired after {} us", WAIT_NS / 1000, waited / 1000))
}

fn ioapic_check() -> Result<String, String> {
    const PIN: u8 = 5;
    let before = irq::pin_count(PIN);
    irq::route_pin(PIN, ioapic::Trigger::Edge);
    let t0 = time::now_ns();
    pv::pulse_irq(u32::from(PIN));
    let ok = wait_until(|| irq::pin_count(PIN) > before, 50_000_000);
    ioapic::mask(u32::from(PIN));
    if !ok {
        return Err(alloc::format!("GSI {PIN} not delivered within 50 ms"));
    }
    Ok(alloc::format!(
        "GSI {PIN} -> vector {:#x} after {} us",
        irq::IOAPIC_VECTOR_BASE + PIN,
        (time::now_ns() - t0) / 1000
    ))
}

fn clock() -> Result<String, String> {
    let a = time::now_ns();
    let b = time::now_ns();
    if b < a || a == 0 {
        return Err(alloc::format!("clock not monotonic: {a} then {b}"));
    }
    Ok(alloc::format!("monotonic, {} console kicks so far", crate::console::kicks()))
}

fn user() -> Result<String, String> {
    if !builtin::user_mode_available() {
        return Ok("skipped: user mode needs PVM mode on a kvm_pvm host".into());
    }
    const SYSCALLS: u64 = 200;
    const PAGES: u64 = 32;
    // Registers reach user mode intact.
    let probe = builtin::run_with(
        Program::RegProbe,
        |f| {
            f.rax = 0xa0;
            f.rbx = 0xb0;
            f.rcx = 0xc0;
            f.rdx = 0xd0;
            f.rsi = 0x51;
            f.rdi = 0xd1;
            f.rbp = 0xb9;
            f.r8 = 8;
            f.r9 = 9;
            f.r10 = 10;
            f.r11 = 11;
            f.r12 = 12;
            f.r13 = 13;
            f.r14 = 14;
            f.r15 = 15;
        },
        |t| (0..16).map(|i| builtin::read_user_u64(t, DATA_BASE + 8 * i)).collect::<Option<Vec<u64>>>(),
    );
    let want = [0xd1, 0x51, 0xd0, 0xc0, 8, 9, 10, 11, 0xb9, 12, 13, 14, 15, 0xa0, 0xb0, builtin::STACK_TOP];
    match probe {
        Ok((TaskExit::Exited(0), _, Some(regs))) if regs == want => {}
        other => return Err(alloc::format!("registers at user entry: {other:x?}, expected {want:x?}")),
    }
    time::start_periodic(1000);
    let t0 = time::now_ns();
    let result = builtin::run(Program::SelfTest, [SYSCALLS, PAGES, time::ns_to_tsc(3_000_000)], |_| ());
    let elapsed_us = (time::now_ns() - t0) / 1000;
    time::stop_periodic();
    let (exit, stats, ()) = result.map_err(|e| alloc::format!("could not start: {e:?}"))?;
    if exit != TaskExit::Exited(0) {
        return Err(alloc::format!("task ended with {exit:?}"));
    }
    // getpid x SYSCALLS, then write and exit.
    if stats.syscalls != SYSCALLS + 2 {
        return Err(alloc::format!("{} syscalls, expected {}", stats.syscalls, SYSCALLS + 2));
    }
    if stats.page_faults < PAGES {
        return Err(alloc::format!("{} page faults for {PAGES} fresh pages", stats.page_faults));
    }
    if stats.user_ticks == 0 {
        return Err("no timer interrupt arrived in user mode".into());
    }
    Ok(alloc::format!(
        "registers intact; {} syscalls, {} page faults, {} timer ticks in user mode, {elapsed_us} us",
        stats.syscalls,
        stats.page_faults,
        stats.user_ticks
    ))
}

/// A kernel value user programs try to read and overwrite.
static SECRET: AtomicU64 = AtomicU64::new(0x5ec2_e7da_7a00_0001);

fn isolation() -> Result<String, String> {
    if !builtin::user_mode_available() {
        return Ok("skipped: user mode needs PVM mode on a kvm_pvm host".into());
    }
    let secret = &raw const SECRET as u64;
    let kernel_phys = crate::arch::memory::kernel_virt_to_phys(secret).ok_or("secret outside the kernel")?;
    let (_, entry_ro, _) = crate::arch::user::entry_area();
    let attempts = [
        (Program::Peek, secret, "read kernel data"),
        (Program::Poke, secret, "write kernel data"),
        (Program::Peek, memory::phys_to_virt(kernel_phys), "read the direct map"),
        (Program::Poke, memory::phys_to_virt(kernel_phys), "write the direct map"),
        (Program::Poke, entry_ro, "write the entry page"),
    ];
    for (program, addr, what) in attempts {
        let (exit, _, ()) = builtin::run(program, [addr, 0, 0], |_| ())
            .map_err(|e| alloc::format!("could not start: {e:?}"))?;
        match exit {
            TaskExit::Killed { signal: 11, vector: 14, addr: fault, .. } if fault == addr => {}
            other => return Err(alloc::format!("user program could {what} at {addr:#x}: {other:?}")),
        }
    }
    if SECRET.load(Ordering::Relaxed) != 0x5ec2_e7da_7a00_0001 {
        return Err("kernel data changed".into());
    }
    Ok(alloc::format!("{} attempts on kernel memory, each killed with SIGSEGV", attempts.len()))
}

fn cpuid() -> Result<String, String> {
    let [max, b, c, d] = crate::arch::mode::cpuid(0x4000_0000, 0);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&b.to_le_bytes());
    sig[4..8].copy_from_slice(&c.to_le_bytes());
    sig[8..].copy_from_slice(&d.to_le_bytes());
    if &sig != b"KVMKVMKVM\0\0\0" {
        return Err(alloc::format!(
            "hypervisor leaf reads {:?}, expected KVMKVMKVM",
            String::from_utf8_lossy(&sig)
        ));
    }
    let [_, _, ecx1, _] = crate::arch::mode::cpuid(1, 0);
    if ecx1 & (1 << 21) == 0 {
        return Err("the VMM's CPUID table lacks x2APIC".into());
    }
    Ok(alloc::format!("hypervisor leaf KVMKVMKVM (max {max:#x}), x2APIC"))
}
