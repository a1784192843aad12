//! Management requests from the VMM (the mconsole commands that need the guest): `log`,
//! `sysrq`, `cad`, `proc`, `stack`, and the VMM's own `hotplug`/`unplug` (`hotplug.rs`).
//! They arrive through the control mailbox and its interrupt and run in the interrupt
//! handler; replies are formatted into a fixed buffer. Interrupts reach the kernel only in
//! user mode, the idle loop and device waits; a request that needs a lock the interrupted
//! code may hold (hot-plugging, while a block request waits) is put off and retried from
//! the idle loop or on the way back to user mode ([`retry`]).

pub mod hotplug;

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

/// A request was put off (a lock it needs was busy).
static PUT_OFF: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Runs a put-off request; cheap when there is none. Called where the kernel holds no lock:
/// the idle loop and the return to user mode.
pub fn retry() {
    if PUT_OFF.swap(false, core::sync::atomic::Ordering::Relaxed) {
        let irq = crate::arch::mode::irq_save();
        on_interrupt();
        crate::arch::mode::irq_restore(irq);
    }
}

/// Answers a request that arrived before the control interrupt was routed (its edge was
/// lost); called once the kernel is ready for requests.
pub fn poll() {
    crate::arch::mode::irq_disable();
    on_interrupt();
}

/// The control interrupt: run the request (if it is a new one), reply.
pub fn on_interrupt() {
    use core::sync::atomic::Ordering;
    let seq = pv::control_seq();
    if seq == ANSWERED.load(Ordering::Relaxed) {
        return;
    }
    let mut req = [0u8; REQUEST_MAX];
    let len = pv::control_request(&mut req);
    let line = core::str::from_utf8(&req[..len]).unwrap_or("").trim();
    let mut reply = Reply { buf: [0; REPLY_MAX], len: 0 };
    let (cmd, arg) = line.split_once(' ').map_or((line, ""), |(c, a)| (c, a.trim()));
    let plugged = match cmd {
        "hotplug" => Some(crate::mgmt::hotplug::hotplug(arg)),
        "unplug" => Some(crate::mgmt::hotplug::unplug(arg)),
        _ => None,
    };
    if matches!(plugged, Some(crate::mgmt::hotplug::Outcome::Later)) {
        PUT_OFF.store(true, Ordering::Relaxed);
        return;
    }
    ANSWERED.store(seq, Ordering::Relaxed);
    let (error, after) = match cmd {
        "hotplug" | "unplug" => match plugged {
            Some(crate::mgmt::hotplug::Outcome::Done(text)) => {
                let _ = write!(reply, "{text}");
                (false, After::Nothing)
            }
            Some(crate::mgmt::hotplug::Outcome::Failed(text)) => {
                let _ = write!(reply, "{text}");
                (true, After::Nothing)
            }
            _ => (true, After::Nothing),
        },
        "log" => {
            log::info!("{arg}");
            (false, After::Nothing)
        }
        "sysrq" => sysrq(arg.chars().next().unwrap_or('h'), &mut reply),
        "cad" => match crate::process::sched::task(1).filter(|_| crate::init::started()) {
            // As Linux with ctrl-alt-del off: SIGINT to init, whose ctrlaltdel action runs.
            Some(init) => {
                crate::process::signal::send(
                    &init,
                    umlvm_kcore::signal::SIGINT,
                    umlvm_kcore::signal::SI_KERNEL,
                    0,
                );
                log::info!("ctrl-alt-del: SIGINT sent to init");
                (false, After::Nothing)
            }
            None => {
                let _ = write!(reply, "no init process to signal: nothing done");
                log::info!("ctrl-alt-del: no init process to signal");
                (false, After::Nothing)
            }
        },
        "proc" => (proc_file(arg, &mut reply), After::Nothing),
        "stack" => (stack(arg, &mut reply), After::Nothing),
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
            for t in crate::process::sched::all_tasks() {
                let st = t.state();
                if key == 'w' && st != crate::process::sched::State::DiskSleep {
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
            let synced = crate::dev::block::sync_all();
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
            for t in crate::process::sched::all_tasks() {
                if t.pid > 1 {
                    crate::process::signal::send(&t, sig, umlvm_kcore::signal::SI_KERNEL, 0);
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

/// `stack PID`: the task's state and kernel backtrace (return addresses; umlvm adds the
/// function names).
fn stack(arg: &str, r: &mut Reply) -> bool {
    let Ok(pid) = arg.parse::<u32>() else {
        let _ = write!(r, "stack: expected a process id, got {arg:?}");
        return true;
    };
    let Some(t) = crate::process::sched::task(pid) else {
        let _ = write!(r, "stack {pid}: no such task");
        return true;
    };
    let comm = t.proc.inner.try_lock().map(|i| alloc::string::String::from_utf8_lossy(&i.comm).into_owned());
    let _ = writeln!(
        r,
        "task {pid} ({}) state {} channel {:#x}",
        comm.as_deref().unwrap_or("?"),
        t.state().letter(),
        t.channel()
    );
    let is_current = alloc::sync::Arc::ptr_eq(&t, &crate::process::sched::current());
    if is_current {
        let _ = write!(r, "running in user mode (interrupted by this request)");
        return false;
    }
    let frames = t.kernel_backtrace();
    if frames.is_empty() {
        let _ = write!(r, "no kernel frames (not started yet, or exited)");
    }
    for (i, a) in frames.iter().enumerate() {
        let _ = writeln!(r, "  #{i} {a:#018x}");
    }
    false
}

/// A /proc file for `proc FILE`: the real procfs once user space runs, else the few files the
/// kernel can answer by itself.
fn proc_file(name: &str, r: &mut Reply) -> bool {
    if crate::init::started() {
        let path = alloc::format!("/proc/{}", name.trim_start_matches('/'));
        let root = crate::fs::with_vfs(|v| v.root());
        let found = crate::fs::with_vfs(|v| v.resolve(&root, &root, path.as_bytes(), true));
        return match found {
            Ok(loc) => {
                let mut buf = [0u8; 3500];
                match loc.inode.read_at(0, &mut buf) {
                    Ok(n) => {
                        let _ = write!(r, "{}", alloc::string::String::from_utf8_lossy(&buf[..n]));
                        false
                    }
                    Err(e) => {
                        let _ = write!(r, "{path}: {}", e.name());
                        true
                    }
                }
            }
            Err(e) => {
                let _ = write!(r, "{path}: {}", e.name());
                true
            }
        };
    }
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
