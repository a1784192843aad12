//! Hot-plugging block devices for the management console (`config ubdN=`, `remove ubdN`).
//!
//! The VMM creates a virtio-mmio device in a free window and sends `hotplug ubd UNIT GPA LEN
//! GSI`; the kernel checks every number, probes the device, routes its line and adds
//! `/dev/ubdX` and `/dev/ubdN` to every device file system. For `unplug ubd UNIT` the kernel
//! refuses while a file system on the device is mounted or a process holds it open; else it
//! removes the nodes and resets the device, and only then does the VMM tear its side down.
//!
//! Both run in the control interrupt handler. They take the block table, the mount table and
//! descriptor tables only with `try_lock`: the interrupted code may be waiting for a block
//! device with those locks held. Then the request is put off ([`Outcome::Later`]) and retried
//! from the idle loop or on the way back to user mode.

use crate::fs::file::FileKind;
use alloc::string::String;
use core::fmt::Write;

/// How a request went.
pub enum Outcome {
    /// Done: the reply.
    Done(String),
    /// Refused: why.
    Failed(String),
    /// A lock is busy; try again later.
    Later,
}

/// Parses a number from the VMM: decimal or `0x` hex.
fn number(word: Option<&str>) -> Option<u64> {
    let w = word?;
    match w.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => w.parse().ok(),
    }
}

/// `hotplug ubd UNIT GPA LEN GSI`.
pub fn hotplug(args: &str) -> Outcome {
    let mut words = args.split_whitespace();
    if words.next() != Some("ubd") {
        return Outcome::Failed("hotplug: only ubd devices can be hot-plugged".into());
    }
    let (Some(unit), Some(gpa), Some(len), Some(gsi), None) = (
        number(words.next()),
        number(words.next()),
        number(words.next()),
        number(words.next()),
        words.next(),
    ) else {
        return Outcome::Failed("hotplug: expected 'ubd UNIT GPA LEN GSI'".into());
    };
    let (Ok(unit), Ok(gsi)) = (u32::try_from(unit), u32::try_from(gsi)) else {
        return Outcome::Failed("hotplug: number out of range".into());
    };
    match crate::dev::block::attach(unit, gpa, len, gsi) {
        None => Outcome::Later,
        Some(Err(why)) => Outcome::Failed(why),
        Some(Ok((_, what))) => {
            let letter = crate::dev::block::unit_name(unit);
            let number = alloc::format!("ubd{unit}");
            crate::fs::block_nodes(unit, &[&letter, &number], true);
            Outcome::Done(what)
        }
    }
}

/// Which process holds block device slot `index` open: `Some(Ok(pid))`, or `Some(Err(()))`
/// when a descriptor table is busy.
fn opener(index: usize) -> Option<Result<u32, ()>> {
    for t in crate::process::sched::all_tasks() {
        let Some(files) = t.proc.files.try_lock().map(|f| f.clone()) else { return Some(Err(())) };
        let Some(table) = files.try_lock() else { return Some(Err(())) };
        if table.open_fds().iter().any(|(_, f)| matches!(f.kind, FileKind::Block(i) if i == index)) {
            return Some(Ok(t.pid));
        }
    }
    None
}

/// `unplug ubd UNIT`.
pub fn unplug(args: &str) -> Outcome {
    let mut words = args.split_whitespace();
    let (Some("ubd"), Some(unit), None) = (words.next(), number(words.next()), words.next()) else {
        return Outcome::Failed("unplug: expected 'ubd UNIT'".into());
    };
    let Ok(unit) = u32::try_from(unit) else { return Outcome::Failed("unplug: unit out of range".into()) };
    if unit >= 16 {
        return Outcome::Failed(alloc::format!("ubd{unit}: unit out of range (ubd0 to ubd15)"));
    }
    let name = crate::dev::block::unit_name(unit);
    let index = match crate::dev::block::try_index_of_unit(unit) {
        Err(()) => return Outcome::Later,
        Ok(None) => return Outcome::Failed(alloc::format!("ubd{unit} is not attached")),
        Ok(Some(i)) => i,
    };
    match crate::fs::block_device_user(index, &name) {
        Some(Err(())) => return Outcome::Later,
        Some(Ok(why)) => return Outcome::Failed(why),
        None => {}
    }
    match opener(index) {
        Some(Err(())) => return Outcome::Later,
        Some(Ok(pid)) => return Outcome::Failed(alloc::format!("{name} is open (pid {pid})")),
        None => {}
    }
    if !crate::dev::block::detach(index) {
        return Outcome::Later;
    }
    crate::fs::block_nodes(unit, &[&name, &alloc::format!("ubd{unit}")], false);
    let mut reply = String::new();
    let _ = write!(reply, "{name} (ubd{unit}) released");
    Outcome::Done(reply)
}
