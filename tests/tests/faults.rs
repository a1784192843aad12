//! End-to-end: kernel panics, CPU exceptions, triple faults and unexpected VM exits are
//! reported with enough to debug them, and with distinct exit statuses.

use umlvm_tests::{Run, boot};

const GUEST_PANIC: i32 = 101;
const TRIPLE_FAULT: i32 = 102;
const UNEXPECTED_EXIT: i32 = 103;

fn crash(what: &str, extra: &[&str]) -> Run {
    let mut switches = vec![format!("crash={what}")];
    switches.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = switches.iter().map(String::as_str).collect();
    boot(&refs)
}

/// The guest prints raw addresses; umlvm resolves them with the kernel's symbol table.
#[track_caller]
fn assert_backtrace(r: &Run) {
    r.assert_stdout("  backtrace:\n    #0 0xffffffff8")
        .assert_stdout("    #1 0xffffffff8")
        .assert_stderr("umlvm: guest backtrace:\n  #0 0xffffffff8")
        .assert_stderr("umlvm_kernel::arch::entry::kernel_entry+0x")
        .assert_stderr("_start+0x");
}

#[test]
fn panic_prints_message_location_and_backtrace() {
    let r = crash("panic", &[]);
    r.assert_status(GUEST_PANIC)
        .assert_stdout("KERNEL PANIC: crash=panic requested on the command line")
        .assert_stdout("  at kernel/src/selftest/crash.rs:")
        .assert_stderr("umlvm: guest kernel panicked")
        .assert_stderr("core::panicking::panic_fmt+0x");
    assert_backtrace(&r);
}

#[test]
fn page_fault_reports_address_error_code_and_registers() {
    let r = crash("pagefault", &[]);
    r.assert_status(GUEST_PANIC)
        .assert_stdout("KERNEL FAULT: #PF page fault (vector 14)")
        .assert_stdout("error code 0x2: not present, write, supervisor mode")
        .assert_stdout("fault address (cr2) 0xffffc900dead0000")
        .assert_stdout("  rax 0x");
    assert_backtrace(&r);
}

#[test]
fn other_exceptions_are_named() {
    for (what, text) in [
        ("gp", "#GP general protection fault (vector 13)"),
        ("ud", "#UD invalid opcode (vector 6)"),
        ("divide", "#DE divide error (vector 0)"),
        ("breakpoint", "#BP breakpoint (vector 3)"),
    ] {
        let r = crash(what, &["selftest=none"]);
        r.assert_status(GUEST_PANIC).assert_stdout(&format!("KERNEL FAULT: {text}"));
        assert_backtrace(&r);
    }
}

#[test]
fn triple_fault_is_reported_with_registers() {
    let r = crash("triple", &["selftest=none"]);
    r.assert_status(TRIPLE_FAULT)
        .assert_stderr("umlvm: guest triple fault (KVM_EXIT_SHUTDOWN)")
        .assert_stderr("  rip 0xffffffff8")
        .assert_stderr("cr3 0x8000");
}

#[test]
fn unexpected_exit_is_reported_with_registers() {
    let r = crash("badport", &["selftest=none"]);
    r.assert_status(UNEXPECTED_EXIT)
        .assert_stderr("umlvm: unexpected VM exit: I/O write of 0x0 (4 bytes) to port 0x7f0")
        .assert_stderr(" rdx 0x00000000000007f0");
}

#[test]
fn native_mode_reports_faults_too() {
    let r = crash("pagefault", &["pvm=off", "selftest=none"]);
    r.assert_status(GUEST_PANIC)
        .assert_stdout("native mode")
        .assert_stdout("KERNEL FAULT: #PF page fault (vector 14)")
        .assert_stdout("fault address (cr2) 0xffffc900dead0000");
}
