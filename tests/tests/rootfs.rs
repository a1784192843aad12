//! Root file systems: booting from an ext2 `root_fs` made by `umlvm mkrootfs`, logging in,
//! leaving a consistent image behind (judged by e2fsck and debugfs from e2fsprogs), COW layers
//! merged by Debian's `uml_moo`, `mke2fs` inside the guest, CI mode, and power cuts.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use umlvm_tests::{Guarded, Run, TempDir, require_kvm, run_command_bounded, terminal, umlvm, umlvm_bin};

const LIMIT: Duration = Duration::from_secs(60);

/// A fresh root_fs made by `umlvm mkrootfs` in `dir`.
fn mkrootfs(dir: &Path, size: &str) -> PathBuf {
    let out = dir.join("root_fs");
    let r = umlvm(&["mkrootfs", out.to_str().unwrap(), "--size", size]);
    r.assert_status(0);
    out
}

/// `e2fsck -fn IMAGE`: (exit status, output).
fn e2fsck(image: &Path) -> (Option<i32>, String) {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output().expect("e2fsck (package e2fsprogs)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn assert_clean(image: &Path) {
    let (status, out) = e2fsck(image);
    assert_eq!(status, Some(0), "e2fsck -fn {} found problems:\n{out}", image.display());
}

/// `debugfs -R 'cat PATH' IMAGE`.
fn debugfs_cat(image: &Path, path: &str) -> String {
    let out =
        Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image).output().expect("debugfs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `umlvm run SWITCHES -- COMMAND` with stdin closed, bounded.
fn run_ci(switches: &[&str], command: &[&str]) -> Run {
    require_kvm();
    let mut cmd = Command::new(umlvm_bin());
    cmd.arg("run").args(switches).arg("--").args(command);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    run_command_bounded(cmd, LIMIT)
}

#[test]
fn login_write_halt_and_the_image_is_clean() {
    require_kvm();
    let dir = TempDir::new("rootfs-login");
    let image = mkrootfs(dir.path(), "64M");
    let (mut term, slave) = terminal("# ");
    let child = Command::new(umlvm_bin())
        .arg("run")
        .arg("--rootfs")
        .arg(&image)
        .arg("quiet")
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave)
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("spawn umlvm");
    let mut guard = Guarded(child);
    let banner = term.expect("login: ", Duration::from_secs(30));
    assert!(banner.contains("log in as root"), "the banner says how to log in: {banner}");
    term.send(b"root\r");
    term.expect("Password: ", Duration::from_secs(10));
    term.send(b"root\r");
    term.prompt(Duration::from_secs(10));
    term.send(b"mkdir -p /data/deep/er && echo 'written in the guest' > /data/deep/er/file && sync && echo ok-$((40+2))\r");
    term.expect("ok-42", Duration::from_secs(10));
    term.prompt(Duration::from_secs(10));
    term.send(b"halt\r");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = guard.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "halt did not end the machine");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "halt powers off with status 0");
    assert_clean(&image);
    assert_eq!(debugfs_cat(&image, "/data/deep/er/file"), "written in the guest\n");
}

#[test]
fn ci_mode_returns_the_command_status() {
    let dir = TempDir::new("rootfs-ci");
    let image = mkrootfs(dir.path(), "64M");
    let root = ["--rootfs", image.to_str().unwrap(), "quiet"];
    run_ci(&root, &["sh", "-c", "exit 7"]).assert_status(7);
    run_ci(&root, &["false"]).assert_status(1);
    run_ci(&root, &["sh", "-c", "kill -9 $$"]).assert_status(137);
    let r = run_ci(&root, &["sh", "-c", "pwd; id -u; echo $PATH; echo made > /ci-file"]);
    r.assert_status(0);
    let out = r.console();
    assert!(out.contains("/\n0\n/sbin:/usr/sbin:/bin:/usr/bin"), "runs in /, as root, with a PATH: {out}");
    assert_eq!(debugfs_cat(&image, "/ci-file"), "made\n");
    assert_clean(&image);
    let mut timed = vec!["--timeout", "1"];
    timed.extend_from_slice(&root);
    let r = run_ci(&timed, &["sleep", "10"]);
    r.assert_status(124).assert_stderr("did not finish within 1 s");
}

#[test]
fn cow_layer_keeps_the_backing_file_and_uml_moo_merges_it() {
    let dir = TempDir::new("rootfs-cow");
    let image = mkrootfs(dir.path(), "64M");
    let before = std::fs::read(&image).unwrap();
    let cow = dir.join("cow.root");
    let spec = format!("ubd0={},{}", cow.display(), image.display());
    run_ci(
        &[&spec, "quiet"],
        &["sh", "-c", "echo through-cow > /cowfile; mkdir /cowdir; cp /etc/passwd /cowdir/"],
    )
    .assert_status(0);
    assert!(std::fs::read(&image).unwrap() == before, "the backing file is byte-identical");
    let merged = dir.join("merged");
    let out =
        Command::new("uml_moo").arg(&cow).arg(&merged).output().expect("uml_moo (package uml-utilities)");
    assert!(out.status.success(), "uml_moo: {}", String::from_utf8_lossy(&out.stderr));
    assert_clean(&merged);
    assert_eq!(debugfs_cat(&merged, "/cowfile"), "through-cow\n");
    assert!(debugfs_cat(&merged, "/cowdir/passwd").starts_with("root:"));
}

#[test]
fn guest_mke2fs_makes_a_file_system_e2fsck_accepts() {
    let dir = TempDir::new("rootfs-mke2fs");
    let image = mkrootfs(dir.path(), "64M");
    let new_fs = dir.join("new_fs");
    let f = File::create(&new_fs).unwrap();
    f.set_len(100 << 20).unwrap();
    drop(f);
    let root = ["--rootfs", image.to_str().unwrap()];
    let ubd4 = format!("ubd4={}", new_fs.display());
    let script =
        "mke2fs -q /dev/ubde && mount /dev/ubde /mnt && cp -a /bin /mnt && umount /mnt && echo copied";
    let r = run_ci(&[root[0], root[1], &ubd4, "quiet"], &["sh", "-c", script]);
    r.assert_status(0).assert_stdout("copied");
    assert_clean(&new_fs);
    assert_clean(&image);
    let out = Command::new("debugfs").arg("-R").arg("ls /bin").arg(&new_fs).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("busybox"), "the copy is there");
}

/// Power cuts: SIGKILL to umlvm in the middle of heavy writes, 20 times. e2fsck may have to
/// repair the image (as after a power cut) but it stays readable and boots again; through a COW
/// layer, the COW file's header and bitmap stay valid (uml_moo can merge it).
#[test]
fn sigkill_during_heavy_writes_never_ruins_the_image() {
    require_kvm();
    let dir = TempDir::new("rootfs-kill");
    let image = mkrootfs(dir.path(), "64M");
    let cow = dir.join("cow");
    let writer = "i=0; while :; do i=$((i+1)); dd if=/dev/zero of=/w$((i%8)) bs=64k count=8 2>/dev/null; mkdir -p /d$i; rm -rf /d$((i-3)); done";
    for round in 0..20 {
        let spec = if round % 2 == 0 {
            format!("ubd0={}", image.display())
        } else {
            format!("ubd0={},{}", cow.display(), image.display())
        };
        let mut child = Command::new(umlvm_bin())
            .args(["run", &spec, "quiet", "--", "sh", "-c", writer])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        if round % 2 == 1 {
            // The COW file must still be a valid UML COW file: uml_moo merges it.
            let merged = dir.join("merged");
            let _ = std::fs::remove_file(&merged);
            let out = Command::new("uml_moo").arg(&cow).arg(&merged).output().unwrap();
            assert!(out.status.success(), "round {round}: uml_moo: {}", String::from_utf8_lossy(&out.stderr));
            let repaired = Command::new("e2fsck").arg("-fy").arg(&merged).output().unwrap();
            assert!(
                repaired.status.code().is_some_and(|c| c < 4),
                "round {round}: merged image beyond repair"
            );
            std::fs::remove_file(&cow).unwrap();
        }
        // A power cut may leave things to fix, never an unreadable image.
        let repaired = Command::new("e2fsck").arg("-fy").arg(&image).output().unwrap();
        let code = repaired.status.code();
        assert!(
            code.is_some_and(|c| c < 4),
            "round {round}: e2fsck -fy exit {code:?}:\n{}",
            String::from_utf8_lossy(&repaired.stdout)
        );
        assert_clean(&image);
    }
    // And it still boots.
    run_ci(&["--rootfs", image.to_str().unwrap(), "quiet"], &["true"]).assert_status(0);
}

#[test]
fn bad_root_file_systems_are_refused_clearly() {
    let dir = TempDir::new("rootfs-bad");
    // Missing: says how to make one.
    let missing = dir.join("nowhere");
    let r = umlvm(&["run", "--rootfs", missing.to_str().unwrap(), "--", "true"]);
    r.assert_one_line_error("no such root file system (make one with `umlvm mkrootfs");
    // Not ext2.
    let zeros = dir.join("zeros");
    File::create(&zeros).unwrap().set_len(8 << 20).unwrap();
    let r = run_ci(&["--rootfs", zeros.to_str().unwrap(), "quiet"], &["true"]);
    r.assert_status(122)
        .assert_stdout("cannot mount the root file system /dev/ubda: ext2: not an ext2 file system");
    // ext4 with features we do not handle.
    let ext4 = dir.join("ext4");
    File::create(&ext4).unwrap().set_len(16 << 20).unwrap();
    let ok = Command::new("mke2fs").args(["-q", "-t", "ext4", "-F"]).arg(&ext4).status().unwrap();
    assert!(ok.success());
    let r = run_ci(&["--rootfs", ext4.to_str().unwrap(), "quiet"], &["true"]);
    r.assert_status(122).assert_stdout("extents");
    // Locked by another machine.
    let image = mkrootfs(dir.path(), "64M");
    let mut first = Command::new(umlvm_bin())
        .args(["run", "--rootfs", image.to_str().unwrap(), "quiet", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let r = umlvm(&["run", "--rootfs", image.to_str().unwrap(), "--", "true"]);
    first.kill().unwrap();
    first.wait().unwrap();
    r.assert_one_line_error("in use by another machine");
    // `--` with nothing after it.
    umlvm(&["run", "--rootfs", image.to_str().unwrap(), "--"]).assert_one_line_error("expected a command");
}
