//! `crash=WHAT`: deliberate kernel faults, so tests can check how they are reported.

use crate::arch::cpu::crash;

/// Triggers the fault named by `what`; unknown names are logged and ignored.
pub fn trigger(what: &str) {
    log::info!("crash={what}: triggering it now");
    crate::console::flush();
    match what {
        "panic" => panic!("crash=panic requested on the command line"),
        "pagefault" => crash::page_fault(0xffff_c900_dead_0000),
        "gp" => crash::general_protection(),
        "ud" => crash::invalid_opcode(),
        "divide" => crash::divide_error(),
        "breakpoint" => crash::breakpoint(),
        "triple" => {
            crate::arch::trap::clear_idt();
            crash::breakpoint();
        }
        "badport" => crate::arch::pv::unassigned_port(),
        other => {
            log::warn!(
                "crash={other}: unknown (panic, pagefault, gp, ud, divide, breakpoint, triple, badport)"
            );
            return;
        }
    }
    log::error!("crash={what} did not stop the kernel");
}
