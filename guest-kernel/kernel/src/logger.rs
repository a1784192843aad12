//! `log` facade backend: timestamped lines on the console, Linux-dmesg style.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct KernelLog;

static LOGGER: KernelLog = KernelLog;

impl Log for KernelLog {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let ns = crate::time::now_ns();
        let (s, us) = (ns / 1_000_000_000, (ns / 1000) % 1_000_000);
        let level = match record.level() {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            _ => "",
        };
        crate::kprintln!("[{s:5}.{us:06}] {level}{}", record.args());
    }

    fn flush(&self) {
        crate::console::flush();
    }
}

/// Installs the logger (`loglevel=debug` style filtering can come later).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
