//! `make bench`: boot-time, wall-time and memory figures for `umlvm run`.
//!
//! Each configuration is run many times; we report the median (and min / p90), because these
//! machines are noisy. Figures go to docs/benchmarks.md together with this command.

use std::process::{Command, Stdio};
use std::time::Instant;

/// One measured run.
struct Sample {
    wall_us: u64,
    main_us: u64,
    done_us: u64,
    max_rss_kib: u64,
}

/// Waits for `pid` and returns (exit status, peak RSS in KiB) from the kernel's accounting.
fn wait_with_rusage(pid: u32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; the pointers are valid for the call.
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as libc::pid_t, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss as u64)
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
    println!("umlvm boot benchmark: {umlvm}, host {}", if pvm_host { "kvm_pvm" } else { "hardware KVM" });
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
}
