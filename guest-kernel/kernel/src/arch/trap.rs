//! Trap entry: the IDT gates, the assembly stubs, and the saved register frame.
//!
//! Every vector has a 16-byte stub that pushes a zero error code where the CPU pushes none,
//! then the vector number, and jumps to `trap_common`, which saves the general registers and
//! calls the kernel's trap hook ([`super::hooks`]) with a `&mut TrapFrame`. The IDT lives in the page the VMM
//! reserved and already loaded into IDTR; we only write its gates.

use super::memory::{FAULT_STACK, FAULT_STACK_SIZE, phys_to_virt};
use umlvm_boot::layout::{IDT_GPA, TSS_GPA};
use umlvm_boot::x86::KERNEL_CS;

/// Registers saved on trap entry, lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(missing_docs, reason = "register names are self-explanatory")]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    /// Vector number pushed by the stub.
    pub vector: u64,
    /// Error code (0 where the CPU pushes none).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    ".section .entry_text, \"ax\"",
    ".p2align 4",
    ".global trap_stubs",
    "trap_stubs:",
    ".set vec, 0",
    ".rept 256",
    "    .p2align 4",
    "    .if vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21",
    "    .else",
    "    push 0",
    "    .endif",
    "    push vec",
    "    jmp trap_common",
    "    .set vec, vec + 1",
    ".endr",
    "",
    "trap_common:",
    "    push rax",
    "    push rbx",
    "    push rcx",
    "    push rdx",
    "    push rsi",
    "    push rdi",
    "    push rbp",
    "    push r8",
    "    push r9",
    "    push r10",
    "    push r11",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    test byte ptr [rsp + {cs_off}], 3",
    "    jnz 2f",
    // From the kernel: handle in place on the current stack.
    "    mov rdi, rsp",
    "    mov rbx, rsp",
    "    and rsp, -16",
    "    cld",
    "    call {dispatch_kernel}",
    "    mov rsp, rbx",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    pop rbx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    // From user mode: we are on the trampoline stack, maybe on the user page tables.
    "2:",
    "    cld",
    "    mov rbx, qword ptr [rip + {ro} + {ro_kernel_cr3}]",
    "    cmp rbx, qword ptr [rip + {ro} + {ro_user_cr3}]",
    "    je 3f",
    "    cmp qword ptr [rip + {ro} + {ro_pvm}], 0",
    "    je 4f",
    "    mov eax, {hc_set_cr3}",
    "    int 0x1b",
    "    jmp 3f",
    "4:  mov cr3, rbx",
    "3:",
    // Kernel page tables now: move the frame to the task's kernel stack and handle it.
    "    mov rsi, rsp",
    "    mov rdi, qword ptr [rip + {ro} + {ro_task_stack}]",
    "    sub rdi, {frame_size}",
    "    mov rbx, rdi",
    "    mov ecx, {frame_words}",
    "    rep movsq",
    "    mov rsp, rbx",
    "    mov rdi, rsp",
    "    call {dispatch_user}",
    "    mov rsi, rsp",
    // Return to user mode with the frame at rsi: copy it to the trampoline stack, switch
    // to the user page tables, restore registers, and leave.
    ".global return_to_user",
    "return_to_user:",
    "    lea rdi, [rip + {rw} + {rw_stack_top} - {frame_size}]",
    "    mov rbx, rdi",
    "    mov ecx, {frame_words}",
    "    rep movsq",
    "    mov rsp, rbx",
    "    mov rbx, qword ptr [rip + {ro} + {ro_user_cr3}]",
    "    cmp rbx, qword ptr [rip + {ro} + {ro_kernel_cr3}]",
    "    je 6f",
    "    cmp qword ptr [rip + {ro} + {ro_pvm}], 0",
    "    je 7f",
    "    mov eax, {hc_set_cr3}",
    "    int 0x1b",
    "    jmp 6f",
    "7:  mov cr3, rbx",
    "6:",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop r11",
    "    pop r10",
    "    pop r9",
    "    pop r8",
    "    pop rbp",
    "    pop rdi",
    "    pop rsi",
    "    pop rdx",
    "    pop rcx",
    "    cmp qword ptr [rip + {ro} + {ro_pvm}], 0",
    "    je 8f",
    // PVM: never iretq to user mode (it would stay supervisor); HC_IRET_FRAME takes
    // {rax, rbx, rdi, rip, cs, rflags, rsp, ss} at rbx and restores rax, rbx and rdi.
    "    mov rax, qword ptr [rsp]",
    "    mov qword ptr [rsp + 16], rax",
    "    mov qword ptr [rsp + 24], rdi",
    "    lea rbx, [rsp + 8]",
    "    mov eax, {hc_iret_frame}",
    "    int 0x1b",
    "    ud2",
    "8:  pop rbx",
    "    pop rax",
    "    add rsp, 16",
    "    iretq",
    "",
    ".global syscall_entry",
    "syscall_entry:",
    "    mov qword ptr [rip + {rw} + {rw_scratch}], rsp",
    "    lea rsp, [rip + {rw} + {rw_stack_top}]",
    "    push {user_ds}",
    "    push qword ptr [rip + {rw} + {rw_scratch}]",
    "    push r11",
    "    push {user_cs}",
    "    push rcx",
    "    push 0",
    "    push {syscall_vector}",
    "    jmp trap_common",
    "",
    ".section .text",
    cs_off = const core::mem::offset_of!(TrapFrame, cs),
    frame_size = const core::mem::size_of::<TrapFrame>(),
    frame_words = const core::mem::size_of::<TrapFrame>() / 8,
    dispatch_kernel = sym trap_dispatch,
    dispatch_user = sym super::user::dispatch_user,
    ro = sym super::user::ENTRY_RO,
    rw = sym super::user::ENTRY_RW,
    ro_kernel_cr3 = const core::mem::offset_of!(super::user::EntryRo, kernel_cr3),
    ro_user_cr3 = const core::mem::offset_of!(super::user::EntryRo, user_cr3),
    ro_task_stack = const core::mem::offset_of!(super::user::EntryRo, task_stack_top),
    ro_pvm = const core::mem::offset_of!(super::user::EntryRo, pvm),
    rw_scratch = const core::mem::offset_of!(super::user::EntryRw, scratch_user_rsp),
    rw_stack_top = const core::mem::size_of::<super::user::EntryRw>(),
    hc_set_cr3 = const super::mode::HC_SET_CR3,
    hc_iret_frame = const super::mode::HC_IRET_FRAME,
    user_ds = const umlvm_boot::x86::USER_DS,
    user_cs = const umlvm_boot::x86::USER_CS,
    syscall_vector = const super::user::SYSCALL_VECTOR,
);

unsafe extern "C" {
    static trap_stubs: [u8; 256 * 16];
}

extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    (super::hooks::get().kernel_trap)(frame);
}

/// Vector of the double fault, which runs on its own stack (IST1).
const DOUBLE_FAULT: usize = 8;

/// Fills the IDT gates for `vectors` (all exceptions are always filled) and points TSS.IST1
/// at the double-fault stack. Filling only what is used keeps boot short where CPL 0 is
/// emulated.
pub fn init(vectors: impl IntoIterator<Item = u8>) {
    let stubs = (&raw const trap_stubs) as u64;
    let idt = phys_to_virt(IDT_GPA) as *mut [u64; 2];
    let gate = |vector: usize| {
        let handler = stubs + 16 * vector as u64;
        let ist = if vector == DOUBLE_FAULT { 1u64 } else { 0 };
        // Present, DPL0, 64-bit interrupt gate (type 0xE).
        let low = (handler & 0xffff)
            | (u64::from(KERNEL_CS) << 16)
            | (ist << 32)
            | (0x8e << 40)
            | (((handler >> 16) & 0xffff) << 48);
        // SAFETY: the IDT page is reserved by the VMM for exactly this table (256 gates) and
        // mapped by the direct map; vector < 256. The CPU reads it only on delivery, and
        // interrupts are off while it is filled.
        unsafe { idt.add(vector).write_volatile([low, handler >> 32]) };
    };
    (0..32).for_each(gate);
    vectors.into_iter().for_each(|v| gate(usize::from(v)));

    let ist1_top = (&raw const FAULT_STACK) as u64 + FAULT_STACK_SIZE as u64;
    // SAFETY: the TSS is the VMM-reserved page TR points at; IST1 lives at offset 0x24.
    unsafe { (phys_to_virt(TSS_GPA + 0x24) as *mut u64).write_unaligned(ist1_top) };
}

/// Sets TSS.RSP0, the stack the CPU switches to on a trap from user mode (the entry
/// trampoline stack).
pub fn set_kernel_stack(top: u64) {
    // SAFETY: the TSS page is reserved for the TSS; RSP0 lives at offset 4 (unaligned).
    unsafe { (phys_to_virt(TSS_GPA + 4) as *mut u64).write_unaligned(top) };
}

/// Clears every IDT gate, so the next exception escalates to a triple fault (`crash=triple`).
pub fn clear_idt() {
    let idt = phys_to_virt(IDT_GPA) as *mut [u64; 2];
    for vector in 0..256 {
        // SAFETY: the IDT page holds 256 gates and is reserved for them (see `init`).
        unsafe { idt.add(vector).write_volatile([0, 0]) };
    }
}
