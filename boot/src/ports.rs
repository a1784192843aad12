//! The para-virtual I/O port map.
//!
//! The guest talks to the VMM through a handful of 32-bit `out` ports. Each `out` is one exit
//! to the VMM (~40 µs on PVM hosts), so nothing here is per-byte: the console is a shared buffer
//! with one kick per line.

/// `out` the exit status (0-255): the guest powers off and `umlvm` exits with that status.
pub const EXIT: u16 = 0x0500;
/// `out` anything: the guest asks for a reboot; the VMM builds a fresh machine.
pub const REBOOT: u16 = 0x0501;
/// `out` the guest-physical address of a [`crate::PanicRecord`] (or 0): the guest kernel
/// panicked. It has already printed why; the VMM prints the backtrace with symbols.
pub const PANIC: u16 = 0x0502;
/// `out` the number of bytes at the start of the console buffer ([`crate::BootInfo::console`])
/// that are ready; the VMM writes them out before the `out` completes, so the guest can reuse
/// the buffer at once.
pub const CONSOLE: u16 = 0x0503;
/// `out` a GSI: the VMM pulses that interrupt line once (edge). Used by the kernel's
/// self-check of IOAPIC routing.
pub const IRQ_TEST: u16 = 0x0504;

/// `out` the length of the reply the guest wrote to the control mailbox
/// ([`crate::abi::control`]): a management request is done.
pub const CONTROL_DONE: u16 = 0x0505;

/// First port of the para-virtual range; the VMM rejects other ports as unexpected exits.
pub const FIRST: u16 = EXIT;
/// Last port of the para-virtual range.
pub const LAST: u16 = CONTROL_DONE;
