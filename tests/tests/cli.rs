//! End-to-end: the command line, `--kernel`, and every kind of bad input: one clear error line,
//! a non-zero status, no panic.

use std::process::Command;
use std::time::Duration;
use umlvm_tests::{TempDir, boot, require_kvm, run_command, umlvm, umlvm_bin, umlvm_env};

#[test]
fn help_is_available() {
    let r = umlvm(&["--help"]);
    r.assert_status(0).assert_stdout("Usage: umlvm").assert_stdout("run");
    let r = umlvm(&["run", "--help"]);
    r.assert_status(0).assert_stdout("--kernel <FILE>").assert_stdout("--mem <SIZE>").assert_stdout("SWITCH");
    umlvm(&["--version"]).assert_status(0).assert_stdout(env!("CARGO_PKG_VERSION"));
}

#[test]
fn info_names_the_host_kind() {
    require_kvm();
    let r = umlvm(&["info"]);
    r.assert_status(0).assert_stdout("host: ").assert_stdout("guest mode: ");
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    r.assert_stdout(if pvm { "host: kvm_pvm" } else { "host: hardware virtualisation" });
}

#[test]
fn kernel_flag_boots_another_kernel_file() {
    let dir = TempDir::new("kernel-flag");
    let k = dir.join("vmlinux");
    umlvm(&["dump-kernel", k.to_str().unwrap()]).assert_status(0);
    let bytes = std::fs::read(&k).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    boot(&["--kernel", k.to_str().unwrap(), "selftest=none"]).assert_status(0).assert_stdout("umlvm-kernel ");
}

#[test]
fn missing_unreadable_non_elf_and_foreign_kernels_are_refused() {
    let dir = TempDir::new("bad-kernels");
    let missing = dir.join("missing");
    umlvm(&["run", "--kernel", missing.to_str().unwrap()])
        .assert_one_line_error(&format!("--kernel {}: cannot read it: No such file", missing.display()));

    let text = dir.join("text");
    std::fs::write(&text, "this is not a kernel\n").unwrap();
    umlvm(&["run", "--kernel", text.to_str().unwrap()]).assert_one_line_error("not an ELF file");

    umlvm(&["run", "--kernel", dir.path().to_str().unwrap()]).assert_one_line_error("cannot read it");

    let good = dir.join("good");
    umlvm(&["dump-kernel", good.to_str().unwrap()]).assert_status(0);
    let mut arm = std::fs::read(&good).unwrap();
    arm[18] = 183; // e_machine = AArch64
    let arm_path = dir.join("arm");
    std::fs::write(&arm_path, &arm).unwrap();
    umlvm(&["run", "--kernel", arm_path.to_str().unwrap()])
        .assert_one_line_error("not a 64-bit little-endian x86-64 ELF (AArch64)");

    let mut elf32 = std::fs::read(&good).unwrap();
    elf32[4] = 1; // ELFCLASS32
    let elf32_path = dir.join("elf32");
    std::fs::write(&elf32_path, &elf32).unwrap();
    umlvm(&["run", "--kernel", elf32_path.to_str().unwrap()]).assert_one_line_error("32-bit ELF");

    let truncated = dir.join("truncated");
    std::fs::write(&truncated, &std::fs::read(&good).unwrap()[..40]).unwrap();
    umlvm(&["run", "--kernel", truncated.to_str().unwrap()]).assert_one_line_error("malformed ELF");
}

#[test]
fn bad_memory_sizes_are_refused() {
    umlvm(&["run", "mem=lots"]).assert_one_line_error("mem=lots: not a size");
    umlvm(&["run", "--mem", "12X"]).assert_one_line_error("--mem 12X: not a size");
    umlvm(&["run", "mem=8M"])
        .assert_one_line_error("mem=8M: too small: the guest kernel needs at least 16 MiB");
    umlvm(&["run", "mem=200G"]).assert_one_line_error("mem=200G: larger than umlvm's limit of 128 GiB");
    let host_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    let too_big_gib = host_kib / (1024 * 1024) + 2;
    if too_big_gib <= 128 {
        let arg = format!("mem={too_big_gib}G");
        umlvm(&["run", &arg]).assert_one_line_error("larger than this host's");
    }
}

#[test]
fn kernel_too_big_for_memory_fails_cleanly() {
    // Grow the last loadable segment's .bss to 64 MiB: it no longer fits a 32 MiB guest.
    let dir = TempDir::new("big-kernel");
    let good = dir.join("good");
    umlvm(&["dump-kernel", good.to_str().unwrap()]).assert_status(0);
    let mut elf = std::fs::read(&good).unwrap();
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let phoff = u64_at(&elf, 32) as usize;
    let phnum = u16::from_le_bytes([elf[56], elf[57]]) as usize;
    let last_load = (0..phnum)
        .map(|i| phoff + i * 56)
        .rfind(|&ph| u32::from_le_bytes(elf[ph..ph + 4].try_into().unwrap()) == 1)
        .expect("a PT_LOAD segment");
    elf[last_load + 40..last_load + 48].copy_from_slice(&(64u64 << 20).to_le_bytes());
    let big = dir.join("big");
    std::fs::write(&big, &elf).unwrap();
    umlvm(&["run", "--kernel", big.to_str().unwrap(), "mem=32M"])
        .assert_one_line_error("kernel needs memory up to");
    umlvm(&["run", "--mem", "15M"]).assert_one_line_error("--mem 15M: too small");
}

#[test]
fn unknown_flags_and_bad_switches_are_refused() {
    let r = umlvm(&["run", "--frobnicate"]);
    r.assert_status(2).assert_stderr("unexpected argument '--frobnicate'");
    umlvm(&["run", "pvm=maybe"]).assert_one_line_error("pvm=maybe: expected pvm=on or pvm=off");
    umlvm(&["run", "umid=../x"]).assert_one_line_error("umid=../x: a umid is");
    umlvm(&["run", "init="]).assert_one_line_error("init=: needs a value");
}

#[test]
fn missing_kvm_device_says_so() {
    let r = umlvm_env(&["run"], &[("UMLVM_KVM", "/nonexistent/kvm")], Duration::from_secs(30));
    r.assert_one_line_error("/nonexistent/kvm does not exist: this host has no KVM");
}

#[test]
fn inaccessible_kvm_device_says_how_to_fix_it() {
    require_kvm();
    // Run as an unprivileged user (nobody) from a copy of the binary it may execute.
    let dir = TempDir::new("nokvm");
    let mut cmd = as_nobody(&dir);
    cmd.arg("run");
    let r = run_command(cmd, Duration::from_secs(30));
    r.assert_one_line_error("/dev/kvm: permission denied: add your user to group `kvm`");
}

#[test]
fn initrd_is_loaded_and_reported() {
    // umlvm loads any file; the guest kernel then refuses what is not an initramfs, with a
    // message and status 121 (no init).
    let dir = TempDir::new("initrd-ok");
    let initrd = dir.join("initrd.img");
    std::fs::write(&initrd, vec![0x5a; (2 << 20) + 100]).unwrap();
    let r = boot(&["-v", "--initrd", initrd.to_str().unwrap(), "selftest=none"]);
    r.assert_status(121).assert_stdout("initramfs: cannot unpack").assert_stderr(&format!(
        "--initrd {}: 2097252 bytes read into guest RAM at 0x3dff000",
        initrd.display()
    ));
    let r = umlvm(&["run", "--help"]);
    r.assert_status(0).assert_stdout("--initrd <FILE>");
}

#[test]
fn bad_initrds_are_refused_before_anything_starts() {
    // All of these are refused before KVM is opened (a missing KVM device would be reported
    // otherwise), so nothing starts: one line, status 2.
    let dir = TempDir::new("bad-initrd");
    let run = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        umlvm_env(&all, &[("UMLVM_KVM", "/nonexistent/kvm")], Duration::from_secs(30))
    };

    let missing = dir.join("missing.cpio.gz");
    let missing_switch = format!("initrd={}", missing.display());
    run(&[&missing_switch]).assert_one_line_error(&format!(
        "initrd={}: cannot read it: No such file or directory",
        missing.display()
    ));
    run(&["--initrd", missing.to_str().unwrap()])
        .assert_one_line_error(&format!("--initrd {}: cannot read it", missing.display()));

    run(&["--initrd", dir.path().to_str().unwrap()]).assert_one_line_error(&format!(
        "--initrd {}: is a directory, not an initrd image",
        dir.path().display()
    ));

    let empty = dir.join("empty.cpio.gz");
    std::fs::write(&empty, b"").unwrap();
    run(&["--initrd", empty.to_str().unwrap()]).assert_one_line_error(&format!(
        "--initrd {}: the file is empty (leave the option out to boot without an initrd)",
        empty.display()
    ));

    run(&["initrd=/dev/null"]).assert_one_line_error("initrd=/dev/null: not a regular file");
    run(&["initrd="]).assert_one_line_error("initrd=: needs a value");

    // Sparse files: sizes without the disk space.
    let big = dir.join("rootfs.cpio.gz");
    std::fs::File::create(&big).unwrap().set_len(300 << 20).unwrap();
    run(&["--initrd", big.to_str().unwrap(), "mem=128M"]).assert_one_line_error(&format!(
        "--initrd {} (300 MiB) does not fit in 128 MiB of guest RAM; use mem=512M",
        big.display()
    ));
    let big_switch = format!("initrd={}", big.display());
    run(&["--mem", "64M", &big_switch]).assert_one_line_error(&format!(
        "{big_switch} (300 MiB) does not fit in 64 MiB of guest RAM; use mem=512M"
    ));

    let huge = dir.join("huge.img");
    std::fs::File::create(&huge).unwrap().set_len(3 << 30).unwrap();
    run(&["--initrd", huge.to_str().unwrap()]).assert_one_line_error(&format!(
        "--initrd {} (3072 MiB) is too large: an initrd must fit in the RAM below 3 GiB",
        huge.display()
    ));
}

#[test]
fn unreadable_initrd_is_refused() {
    // As an unprivileged user (nobody), from a copy of the binary it may execute.
    let dir = TempDir::new("initrd-perm");
    let secret = dir.join("secret.cpio.gz");
    std::fs::write(&secret, b"070701").unwrap();
    chmod(&secret, 0o600);
    let mut cmd = as_nobody(&dir);
    cmd.args(["run", "--initrd"]).arg(&secret);
    let r = run_command(cmd, Duration::from_secs(30));
    r.assert_one_line_error(&format!("--initrd {}: cannot read it: Permission denied", secret.display()));
}

fn chmod(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `setpriv` running a copy of umlvm (in `dir`, which nobody may enter) as the unprivileged
/// user nobody, its output captured; the caller adds the arguments.
fn as_nobody(dir: &TempDir) -> Command {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    assert!(is_root, "this test drops privileges with setpriv and must run as root (CI does)");
    let bin = dir.join("umlvm");
    std::fs::copy(umlvm_bin(), &bin).unwrap();
    chmod(dir.path(), 0o755);
    chmod(&bin, 0o755);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(&bin);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd
}
