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

/// Installs the logger with the level the command line asks for, as Linux reads it: `quiet`
/// shows errors only, `debug` everything, `loglevel=N` the Linux console levels (0-7: 3 and
/// below errors, 4 warnings, 5-6 information, 7 debug).
pub fn init(cmdline: &umlvm_kcore::cmdline::Cmdline<'_>) {
    let mut level = LevelFilter::Info;
    if cmdline.flag("quiet") {
        level = LevelFilter::Error;
    }
    if cmdline.flag("debug") {
        level = LevelFilter::Debug;
    }
    if let Some(Ok(n)) = cmdline.get_u64("loglevel") {
        level = match n {
            0..=4 => LevelFilter::Error,
            5 => LevelFilter::Warn,
            6 | 7 => LevelFilter::Info,
            _ => LevelFilter::Debug,
        };
    }
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// Whether informational messages are shown (not `quiet`).
pub fn verbose() -> bool {
    log::max_level() >= LevelFilter::Info
}
