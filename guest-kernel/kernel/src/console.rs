//! The kernel console: formatted output to the early console (a buffer shared with the VMM,
//! kicked once per line).

use crate::arch::memory::take_console_buffer;
use crate::arch::pv::EarlyConsole;
use crate::arch::sync::IrqMutex;
use core::fmt::{self, Write};
use umlvm_boot::BootInfo;
use umlvm_kcore::console::LineBuffer;

struct Console {
    sink: EarlyConsole,
    line: LineBuffer,
}

static CONSOLE: IrqMutex<Option<Console>> = IrqMutex::new(None);

/// Whether kernel messages go to tty0 (con0) instead of the early console.
static TTY0: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// From now on, kernel messages go to tty0.
pub fn use_tty0() {
    flush();
    TTY0.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// A `fmt::Write` that collects into a small stack buffer and writes to tty0 per chunk.
struct TtyWriter {
    buf: [u8; 256],
    len: usize,
}

impl TtyWriter {
    fn flush(&mut self) {
        if self.len > 0 {
            crate::tty::write("tty0", &self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Write for TtyWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

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
    if TTY0.load(core::sync::atomic::Ordering::Relaxed) {
        let mut w = TtyWriter { buf: [0; 256], len: 0 };
        let _ = w.write_fmt(args);
        w.flush();
        return;
    }
    if let Some(c) = CONSOLE.lock().as_mut() {
        // Console writes cannot fail.
        let _ = c.write_fmt(args);
    }
}

/// Writes raw bytes (user output).
pub fn write_bytes(bytes: &[u8]) {
    if TTY0.load(core::sync::atomic::Ordering::Relaxed) && crate::tty::write("tty0", bytes) {
        return;
    }
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
