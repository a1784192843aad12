//! `make bench`: boot-time, wall-time and memory figures for `umlvm run`.
//!
//! Each configuration is run many times; we report the median (and min / p90), because these
//! machines are noisy. Figures go to docs/benchmarks.md together with this command.

mod sys;

use std::process::{Command, Stdio};
use std::time::Instant;
use sys::wait_with_rusage;

/// One measured run.
struct Sample {
    wall_us: u64,
    main_us: u64,
    done_us: u64,
    max_rss_kib: u64,
}

fn number_after(text: &str, prefix: &str) -> u64 {
    text.find(prefix)
        .map(|i| &text[i + prefix.len()..])
        .and_then(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or(0)
}

#[expect(clippy::zombie_processes, reason = "the child is reaped by wait4, which also gives its rusage")]
fn run_once(umlvm: &str, switches: &[&str]) -> Sample {
    let out_path = std::env::temp_dir().join(format!("umlvm-bench-{}.out", std::process::id()));
    let out = std::fs::File::create(&out_path).expect("bench output file");
    let start = Instant::now();
    let child = Command::new(umlvm)
        .arg("run")
        .args(switches)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn umlvm");
    let (status, max_rss_kib) = wait_with_rusage(child.id());
    let wall_us = start.elapsed().as_micros() as u64;
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    assert_eq!(status, 0, "umlvm run {switches:?} failed:\n{text}");
    Sample {
        wall_us,
        main_us: number_after(&text, "kernel main reached"),
        done_us: number_after(&text, "boot complete after"),
        max_rss_kib,
    }
}

fn stats(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let p90 = v[(v.len() * 9 / 10).min(v.len() - 1)];
    (v[v.len() / 2], v[0], p90)
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn report(name: &str, runs: usize, umlvm: &str, switches: &[&str]) {
    let _ = run_once(umlvm, switches); // warm the page cache
    let samples: Vec<Sample> = (0..runs).map(|_| run_once(umlvm, switches)).collect();
    let col = |f: fn(&Sample) -> u64| stats(samples.iter().map(f).collect());
    let (wall, wall_min, wall_p90) = col(|s| s.wall_us);
    let (main, main_min, main_p90) = col(|s| s.main_us);
    let (done, _, _) = col(|s| s.done_us);
    let (rss, _, rss_max) = col(|s| s.max_rss_kib);
    println!(
        "| {name} | {runs} | {} ({} .. {}) | {} ({} .. {}) | {} | {} | {} KiB (max {} KiB) |",
        ms(wall),
        ms(wall_min),
        ms(wall_p90),
        ms(main),
        ms(main_min),
        ms(main_p90),
        ms(done),
        ms(wall.saturating_sub(done)),
        rss,
        rss_max
    );
}

/// Runs `umlvm run <switches>` once and returns its console output.
fn console_of(umlvm: &str, switches: &[&str]) -> String {
    let out =
        Command::new(umlvm).arg("run").args(switches).stdin(Stdio::null()).output().expect("spawn umlvm");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "umlvm run {switches:?} failed:\n{text}");
    text
}

/// "X.YYY" after `prefix`, in thousandths.
fn milli_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let num: String = rest.trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let (int, frac) = num.split_once('.').unwrap_or((&num, "0"));
    let frac = format!("{frac:0<3}");
    Some(int.parse::<u64>().ok()? * 1000 + frac[..3].parse::<u64>().ok()?)
}

/// The host's own null syscall (getppid), median ns per call over 5 batches of 200 000.
fn host_getppid_ns() -> u64 {
    let mut batches: Vec<u64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..200_000 {
                std::hint::black_box(std::os::unix::process::parent_id());
            }
            t.elapsed().as_nanos() as u64 / 200_000
        })
        .collect();
    batches.sort_unstable();
    batches[2]
}

/// The PVM proof of concept's bare syscall round trips (sysretq, HC_SYSRET) on this host,
/// if `../shared/pvm-poc` is there: the baseline our isolated round trip compares with.
fn poc_baseline() -> Option<(u64, u64)> {
    let src = std::path::Path::new("../shared/pvm-poc");
    if !src.join("vmm.c").exists() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("umlvm-bench-poc-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for f in ["vmm.c", "guest.S", "Makefile"] {
        std::fs::copy(src.join(f), dir.join(f)).ok()?;
    }
    let built = Command::new("make").arg("-s").arg("vmm").arg("guest.bin").current_dir(&dir).output().ok()?;
    if !built.status.success() {
        return None;
    }
    let out = Command::new(dir.join("vmm"))
        .args(["guest.bin", "1000000", "200000", "1000"])
        .current_dir(&dir)
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |tag: &str| text.lines().find(|l| l.contains(tag)).and_then(|l| milli_after(l, "x:"));
    Some((line("syscall round trip (sysretq)")?, line("syscall round trip (HC_SYSRET)")?))
}

fn us3(milli: u64) -> String {
    format!("{}.{:03} us", milli / 1000, milli % 1000)
}

fn guest_benchmarks(umlvm: &str) {
    println!();
    println!("## In-guest benchmarks");
    println!();
    let pvm = console_of(umlvm, &["selftest=none", "bench=syscall,zero"]);
    let sw = console_of(umlvm, &["selftest=none", "bench=syscall", "pvm_flip=off"]);
    let syscall = |t: &str| milli_after(t, "median").unwrap_or(0);
    let zero_k = number_after(&pvm, "bench zero: kernel zeroed 16 MiB in");
    let zero_u = number_after(&pvm, "bench zero: user (CPL 3) zeroed 16 MiB in");
    let host_ns = host_getppid_ns();
    println!("| null syscall round trip (getpid, median of 5 x 200 000, isolation on) | time |");
    println!("|---|---|");
    println!("| PVM mode, host user-root flip (default) | {} |", us3(syscall(&pvm)));
    println!("| PVM mode, kernel loads CR3 itself (pvm_flip=off) | {} |", us3(syscall(&sw)));
    if let Some((sysret, hc)) = poc_baseline() {
        println!("| PoC (../shared/pvm-poc), no isolation, sysretq | {} |", us3(sysret));
        println!("| PoC (../shared/pvm-poc), no isolation, HC_SYSRET | {} |", us3(hc));
    }
    println!("| host getppid | {} ns |", host_ns);
    println!();
    let native = if std::env::var_os("BENCH_SKIP_EMULATED").is_some() {
        None
    } else {
        let t = console_of(umlvm, &["selftest=none", "bench=zero", "pvm=off"]);
        Some(number_after(&t, "bench zero: kernel zeroed 16 MiB in"))
    };
    println!("| zeroing 16 MiB (same loop, pages touched first) | time | vs CPL 3 |");
    println!("|---|---|---|");
    let ratio = |a: u64, b: u64| format!("{:.2}x", a as f64 / b.max(1) as f64);
    println!("| kernel, PVM mode | {} | {} |", ms(zero_k), ratio(zero_k, zero_u));
    println!("| user mode (CPL 3) | {} | 1.00x |", ms(zero_u));
    if let Some(n) = native {
        println!("| kernel, pvm=off (ring 0, emulated here) | {} | {} |", ms(n), ratio(n, zero_u));
        println!();
        println!("PVM mode is {} faster than emulated ring 0 for this loop.", ratio(n, zero_k));
    }
}

/// Host page-cache read of `path` with `dd bs=1M` (the reference the issue names), MiB/s,
/// best of three.
fn host_read_mibps(path: &std::path::Path) -> u64 {
    let mut best = 0;
    for _ in 0..3 {
        let out = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["of=/dev/null", "bs=1M"])
            .output()
            .expect("dd");
        // "268435456 bytes (268 MB, 256 MiB) copied, 0.0632468 s, 4.2 GB/s"
        let text = String::from_utf8_lossy(&out.stderr);
        let Some(line) = text.lines().find(|l| l.contains("copied")) else { continue };
        let bytes: f64 = line.split_whitespace().next().and_then(|b| b.parse().ok()).unwrap_or(0.0);
        let secs: f64 = line
            .split(", ")
            .find_map(|t| t.strip_suffix(" s").and_then(|n| n.parse().ok()))
            .unwrap_or(f64::INFINITY);
        best = best.max((bytes / secs) as u64 >> 20);
    }
    best
}

fn block_benchmarks(umlvm: &str) {
    println!();
    println!(
        "## Block devices (256 MiB image, 1 MiB sequential requests and 4 KiB random reads, 16 in flight, mem=512M)"
    );
    println!();
    let dir = std::env::temp_dir().join(format!("umlvm-bench-blk-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let img = dir.join("disk.img");
    let data: Vec<u8> = (0..(256usize << 20)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&img, &data).expect("bench image");
    drop(data);
    // Settle writeback before measuring anything.
    std::fs::File::open(&img).and_then(|f| f.sync_all()).expect("sync bench image");
    let host = host_read_mibps(&img);
    let line = |t: &str| t.lines().find(|l| l.contains("bench blk:")).unwrap_or("").to_string();
    // Each configuration runs three times; the best figures are reported, as for the host.
    let row = |name: &str, runs: &[String]| {
        let best = |key: &str| runs.iter().map(|t| number_after(&line(t), key)).max().unwrap_or(0);
        let (read, write, iops) =
            (best("sequential read"), best("sequential write"), best("random 4 KiB read"));
        println!("| {name} | {read} MiB/s ({}%) | {write} MiB/s | {iops} |", read * 100 / host.max(1));
    };
    let three = |args: &[&str]| (0..3).map(|_| console_of(umlvm, args)).collect::<Vec<String>>();
    println!("| configuration | sequential read (vs host) | sequential write | random 4 KiB read IOPS |");
    println!("|---|---|---|---|");
    let raw = three(&[&format!("ubd0={}", img.display()), "selftest=none", "bench=blk", "mem=512M"]);
    row("raw image, PVM mode", &raw);
    let cow = dir.join("disk.cow");
    let cow_arg = format!("ubd0={},{}", cow.display(), img.display());
    let t = three(&[&cow_arg, "selftest=none", "bench=blk", "mem=512M"]);
    row("COW over the image (writes land in it), PVM mode", &t);
    if std::env::var_os("BENCH_SKIP_EMULATED").is_none() {
        let arg = format!("ubd0={}", img.display());
        let t = console_of(umlvm, &[&arg, "selftest=none", "bench=blk", "pvm=off", "mem=512M"]);
        row("raw image, pvm=off (emulated ring 0 here)", &[t]);
    }
    println!("| host: `dd if=IMAGE of=/dev/null bs=1M`, cached | {host} MiB/s (100%) | | |");
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let umlvm = args
        .iter()
        .position(|a| a == "--umlvm")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "target/release/umlvm".into());
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let pvm_host = std::path::Path::new("/sys/module/kvm_pvm").exists();
    println!("# umlvm benchmarks: {umlvm}, host {}", if pvm_host { "kvm_pvm" } else { "hardware KVM" });
    // BENCH_ONLY=user runs only the user-space section (quicker while working on it).
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "user") {
        userland_benchmarks(&umlvm, runs.max(20));
        return;
    }
    println!();
    println!("## Boot");
    println!();
    println!(
        "median (min .. p90); 'guest done' is when the guest finished, 'after guest' is process wall minus that"
    );
    println!();
    println!(
        "| configuration | runs | process wall | VMM start -> kernel main | guest done | after guest | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|");
    report("default boot, 64 MiB, self-checks (pvm mode here)", runs, &umlvm, &[]);
    report("kernel-only, no self-checks", runs, &umlvm, &["selftest=none"]);
    report("pvm=off (ring 0; emulated on PVM hosts)", (runs / 3).max(5), &umlvm, &["pvm=off"]);
    report("pvm=off, no self-checks", (runs / 3).max(5), &umlvm, &["pvm=off", "selftest=none"]);
    guest_benchmarks(&umlvm);
    block_benchmarks(&umlvm);
    userland_benchmarks(&umlvm, runs.max(20));
}

/// Whole-process wall time of one `umlvm ARGS` run, microseconds.
fn wall_of(umlvm: &str, args: &[&str]) -> u64 {
    let start = Instant::now();
    let child = Command::new(umlvm)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let (status, _) = wait_with_rusage(child.expect("spawn umlvm").id());
    assert_eq!(status, 0, "umlvm {args:?} failed");
    start.elapsed().as_micros() as u64
}

/// A file tree of about `mib` MiB: 20 directories of files of 8 KiB to 1 MiB.
fn make_tree(root: &std::path::Path, mib: usize) -> usize {
    let mut total = 0usize;
    let mut n = 0usize;
    while total < mib << 20 {
        let dir = root.join(format!("d{:02}", n % 20));
        std::fs::create_dir_all(&dir).expect("tree dir");
        let size = 8192 << (n % 8);
        let data: Vec<u8> = (0..size).map(|i| ((i * 31 + n * 7) % 251) as u8).collect();
        std::fs::write(dir.join(format!("f{n:04}")), &data).expect("tree file");
        total += size;
        n += 1;
    }
    n
}

/// "uptime-before uptime-after" (seconds with two decimals) printed by a guest command around
/// the work; the difference in milliseconds.
fn guest_ms(console: &str, tag: &str) -> u64 {
    let line =
        console.lines().find(|l| l.starts_with(tag)).unwrap_or_else(|| panic!("no {tag} line in\n{console}"));
    let v: Vec<f64> = line[tag.len()..].split_whitespace().filter_map(|w| w.parse().ok()).collect();
    ((v[1] - v[0]) * 1000.0).round() as u64
}

fn userland_benchmarks(umlvm: &str, runs: usize) {
    println!();
    println!("## User space (busybox)");
    println!();
    let dir = std::env::temp_dir().join(format!("umlvm-bench-user-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let root = dir.join("root_fs");
    // BENCH_ROOTFS=IMAGE uses a copy of a ready image (a machine without e2fsprogs).
    match std::env::var("BENCH_ROOTFS") {
        Ok(image) => {
            std::fs::copy(&image, &root).expect("copy BENCH_ROOTFS");
        }
        Err(_) => {
            let made = Command::new(umlvm)
                .args(["mkrootfs", root.to_str().unwrap(), "--size", "256M"])
                .stderr(Stdio::null())
                .status()
                .expect("umlvm mkrootfs");
            assert!(made.success(), "umlvm mkrootfs failed");
        }
    }
    let rootfs = root.to_str().unwrap();
    let ci = ["run", "--rootfs", rootfs, "quiet", "--", "true"];
    let _ = wall_of(umlvm, &ci);
    let (median, min, p90) = stats((0..runs).map(|_| wall_of(umlvm, &ci)).collect());
    println!("| command | runs | process wall, median (min .. p90) | target |");
    println!("|---|---|---|---|");
    println!(
        "| `umlvm run --rootfs root_fs quiet -- true` (ext2 root, busybox) | {runs} | {} ({} .. {}) | < 50 ms |",
        ms(median),
        ms(min),
        ms(p90)
    );
    println!();
    // tar -x of a ~50 MiB tree into the ext2 root, then find | wc, in the guest and on the host
    // (BENCH_TAR_MIB changes the size; 0 skips it).
    let tar_size: usize = std::env::var("BENCH_TAR_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    if tar_size == 0 {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let tree = dir.join("tree");
    let files = make_tree(&tree, tar_size);
    let tarball = dir.join("tree.tar");
    let ok =
        Command::new("tar").arg("-cf").arg(&tarball).arg("-C").arg(&tree).arg(".").status().expect("tar");
    assert!(ok.success());
    let tar_mib = std::fs::metadata(&tarball).map(|m| m.len() >> 20).unwrap_or(0);
    let script = "mkdir /t && cd /t && a=$(cut -d' ' -f1 /proc/uptime) && tar -xf /dev/ubdb && sync && \
                  b=$(cut -d' ' -f1 /proc/uptime) && echo TAR $a $b && n=$(find /t | wc -l) && \
                  c=$(cut -d' ' -f1 /proc/uptime) && echo FIND $b $c $n";
    let ubd1 = format!("ubd1={}", tarball.display());
    let out = Command::new(umlvm)
        .args(["run", "--rootfs", rootfs, &ubd1, "mem=256M", "quiet", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("umlvm");
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let (g_tar, g_find) = (guest_ms(&console, "TAR "), guest_ms(&console, "FIND "));
    let host_dir = dir.join("host-x");
    std::fs::create_dir_all(&host_dir).unwrap();
    let t0 = Instant::now();
    let ok = Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(&host_dir).status().expect("tar");
    let _ = Command::new("sync").status();
    let h_tar = t0.elapsed().as_millis() as u64;
    let t0 = Instant::now();
    let found =
        Command::new("sh").arg("-c").arg(format!("find {} | wc -l", host_dir.display())).output().unwrap();
    let h_find = t0.elapsed().as_millis() as u64;
    assert!(ok.success() && found.status.success());
    println!(
        "| {tar_mib} MiB tar ({files} files, 20 directories) | guest (ext2 on ubd, PVM mode) | host (tar + sync into {}) |",
        std::env::temp_dir().display()
    );
    println!("|---|---|---|");
    println!("| `tar -xf` + `sync` | {g_tar} ms | {h_tar} ms |");
    println!("| `find | wc -l` | {g_find} ms | {h_find} ms |");
    let _ = std::fs::remove_dir_all(&dir);
}
