//! Exceptions and interrupts above the arch layer: dispatch and fault reports.

use crate::arch::trap::TrapFrame;
use crate::arch::{memory, mode};
use core::sync::atomic::{AtomicU64, Ordering};
use umlvm_boot::PanicRecord;
use umlvm_kcore::backtrace::{self, MAX_FRAMES};
use umlvm_kcore::exception::{PageFaultCode, has_error_code, name};

static EXPECTED_BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// Fills the IDT.
pub fn init() {
    crate::arch::trap::init(crate::irq::vectors());
    crate::arch::trap::set_kernel_stack(crate::arch::user::trampoline_top());
    crate::arch::user::init();
}

/// Lets the next `n` breakpoints (`int3`) resume instead of being fatal (self-checks).
pub fn expect_breakpoints(n: u64) {
    EXPECTED_BREAKPOINTS.store(n, Ordering::Relaxed);
}

/// Breakpoints handled so far.
pub fn breakpoints() -> u64 {
    BREAKPOINTS.load(Ordering::Relaxed)
}

/// Entry from the arch trap stubs.
pub fn dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector >= 32 {
        crate::irq::handle(vector as u8);
        return;
    }
    if vector == 3 && EXPECTED_BREAKPOINTS.load(Ordering::Relaxed) > 0 {
        EXPECTED_BREAKPOINTS.fetch_sub(1, Ordering::Relaxed);
        BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    fatal_exception(frame)
}

fn fatal_exception(f: &TrapFrame) -> ! {
    let (mnemonic, what) = name(f.vector);
    let p = crate::console::print_from_fault;
    p(format_args!(
        "KERNEL FAULT: {mnemonic} {what} (vector {}) at rip {:#018x}, {} mode\n",
        f.vector,
        f.rip,
        mode::current().name()
    ));
    if has_error_code(f.vector) {
        if f.vector == 14 {
            p(format_args!("  error code {:#x}: {}\n", f.error_code, PageFaultCode(f.error_code)));
        } else {
            p(format_args!("  error code {:#x}\n", f.error_code));
        }
    }
    if f.vector == 14 {
        p(format_args!("  fault address (cr2) {:#018x}\n", mode::fault_address()));
    }
    p(format_args!("  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n", f.rax, f.rbx, f.rcx, f.rdx));
    p(format_args!("  rsi {:#018x} rdi {:#018x} rbp {:#018x} rsp {:#018x}\n", f.rsi, f.rdi, f.rbp, f.rsp));
    p(format_args!("  r8  {:#018x} r9  {:#018x} r10 {:#018x} r11 {:#018x}\n", f.r8, f.r9, f.r10, f.r11));
    p(format_args!("  r12 {:#018x} r13 {:#018x} r14 {:#018x} r15 {:#018x}\n", f.r12, f.r13, f.r14, f.r15));
    p(format_args!("  cs {:#x} ss {:#x} rflags {:#x}\n", f.cs, f.ss, f.rflags));
    let record = print_backtrace(f.rip, f.rbp);
    crate::arch::pv::panic_exit(record)
}

/// The backtrace handed to the VMM on a fatal fault or panic.
static PANIC_RECORD: spinning_top::Spinlock<PanicRecord> = spinning_top::Spinlock::new(PanicRecord::new());

/// Prints a backtrace starting at `rip` and walking the frame pointers from `rbp`; records it
/// for the VMM and returns the record's physical address (0 if it could not be recorded).
pub fn print_backtrace(rip: u64, rbp: u64) -> u64 {
    let p = crate::console::print_from_fault;
    let mut frames = [0u64; MAX_FRAMES];
    let stack = if (memory::fault_stack_bounds().0..memory::fault_stack_bounds().1).contains(&rbp) {
        memory::fault_stack_bounds()
    } else {
        memory::kernel_stack_bounds()
    };
    let n = backtrace::walk(rbp, stack, |a| memory::read_stack_word(a, stack), &mut frames);
    p(format_args!("  backtrace:\n    #0 {rip:#018x}\n"));
    for (i, ret) in frames[..n].iter().enumerate() {
        p(format_args!("    #{} {ret:#018x}\n", i + 1));
    }
    let Some(mut record) = PANIC_RECORD.try_lock() else { return 0 };
    record.frames[0] = rip;
    let kept = n.min(record.frames.len() - 1);
    record.frames[1..=kept].copy_from_slice(&frames[..kept]);
    record.count = kept as u64 + 1;
    memory::kernel_virt_to_phys(&*record as *const PanicRecord as u64).unwrap_or(0)
}
