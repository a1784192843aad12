//! Built-in user programs (x86-64 machine code) for the kernel's user-mode self-checks and
//! benchmarks. They are position independent; the kernel copies them into a fresh address
//! space at [`CODE_BASE`]. Arguments arrive in rdi, rsi, rdx.

/// Where user programs are loaded.
pub const CODE_BASE: u64 = 0x40_0000;
/// Start of the anonymous data area the programs touch.
pub const DATA_BASE: u64 = 0x1000_0000;

core::arch::global_asm!(
    ".section .rodata.user_programs, \"a\"",
    ".p2align 4",
    // selftest(syscalls, pages, spin_tsc): getpid x syscalls; write each of `pages` fresh
    // pages at DATA_BASE; spin for spin_tsc TSC ticks (taking timer interrupts in user
    // mode); write a greeting; exit(0).
    ".global user_selftest_start",
    "user_selftest_start:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    mov r14, rdx",
    "    test r12, r12",
    "    jz 2f",
    "1:  mov eax, 39",
    "    syscall",
    "    dec r12",
    "    jnz 1b",
    "2:  mov rbx, {data}",
    "    test r13, r13",
    "    jz 4f",
    "3:  mov qword ptr [rbx], r13",
    "    add rbx, 4096",
    "    dec r13",
    "    jnz 3b",
    "4:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    add r14, rax",
    "5:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    cmp rax, r14",
    "    jb 5b",
    "    mov eax, 1",
    "    mov edi, 1",
    "    lea rsi, [rip + 6f]",
    "    lea rdx, [rip + 7f]",
    "    sub rdx, rsi",
    "    syscall",
    "    mov eax, 60",
    "    xor edi, edi",
    "    syscall",
    "    ud2",
    "6:  .ascii \"user: hello from user mode\\n\"",
    "7:",
    ".global user_selftest_end",
    "user_selftest_end:",
    "",
    // peek(addr): read a qword at addr; if that survives, exit(1).
    ".p2align 4",
    ".global user_peek_start",
    "user_peek_start:",
    "    mov rax, qword ptr [rdi]",
    "    mov eax, 60",
    "    mov edi, 1",
    "    syscall",
    ".global user_peek_end",
    "user_peek_end:",
    "",
    // poke(addr): write a qword at addr; if that survives, exit(1).
    ".p2align 4",
    ".global user_poke_start",
    "user_poke_start:",
    "    mov qword ptr [rdi], 0x42",
    "    mov eax, 60",
    "    mov edi, 1",
    "    syscall",
    ".global user_poke_end",
    "user_poke_end:",
    "",
    // syscall_bench(calls, batches): for each batch time `calls` getpid round trips with
    // rdtsc and store the ticks at DATA_BASE + 8 * batch; exit(0).
    ".p2align 4",
    ".global user_syscall_bench_start",
    "user_syscall_bench_start:",
    "    mov r12, rdi",
    "    mov r13, rsi",
    "    mov rbx, {data}",
    "1:  rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r15, rax",
    "    mov r14, r12",
    "2:  mov eax, 39",
    "    syscall",
    "    dec r14",
    "    jnz 2b",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r15",
    "    mov qword ptr [rbx], rax",
    "    add rbx, 8",
    "    dec r13",
    "    jnz 1b",
    "    mov eax, 60",
    "    xor edi, edi",
    "    syscall",
    ".global user_syscall_bench_end",
    "user_syscall_bench_end:",
    "",
    // zero_bench(bytes): touch every page of [DATA_BASE + 4096, + bytes) first, then time
    // zeroing it with the same loop the kernel uses; store the ticks at DATA_BASE; exit(0).
    ".p2align 4",
    ".global user_zero_bench_start",
    "user_zero_bench_start:",
    "    mov r12, rdi",
    "    mov rbx, {data} + 4096",
    "    mov rcx, r12",
    "1:  mov byte ptr [rbx + rcx - 1], 1",
    "    sub rcx, 4096",
    "    ja 1b",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    mov r15, rax",
    "    mov rdi, rbx",
    "    mov rcx, r12",
    "    shr rcx, 3",
    "    xor eax, eax",
    "2:  mov qword ptr [rdi], rax",
    "    add rdi, 8",
    "    dec rcx",
    "    jnz 2b",
    "    rdtsc",
    "    shl rdx, 32",
    "    or rax, rdx",
    "    sub rax, r15",
    "    mov rbx, {data}",
    "    mov qword ptr [rbx], rax",
    "    mov eax, 60",
    "    xor edi, edi",
    "    syscall",
    ".global user_zero_bench_end",
    "user_zero_bench_end:",
    ".p2align 4",
    ".global user_regprobe_start",
    "user_regprobe_start:",
    "    mov qword ptr [{data} + 0], rdi",
    "    mov qword ptr [{data} + 8], rsi",
    "    mov qword ptr [{data} + 16], rdx",
    "    mov qword ptr [{data} + 24], rcx",
    "    mov qword ptr [{data} + 32], r8",
    "    mov qword ptr [{data} + 40], r9",
    "    mov qword ptr [{data} + 48], r10",
    "    mov qword ptr [{data} + 56], r11",
    "    mov qword ptr [{data} + 64], rbp",
    "    mov qword ptr [{data} + 72], r12",
    "    mov qword ptr [{data} + 80], r13",
    "    mov qword ptr [{data} + 88], r14",
    "    mov qword ptr [{data} + 96], r15",
    "    mov qword ptr [{data} + 104], rax",
    "    mov qword ptr [{data} + 112], rbx",
    "    mov qword ptr [{data} + 120], rsp",
    "    mov eax, 60",
    "    xor edi, edi",
    "    syscall",
    ".global user_regprobe_end",
    "user_regprobe_end:",
    ".section .text",
    data = const DATA_BASE,
);

unsafe extern "C" {
    static user_selftest_start: u8;
    static user_selftest_end: u8;
    static user_peek_start: u8;
    static user_peek_end: u8;
    static user_poke_start: u8;
    static user_poke_end: u8;
    static user_syscall_bench_start: u8;
    static user_syscall_bench_end: u8;
    static user_zero_bench_start: u8;
    static user_zero_bench_end: u8;
    static user_regprobe_start: u8;
    static user_regprobe_end: u8;
}

/// A built-in user program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Syscalls, fresh pages, timer ticks in user mode, a write, exit(0).
    SelfTest,
    /// Reads the address in rdi (must be killed).
    Peek,
    /// Writes the address in rdi (must be killed).
    Poke,
    /// Times getpid round trips.
    SyscallBench,
    /// Times zeroing memory at CPL 3.
    ZeroBench,
    /// Stores its initial registers at DATA_BASE (checks the return to user mode).
    RegProbe,
}

impl Program {
    /// The program's machine code.
    pub fn name(self) -> &'static str {
        match self {
            Self::SelfTest => "selftest",
            Self::Peek => "peek",
            Self::Poke => "poke",
            Self::RegProbe => "regprobe",
            Self::SyscallBench => "syscallbench",
            Self::ZeroBench => "zerobench",
        }
    }

    /// The program's machine code.
    pub fn code(self) -> &'static [u8] {
        let (start, end) = match self {
            Self::SelfTest => (&raw const user_selftest_start, &raw const user_selftest_end),
            Self::Peek => (&raw const user_peek_start, &raw const user_peek_end),
            Self::Poke => (&raw const user_poke_start, &raw const user_poke_end),
            Self::SyscallBench => (&raw const user_syscall_bench_start, &raw const user_syscall_bench_end),
            Self::ZeroBench => (&raw const user_zero_bench_start, &raw const user_zero_bench_end),
            Self::RegProbe => (&raw const user_regprobe_start, &raw const user_regprobe_end),
        };
        let len = end as usize - start as usize;
        // SAFETY: the two labels delimit one program inside the kernel's read-only data,
        // which is mapped and immutable for the kernel's lifetime.
        unsafe { core::slice::from_raw_parts(start, len) }
    }
}

/// The kernel side of the zeroing benchmark: the same loop as the user program's, over
/// `len` bytes (a multiple of 8) of the frame at physical `frame`.
pub fn zero_loop(frame: u64, len: usize) {
    assert!(frame.is_multiple_of(4096) && len <= 4096 && len.is_multiple_of(8) && len > 0);
    let ptr = super::memory::phys_to_virt(frame);
    // SAFETY: the caller owns the frame (fresh from the allocator); the loop writes exactly
    // `len` bytes inside it, through the direct map.
    unsafe {
        core::arch::asm!(
            "2: mov qword ptr [{p}], {z}",
            "add {p}, 8",
            "dec {n}",
            "jnz 2b",
            p = inout(reg) ptr => _,
            n = inout(reg) len / 8 => _,
            z = in(reg) 0u64,
            options(nostack)
        )
    };
}
