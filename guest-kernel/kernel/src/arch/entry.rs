//! The first instructions: register the PVM VIF page if asked to, switch to the kernel stack,
//! and call into Rust.
//!
//! On a PVM host every instruction before the VIF registration runs in the host's emulator
//! (~0.5 µs each), so `_start` does that first, in five instructions, reading the MSR value
//! the VMM prepared in [`BootInfo`]. On other hosts the flag is clear and no PVM MSR is ever
//! touched.

use super::memory;
use umlvm_boot::BootInfo;
use umlvm_boot::abi::{FLAG_PVM_MODE, MSR_PVM_VIF};

/// Size of the boot CPU's kernel stack.
pub const KERNEL_STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    ".section .text.boot, \"ax\"",
    ".global _start",
    "_start:",
    // rdi = physical address of BootInfo (identity-mapped during boot).
    "    test qword ptr [rdi + {flags}], {pvm_mode}",
    "    jz 1f",
    "    mov ecx, {msr_vif}",
    "    mov eax, dword ptr [rdi + {vif}]",
    "    mov edx, dword ptr [rdi + {vif} + 4]",
    "    wrmsr",
    "1:",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov rsi, rax",
    "    lea rsp, [rip + {stack} + {stack_size}]",
    "    xor ebp, ebp",
    "    call {entry}",
    "2:  hlt",
    "    jmp 2b",
    ".section .text",
    flags = const core::mem::offset_of!(BootInfo, flags),
    vif = const core::mem::offset_of!(BootInfo, pvm_vif_msr_value),
    pvm_mode = const FLAG_PVM_MODE,
    msr_vif = const MSR_PVM_VIF,
    stack = sym memory::BOOT_CPU_STACK,
    stack_size = const KERNEL_STACK_SIZE,
    entry = sym kernel_entry,
);

/// What the entry code hands to the kernel.
#[derive(Clone, Copy, Debug)]
pub struct BootEntry {
    /// The VMM's boot information (in the direct map, never freed).
    pub boot_info: &'static BootInfo,
    /// TSC when the first Rust code ran.
    pub entry_tsc: u64,
}

/// Called by `_start` on the kernel stack.
extern "C" fn kernel_entry(boot_info_phys: u64, entry_tsc: u64) -> ! {
    let boot_info = memory::boot_info(boot_info_phys);
    super::mode::init(boot_info);
    crate::kmain(BootEntry { boot_info, entry_tsc })
}
