//! The panic handler: message, location, backtrace, then the panic port.

use core::panic::PanicInfo;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    crate::arch::mode::irq_disable();
    let printed = crate::console::print_from_fault(format_args!("KERNEL PANIC: {}\n", info.message()));
    let mut record = 0;
    if printed {
        if let Some(loc) = info.location() {
            crate::console::print_from_fault(format_args!(
                "  at {}:{}:{}\n",
                loc.file(),
                loc.line(),
                loc.column()
            ));
        }
        let rbp = crate::arch::cpu::frame_pointer();
        let rip = panic as *const () as u64;
        record = crate::trap::print_backtrace(rip, rbp);
    }
    crate::arch::pv::panic_exit(record)
}
