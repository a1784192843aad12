//! In-kernel benchmarks (`bench=syscall,zero`), printed for `make bench` to collect.

use crate::arch::cpu::rdtsc;
use crate::arch::programs::{DATA_BASE, Program, zero_loop};
use crate::process::builtin::{self, TaskExit};
use crate::{mm, time};
use alloc::vec::Vec;
use umlvm_kcore::cmdline::Cmdline;

/// Runs the benchmarks named in `bench=` (comma separated: `syscall`, `zero`).
pub fn run(cmdline: &Cmdline<'_>) {
    let Some(list) = cmdline.get("bench") else { return };
    for name in list.split(',') {
        match name {
            "syscall" => syscall(),
            "zero" => zero(),
            "blk" => blk(),
            other => log::warn!("bench={other}: unknown (syscall, zero, blk)"),
        }
    }
}

/// Null syscall (getpid) round trips: 5 batches of 200 000, timed in user mode.
fn syscall() {
    const CALLS: u64 = 200_000;
    const BATCHES: u64 = 5;
    let result = builtin::run(Program::SyscallBench, [CALLS, BATCHES, 0], |t| {
        (0..BATCHES).map(|b| builtin::read_user_u64(t, DATA_BASE + 8 * b)).collect::<Option<Vec<u64>>>()
    });
    match result {
        Ok((TaskExit::Exited(0), _, Some(mut ticks))) => {
            ticks.sort_unstable();
            let per_call = |t: u64| time::tsc_to_ns(t) * 1000 / CALLS; // picoseconds... in ns*1000
            let median = per_call(ticks[ticks.len() / 2]);
            let (min, max) = (per_call(ticks[0]), per_call(ticks[ticks.len() - 1]));
            log::info!(
                "bench syscall: {} getpid round trips in {BATCHES} batches: median {}.{:03} us per round trip (min {}.{:03}, max {}.{:03})",
                CALLS * BATCHES,
                median / 1_000_000,
                median / 1000 % 1000,
                min / 1_000_000,
                min / 1000 % 1000,
                max / 1_000_000,
                max / 1000 % 1000
            );
        }
        Ok((exit, _, _)) => log::error!("bench syscall: program ended with {exit:?}"),
        Err(e) => log::warn!("bench syscall: skipped ({e:?})"),
    }
}

/// Zeroing 16 MiB with the same loop in the kernel and at CPL 3.
fn zero() {
    const BYTES: u64 = 16 << 20;
    let frames: Vec<u64> = (0..BYTES / 4096).filter_map(|_| mm::alloc_frame().map(|f| f.addr)).collect();
    if frames.len() as u64 == BYTES / 4096 {
        // Touch every page first, as the user program does, so both time only the loop.
        for &f in &frames {
            zero_loop(f, 8);
        }
        let t0 = rdtsc();
        for &f in &frames {
            zero_loop(f, 4096);
        }
        let us = time::tsc_to_ns(rdtsc() - t0) / 1000;
        log::info!("bench zero: kernel zeroed 16 MiB in {us} us");
    } else {
        log::error!("bench zero: not enough memory for 16 MiB");
    }
    for f in frames {
        mm::free_frame(f);
    }
    match builtin::run(Program::ZeroBench, [BYTES, 0, 0], |t| builtin::read_user_u64(t, DATA_BASE)) {
        Ok((TaskExit::Exited(0), _, Some(ticks))) => {
            log::info!("bench zero: user (CPL 3) zeroed 16 MiB in {} us", time::tsc_to_ns(ticks) / 1000);
        }
        Ok((exit, _, _)) => log::error!("bench zero: user program ended with {exit:?}"),
        Err(e) => log::warn!("bench zero: user part skipped ({e:?})"),
    }
}

/// Block throughput on ubda: sequential read and write in 1 MiB requests and random 4 KiB
/// reads, 16 requests in flight.
fn blk() {
    use crate::arch::virtio::IoRequest;
    const CHUNK: usize = 1 << 20;
    const DEPTH: usize = 16;
    let result = crate::dev::block::with_device("ubda", |dev| {
        let total = (dev.sectors * 512).min(256 << 20) as usize;
        let read_only = dev.read_only;
        let mut bufs: Vec<Vec<u8>> = (0..DEPTH).map(|_| alloc::vec![0u8; CHUNK]).collect();
        let mut run = |write: bool| -> Option<u64> {
            let t0 = rdtsc();
            let mut pos = 0usize;
            while pos < total {
                let mut reqs: Vec<IoRequest<'_>> = Vec::with_capacity(DEPTH);
                for buf in bufs.iter_mut() {
                    if pos >= total {
                        break;
                    }
                    let len = CHUNK.min(total - pos);
                    reqs.push(IoRequest {
                        write,
                        sector: (pos / 512) as u64,
                        buf: &mut buf[..len],
                        result: Ok(()),
                    });
                    pos += len;
                }
                dev.transfer(&mut reqs);
                if reqs.iter().any(|r| r.result.is_err()) {
                    return None;
                }
            }
            Some(time::tsc_to_ns(rdtsc() - t0))
        };
        // Best of three passes (the host's figure is a best of three too).
        let read_ns = (0..3).map(|_| run(false)).collect::<Option<Vec<u64>>>()?.into_iter().min()?;
        let write_ns = if read_only { 0 } else { run(true)? };
        // Random 4 KiB reads (a xorshift sequence over the device).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let blocks = (total / 4096) as u64;
        let count = 2048usize;
        let t0 = rdtsc();
        for _ in 0..count / DEPTH {
            let mut reqs: Vec<IoRequest<'_>> = bufs
                .iter_mut()
                .map(|buf| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    IoRequest {
                        write: false,
                        sector: (seed % blocks) * 8,
                        buf: &mut buf[..4096],
                        result: Ok(()),
                    }
                })
                .collect();
            dev.transfer(&mut reqs);
        }
        let rand_ns = time::tsc_to_ns(rdtsc() - t0);
        Some((total, read_ns, write_ns, count, rand_ns))
    });
    match result {
        Some(Some((total, read_ns, write_ns, count, rand_ns))) => {
            let mibps = |ns: u64| (total as u64 * 1_000_000_000).checked_div(ns).unwrap_or(0) >> 20;
            log::info!(
                "bench blk: ubda {} MiB: sequential read {} MiB/s, sequential write {} MiB/s, random 4 KiB read {} IOPS",
                total >> 20,
                mibps(read_ns),
                mibps(write_ns),
                count as u64 * 1_000_000_000 / rand_ns.max(1)
            );
        }
        Some(None) => log::error!("bench blk: I/O error"),
        None => log::warn!("bench blk: no ubda"),
    }
}
