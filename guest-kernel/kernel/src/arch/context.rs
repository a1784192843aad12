//! Task contexts: kernel stacks, the context switch, user FPU/SSE/AVX state and the FS base.
//!
//! Every task has its own kernel stack; its user register frame ([`TrapFrame`]) sits at the
//! top of it while it is in the kernel (the trap entry copies it there). A switch saves the
//! callee-saved registers on the old stack and pops them from the new one. A new task's stack
//! is prepared so that its first switch "returns" into [`task_first_entry`], which calls the
//! scheduler's hook and leaves to user mode through the frame at the top.
//!
//! The kernel never uses the FPU (the target is soft-float), so user FPU/SSE/AVX registers
//! stay live while a task is in the kernel; they are saved and restored only when tasks
//! switch (`xsave`/`xrstor` where the CPU has OS-enabled XSAVE, else `fxsave`/`fxrstor`).

use super::mode::{self, ExecMode};
use super::trap::TrapFrame;
use alloc::boxed::Box;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Size of a task's kernel stack.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

/// A task's kernel stack.
#[repr(C, align(16))]
pub struct KernelStack([u8; KERNEL_STACK_SIZE]);

impl KernelStack {
    /// A new zeroed stack on the heap.
    pub fn new() -> Box<Self> {
        // SAFETY: an all-zero byte array is a valid value; `new_zeroed` avoids building the
        // 32 KiB array on the (small) current stack.
        unsafe { Box::<Self>::new_zeroed().assume_init() }
    }

    /// One past the highest byte.
    pub fn top(&self) -> u64 {
        self.0.as_ptr() as u64 + KERNEL_STACK_SIZE as u64
    }

    /// (start, end) for backtraces.
    pub fn bounds(&self) -> (u64, u64) {
        (self.0.as_ptr() as u64, self.top())
    }

    /// The user frame at the top of the stack.
    pub fn user_frame(&mut self) -> &mut TrapFrame {
        let at = KERNEL_STACK_SIZE - core::mem::size_of::<TrapFrame>();
        // SAFETY: the top `size_of::<TrapFrame>()` bytes of the stack are reserved for the
        // frame (entry code copies it there; see `prepare`); the offset is 16-aligned within
        // a 16-aligned array, TrapFrame is plain integers, and the &mut borrows the stack.
        unsafe { &mut *(self.0.as_mut_ptr().add(at) as *mut TrapFrame) }
    }

    /// Prepares a new task: its user frame is `frame` and its saved stack pointer (returned)
    /// makes the first switch to it enter [`task_first_entry`].
    pub fn prepare(&mut self, frame: &TrapFrame) -> u64 {
        *self.user_frame() = *frame;
        let frame_at = self.top() - core::mem::size_of::<TrapFrame>() as u64;
        // Below the frame: the return address, then six callee-saved registers (zero).
        let words = 7usize;
        let base = (KERNEL_STACK_SIZE - core::mem::size_of::<TrapFrame>()) / 8 - words;
        let entry = task_first_entry as *const () as u64;
        for i in 0..6 {
            self.write_word(base + i, 0);
        }
        self.write_word(base + 6, entry);
        frame_at - 8 * words as u64
    }

    fn write_word(&mut self, index: usize, value: u64) {
        self.0[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
}

core::arch::global_asm!(
    ".section .text",
    ".global arch_switch_stack",
    "arch_switch_stack:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov qword ptr [rdi], rsp",
    "    mov rsp, rsi",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    "",
    ".global task_first_entry",
    "task_first_entry:",
    // rsp points at the task's user frame (16-byte aligned).
    "    mov rbx, rsp",
    "    mov rdi, rsp",
    "    xor ebp, ebp",
    "    call {hook}",
    "    mov rsi, rbx",
    "    jmp return_to_user",
    hook = sym first_entry_hook,
);

unsafe extern "C" {
    fn arch_switch_stack(save_rsp: *mut u64, next_rsp: u64);
    fn task_first_entry();
}

extern "C" fn first_entry_hook(frame: &mut TrapFrame) {
    (super::hooks::get().first_entry)(frame);
}

/// A kernel execution context: a stack and the stack pointer saved when it is not running.
/// The saved pointer is only ever written by [`switch`] or made by [`KernelStack::prepare`],
/// so switching to a context always resumes valid code on a live stack.
pub struct KernelContext {
    stack: Option<Box<KernelStack>>,
    saved_rsp: AtomicU64,
}

impl KernelContext {
    /// The running boot context (its stack is the boot stack; its pointer is saved by the
    /// first switch away from it).
    pub fn boot() -> Self {
        Self { stack: None, saved_rsp: AtomicU64::new(0) }
    }

    /// A new context that enters user mode with `frame` when first switched to.
    pub fn new_user(frame: &TrapFrame) -> Self {
        let mut stack = KernelStack::new();
        let rsp = stack.prepare(frame);
        Self { stack: Some(stack), saved_rsp: AtomicU64::new(rsp) }
    }

    /// Its kernel stack (none for the boot context).
    pub fn stack(&self) -> Option<&KernelStack> {
        self.stack.as_deref()
    }

    /// The stack pointer saved when it last switched away.
    pub fn saved_rsp(&self) -> u64 {
        self.saved_rsp.load(Ordering::Relaxed)
    }
}

/// Switches from context `from` (the running one) to `to`; returns when something switches
/// back to `from`. Interrupts must be off (checked).
pub fn switch(from: &KernelContext, to: &KernelContext) {
    assert!(!mode::irq_enabled(), "context switch with interrupts enabled");
    let next = to.saved_rsp.load(Ordering::Relaxed);
    assert!(next != 0, "switch to a context that never ran");
    // SAFETY: `next` was saved by this function or prepared by `KernelStack::prepare`, and
    // `to` (borrowed for this call) owns that stack, so it is alive; `from` is the running
    // context and receives the current stack pointer. The asm saves and restores every
    // callee-saved register; interrupts are off, so nothing runs in between.
    unsafe { arch_switch_stack(from.saved_rsp.as_ptr(), next) }
}

/// Points the trap entry at a task: its kernel stack top and page-table roots.
pub fn set_user_context(stack_top: u64, kernel_cr3: u64, user_cr3: u64) {
    super::user::set_current(stack_top, kernel_cr3, user_cr3);
}

/// Switches away from `from` for the last time (an exited task) to `to`, giving up this
/// stack's references to both first, so that whoever holds the others (the task table, the
/// scheduler) decides when they are freed. Interrupts must be off.
///
/// # Panics
/// If either `Arc` is the last reference (the context would be freed while in use).
pub fn switch_final<T: AsRef<KernelContext>>(from: alloc::sync::Arc<T>, to: alloc::sync::Arc<T>) -> ! {
    assert!(!mode::irq_enabled(), "context switch with interrupts enabled");
    assert!(
        alloc::sync::Arc::strong_count(&from) >= 2 && alloc::sync::Arc::strong_count(&to) >= 2,
        "final switch would free a live context"
    );
    let save = (*from).as_ref().saved_rsp.as_ptr();
    let next = (*to).as_ref().saved_rsp.load(Ordering::Relaxed);
    assert!(next != 0, "switch to a context that never ran");
    drop(from);
    drop(to);
    // SAFETY: both contexts have other owners (checked above), and nothing can drop those
    // before the switch: interrupts are off and this is the only CPU. `next` is a valid saved
    // or prepared stack pointer of `to`'s live stack (see `switch`). This stack is never
    // resumed, so the pointer saved into `save` is never used.
    unsafe { arch_switch_stack(save, next) };
    unreachable!("an exited context was resumed")
}

// ---- FPU / SSE / AVX state ----

/// Requested-feature bitmap for xsave (0 = use fxsave).
static XSAVE_MASK: AtomicU64 = AtomicU64::new(0);

/// Bytes of the save area in use.
static AREA_BYTES: AtomicU64 = AtomicU64::new(512);

/// Size of [`FpuState`]'s buffer.
pub const FPU_AREA_MAX: usize = 4096;

/// Saved user FPU state (64-byte aligned, as xsave needs).
#[repr(C, align(64))]
pub struct FpuState([u8; FPU_AREA_MAX]);

/// Picks xsave or fxsave from the hardware's CPUID (in PVM mode user code sees the physical
/// CPU, OS-enabled XSAVE included, so user programs may use AVX state the kernel must save).
pub fn fpu_init() {
    let [_, _, ecx, _] = raw_cpuid(1, 0);
    let osxsave = ecx & (1 << 27) != 0;
    if osxsave {
        let xcr0 = xgetbv0();
        let [_, ebx, _, _] = raw_cpuid(0xd, 0);
        if (ebx as usize) <= FPU_AREA_MAX && ebx >= 576 {
            XSAVE_MASK.store(xcr0, Ordering::Relaxed);
            AREA_BYTES.store(u64::from(ebx), Ordering::Relaxed);
        }
    }
    log::info!(
        "FPU: {} ({} bytes per task, XCR0 {:#x})",
        if uses_xsave() { "xsave" } else { "fxsave" },
        AREA_BYTES.load(Ordering::Relaxed),
        XSAVE_MASK.load(Ordering::Relaxed)
    );
}

/// Whether state is saved with xsave.
pub fn uses_xsave() -> bool {
    XSAVE_MASK.load(Ordering::Relaxed) != 0
}

/// The XCR0 features saved (0 with fxsave).
pub fn xsave_mask() -> u64 {
    XSAVE_MASK.load(Ordering::Relaxed)
}

/// Bytes of a saved state image.
pub fn fpu_area_bytes() -> usize {
    AREA_BYTES.load(Ordering::Relaxed) as usize
}

fn raw_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    if mode::current() == ExecMode::Native && mode::pvm_host() {
        // The emulator would run it; use the VMM's values (no user mode exists then anyway).
        return mode::cpuid(leaf, subleaf);
    }
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv with ecx=0 reads XCR0; CPUID said OSXSAVE is set, so it cannot fault.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

impl FpuState {
    /// The initial state of a new program: x87 control word 0x37f, MXCSR 0x1f80, all
    /// registers zero (in xsave format: legacy area set, XSTATE_BV = x87|SSE).
    pub fn new_initial() -> Box<Self> {
        // SAFETY: all-zero bytes are a valid value for a byte array.
        let mut s = unsafe { Box::<Self>::new_zeroed().assume_init() };
        s.0[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        s.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        s.0[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR_MASK
        if uses_xsave() {
            s.0[512..520].copy_from_slice(&3u64.to_le_bytes());
        }
        s
    }

    /// A copy (fork).
    pub fn duplicate(&self) -> Box<Self> {
        // SAFETY: as in `new_initial`.
        let mut s = unsafe { Box::<Self>::new_zeroed().assume_init() };
        s.0.copy_from_slice(&self.0);
        s
    }

    /// Saves the CPU's user state here.
    pub fn save(&mut self) {
        let mask = XSAVE_MASK.load(Ordering::Relaxed);
        let p = self.0.as_mut_ptr();
        if mask != 0 {
            // SAFETY: the area is 64-byte aligned and large enough for the XCR0 features
            // (checked in `fpu_init`); xsave writes only inside it.
            unsafe {
                asm!("xsave64 [{}]", in(reg) p, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
            };
        } else {
            // SAFETY: 16-byte aligned, 512 bytes: fxsave's area.
            unsafe { asm!("fxsave64 [{}]", in(reg) p, options(nostack)) };
        }
    }

    /// Loads this state into the CPU.
    pub fn restore(&self) {
        let mask = XSAVE_MASK.load(Ordering::Relaxed);
        let p = self.0.as_ptr();
        if mask != 0 {
            // SAFETY: as in `save`; the image was produced by xsave or sanitised by
            // `load_image` (reserved header bytes zero, valid MXCSR), so xrstor cannot fault.
            unsafe {
                asm!("xrstor64 [{}]", in(reg) p, in("eax") mask as u32, in("edx") (mask >> 32) as u32, options(nostack))
            };
        } else {
            // SAFETY: as in `save`, with a valid MXCSR (sanitised).
            unsafe { asm!("fxrstor64 [{}]", in(reg) p, options(nostack)) };
        }
    }

    /// The saved image (for signal frames).
    pub fn image(&self) -> &[u8] {
        &self.0[..fpu_area_bytes()]
    }

    /// Replaces the state with a user-supplied image (rt_sigreturn), sanitised so that
    /// restoring it cannot fault: MXCSR reserved bits cleared, and for xsave the header's
    /// reserved bytes zeroed and XSTATE_BV limited to enabled features. A 512-byte (fxsave)
    /// image in xsave mode restores x87/SSE only.
    pub fn load_image(&mut self, image: &[u8]) {
        let n = image.len().min(fpu_area_bytes());
        let fresh = Self::new_initial();
        self.0.copy_from_slice(&fresh.0);
        self.0[..n].copy_from_slice(&image[..n]);
        let mxcsr = u32::from_le_bytes(self.0[24..28].try_into().expect("4 bytes")) & 0xffff;
        self.0[24..28].copy_from_slice(&mxcsr.to_le_bytes());
        self.0[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        if uses_xsave() {
            let mask = XSAVE_MASK.load(Ordering::Relaxed);
            let bv = if n > 576 {
                u64::from_le_bytes(self.0[512..520].try_into().expect("8 bytes")) & mask
            } else {
                3
            };
            self.0[512..576].fill(0);
            self.0[512..520].copy_from_slice(&bv.to_le_bytes());
        }
    }
}

// ---- FS base (user TLS) ----

const MSR_FS_BASE: u32 = 0xc000_0100;

/// Sets the FS base (user TLS pointer). In PVM mode supervisor code runs at hardware CPL 3
/// with the host's CR4.FSGSBASE, so `wrfsbase` runs natively; in native mode the MSR is
/// written.
pub fn set_fs_base(value: u64) {
    match mode::current() {
        // SAFETY: wrfsbase only changes the FS base; the kernel never uses FS.
        ExecMode::Pvm => unsafe { asm!("wrfsbase {}", in(reg) value, options(nostack, preserves_flags)) },
        // SAFETY: MSR_FS_BASE exists on x86-64; the kernel never uses FS.
        ExecMode::Native => unsafe { mode::write_msr(MSR_FS_BASE, value) },
    }
}

/// The current FS base.
pub fn fs_base() -> u64 {
    match mode::current() {
        ExecMode::Pvm => {
            let v: u64;
            // SAFETY: rdfsbase only reads the FS base.
            unsafe { asm!("rdfsbase {}", out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
        // SAFETY: the MSR exists on x86-64 and reading it has no side effects.
        ExecMode::Native => unsafe { super::cpu::rdmsr(MSR_FS_BASE) },
    }
}
