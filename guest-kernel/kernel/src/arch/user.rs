//! User mode: the entry area, entering and leaving user mode, and the syscall MSRs.
//!
//! Trap and syscall entry code runs on the user's page tables until it has switched to the
//! kernel's, so it lives in its own pages (`.entry_text`) next to two data pages: `ENTRY_RO`
//! (the page-table roots and the task's kernel stack; read-only for user space) and
//! `ENTRY_RW` (the syscall scratch slot and the small trampoline stack the CPU pushes trap
//! frames on). In PVM mode, where the U bit gives no isolation, user page tables map only
//! these pages of the kernel ([`super::uspace`]); entry copies the frame from the trampoline
//! to the task's kernel stack before running any Rust, so nothing of the kernel's is left in
//! user-readable memory. In native mode the user and kernel roots are the same table and the
//! U bit isolates.
//!
//! Entry and exit paths are in `arch::trap`'s assembly; this module holds their data and the
//! Rust side.

use super::mode::{self, ExecMode};
use super::trap::TrapFrame;
use umlvm_boot::x86::{KERNEL_CS, USER_CS, USER_DS};

/// Trap-frame vector number that marks a `syscall` (not a hardware vector).
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The read-only entry page.
#[repr(C, align(4096))]
pub struct EntryRo {
    /// CR3 of the current task's kernel view.
    pub kernel_cr3: u64,
    /// CR3 of the current task's user view (equal to `kernel_cr3` in native mode).
    pub user_cr3: u64,
    /// Top of the stack the entry code copies trap frames to (the current task's).
    pub task_stack_top: u64,
    /// 1 in PVM mode.
    pub pvm: u64,
}

/// Size of the trampoline stack.
pub const TRAMPOLINE_STACK: usize = 4096 - 64;

/// The read-write entry page.
#[repr(C, align(4096))]
pub struct EntryRw {
    /// `syscall` saves the user stack pointer here.
    pub scratch_user_rsp: u64,
    _pad: [u64; 7],
    /// The trampoline stack (TSS.RSP0 points at its end).
    pub stack: [u8; TRAMPOLINE_STACK],
}

/// The read-only entry page (written only through the kernel's own mapping).
#[unsafe(link_section = ".entry_ro")]
pub static mut ENTRY_RO: EntryRo = EntryRo { kernel_cr3: 0, user_cr3: 0, task_stack_top: 0, pvm: 0 };

/// The read-write entry page.
#[unsafe(link_section = ".entry_rw")]
pub static mut ENTRY_RW: EntryRw =
    EntryRw { scratch_user_rsp: 0, _pad: [0; 7], stack: [0; TRAMPOLINE_STACK] };

unsafe extern "C" {
    fn syscall_entry();
    static __entry_text_start: u8;
    static __entry_text_end: u8;
    static __entry_ro_start: u8;
    static __entry_rw_start: u8;
}

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_SFMASK: u32 = 0xc000_0084;

/// Top of the trampoline stack (TSS.RSP0).
pub fn trampoline_top() -> u64 {
    (&raw const ENTRY_RW) as u64 + core::mem::size_of::<EntryRw>() as u64
}

/// Virtual ranges of the entry area: (text start, text end), ro page, rw page.
pub fn entry_area() -> ((u64, u64), u64, u64) {
    (
        ((&raw const __entry_text_start) as u64, (&raw const __entry_text_end) as u64),
        (&raw const __entry_ro_start) as u64,
        (&raw const __entry_rw_start) as u64,
    )
}

/// Sets up `syscall` (STAR, LSTAR, SFMASK) and the entry page's mode flag.
pub fn init() {
    let pvm = mode::current() == ExecMode::Pvm;
    // SAFETY: ENTRY_RO is only read by the entry code; interrupts are off and nothing else
    // runs. The MSR values point `syscall` at the entry stub and mask TF, IF and DF.
    unsafe {
        ENTRY_RO.pvm = u64::from(pvm);
        let star = (u64::from(USER_CS - 16 - 3) << 48) | (u64::from(KERNEL_CS) << 32);
        mode::write_msr(MSR_STAR, star);
        mode::write_msr(MSR_LSTAR, syscall_entry as *const () as u64);
        // TF, IF, DF, IOPL, NT and AC: nothing of the user's flags may leak into the kernel.
        mode::write_msr(MSR_SFMASK, 0x4_7700);
    }
    let _ = USER_DS;
}

/// Points the entry code at the task about to run: the top of its kernel stack (where trap
/// frames go) and its page-table roots.
pub fn set_current(stack_top: u64, kernel_cr3: u64, user_cr3: u64) {
    // SAFETY: ENTRY_RO is written only here, with interrupts off (the scheduler switches
    // tasks with them off), and read by the entry code, which cannot run concurrently on
    // one CPU. The roots are valid tables built by `uspace` (or the kernel root).
    unsafe {
        let ro = &raw mut ENTRY_RO;
        (*ro).kernel_cr3 = kernel_cr3;
        // When the host flips to CR3 + 4 KiB itself, the entry code must not switch.
        (*ro).user_cr3 = if mode::host_flips_cr3() { kernel_cr3 } else { user_cr3 };
        (*ro).task_stack_top = stack_top;
    }
}

/// Called by the entry code, on the task's kernel stack, with the kernel page tables; returns
/// to user mode with the (possibly changed) frame.
pub(super) extern "C" fn dispatch_user(frame: &mut TrapFrame) {
    (super::hooks::get().user_trap)(frame)
}
