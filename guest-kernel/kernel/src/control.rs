//! Management requests from the VMM (the mconsole commands that need the guest): `log`,
//! `sysrq`, `cad`, `proc`, `stack`. They arrive through the control mailbox and its
//! interrupt and run in the interrupt handler, so they never allocate (the heap lock is not
//! interrupt-safe); replies are formatted into a fixed buffer.

use crate::arch::pv;
use core::fmt::Write;
use umlvm_boot::abi::control::{REPLY_MAX, REQUEST_MAX};

/// A fixed-size text buffer.
struct Reply {
    buf: [u8; REPLY_MAX],
    len: usize,
}

impl Write for Reply {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// What to do after replying.
enum After {
    Nothing,
    Reboot,
    PowerOff,
}

/// Sequence number of the last request answered.
static ANSWERED: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Answers a request that arrived before the control interrupt was routed (its edge was
/// lost); called once the kernel is ready for requests.
pub fn poll() {
    crate::arch::mode::irq_disable();
    on_interrupt();
}

/// The control interrupt: run the request (if it is a new one), reply.
pub fn on_interrupt() {
    let seq = pv::control_seq();
    if seq == ANSWERED.swap(seq, core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut req = [0u8; REQUEST_MAX];
    let len = pv::control_request(&mut req);
    let line = core::str::from_utf8(&req[..len]).unwrap_or("").trim();
    let mut reply = Reply { buf: [0; REPLY_MAX], len: 0 };
    let (cmd, arg) = line.split_once(' ').map_or((line, ""), |(c, a)| (c, a.trim()));
    let (error, after) = match cmd {
        "log" => {
            log::info!("{arg}");
            (false, After::Nothing)
        }
        "sysrq" => sysrq(arg.chars().next().unwrap_or('h'), &mut reply),
        "cad" => {
            // Linux sends SIGINT to init on Ctrl-Alt-Del; there are no processes yet.
            let _ = write!(reply, "no init process to signal: nothing done");
            log::info!("ctrl-alt-del: no init process to signal");
            (false, After::Nothing)
        }
        "proc" => (proc_file(arg, &mut reply), After::Nothing),
        "stack" => {
            let _ = write!(reply, "stack {arg}: no such task (the guest has no processes yet)");
            (true, After::Nothing)
        }
        _ => {
            let _ = write!(reply, "unknown request");
            (true, After::Nothing)
        }
    };
    pv::control_reply(error, &reply.buf[..reply.len]);
    match after {
        After::Nothing => {}
        After::Reboot => pv::reboot(),
        After::PowerOff => pv::power_off(0),
    }
}

/// The SysRq actions the kernel has; the text also goes to the kernel log, as in Linux.
fn sysrq(key: char, r: &mut Reply) -> (bool, After) {
    let mut after = After::Nothing;
    match key {
        'm' => {
            let free = crate::mm::free_frames() * 4;
            let _ = write!(r, "sysrq: Show Memory\nMem-Info: {free} KiB free in frames");
        }
        't' | 'w' => {
            let title = if key == 't' { "Show State" } else { "Show Blocked State" };
            let _ = write!(r, "sysrq: {title}\n  task             PID   PPID  state  wait channel");
            let _ = write!(r, "\n  {:<15} {:>5}  {:>5}  R", "swapper", 0, 0);
            for t in crate::sched::all_tasks() {
                let st = t.state();
                if key == 'w' && st != crate::sched::State::DiskSleep {
                    continue;
                }
                let (comm, ppid) = match t.proc.inner.try_lock() {
                    Some(i) => (alloc::string::String::from_utf8_lossy(&i.comm).into_owned(), i.ppid),
                    None => ("(busy)".into(), 0),
                };
                let _ = write!(
                    r,
                    "\n  {comm:<15} {:>5}  {ppid:>5}  {}      {:#x}",
                    t.pid,
                    st.letter(),
                    t.channel()
                );
            }
        }
        's' => {
            if crate::init::started() {
                crate::init::sync_all();
            }
            let synced = crate::block::sync_all();
            let _ =
                write!(r, "sysrq: Emergency Sync\nEmergency Sync complete ({synced} block devices flushed)");
        }
        'u' => {
            let n = if crate::init::started() { crate::init::remount_all_readonly() } else { 0 };
            let _ = write!(r, "sysrq: Emergency Remount R/O\nEmergency Remount complete ({n} file systems)");
        }
        'e' | 'i' => {
            let (sig, name) = if key == 'e' {
                (umlvm_kcore::signal::SIGTERM, "Terminate")
            } else {
                (umlvm_kcore::signal::SIGKILL, "Kill")
            };
            let mut n = 0;
            for t in crate::sched::all_tasks() {
                if t.pid > 1 {
                    crate::signal::send(&t, sig, umlvm_kcore::signal::SI_KERNEL, 0);
                    n += 1;
                }
            }
            let _ = write!(r, "sysrq: {name} All Tasks\n{n} tasks signalled");
        }
        'b' => {
            let _ = write!(r, "sysrq: Resetting");
            after = After::Reboot;
        }
        'o' => {
            let _ = write!(r, "sysrq: Power Off");
            after = After::PowerOff;
        }
        _ => {
            let _ = write!(
                r,
                "sysrq: HELP : reboot(b) show-blocked-tasks(w) show-memory-usage(m) poweroff(o) sync(s) show-task-states(t) unmount(u) terminate-all-tasks(e) kill-all-tasks(i)"
            );
        }
    }
    log::info!("{}", core::str::from_utf8(&r.buf[..r.len]).unwrap_or(""));
    (false, after)
}

/// The few /proc files the kernel can answer before it has a procfs.
fn proc_file(name: &str, r: &mut Reply) -> bool {
    match name {
        "uptime" => {
            let ns = crate::time::now_ns();
            let _ = writeln!(r, "{}.{:02} 0.00", ns / 1_000_000_000, ns / 10_000_000 % 100);
        }
        "meminfo" => {
            let _ = write!(
                r,
                "MemTotal: {} kB\nMemFree: {} kB\n",
                crate::mm::total_bytes() / 1024,
                crate::mm::free_frames() * 4
            );
        }
        "version" => {
            let _ = writeln!(r, "umlvm-kernel version {} (pvm/native para-virtual kernel)", crate::VERSION);
        }
        _ => {
            let _ = write!(r, "/proc/{name}: no such file");
            return true;
        }
    }
    false
}
