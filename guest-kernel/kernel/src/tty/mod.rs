//! Terminals: a `ttyN` for each console (`conN`) and a `ttySN` for each serial line
//! (`sslN`), over virtio consoles, with Linux's line discipline (canonical and raw mode,
//! echo, signal characters), a foreground process group and a window size. Once `tty0`
//! exists the kernel log goes to it (con0), like a Linux console.

use crate::arch::sync::IrqMutex;
use crate::arch::virtio::{self, VirtioConsole};
use crate::fs::file::oflags;
use crate::irq;
use crate::process::sched::{self, Pid};
use crate::process::signal;
use alloc::string::String;
use alloc::vec::Vec;
use umlvm_boot::BootInfo;
use umlvm_boot::abi::{device_kind, device_role};
use umlvm_kcore::cmdline::Cmdline;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::termios::{LineDiscipline, Termios, Winsize};

/// A terminal.
pub struct Tty {
    /// `tty0`, `ttyS1`, ...
    pub name: String,
    /// Serial line (`sslN`) rather than console.
    pub serial: bool,
    /// Unit number.
    pub unit: u32,
    dev: VirtioConsole,
    ldisc: LineDiscipline,
    /// Foreground process group.
    pub fg_pgrp: Pid,
    /// Session that owns it (0: none).
    pub session: Pid,
    winsize: Winsize,
    /// `stdio=pipe`: not a terminal to programs (terminal ioctls fail with ENOTTY).
    pipe_like: bool,
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
        let serial = class == device_role::SSL;
        let name = if serial { alloc::format!("ttyS{unit}") } else { alloc::format!("tty{unit}") };
        ttys.push(Tty {
            name,
            serial,
            unit: unit as u32,
            dev,
            ldisc: LineDiscipline::new(),
            fg_pgrp: 0,
            session: 0,
            winsize: Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 },
            pipe_like: false,
        });
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

/// (serial, unit) of every terminal.
pub fn units() -> Vec<(bool, u32)> {
    TTYS.lock().iter().map(|t| (t.serial, t.unit)).collect()
}

/// The table index of console `unit` (or serial line `unit`).
pub fn index_of_unit(serial: bool, unit: u32) -> Option<usize> {
    TTYS.lock().iter().position(|t| t.serial == serial && t.unit == unit)
}

/// The name of terminal `index`.
pub fn name(index: usize) -> Option<String> {
    TTYS.lock().get(index).map(|t| t.name.clone())
}

/// The sleep channel of terminal `index`.
pub fn chan(index: usize) -> u64 {
    0x7d00_0000_0000 | index as u64
}

/// Writes kernel output to the terminal `name`, through its output processing like a
/// program's (`\n` -> `\r\n` unless the terminal was set otherwise); false if there is none.
pub fn write(name: &str, bytes: &[u8]) -> bool {
    let mut ttys = TTYS.lock();
    let Some(t) = ttys.iter_mut().find(|t| t.name == name) else { return false };
    let Tty { ldisc, dev, .. } = t;
    ldisc.process_output(bytes, |piece| {
        if !piece.is_empty() {
            dev.write(piece);
        }
    });
    true
}

/// Moves received bytes from every device into its line discipline: echo, signals, wakeups.
/// Called from the console interrupt and before every read check.
pub fn pump() {
    let mut signals: Vec<(Pid, u32)> = Vec::new();
    let mut wake: Vec<usize> = Vec::new();
    {
        let mut ttys = TTYS.lock();
        for (i, t) in ttys.iter_mut().enumerate() {
            let mut any = false;
            while let Some(b) = t.dev.read_byte() {
                any = true;
                let input = t.ldisc.receive(b);
                if !input.echo.is_empty() {
                    t.dev.write(&input.echo);
                }
                if let Some(sig) = input.signal
                    && t.fg_pgrp != 0
                {
                    signals.push((t.fg_pgrp, sig));
                }
            }
            if any {
                wake.push(i);
            }
        }
    }
    for i in wake {
        sched::wake_all(chan(i));
    }
    for (pgrp, sig) in signals {
        signal::send_group(pgrp, sig);
    }
}

/// Whether a read on terminal `index` would not block.
pub fn readable(index: usize) -> bool {
    pump();
    TTYS.lock().get(index).is_some_and(|t| t.ldisc.read_ready())
}

/// Background process groups reading their terminal get SIGTTIN (orphaned groups EIO).
fn check_foreground(index: usize) -> KResult<()> {
    let me = sched::current();
    let (pgid, ctty) = {
        let i = me.proc.inner.lock();
        (i.pgid, i.ctty)
    };
    if ctty != Some(index) {
        return Ok(());
    }
    let fg = TTYS.lock().get(index).map_or(0, |t| t.fg_pgrp);
    if fg != 0 && fg != pgid {
        let ignored = signal::ignored_or_blocked(&me, umlvm_kcore::signal::SIGTTIN);
        if ignored {
            return Err(Errno::EIO);
        }
        signal::send_group(pgid, umlvm_kcore::signal::SIGTTIN);
        return Err(Errno::ERESTARTSYS);
    }
    Ok(())
}

/// `read` from terminal `index`.
pub fn read(index: usize, buf: &mut [u8], nonblock: bool) -> KResult<usize> {
    check_foreground(index)?;
    let r = sched::wait_event(chan(index), true, None, || {
        pump();
        let mut ttys = TTYS.lock();
        let t = ttys.get_mut(index)?;
        if t.ldisc.read_ready() {
            return Some(Ok(t.ldisc.read(buf)));
        }
        if nonblock {
            return Some(Err(Errno::EAGAIN));
        }
        None
    });
    r.map_err(|_| Errno::ERESTARTSYS)?
}

/// `write` from a process to terminal `index` (output processing applies).
pub fn write_user(index: usize, bytes: &[u8]) -> KResult<usize> {
    let mut ttys = TTYS.lock();
    let t = ttys.get_mut(index).ok_or(Errno::ENXIO)?;
    let Tty { ldisc, dev, .. } = t;
    ldisc.process_output(bytes, |piece| {
        if !piece.is_empty() {
            dev.write(piece);
        }
    });
    Ok(bytes.len())
}

/// Makes terminal `index` the controlling terminal of the current session (leader only).
pub fn set_controlling(index: usize, sid: Pid, pgid: Pid) {
    if let Some(t) = TTYS.lock().get_mut(index)
        && (t.session == 0 || t.session == sid)
    {
        t.session = sid;
        t.fg_pgrp = pgid;
    }
}

/// ioctl numbers.
mod ioc {
    pub const TCGETS: u64 = 0x5401;
    pub const TCSETS: u64 = 0x5402;
    pub const TCSETSW: u64 = 0x5403;
    pub const TCSETSF: u64 = 0x5404;
    pub const TCFLSH: u64 = 0x540b;
    pub const TIOCSCTTY: u64 = 0x540e;
    pub const TIOCGPGRP: u64 = 0x540f;
    pub const TIOCSPGRP: u64 = 0x5410;
    pub const TIOCOUTQ: u64 = 0x5411;
    pub const TIOCGWINSZ: u64 = 0x5413;
    pub const TIOCSWINSZ: u64 = 0x5414;
    pub const FIONREAD: u64 = 0x541b;
    pub const TIOCNOTTY: u64 = 0x5422;
    pub const TIOCGSID: u64 = 0x5429;
    pub const FIONBIO: u64 = 0x5421;
    pub const TCXONC: u64 = 0x540a;
    pub const TCSBRK: u64 = 0x5409;
    pub const TIOCGPTN: u64 = 0x8004_5430;
}

/// Terminal ioctls: the argument is a user pointer; `mem` copies to and from it.
pub fn ioctl(index: usize, file: &crate::fs::file::OpenFile, cmd: u64, arg: u64) -> KResult<u64> {
    let me = sched::current();
    let mm = me.proc.mm().ok_or(Errno::EFAULT)?;
    let pipe_like = TTYS.lock().get(index).is_some_and(|t| t.pipe_like);
    if pipe_like && cmd != ioc::FIONREAD && cmd != ioc::FIONBIO {
        // stdio=pipe: programs must see a pipe, not a terminal (isatty() is false).
        return Err(Errno::ENOTTY);
    }
    match cmd {
        ioc::TCGETS => {
            let t = TTYS.lock().get(index).map(|t| *t.ldisc.termios()).ok_or(Errno::ENXIO)?;
            mm.lock().write(arg, &t.encode())?;
            Ok(0)
        }
        ioc::TCSETS | ioc::TCSETSW | ioc::TCSETSF => {
            let mut b = [0u8; Termios::SIZE];
            mm.lock().read(arg, &mut b)?;
            let new = Termios::decode(&b)?;
            let mut ttys = TTYS.lock();
            let t = ttys.get_mut(index).ok_or(Errno::ENXIO)?;
            if cmd == ioc::TCSETSF {
                t.ldisc.flush_input();
            }
            t.ldisc.set_termios(new);
            drop(ttys);
            sched::wake_all(chan(index));
            Ok(0)
        }
        ioc::TIOCGWINSZ => {
            let w = TTYS.lock().get(index).map(|t| t.winsize).ok_or(Errno::ENXIO)?;
            mm.lock().write(arg, &w.encode())?;
            Ok(0)
        }
        ioc::TIOCSWINSZ => {
            let mut b = [0u8; Winsize::SIZE];
            mm.lock().read(arg, &mut b)?;
            let w = Winsize::decode(&b)?;
            let pg = {
                let mut ttys = TTYS.lock();
                let t = ttys.get_mut(index).ok_or(Errno::ENXIO)?;
                t.winsize = w;
                t.fg_pgrp
            };
            if pg != 0 {
                signal::send_group(pg, umlvm_kcore::signal::SIGWINCH);
            }
            Ok(0)
        }
        ioc::TIOCGPGRP => {
            let pg = TTYS.lock().get(index).map(|t| t.fg_pgrp).ok_or(Errno::ENXIO)?;
            mm.lock().write(arg, &(pg as i32).to_le_bytes())?;
            Ok(0)
        }
        ioc::TIOCSPGRP => {
            let mut b = [0u8; 4];
            mm.lock().read(arg, &mut b)?;
            let pg = i32::from_le_bytes(b);
            if pg <= 0 {
                return Err(Errno::EINVAL);
            }
            let mut ttys = TTYS.lock();
            let t = ttys.get_mut(index).ok_or(Errno::ENXIO)?;
            t.fg_pgrp = pg as Pid;
            Ok(0)
        }
        ioc::TIOCGSID => {
            let sid = TTYS.lock().get(index).map(|t| t.session).ok_or(Errno::ENXIO)?;
            if sid == 0 {
                return Err(Errno::ENOTTY);
            }
            mm.lock().write(arg, &(sid as i32).to_le_bytes())?;
            Ok(0)
        }
        ioc::TIOCSCTTY => {
            let (sid, pgid) = {
                let i = me.proc.inner.lock();
                (i.sid, i.pgid)
            };
            {
                let mut ttys = TTYS.lock();
                let t = ttys.get_mut(index).ok_or(Errno::ENXIO)?;
                if t.session != 0 && t.session != sid && arg != 1 {
                    return Err(Errno::EPERM);
                }
                t.session = sid;
                t.fg_pgrp = pgid;
            }
            me.proc.inner.lock().ctty = Some(index);
            Ok(0)
        }
        ioc::TIOCNOTTY => {
            me.proc.inner.lock().ctty = None;
            Ok(0)
        }
        ioc::FIONREAD => {
            pump();
            let n = TTYS.lock().get(index).map(|t| t.ldisc.available()).ok_or(Errno::ENXIO)?;
            mm.lock().write(arg, &(n as i32).to_le_bytes())?;
            Ok(0)
        }
        ioc::TIOCOUTQ => {
            mm.lock().write(arg, &0i32.to_le_bytes())?;
            Ok(0)
        }
        ioc::TCFLSH => {
            if (arg == 0 || arg == 2)
                && let Some(t) = TTYS.lock().get_mut(index)
            {
                t.ldisc.flush_input();
            }
            Ok(0)
        }
        ioc::FIONBIO => {
            let mut b = [0u8; 4];
            mm.lock().read(arg, &mut b)?;
            let on = i32::from_le_bytes(b) != 0;
            let f = file.flags();
            file.flags.store(
                if on { f | oflags::NONBLOCK } else { f & !oflags::NONBLOCK },
                core::sync::atomic::Ordering::Relaxed,
            );
            Ok(0)
        }
        ioc::TCXONC | ioc::TCSBRK => Ok(0),
        ioc::TIOCGPTN => Err(Errno::ENOTTY),
        _ => Err(Errno::ENOTTY),
    }
}

/// `stdio=pipe` (CI mode with stdin from a pipe or file): terminal `index` passes bytes
/// through as a pipe would — no echo, no output translation, no signal or editing
/// characters — while staying canonical, so the VEOF the VMM sends at the end of its input
/// ends a read as end of file. Lines longer than the line discipline's buffer (4 KiB) are cut.
pub fn make_pipe_like(index: usize) {
    use umlvm_kcore::termios::{
        ECHO, ECHOCTL, ECHOE, ECHOK, ECHOKE, ECHONL, ICRNL, IEXTEN, ISIG, IXON, OPOST, VERASE, VKILL,
    };
    if let Some(t) = TTYS.lock().get_mut(index) {
        let mut tio = *t.ldisc.termios();
        tio.c_lflag &= !(ECHO | ECHOE | ECHOK | ECHOKE | ECHONL | ECHOCTL | ISIG | IEXTEN);
        tio.c_iflag &= !(ICRNL | IXON);
        tio.c_oflag &= !OPOST;
        tio.c_cc[VERASE] = 0;
        tio.c_cc[VKILL] = 0;
        t.ldisc.set_termios(tio);
        t.pipe_like = true;
    }
}

/// Drops the controlling terminal of a session whose leader exited.
pub fn session_ended(sid: Pid) {
    for t in TTYS.lock().iter_mut() {
        if t.session == sid {
            t.session = 0;
            t.fg_pgrp = 0;
        }
    }
}

/// Reads a line from `name` (echoing it), waiting up to `timeout_ns` (kernel self-checks,
/// before any process exists).
pub fn read_line(name: &str, timeout_ns: u64) -> Option<String> {
    let deadline = crate::time::now_ns() + timeout_ns;
    let index = TTYS.lock().iter().position(|t| t.name == name)?;
    loop {
        pump();
        {
            let mut ttys = TTYS.lock();
            let t = ttys.get_mut(index)?;
            if t.ldisc.read_ready() {
                let mut buf = [0u8; 1024];
                let n = t.ldisc.read(&mut buf);
                let line = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
                return Some(String::from_utf8_lossy(line).into_owned());
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

/// The device number of terminal `index` (`st_rdev`, /proc/PID/stat's tty_nr).
pub fn device_number(index: usize) -> u64 {
    TTYS.lock()
        .get(index)
        .map_or(0, |t| umlvm_kcore::vfs::makedev(4, if t.serial { 64 + t.unit } else { t.unit }))
}

/// The foreground process group of terminal `index` (0: none).
pub fn foreground(index: usize) -> Pid {
    TTYS.lock().get(index).map_or(0, |t| t.fg_pgrp)
}
