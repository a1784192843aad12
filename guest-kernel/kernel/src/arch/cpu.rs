//! Raw x86 instructions with safe wrappers where the instruction cannot break memory safety.

use core::arch::asm;

/// Reads the time-stamp counter.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: rdtsc only reads the TSC into eax/edx; it touches no memory.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a 32-bit value to an I/O port.
///
/// # Safety
/// The port must be one whose side effects cannot break memory safety (the para-virtual
/// ports, the PIC).
#[inline(always)]
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: the caller vouches for the port; `out` touches no guest memory.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// As for [`outl`].
#[inline(always)]
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller vouches for the port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist (otherwise #GP) and reading it must have no side effects that matter.
#[inline(always)]
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller vouches that the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register with the plain instruction.
///
/// # Safety
/// The write must not break memory safety (e.g. it must not move the kernel's stack or tables).
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller vouches for the MSR and value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// Reads CR2 with `mov` (traps on PVM hosts: use [`super::mode::fault_address`]).
#[inline(always)]
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads CR3.
#[inline(always)]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The current frame pointer.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let v: u64;
    // SAFETY: copies rbp; no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Deliberate faults for the kernel's crash switches (`crash=...`), used by tests to prove that
/// faults are reported. Each returns only if the fault handler resumes.
pub mod crash {
    use core::arch::asm;

    /// Writes to an unmapped kernel address: a page fault.
    pub fn page_fault(addr: u64) {
        // SAFETY: the address is unmapped, so the store faults before it writes anything; the
        // fault handler reports it and never resumes.
        unsafe { asm!("mov qword ptr [{}], 0x2a", in(reg) addr, options(nostack)) };
    }

    /// Loads a non-canonical address: a general-protection fault.
    pub fn general_protection() {
        // SAFETY: the load faults (#GP) before reading anything.
        unsafe {
            asm!("mov {0}, qword ptr [{0}]", inout(reg) 0x8000_0000_0000_0000u64 => _, options(nostack))
        };
    }

    /// `ud2`: an invalid-opcode fault.
    pub fn invalid_opcode() {
        // SAFETY: ud2 raises #UD and touches nothing.
        unsafe { asm!("ud2", options(nomem, nostack)) };
    }

    /// Divides by zero: a divide error.
    pub fn divide_error() {
        // SAFETY: `div` by zero raises #DE; registers are declared clobbered.
        unsafe {
            asm!("xor edx, edx", "xor ecx, ecx", "mov eax, 1", "div ecx",
                 out("eax") _, out("ecx") _, out("edx") _, options(nomem, nostack))
        };
    }

    /// `int3`: a breakpoint trap (resumable).
    pub fn breakpoint() {
        // SAFETY: int3 raises #BP; the handler returns to the next instruction.
        unsafe { asm!("int3", options(nomem, nostack)) };
    }
}

/// A hardware random number (RDRAND), if the CPU has it and it delivered one.
pub fn rdrand() -> Option<u64> {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 30) == 0 {
        return None;
    }
    let (v, ok): (u64, u8);
    // SAFETY: rdrand (present per CPUID) writes a register and CF only.
    unsafe { asm!("rdrand {}", "setc {}", out(reg) v, out(reg_byte) ok, options(nomem, nostack)) };
    (ok != 0).then_some(v)
}
