//! End-to-end: user mode. The kernel's built-in user programs cross between user and
//! supervisor mode many times (syscalls, fresh pages, timer interrupts in user mode), and
//! programs that touch kernel memory are killed. On PVM hosts this runs in PVM mode, with the
//! host's user-root flip and, with `pvm_flip=off`, with the kernel switching page tables
//! itself.

use umlvm_tests::{Run, boot, number_after, pvm_host};

#[track_caller]
fn assert_user_mode_works(r: &Run) {
    r.assert_status(0)
        .assert_stdout("user: hello from user mode\r\n")
        .assert_stdout("selfcheck user: ok (registers intact; ");
    let line = r.stdout.lines().find(|l| l.contains("selfcheck user: ok")).unwrap();
    assert_eq!(number_after(line, "registers intact;"), Some(202), "200 getpid + write + exit\n{r}");
    let faults = number_after(line, "syscalls,").unwrap();
    assert!(faults >= 32, "32 fresh pages touched, {faults} page faults\n{r}");
    let ticks = number_after(line, "page faults,").unwrap();
    assert!(ticks >= 1, "no timer interrupt in user mode\n{r}");
}

#[track_caller]
fn assert_isolation(r: &Run) {
    r.assert_stdout("selfcheck isolation: ok (5 attempts on kernel memory, each killed with SIGSEGV)");
    let kills: Vec<&str> =
        r.stdout.lines().filter(|l| l.contains("killed by signal 11 (SIGSEGV): #PF")).collect();
    assert_eq!(kills.len(), 5, "five attempts, five kills\n{r}");
    for (line, what) in kills.iter().zip(["read", "write", "read", "write", "write"]) {
        assert!(line.contains(&format!(", {what}, user mode)")), "{line}\n{r}");
        assert!(line.contains("address 0xffff"), "fault address is the kernel address: {line}");
    }
}

#[test]
fn user_programs_run_and_cannot_touch_kernel_memory() {
    let r = boot(&["selftest=user,isolation"]);
    if pvm_host() {
        r.assert_stdout("(pvm mode on a kvm_pvm host)");
    }
    assert_user_mode_works(&r);
    assert_isolation(&r);
}

#[test]
fn kernel_switched_page_tables_work_too() {
    // pvm_flip=off: the host does not switch to the user root; the entry code loads CR3 with
    // hypercalls. Same programs, same results.
    let r = boot(&["selftest=user,isolation", "pvm_flip=off"]);
    assert_user_mode_works(&r);
    assert_isolation(&r);
    if pvm_host() {
        r.assert_stdout("user-root flip off");
    }
}

#[test]
fn benchmarks_run_in_the_guest() {
    let r = boot(&["selftest=none", "bench=zero"]);
    r.assert_status(0);
    let kernel_us = number_after(&r.stdout, "bench zero: kernel zeroed 16 MiB in").expect("kernel figure");
    let user_us = number_after(&r.stdout, "bench zero: user (CPL 3) zeroed 16 MiB in").expect("user figure");
    assert!(kernel_us > 0 && user_us > 0, "{r}");
}
