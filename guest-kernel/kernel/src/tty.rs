//! Terminals: a `ttyN` for each console (`conN`) and a `ttySN` for each serial line
//! (`sslN`), over virtio consoles, with a canonical line discipline. Once `tty0` exists the
//! kernel log goes to it (con0), like a Linux console.

use crate::arch::virtio::{self, VirtioConsole};
use crate::irq;
use crate::sync::IrqMutex;
use alloc::string::String;
use alloc::vec::Vec;
use umlvm_boot::BootInfo;
use umlvm_boot::abi::{device_kind, device_role};
use umlvm_kcore::cmdline::Cmdline;
use umlvm_kcore::ldisc::{LineDiscipline, onlcr};

/// A terminal.
pub struct Tty {
    /// `tty0`, `ttyS1`, ...
    pub name: String,
    dev: VirtioConsole,
    ldisc: LineDiscipline,
}

static TTYS: IrqMutex<Vec<Tty>> = IrqMutex::new(Vec::new());

/// Probes the consoles and serial lines in the device table.
pub fn init(info: &BootInfo) {
    let mut ttys = Vec::new();
    for e in info.device_entries() {
        let class = device_role::class(e.role);
        if e.kind != device_kind::VIRTIO_MMIO || !(class == device_role::CON || class == device_role::SSL) {
            continue;
        }
        if e.gsi >= u32::from(irq::IOAPIC_PINS) {
            continue;
        }
        let Some(dev) = virtio::probe_console(e.mmio.gpa, e.mmio.len) else { continue };
        irq::route_pin(e.gsi as u8, crate::arch::ioapic::Trigger::Edge);
        let unit = device_role::unit(e.role);
        let name = if class == device_role::CON {
            alloc::format!("tty{unit}")
        } else {
            alloc::format!("ttyS{unit}")
        };
        ttys.push(Tty { name, dev, ldisc: LineDiscipline::new() });
    }
    let names: Vec<String> = ttys.iter().map(|t| t.name.clone()).collect();
    let has_console = names.iter().any(|n| n == "tty0");
    *TTYS.lock() = ttys;
    if !names.is_empty() {
        log::info!("terminals: {}", names.join(" "));
    }
    if has_console {
        crate::console::use_tty0();
        log::info!("console: kernel messages now go to tty0 (con0)");
    }
}

/// Writes `bytes` to the terminal `name` (with `\n` -> `\r\n`); false if there is none.
pub fn write(name: &str, bytes: &[u8]) -> bool {
    let mut ttys = TTYS.lock();
    let Some(t) = ttys.iter_mut().find(|t| t.name == name) else { return false };
    onlcr(bytes, |piece| {
        if !piece.is_empty() {
            t.dev.write(piece);
        }
    });
    true
}

/// Reads a line from `name` (echoing it), waiting up to `timeout_ns`.
pub fn read_line(name: &str, timeout_ns: u64) -> Option<String> {
    let deadline = crate::time::now_ns() + timeout_ns;
    loop {
        {
            let mut ttys = TTYS.lock();
            let t = ttys.iter_mut().find(|t| t.name == name)?;
            while let Some(b) = t.dev.read_byte() {
                let step = t.ldisc.input(b);
                if !step.echo.is_empty() {
                    t.dev.write(step.echo);
                }
                if let Some(c) = step.echo_char {
                    t.dev.write(&[c]);
                }
                if step.line_done {
                    let line = t.ldisc.take_line().unwrap_or_default();
                    return Some(String::from_utf8_lossy(line).into_owned());
                }
            }
        }
        if crate::time::now_ns() >= deadline {
            return None;
        }
        // Woken by the console's interrupt, or after 10 ms.
        crate::time::sleep_until((crate::time::now_ns() + 10_000_000).min(deadline));
    }
}

/// `contest=TTY`: echo lines typed on TTY until `quit` (or 30 s without one).
pub fn selftest(cmdline: &Cmdline<'_>) -> u32 {
    let Some(name) = cmdline.get("contest") else { return 0 };
    if !write(name, b"contest: type lines; 'quit' ends\n") {
        log::error!("contest {name}: no such terminal");
        return 1;
    }
    let mut lines = 0;
    loop {
        match read_line(name, 30_000_000_000) {
            Some(line) if line == "quit" => break,
            Some(line) => {
                lines += 1;
                write(name, alloc::format!("echo: {line}\n").as_bytes());
            }
            None => {
                log::error!("contest {name}: no input for 30 s");
                return 1;
            }
        }
    }
    log::info!("contest {name}: ok ({lines} lines echoed)");
    0
}
