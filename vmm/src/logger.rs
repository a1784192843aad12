//! The VMM's `log` backend: one line per record on stderr, `umlvm: <level>: ...`. Warnings
//! and errors always; `-v` adds info, `-vv` debug. Records a guest can trigger at will
//! (device warnings) are rate-limited so a guest cannot flood the host log.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct StderrLog {
    window: Mutex<(Instant, u32)>,
}

/// At most this many records per second; the rest are counted and reported once.
const MAX_PER_SECOND: u32 = 50;

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        if let Ok(mut w) = self.window.lock() {
            if w.0.elapsed() > Duration::from_secs(1) {
                if w.1 > MAX_PER_SECOND {
                    eprintln!("umlvm: warning: {} log records suppressed", w.1 - MAX_PER_SECOND);
                }
                *w = (Instant::now(), 0);
            }
            w.1 += 1;
            if w.1 > MAX_PER_SECOND {
                return;
            }
        }
        let level = match record.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        eprintln!("umlvm: {level}: {}", record.args());
    }

    fn flush(&self) {}
}

/// Installs the logger for `verbose` (`-v` count).
pub fn init(verbose: u8) {
    static LOGGER: std::sync::OnceLock<StderrLog> = std::sync::OnceLock::new();
    let logger = LOGGER.get_or_init(|| StderrLog { window: Mutex::new((Instant::now(), 0)) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(match verbose {
            0 => LevelFilter::Warn,
            1 => LevelFilter::Info,
            _ => LevelFilter::Debug,
        });
    }
}
