//! The vCPU loop: runs the guest and handles its exits until the machine stops.
//!
//! The para-virtual ports (`umlvm_boot::ports`) are handled here; every value the guest
//! passes is checked before use. Anything else that reaches userspace is an unexpected exit,
//! reported with the vCPU registers.

use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use std::fmt::Write as _;
use std::io::Write;
use umlvm_boot::layout::{CONSOLE_GPA, CONSOLE_LEN};
use umlvm_boot::ports;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// How a run of the guest ended.
#[derive(Debug)]
pub enum Outcome {
    /// The guest powered off with this status.
    PowerOff(u8),
    /// The guest asked for a reboot.
    Reboot,
    /// The guest kernel panicked; the guest-physical address of its backtrace record (or 0).
    Panic(u64),
    /// Triple fault; the registers at that point.
    TripleFault(String),
    /// An exit the VMM does not handle: what it was, and the registers.
    Unexpected(String, String),
    /// KVM_RUN itself failed.
    Error(kvm_ioctls::Error),
}

/// What the exit handlers need besides the vCPU.
pub struct ExitContext<'a, W: Write> {
    /// Guest RAM (for the console buffer).
    pub mem: &'a GuestMemoryMmap,
    /// The VM (for interrupt lines).
    pub vm: &'a VmFd,
    /// Where the guest console goes.
    pub console: W,
    /// Interrupt lines the guest may pulse (IOAPIC pins).
    pub max_gsi: u32,
    /// Device MMIO windows.
    pub bus: crate::devices::MmioBus,
    /// stop/go/halt/reboot from the management console.
    pub control: &'a crate::mconsole::Control,
    /// Where guest replies to management requests go.
    pub guest_requests: std::sync::Arc<crate::mconsole::GuestRequests>,
}

/// Runs the vCPU until the guest stops.
pub fn run<W: Write>(vcpu: &mut VcpuFd, ctx: &mut ExitContext<'_, W>) -> Outcome {
    ctx.control.vcpu_started();
    loop {
        if ctx.control.is_stopped() && std::env::var_os("UMLVM_DEBUG_STOP").is_some() {
            // Developer aid: where the guest was when `stop` arrived.
            let mut vif = [0u8; 16];
            let _ = ctx.mem.read_slice(&mut vif, GuestAddress(umlvm_boot::layout::VIF_GPA));
            let lapic = vcpu.get_lapic().map(|l| {
                let word = |off: usize| {
                    let b: Vec<u8> = l.regs[off..off + 4].iter().map(|&c| c as u8).collect();
                    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
                };
                format!("ISR(0x20-0x3f) {:#x} IRR(0x20-0x3f) {:#x} ISR(0x40-0x5f) {:#x} IRR(0x40-0x5f) {:#x} TPR {:#x} LVTT {:#x}", word(0x110), word(0x210), word(0x120), word(0x220), word(0x80), word(0x320))
            });
            let mp = vcpu.get_mp_state().map(|m| m.mp_state);
            eprintln!(
                "umlvm: vCPU stopped at (VIF {vif:02x?}) mp_state {mp:?} {lapic:?}\n{}",
                registers(vcpu)
            );
        }
        match ctx.control.checkpoint() {
            Some(crate::mconsole::Stop::Halt) => return Outcome::PowerOff(0),
            Some(crate::mconsole::Stop::Reboot) => return Outcome::Reboot,
            None => {}
        }
        let exit = match vcpu.run() {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
            Err(e) => return Outcome::Error(e),
        };
        let unexpected = match exit {
            VcpuExit::IoOut(port, data) => {
                let mut value = [0u8; 4];
                let n = data.len().min(4);
                value[..n].copy_from_slice(&data[..n]);
                let value = u32::from_le_bytes(value);
                match port {
                    ports::EXIT => return Outcome::PowerOff(value as u8),
                    ports::REBOOT => return Outcome::Reboot,
                    ports::PANIC => return Outcome::Panic(u64::from(value)),
                    ports::CONSOLE => {
                        console_kick(ctx, value);
                        continue;
                    }
                    ports::CONTROL_DONE => {
                        control_done(ctx, value);
                        continue;
                    }
                    ports::IRQ_TEST if value < ctx.max_gsi => {
                        // An edge: raise and lower the line.
                        let pulse =
                            ctx.vm.set_irq_line(value, true).and_then(|_| ctx.vm.set_irq_line(value, false));
                        if let Err(e) = pulse {
                            return Outcome::Error(e);
                        }
                        continue;
                    }
                    _ => format!("I/O write of {value:#x} ({} bytes) to port {port:#x}", data.len()),
                }
            }
            VcpuExit::IoIn(port, data) => format!("I/O read ({} bytes) from port {port:#x}", data.len()),
            VcpuExit::MmioRead(addr, data) => {
                if ctx.bus.read(addr, data) {
                    continue;
                }
                format!("MMIO read ({} bytes) at {addr:#x}", data.len())
            }
            VcpuExit::MmioWrite(addr, data) => {
                if ctx.bus.write(addr, data) {
                    continue;
                }
                format!("MMIO write ({} bytes) at {addr:#x}", data.len())
            }
            VcpuExit::Shutdown => return Outcome::TripleFault(registers(vcpu)),
            VcpuExit::Hlt => "HLT reached userspace (the in-kernel irqchip should handle it)".into(),
            VcpuExit::InternalError => "KVM internal error (emulation failure?)".into(),
            VcpuExit::FailEntry(reason, cpu) => format!("VM entry failed (reason {reason:#x}, cpu {cpu})"),
            other => format!("{other:?}"),
        };
        return Outcome::Unexpected(unexpected, registers(vcpu));
    }
}

/// Copies `len` console bytes from the shared buffer to the console. The length is the
/// guest's word, so it is clamped to the buffer.
fn console_kick<W: Write>(ctx: &mut ExitContext<'_, W>, len: u32) {
    let len = (len as usize).min(CONSOLE_LEN as usize);
    let mut buf = [0u8; CONSOLE_LEN as usize];
    if ctx.mem.read_slice(&mut buf[..len], GuestAddress(CONSOLE_GPA)).is_ok() {
        // A closed stdout must not stop the guest; its output is simply lost.
        let _ = ctx.console.write_all(&buf[..len]).and_then(|_| ctx.console.flush());
    }
}

/// The guest answered a management request: its reply is in the mailbox. The length is the
/// guest's word, so it is clamped.
fn control_done<W: Write>(ctx: &ExitContext<'_, W>, value: u32) {
    use umlvm_boot::abi::control::{REPLY, REPLY_ERROR, REPLY_MAX};
    let len = ((value & !REPLY_ERROR) as usize).min(REPLY_MAX);
    let mut buf = vec![0u8; len];
    let ok =
        ctx.mem.read_slice(&mut buf, GuestAddress(umlvm_boot::layout::CONTROL_GPA + REPLY as u64)).is_ok();
    let text = if ok { String::from_utf8_lossy(&buf).into_owned() } else { "unreadable reply".into() };
    ctx.guest_requests.complete(value & REPLY_ERROR != 0 || !ok, &text);
}

/// The vCPU's registers, formatted for a crash report.
pub fn registers(vcpu: &VcpuFd) -> String {
    let mut s = String::new();
    match vcpu.get_regs() {
        Ok(r) => {
            let _ = writeln!(s, "  rip {:#018x} rsp {:#018x} rflags {:#x}", r.rip, r.rsp, r.rflags);
            let _ = writeln!(
                s,
                "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
                r.rax, r.rbx, r.rcx, r.rdx
            );
            let _ = writeln!(
                s,
                "  rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}",
                r.rsi, r.rdi, r.rbp, r.r8
            );
            let _ = writeln!(
                s,
                "  r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}",
                r.r9, r.r10, r.r11, r.r12
            );
            let _ = writeln!(s, "  r13 {:#018x} r14 {:#018x} r15 {:#018x}", r.r13, r.r14, r.r15);
        }
        Err(e) => {
            let _ = writeln!(s, "  (registers unavailable: {e})");
        }
    }
    if let Ok(sr) = vcpu.get_sregs() {
        let _ = writeln!(
            s,
            "  cs {:#x} ss {:#x} cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x}",
            sr.cs.selector, sr.ss.selector, sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.efer
        );
        let _ = writeln!(
            s,
            "  idt {:#x}/{:#x} gdt {:#x}/{:#x}",
            sr.idt.base, sr.idt.limit, sr.gdt.base, sr.gdt.limit
        );
    }
    s
}
