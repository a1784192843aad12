//! The kernel console: formatted output to the early console (a buffer shared with the VMM,
//! kicked once per line).

use crate::arch::memory::take_console_buffer;
use crate::arch::pv::EarlyConsole;
use crate::sync::IrqMutex;
use core::fmt::{self, Write};
use umlvm_boot::BootInfo;
use umlvm_kcore::console::LineBuffer;

struct Console {
    sink: EarlyConsole,
    line: LineBuffer,
}

static CONSOLE: IrqMutex<Option<Console>> = IrqMutex::new(None);

/// Takes over the console buffer the VMM reserved.
pub fn init(info: &BootInfo) {
    if let Some(buf) = take_console_buffer(info) {
        *CONSOLE.lock() = Some(Console { sink: EarlyConsole::new(buf), line: LineBuffer::new() });
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.line.write(&mut self.sink, s.as_bytes());
        Ok(())
    }
}

/// Prints formatted text.
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        // Console writes cannot fail.
        let _ = c.write_fmt(args);
    }
}

/// Writes raw bytes (user output).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.line.write(&mut c.sink, bytes);
    }
}

/// Prints formatted text from a fault path: never waits for the lock (the faulting code may
/// hold it); returns whether it printed.
pub fn print_from_fault(args: fmt::Arguments<'_>) -> bool {
    match CONSOLE.try_lock() {
        Some(mut guard) => match guard.as_mut() {
            Some(c) => {
                let _ = c.write_fmt(args);
                c.line.flush(&mut c.sink);
                true
            }
            None => false,
        },
        None => false,
    }
}

/// Kicks out any partial line.
pub fn flush() {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.line.flush(&mut c.sink);
    }
}

/// Console kicks so far (each is one exit to the VMM).
pub fn kicks() -> u64 {
    CONSOLE.lock().as_ref().map_or(0, |c| c.line.kicks())
}

/// Prints to the console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
