//! The block layer: the ubd devices the VMM described, by name (`ubda`, `ubdb`, ...; also
//! `ubd/0`), and the `blktest=` self-test that reads, writes, flushes and verifies patterns.
//!
//! Devices are kept in a table whose slots never move: open files and mounted file systems
//! name a device by its slot ([`crate::fs::file::FileKind::Block`]). A hot-plugged device
//! ([`attach`]) takes a free slot; a removed one ([`detach`]) leaves its slot empty.

use crate::arch::sync::IrqMutex;
use crate::arch::virtio::{self, BlockError, IoRequest, VirtioBlock};
use crate::irq;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use umlvm_boot::BootInfo;
use umlvm_boot::abi::{device_kind, device_role};
use umlvm_kcore::cmdline::Cmdline;
use umlvm_kcore::errno::{Errno, KResult};

/// A block device.
pub struct BlockDevice {
    /// `ubda`, `ubdb`, ...
    pub name: String,
    /// Device number (ubd0 = 0).
    pub index: usize,
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    /// Whether writes are refused.
    pub read_only: bool,
    /// Interrupt line.
    pub gsi: u32,
    /// MMIO window (physical).
    pub mmio: u64,
    dev: VirtioBlock,
}

/// The device table; see the module comment.
static DEVICES: IrqMutex<Vec<Option<BlockDevice>>> = IrqMutex::new(Vec::new());

/// MMIO windows and interrupt lines the boot device table gave to any device (block,
/// console, serial): a hot-plugged device must not claim one.
static BOOT_WINDOWS: IrqMutex<Vec<(u64, u32)>> = IrqMutex::new(Vec::new());

/// Probes the device table: every `ubdN` block device becomes `ubd<letter>` (ubd0 = `ubda`).
pub fn init(info: &BootInfo) {
    let mut found = Vec::new();
    *BOOT_WINDOWS.lock() = info.device_entries().iter().map(|e| (e.mmio.gpa, e.gsi)).collect();
    for entry in info.device_entries() {
        if entry.kind != device_kind::VIRTIO_MMIO
            || device_role::class(entry.role) != device_role::UBD
            || entry.gsi >= u32::from(irq::IOAPIC_PINS)
        {
            continue;
        }
        irq::route_pin(entry.gsi as u8, crate::arch::ioapic::Trigger::Edge);
        let Some(dev) = virtio::probe_block(entry.mmio.gpa, entry.mmio.len) else { continue };
        let index = device_role::unit(entry.role) as usize;
        let name = alloc::format!("ubd{}", (b'a' + index as u8) as char);
        log::info!(
            "{name} (ubd/{index}): {} sectors ({} KiB), {}, IRQ {}",
            dev.capacity(),
            dev.capacity() / 2,
            if dev.read_only() { "read-only" } else { "read-write" },
            entry.gsi
        );
        found.push(Some(BlockDevice {
            name,
            index,
            sectors: dev.capacity(),
            read_only: dev.read_only(),
            gsi: entry.gsi,
            mmio: entry.mmio.gpa,
            dev,
        }));
    }
    *DEVICES.lock() = found;
}

/// The guest name of ubd unit `unit`: ubd0 is `ubda`.
pub fn unit_name(unit: u32) -> String {
    alloc::format!("ubd{}", (b'a' + unit as u8) as char)
}

/// Why a hot-plugged device was refused.
pub type AttachError = String;

/// Hot-plugs ubd unit `unit`: the virtio-mmio block device the VMM placed at `mmio` (`len`
/// bytes) with interrupt line `gsi`. Every number comes from the VMM and is checked: the unit
/// must be free, the window one of the device windows and unused, the line a device line and
/// unused. Returns the device's table slot. Fails with `None` if the table is busy (a
/// request waits on a device); the caller retries later.
pub fn attach(unit: u32, mmio: u64, len: u64, gsi: u32) -> Option<Result<(usize, String), AttachError>> {
    use umlvm_boot::layout::{DEVICE_MMIO_BASE, DEVICE_MMIO_LEN, FIRST_DEVICE_GSI, GSI_COUNT};
    let mut devs = DEVICES.try_lock()?;
    let windows_end = DEVICE_MMIO_BASE + umlvm_boot::abi::MAX_DEVICES as u64 * DEVICE_MMIO_LEN;
    let taken = |gpa: u64, line: u32| {
        BOOT_WINDOWS.lock().iter().any(|&(w, g)| w == gpa || g == line)
            || devs.iter().flatten().any(|d| d.mmio == gpa || d.gsi == line)
    };
    let name = unit_name(unit);
    let check = if unit >= 16 {
        Err(alloc::format!("ubd{unit}: unit out of range (ubd0 to ubd15)"))
    } else if devs.iter().flatten().any(|d| d.index == unit as usize) {
        Err(alloc::format!("ubd{unit} is already attached"))
    } else if !(DEVICE_MMIO_BASE..windows_end).contains(&mmio) || !mmio.is_multiple_of(DEVICE_MMIO_LEN) {
        Err(alloc::format!("window {mmio:#x} is not a device window"))
    } else if len != DEVICE_MMIO_LEN {
        Err(alloc::format!("window length {len:#x} is not {DEVICE_MMIO_LEN:#x}"))
    } else if !(FIRST_DEVICE_GSI..GSI_COUNT.min(u32::from(irq::IOAPIC_PINS))).contains(&gsi)
        || gsi == umlvm_boot::layout::CONTROL_GSI
    {
        Err(alloc::format!("interrupt line {gsi} is not a device line"))
    } else if taken(mmio, gsi) {
        Err(alloc::format!("window {mmio:#x} or line {gsi} is already in use"))
    } else {
        Ok(())
    };
    if let Err(e) = check {
        return Some(Err(e));
    }
    let Some(dev) = virtio::probe_block(mmio, len) else {
        return Some(Err(alloc::format!("no virtio block device at {mmio:#x}")));
    };
    irq::route_pin(gsi as u8, crate::arch::ioapic::Trigger::Edge);
    let what = alloc::format!(
        "{name} (ubd/{unit}): {} sectors ({} KiB), {}, IRQ {gsi}",
        dev.capacity(),
        dev.capacity() / 2,
        if dev.read_only() { "read-only" } else { "read-write" },
    );
    log::info!("{what} (hot-plugged)");
    let device = BlockDevice {
        name,
        index: unit as usize,
        sectors: dev.capacity(),
        read_only: dev.read_only(),
        gsi,
        mmio,
        dev,
    };
    let slot = match devs.iter().position(Option::is_none) {
        Some(free) => {
            devs[free] = Some(device);
            free
        }
        None => {
            devs.push(Some(device));
            devs.len() - 1
        }
    };
    Some(Ok((slot, what)))
}

/// The table slot of ubd unit `unit`, or `None`; `Err(())` if the table is busy.
pub fn try_index_of_unit(unit: u32) -> Result<Option<usize>, ()> {
    let devs = DEVICES.try_lock().ok_or(())?;
    Ok(devs.iter().position(|d| d.as_ref().is_some_and(|d| d.index == unit as usize)))
}

/// Takes device `slot` out of the table: masks its line and resets the device (dropping the
/// driver resets it and frees its queue). The caller checked that nothing uses it. `false`
/// if the table is busy.
pub fn detach(slot: usize) -> bool {
    let Some(mut devs) = DEVICES.try_lock() else { return false };
    if let Some(d) = devs.get_mut(slot).and_then(Option::take) {
        crate::arch::ioapic::mask(d.gsi);
        log::info!("{} (ubd/{}): removed", d.name, d.index);
    }
    true
}

/// Runs `f` on the device called `name` (`ubda` or `ubd/0`).
pub fn with_device<R>(name: &str, f: impl FnOnce(&mut BlockDevice) -> R) -> Option<R> {
    let mut devs = DEVICES.lock();
    let index = name.strip_prefix("ubd/").and_then(|n| n.parse::<usize>().ok());
    let dev = devs.iter_mut().flatten().find(|d| d.name == name || Some(d.index) == index)?;
    Some(f(dev))
}

/// Flushes every writable device; returns how many (SysRq `s`).
pub fn sync_all() -> usize {
    let Some(mut devs) = DEVICES.try_lock() else { return 0 };
    devs.iter_mut().flatten().filter(|d| !d.read_only).map(|d| d.flush()).filter(|r| r.is_ok()).count()
}

/// Names of the devices.
pub fn names() -> Vec<String> {
    DEVICES.lock().iter().flatten().map(|d| d.name.clone()).collect()
}

impl BlockDevice {
    /// Reads `buf.len() / 512` sectors from `sector`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let mut r = [IoRequest { write: false, sector, buf, result: Ok(()) }];
        self.dev.transfer(&mut r);
        r[0].result
    }

    /// Runs several requests through the queue at once.
    pub fn transfer(&mut self, reqs: &mut [IoRequest<'_>]) {
        self.dev.transfer(reqs);
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<(), BlockError> {
        self.dev.flush()
    }
}

/// The pattern `blktest` writes: byte `j` of sector `s` is `s ^ j` (low bytes), so the host
/// can check every byte.
pub fn pattern_byte(sector: u64, j: usize) -> u8 {
    (sector as u8) ^ (j as u8) ^ 0x5a
}

/// `blktest=NAME[,NAME...]` (or `blktest=all`): on each device, write sectors 1..=16 with the
/// pattern in one batch through the queue, flush, read them back and verify; read sector 0.
/// On a read-only device, check that the write is refused and nothing changed.
pub fn selftest(cmdline: &Cmdline<'_>) -> u32 {
    let Some(list) = cmdline.get("blktest") else { return 0 };
    let targets: Vec<String> =
        if list == "all" { names() } else { list.split(',').map(String::from).collect() };
    let mut failures = 0;
    for name in targets {
        let outcome = with_device(&name, run_one).unwrap_or_else(|| Err("no such block device".into()));
        match outcome {
            Ok(what) => log::info!("blktest {name}: ok ({what})"),
            Err(why) => {
                failures += 1;
                log::error!("blktest {name}: FAILED: {why}");
            }
        }
    }
    failures
}

fn run_one(dev: &mut BlockDevice) -> Result<String, String> {
    const FIRST: u64 = 1;
    const COUNT: u64 = 16;
    if dev.sectors < FIRST + COUNT {
        return Err(alloc::format!("only {} sectors", dev.sectors));
    }
    let t0 = crate::time::now_ns();
    let mut sector0 = vec![0u8; 512];
    dev.read(0, &mut sector0).map_err(|e| alloc::format!("reading sector 0: {e:?}"))?;
    let mut bufs: Vec<Vec<u8>> =
        (FIRST..FIRST + COUNT).map(|s| (0..512).map(|j| pattern_byte(s, j)).collect()).collect();
    let mut reqs: Vec<IoRequest<'_>> = bufs
        .iter_mut()
        .zip(FIRST..)
        .map(|(buf, sector)| IoRequest { write: true, sector, buf: buf.as_mut_slice(), result: Ok(()) })
        .collect();
    dev.transfer(&mut reqs);
    let write_results: Vec<_> = reqs.iter().map(|r| r.result).collect();
    drop(reqs);
    if dev.read_only {
        if write_results.iter().any(|r| *r != Err(BlockError::Io)) {
            return Err("a write to a read-only device was not refused".into());
        }
        let mut check = vec![0u8; 512];
        dev.read(FIRST, &mut check).map_err(|e| alloc::format!("read back: {e:?}"))?;
        if check.iter().enumerate().all(|(j, &b)| b == pattern_byte(FIRST, j)) {
            return Err("the refused write changed the device".into());
        }
        return Ok(alloc::format!("read-only: {COUNT} writes refused, sector 0 starts {}", hex8(&sector0)));
    }
    if let Some(e) = write_results.iter().find(|r| r.is_err()) {
        return Err(alloc::format!("write: {e:?}"));
    }
    dev.flush().map_err(|e| alloc::format!("flush: {e:?}"))?;
    let mut back = vec![0u8; (COUNT * 512) as usize];
    dev.read(FIRST, &mut back).map_err(|e| alloc::format!("read back: {e:?}"))?;
    for (i, chunk) in back.chunks(512).enumerate() {
        let s = FIRST + i as u64;
        if chunk.iter().enumerate().any(|(j, &b)| b != pattern_byte(s, j)) {
            return Err(alloc::format!("sector {s} reads back wrong"));
        }
    }
    Ok(alloc::format!(
        "{} sectors, sector 0 starts {}, wrote {COUNT} sectors in one batch, flushed, verified, {} us",
        dev.sectors,
        hex8(&sector0),
        (crate::time::now_ns() - t0) / 1000
    ))
}

fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| alloc::format!("{x:02x}")).collect()
}

/// The table index of ubd unit `unit`.
pub fn index_of_unit(unit: u32) -> Option<usize> {
    DEVICES.lock().iter().position(|d| d.as_ref().is_some_and(|d| d.index == unit as usize))
}

/// The ubd unit numbers present.
pub fn units() -> Vec<u32> {
    DEVICES.lock().iter().flatten().map(|d| d.index as u32).collect()
}

/// Size in bytes of device `index` (table index).
pub fn size_bytes(index: usize) -> u64 {
    DEVICES.lock().get(index).and_then(Option::as_ref).map_or(0, |d| d.sectors * 512)
}

/// Whether device `index` refuses writes.
pub fn read_only(index: usize) -> bool {
    DEVICES.lock().get(index).and_then(Option::as_ref).is_none_or(|d| d.read_only)
}

fn io_error(e: BlockError) -> Errno {
    log::warn!("block I/O error: {e:?}");
    Errno::EIO
}

/// Reads bytes at any offset of device `index` (sector read-modify for unaligned edges).
pub fn read_bytes(index: usize, offset: u64, buf: &mut [u8]) -> KResult<usize> {
    let size = size_bytes(index);
    if offset >= size {
        return Ok(0);
    }
    let len = (buf.len() as u64).min(size - offset) as usize;
    let first = offset / 512;
    let last = (offset + len as u64).div_ceil(512);
    let mut tmp = vec![0u8; ((last - first) * 512) as usize];
    {
        let mut devs = DEVICES.lock();
        let d = devs.get_mut(index).and_then(Option::as_mut).ok_or(Errno::ENXIO)?;
        d.read(first, &mut tmp).map_err(io_error)?;
    }
    let skip = (offset - first * 512) as usize;
    buf[..len].copy_from_slice(&tmp[skip..skip + len]);
    Ok(len)
}

/// Writes bytes at any offset of device `index`.
pub fn write_bytes(index: usize, offset: u64, data: &[u8]) -> KResult<usize> {
    let size = size_bytes(index);
    if read_only(index) {
        return Err(Errno::EROFS);
    }
    if offset >= size {
        return Err(Errno::ENOSPC);
    }
    let len = (data.len() as u64).min(size - offset) as usize;
    let first = offset / 512;
    let last = (offset + len as u64).div_ceil(512);
    let mut tmp = vec![0u8; ((last - first) * 512) as usize];
    let skip = (offset - first * 512) as usize;
    let mut devs = DEVICES.lock();
    let d = devs.get_mut(index).and_then(Option::as_mut).ok_or(Errno::ENXIO)?;
    if skip != 0 || !len.is_multiple_of(512) {
        d.read(first, &mut tmp).map_err(io_error)?;
    }
    tmp[skip..skip + len].copy_from_slice(&data[..len]);
    let mut r = [IoRequest { write: true, sector: first, buf: &mut tmp, result: Ok(()) }];
    d.transfer(&mut r);
    r[0].result.map_err(io_error)?;
    Ok(len)
}

/// Flushes device `index`.
pub fn flush_index(index: usize) -> KResult<()> {
    let mut devs = DEVICES.lock();
    let d = devs.get_mut(index).and_then(Option::as_mut).ok_or(Errno::ENXIO)?;
    if d.read_only {
        return Ok(());
    }
    d.flush().map_err(io_error)
}

/// Block-device ioctls: BLKGETSIZE64, BLKGETSIZE, BLKSSZGET, BLKROGET, BLKFLSBUF.
pub fn ioctl(index: usize, cmd: u64, arg: u64) -> KResult<u64> {
    let user = crate::syscall::User::current()?;
    match cmd {
        0x8008_1272 => user.write_u64(arg, size_bytes(index)).map(|_| 0),
        0x1260 => user.write_u64(arg, size_bytes(index) / 512).map(|_| 0),
        0x1268 | 0x127b => user.write_i32(arg, 512).map(|_| 0),
        0x125e => user.write_i32(arg, i32::from(read_only(index))).map(|_| 0),
        0x1261 => flush_index(index).map(|_| 0),
        _ => Err(Errno::ENOTTY),
    }
}
