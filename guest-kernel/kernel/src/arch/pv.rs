//! The para-virtual ports to the VMM: console kicks, exit, reboot, panic, IRQ self-test.

use super::cpu::outl;
use umlvm_boot::ports;
use umlvm_kcore::console::ConsoleSink;

/// The shared early-console buffer; a kick is one `out` to [`ports::CONSOLE`].
pub struct EarlyConsole {
    buf: &'static mut [u8],
}

impl EarlyConsole {
    /// Wraps the buffer the VMM reserved (see [`super::memory::take_console_buffer`]).
    pub fn new(buf: &'static mut [u8]) -> Self {
        Self { buf }
    }
}

impl ConsoleSink for EarlyConsole {
    fn buffer(&mut self) -> &mut [u8] {
        self.buf
    }

    fn kick(&mut self, len: usize) {
        let len = len.min(self.buf.len());
        // SAFETY: the console port only makes the VMM read the buffer; the VMM is done with it
        // when the `out` completes.
        unsafe { outl(ports::CONSOLE, len as u32) };
    }
}

fn halt_forever() -> ! {
    loop {
        super::mode::wait_for_interrupt();
    }
}

/// Powers the machine off; `umlvm` exits with `status`.
pub fn power_off(status: u8) -> ! {
    // SAFETY: the exit port ends the VM; no memory is involved.
    unsafe { outl(ports::EXIT, u32::from(status)) };
    halt_forever()
}

/// Asks the VMM to reboot the machine.
pub fn reboot() -> ! {
    // SAFETY: the reboot port makes the VMM discard this VM; no memory is involved.
    unsafe { outl(ports::REBOOT, 0) };
    halt_forever()
}

/// Tells the VMM the kernel panicked (after printing why), handing it the physical address
/// of a [`umlvm_boot::PanicRecord`] with the backtrace (0 for none).
pub fn panic_exit(record_phys: u64) -> ! {
    // The port carries 32 bits; the kernel image (where the record lives) is below 1 GiB.
    let value = u32::try_from(record_phys).unwrap_or(0);
    // SAFETY: the panic port ends the VM; the VMM only reads the record.
    unsafe { outl(ports::PANIC, value) };
    halt_forever()
}

/// Asks the VMM to pulse interrupt line `gsi` once (IOAPIC self-check).
pub fn pulse_irq(gsi: u32) {
    // SAFETY: the VMM asserts and deasserts the line; no memory is involved.
    unsafe { outl(ports::IRQ_TEST, gsi) };
}

/// Writes to a port the VMM does not handle (`crash=badport`): an unexpected VM exit.
pub fn unassigned_port() {
    // SAFETY: port 0x7f0 has no device behind it; the VMM treats the exit as fatal.
    unsafe { outl(0x7f0, 0) };
}

/// The control mailbox's request sequence number.
pub fn control_seq() -> u32 {
    let base = super::memory::phys_to_virt(umlvm_boot::layout::CONTROL_GPA);
    // SAFETY: a volatile read of a u32 inside the reserved control page.
    unsafe { core::ptr::read_volatile((base + umlvm_boot::abi::control::REQUEST_SEQ as u64) as *const u32) }
}

/// The control mailbox's request: copies it into `buf`, returns its length.
pub fn control_request(buf: &mut [u8; umlvm_boot::abi::control::REQUEST_MAX]) -> usize {
    use umlvm_boot::abi::control::{REQUEST, REQUEST_LEN, REQUEST_MAX};
    let base = super::memory::phys_to_virt(umlvm_boot::layout::CONTROL_GPA);
    // SAFETY: the control page is reserved by the VMM for the mailbox (boot area, never
    // allocated); the VMM wrote the request before raising the interrupt and does not touch
    // the page again until the reply is in. Reads are volatile and within the page.
    unsafe {
        let len =
            (core::ptr::read_volatile((base + REQUEST_LEN as u64) as *const u32) as usize).min(REQUEST_MAX);
        for (i, b) in buf.iter_mut().enumerate().take(len) {
            *b = core::ptr::read_volatile((base + (REQUEST + i) as u64) as *const u8);
        }
        len
    }
}

/// Writes the reply into the control mailbox and tells the VMM.
pub fn control_reply(error: bool, text: &[u8]) {
    use umlvm_boot::abi::control::{REPLY, REPLY_ERROR, REPLY_MAX};
    let base = super::memory::phys_to_virt(umlvm_boot::layout::CONTROL_GPA);
    let len = text.len().min(REPLY_MAX);
    // SAFETY: as in `control_request`; the reply area lies inside the page.
    unsafe {
        for (i, &b) in text[..len].iter().enumerate() {
            core::ptr::write_volatile((base + (REPLY + i) as u64) as *mut u8, b);
        }
        outl(ports::CONTROL_DONE, len as u32 | if error { REPLY_ERROR } else { 0 });
    }
}
