//! The execution-mode boundary: native ring 0, or the PVM para-virtual mode.
//!
//! Native is an ordinary x86-64 kernel (`cli`/`sti`, `hlt`, `mov cr2`, `wrmsr`, `invlpg`).
//! PVM is the mode of the `kvm_pvm` hosts we test on (see docs/pvm.md): after `_start`
//! registered the VIF page, supervisor code runs natively at hardware CPL 3, so the interrupt
//! flag lives in the VIF page (`cli`/`sti`/`popf` do not change it), a pending interrupt needs a
//! hypercall to be delivered, CR2 comes from the VIF page, and CR3 loads, TLB flushes, MSR
//! writes and halt are hypercalls (`int 0x1b`), cheaper than trapped instructions.

use super::cpu;
use super::memory::phys_to_virt;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use umlvm_boot::BootInfo;
use umlvm_boot::abi::{MSR_PVM_VIF, PVM_VIF_FEATURE_CR2_CELL, PVM_VIF_FEATURES_USER_ROOT_FLIP};

/// The execution mode in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecMode {
    /// Ring-0 kernel.
    Native,
    /// PVM para-virtual mode.
    Pvm,
}

impl ExecMode {
    /// Short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Pvm => "pvm",
        }
    }
}

const MODE_NATIVE: u8 = 0;
const MODE_PVM: u8 = 1;
static MODE: AtomicU8 = AtomicU8::new(MODE_NATIVE);
static PVM_HOST: AtomicBool = AtomicBool::new(false);
static CR2_CELL: AtomicBool = AtomicBool::new(false);
static HOST_FLIP: AtomicBool = AtomicBool::new(false);
static VIF_MSR: AtomicU64 = AtomicU64::new(0);

/// PVM hypercall: load CR3 (rbx).
pub const HC_SET_CR3: u64 = 0x1001;
/// PVM hypercall: return to user mode through the frame at rbx.
pub const HC_IRET_FRAME: u64 = 0x100d;

/// PVM hypercall numbers (`int 0x1b`, number in rax, arguments in rbx/rcx/rdx).
mod hc {
    pub const SET_CR3: u64 = super::HC_SET_CR3;
    pub const WRMSR: u64 = 0x1003;
    pub const FLUSH_TLB_ONE: u64 = 0x1008;
    pub const HALT: u64 = 0x1009;
    /// Any unknown number: a minimal round trip that delivers pending interrupts.
    pub const NOP: u64 = 0x10ff;
}

/// Byte offsets in the VIF page.
const VIF_IF: u64 = 0;
const VIF_PENDING: u64 = 1;
const VIF_CR2: u64 = 8;

/// Records the mode `_start` entered (from the boot flags) and, in PVM mode, which VIF
/// features the host accepted (it silently drops the ones it does not; the MSR reads back
/// what stuck).
pub fn init(info: &BootInfo) {
    let pvm = info.pvm_mode();
    MODE.store(if pvm { MODE_PVM } else { MODE_NATIVE }, Ordering::Relaxed);
    PVM_HOST.store(info.pvm_host(), Ordering::Relaxed);
    if pvm {
        // SAFETY: the VIF MSR exists in PVM mode (we just wrote it in `_start`).
        let accepted = unsafe { cpu::rdmsr(MSR_PVM_VIF) };
        VIF_MSR.store(accepted, Ordering::Relaxed);
        CR2_CELL.store(accepted & PVM_VIF_FEATURE_CR2_CELL != 0, Ordering::Relaxed);
        let flip = PVM_VIF_FEATURES_USER_ROOT_FLIP;
        HOST_FLIP.store(accepted & flip == flip, Ordering::Relaxed);
    }
}

/// Whether the host switches to the user page-table root (CR3 + 4 KiB) on returns to user
/// mode and back on entries, so the kernel need not load CR3 itself.
pub fn host_flips_cr3() -> bool {
    HOST_FLIP.load(Ordering::Relaxed)
}

/// The VIF MSR value in effect (PVM mode), for reports.
pub fn vif_msr() -> u64 {
    VIF_MSR.load(Ordering::Relaxed)
}

/// Re-registers the VIF page without the host's CR3 flip (`pvm_flip=off`): the entry code
/// then loads CR3 itself with hypercalls. For comparisons; call before any task runs.
pub fn disable_host_cr3_flip() {
    let value = VIF_MSR.load(Ordering::Relaxed);
    if current() != ExecMode::Pvm || value & PVM_VIF_FEATURES_USER_ROOT_FLIP == 0 {
        return;
    }
    let value = value & !PVM_VIF_FEATURES_USER_ROOT_FLIP;
    // SAFETY: re-registering the same VIF page with fewer feature bits keeps PVM mode.
    unsafe { write_msr(MSR_PVM_VIF, value) };
    // SAFETY: as in `init`.
    let accepted = unsafe { cpu::rdmsr(MSR_PVM_VIF) };
    VIF_MSR.store(accepted, Ordering::Relaxed);
    HOST_FLIP.store(false, Ordering::Relaxed);
}

/// The mode in use.
pub fn current() -> ExecMode {
    if MODE.load(Ordering::Relaxed) == MODE_PVM { ExecMode::Pvm } else { ExecMode::Native }
}

/// Whether the host is a `kvm_pvm` host (whatever mode we run in).
pub fn pvm_host() -> bool {
    PVM_HOST.load(Ordering::Relaxed)
}

fn vif_ptr(offset: u64) -> *mut u8 {
    phys_to_virt(umlvm_boot::layout::VIF_GPA + offset) as *mut u8
}

/// Issues a PVM hypercall.
fn hypercall(nr: u64, a0: u64, a1: u64, a2: u64) -> u64 {
    let ret: u64;
    // SAFETY: `int 0x1b` is the PVM hypercall gate, valid only in PVM mode (callers check).
    // rbx cannot be an asm operand, so it is swapped in and out through a scratch register.
    unsafe {
        asm!("xchg {a0}, rbx", "int 0x1b", "xchg {a0}, rbx",
             a0 = inout(reg) a0 => _, inout("rax") nr => ret, in("rcx") a1, in("rdx") a2,
             options(nostack))
    };
    ret
}

/// Whether `int3` works: not in native mode on a PVM host, where CPL 0 runs in the host's
/// instruction emulator, which fails on it (KVM reports an emulation failure).
pub fn breakpoints_supported() -> bool {
    !(current() == ExecMode::Native && pvm_host())
}

/// Disables interrupts; returns whether they were enabled.
pub fn irq_save() -> bool {
    match current() {
        ExecMode::Native => {
            let flags: u64;
            // SAFETY: reads RFLAGS and clears IF; no memory is touched.
            unsafe { asm!("pushfq", "pop {}", "cli", out(reg) flags, options(nomem)) };
            flags & (1 << 9) != 0
        }
        ExecMode::Pvm => {
            // SAFETY: the VIF page is mapped for the kernel's lifetime; byte 0 is the virtual IF.
            unsafe {
                let was = core::ptr::read_volatile(vif_ptr(VIF_IF));
                core::ptr::write_volatile(vif_ptr(VIF_IF), 0);
                was != 0
            }
        }
    }
}

/// Whether interrupts are enabled.
pub fn irq_enabled() -> bool {
    match current() {
        ExecMode::Native => {
            let flags: u64;
            // SAFETY: reads RFLAGS; no memory is touched.
            unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) };
            flags & (1 << 9) != 0
        }
        // SAFETY: the VIF page is mapped for the kernel's lifetime; byte 0 is the virtual IF.
        ExecMode::Pvm => unsafe { core::ptr::read_volatile(vif_ptr(VIF_IF)) != 0 },
    }
}

/// Re-enables interrupts if `enabled` (the value [`irq_save`] returned).
pub fn irq_restore(enabled: bool) {
    if enabled {
        irq_enable();
    }
}

/// Enables interrupts (and has any pending one delivered at once).
pub fn irq_enable() {
    match current() {
        // SAFETY: sti only sets IF.
        ExecMode::Native => unsafe { asm!("sti", options(nomem, nostack)) },
        ExecMode::Pvm => {
            // SAFETY: VIF page bytes 0 (IF) and 1 (pending), mapped for the kernel's lifetime.
            let pending = unsafe {
                core::ptr::write_volatile(vif_ptr(VIF_IF), 1);
                core::ptr::read_volatile(vif_ptr(VIF_PENDING))
            };
            if pending != 0 {
                hypercall(hc::NOP, 0, 0, 0);
            }
        }
    }
}

/// Disables interrupts.
pub fn irq_disable() {
    match current() {
        // SAFETY: cli only clears IF.
        ExecMode::Native => unsafe { asm!("cli", options(nomem, nostack)) },
        // SAFETY: VIF page byte 0, mapped for the kernel's lifetime.
        ExecMode::Pvm => unsafe { core::ptr::write_volatile(vif_ptr(VIF_IF), 0) },
    }
}

/// Enables interrupts, waits for one, and disables them again after it was handled.
pub fn wait_for_interrupt() {
    match current() {
        // SAFETY: `sti; hlt` is atomic (the sti shadow), so no wakeup is lost; cli after.
        ExecMode::Native => unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) },
        ExecMode::Pvm => {
            // SAFETY: VIF page bytes, mapped for the kernel's lifetime.
            let pending = unsafe {
                core::ptr::write_volatile(vif_ptr(VIF_IF), 1);
                core::ptr::read_volatile(vif_ptr(VIF_PENDING))
            };
            // A pending interrupt is delivered by any hypercall; otherwise HALT blocks until
            // the next one and delivers it. The host can lose the wakeup of a vCPU halted on
            // a user address space's tables (docs/pvm.md), so halts happen on the
            // kernel-only root.
            if pending != 0 {
                hypercall(hc::NOP, 0, 0, 0);
            } else {
                let loaded = loaded_root();
                let kernel = super::uspace::kernel_root();
                let switch = kernel != 0 && loaded != 0 && loaded != kernel;
                if switch {
                    hypercall(hc::SET_CR3, kernel, 0, 0);
                }
                hypercall(hc::HALT, 0, 0, 0);
                if switch {
                    hypercall(hc::SET_CR3, loaded, 0, 0);
                }
            }
            irq_disable();
        }
    }
}

/// The faulting address of the last page fault.
pub fn fault_address() -> u64 {
    if CR2_CELL.load(Ordering::Relaxed) {
        // SAFETY: the host writes the fault address to this VIF-page cell (feature bit 4).
        unsafe { core::ptr::read_volatile(vif_ptr(VIF_CR2) as *const u64) }
    } else {
        cpu::read_cr2()
    }
}

/// Loads CR3 (flushes non-global TLB entries).
///
/// # Safety
/// `pml4` must be a valid top-level table that maps the kernel exactly as the current one.
pub unsafe fn load_cr3(pml4: u64) {
    LOADED_ROOT.store(pml4, Ordering::Relaxed);
    match current() {
        // SAFETY: the caller guarantees the new tables map the running kernel.
        ExecMode::Native => unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack)) },
        ExecMode::Pvm => {
            hypercall(hc::SET_CR3, pml4, 0, 0);
        }
    }
}

static LOADED_ROOT: AtomicU64 = AtomicU64::new(0);

/// The root last loaded with [`load_cr3`] (0 before the first load).
pub fn loaded_root() -> u64 {
    LOADED_ROOT.load(Ordering::Relaxed)
}

/// Flushes the TLB entry for `vaddr`.
pub fn flush_tlb_page(vaddr: u64) {
    match current() {
        // SAFETY: invlpg only drops a TLB entry.
        ExecMode::Native => unsafe { asm!("invlpg [{}]", in(reg) vaddr, options(nostack)) },
        ExecMode::Pvm => {
            hypercall(hc::FLUSH_TLB_ONE, vaddr, 0, 0);
        }
    }
}

/// CPUID as the VMM configured it. In PVM mode a plain `cpuid` runs natively and returns the
/// physical host's values, so the synthetic form (`invlpg 0xffffffffff4d5650; cpuid`, which
/// traps to the hypervisor) is used instead.
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    match current() {
        // SAFETY: cpuid only writes the four registers (rbx is saved around it, as LLVM
        // reserves it).
        ExecMode::Native => unsafe {
            asm!("mov {t:r}, rbx", "cpuid", "xchg {t:r}, rbx", t = out(reg) b,
                 inout("eax") leaf => a, inout("ecx") subleaf => c, out("edx") d,
                 options(nostack, preserves_flags))
        },
        // SAFETY: the PVM synthetic-CPUID prefix; the invlpg of that magic address traps
        // and is consumed by the hypervisor together with the cpuid that follows.
        ExecMode::Pvm => unsafe {
            asm!("mov {t:r}, rbx", ".byte 0x0f, 0x01, 0x3c, 0x25, 0x50, 0x56, 0x4d, 0xff", "cpuid",
                 "xchg {t:r}, rbx", t = out(reg) b,
                 inout("eax") leaf => a, inout("ecx") subleaf => c, out("edx") d,
                 options(nostack, preserves_flags))
        },
    }
    [a, b, c, d]
}

/// Writes an MSR (through the hypercall in PVM mode).
///
/// # Safety
/// As for [`cpu::wrmsr`].
pub unsafe fn write_msr(msr: u32, value: u64) {
    match current() {
        // SAFETY: forwarded from the caller.
        ExecMode::Native => unsafe { cpu::wrmsr(msr, value) },
        ExecMode::Pvm => {
            hypercall(hc::WRMSR, u64::from(msr), value, 0);
        }
    }
}
