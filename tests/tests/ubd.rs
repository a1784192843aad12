//! End-to-end: ubd block devices. The guest writes patterns through virtio-blk (raw images,
//! COW files, read-only devices) and the tests check the host files byte by byte; COW files
//! are judged by Debian's `uml_moo` (package uml-utilities).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use umlvm_tests::{Run, TempDir, boot, require_kvm, run_command, umlvm, umlvm_bin};

/// The byte the guest's blktest writes at offset `j` of sector `s` (sectors 1..=16).
fn pattern(s: u64, j: usize) -> u8 {
    (s as u8) ^ (j as u8) ^ 0x5a
}

fn backing_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// `data` with sectors 1..=16 replaced by the blktest pattern.
fn with_pattern(mut data: Vec<u8>) -> Vec<u8> {
    for s in 1..=16u64 {
        for j in 0..512 {
            data[s as usize * 512 + j] = pattern(s, j);
        }
    }
    data
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[track_caller]
fn assert_blktest_ok(r: &Run, name: &str) {
    r.assert_status(0).assert_stdout(&format!("blktest {name}: ok ("));
}

#[test]
fn raw_image_writes_land_in_the_file() {
    let dir = TempDir::new("ubd-raw");
    let img = dir.join("disk.img");
    std::fs::write(&img, backing_bytes(1 << 20)).unwrap();
    let r = boot(&[&format!("ubd0={}", p(&img)), "selftest=none", "blktest=ubda"]);
    assert_blktest_ok(&r, "ubda");
    r.assert_stdout("ubda (ubd/0): 2048 sectors (1024 KiB), read-write")
        .assert_stdout("sector 0 starts 00070e151c232a31");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        with_pattern(backing_bytes(1 << 20)),
        "exactly sectors 1-16 changed"
    );
}

#[test]
fn cow_files_keep_the_backing_file_intact_and_uml_moo_agrees() {
    let dir = TempDir::new("ubd-cow");
    let backing = dir.join("root_fs");
    std::fs::write(&backing, backing_bytes(4 << 20)).unwrap();
    let cow = dir.join("root_fs.cow");
    let r = boot(&[&format!("ubd0={},{}", p(&cow), p(&backing)), "selftest=none", "blktest=ubda"]);
    assert_blktest_ok(&r, "ubda");
    assert_eq!(std::fs::read(&backing).unwrap(), backing_bytes(4 << 20), "backing file untouched");
    let meta = std::fs::metadata(&cow).unwrap();
    assert_eq!(meta.len(), 12288 + (4 << 20), "UML layout: data at 12288, identity-mapped");
    assert!(meta.blocks() * 512 < 256 * 1024, "COW file not sparse: {} bytes allocated", meta.blocks() * 512);

    // A second boot with the COW file alone finds its backing file through the header.
    let r = boot(&[&format!("ubd0={}", p(&cow)), "selftest=none", "blktest=ubda"]);
    assert_blktest_ok(&r, "ubda");

    // umlvm moo and Debian's uml_moo produce the same merged image, which is what the
    // guest wrote.
    let ours = dir.join("merged-umlvm");
    umlvm(&["moo", p(&cow), p(&ours)]).assert_status(0);
    assert_eq!(std::fs::read(&ours).unwrap(), with_pattern(backing_bytes(4 << 20)));
    let theirs = dir.join("merged-uml");
    let out = Command::new("uml_moo")
        .arg(&cow)
        .arg(&theirs)
        .output()
        .expect("uml_moo (package uml-utilities) is installed by make");
    assert!(out.status.success(), "uml_moo failed: {out:?}");
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        std::fs::read(&ours).unwrap(),
        "uml_moo and umlvm moo disagree"
    );

    // In place: umlvm moo -d writes the same bytes into the backing file.
    umlvm(&["moo", "-d", p(&cow)]).assert_status(0);
    assert_eq!(std::fs::read(&backing).unwrap(), std::fs::read(&ours).unwrap());
}

/// A COW file laid out by hand from UML's documented format (big-endian header, bitmap at
/// 8192 LSB-first, data at 12288 for a 4 MiB backing file) is read correctly.
#[test]
fn hand_made_uml_cow_file_is_read() {
    let dir = TempDir::new("ubd-handmade");
    let backing = dir.join("backing");
    std::fs::write(&backing, vec![0x11u8; 4 << 20]).unwrap();
    let meta = std::fs::metadata(&backing).unwrap();
    let mut cow = vec![0u8; 12288 + (4 << 20)];
    cow[0..4].copy_from_slice(b"OOOM");
    cow[4..8].copy_from_slice(&3u32.to_be_bytes());
    cow[8..12].copy_from_slice(&(meta.mtime() as u32).to_be_bytes());
    cow[12..20].copy_from_slice(&(4u64 << 20).to_be_bytes());
    cow[20..24].copy_from_slice(&512u32.to_be_bytes());
    cow[24..28].copy_from_slice(&4096u32.to_be_bytes());
    let path = std::fs::canonicalize(&backing).unwrap();
    cow[32..32 + path.as_os_str().len()].copy_from_slice(path.as_os_str().as_encoded_bytes());
    cow[8192] = 0b0000_0001; // sector 0 dirty
    cow[12288..12288 + 8].copy_from_slice(b"UMLCOWv3");
    let cow_path = dir.join("disk.cow");
    std::fs::write(&cow_path, &cow).unwrap();
    let r = boot(&[&format!("ubd0r={}", p(&cow_path)), "selftest=none", "blktest=ubda"]);
    r.assert_status(0).assert_stdout(&format!("sector 0 starts {}", "554d4c434f577633"));
    let info = umlvm(&["cow", "info", p(&cow_path)]);
    info.assert_status(0)
        .assert_stdout(&format!("backing file:   {}", path.display()))
        .assert_stdout("data offset:    12288");
}

#[test]
fn read_only_devices_refuse_writes() {
    let dir = TempDir::new("ubd-ro");
    let img = dir.join("ro.img");
    std::fs::write(&img, backing_bytes(1 << 20)).unwrap();
    let r = boot(&[&format!("ubd1r={}", p(&img)), "selftest=none", "blktest=ubdb"]);
    r.assert_status(0)
        .assert_stdout("ubdb (ubd/1): 2048 sectors (1024 KiB), read-only")
        .assert_stdout("blktest ubdb: ok (read-only: 16 writes refused");
    assert_eq!(std::fs::read(&img).unwrap(), backing_bytes(1 << 20));
}

#[test]
fn rootfs_and_ubd_flags_and_the_default_root_fs() {
    let dir = TempDir::new("ubd-flags");
    let a = dir.join("a.img");
    let b = dir.join("b.img");
    std::fs::write(&a, vec![0u8; 1 << 20]).unwrap();
    std::fs::write(&b, vec![0u8; 2 << 20]).unwrap();
    let r = boot(&["--rootfs", p(&a), "--ubd", &format!("3={}", p(&b)), "selftest=none", "blktest=all"]);
    assert_blktest_ok(&r, "ubda");
    assert_blktest_ok(&r, "ubdd");
    r.assert_stdout("ubdd (ubd/3): 4096 sectors");
    // With no ubd0, ./root_fs is used, as in UML.
    std::fs::write(dir.join("root_fs"), vec![0u8; 1 << 20]).unwrap();
    require_kvm();
    let mut cmd = Command::new(umlvm_bin());
    cmd.args(["run", "selftest=none", "blktest=ubda"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let r = run_command(cmd, Duration::from_secs(30));
    assert_blktest_ok(&r, "ubda");
    assert_eq!(std::fs::read(dir.join("root_fs")).unwrap(), with_pattern(vec![0u8; 1 << 20]));
}

fn image(dir: &TempDir, name: &str) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, vec![0u8; 1 << 20]).unwrap();
    f
}

#[test]
fn bad_images_and_switches_are_refused_without_touching_files() {
    let dir = TempDir::new("ubd-bad");
    let missing = dir.join("missing.img");
    umlvm(&["run", &format!("ubd0={}", p(&missing))])
        .assert_one_line_error("missing.img: no such root file system (make one with `umlvm mkrootfs");
    umlvm(&["run", &format!("ubd1={}", p(&missing))])
        .assert_one_line_error("missing.img: cannot open: No such file");
    umlvm(&["run", &format!("ubd0={}", p(dir.path()))]).assert_one_line_error("not a regular file");
    umlvm(&["run", "ubd16=x"]).assert_one_line_error("ubd16=x: device number out of range");
    let img = image(&dir, "a.img");
    umlvm(&["run", &format!("ubd0={}", p(&img)), &format!("ubd0={}", p(&img))])
        .assert_one_line_error("ubd0 is already defined");
    umlvm(&["run", "ubd0q=x"]).assert_one_line_error("unknown flag");
    let odd = dir.join("odd.img");
    std::fs::write(&odd, vec![0u8; 1000]).unwrap();
    umlvm(&["run", &format!("ubd0={}", p(&odd))]).assert_one_line_error("size 1000 is not a multiple of 512");

    // COW files whose backing file changed, and broken headers.
    let backing = image(&dir, "backing");
    let cow = dir.join("c.cow");
    umlvm(&["cow", "create", p(&cow), p(&backing)]).assert_status(0);
    let cow_bytes = std::fs::read(&cow).unwrap();
    let mtime = std::fs::metadata(&backing).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&backing).unwrap();
    f.set_len(2 << 20).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    umlvm(&["run", &format!("ubd0={}", p(&cow))])
        .assert_one_line_error("size mismatch (COW header 1048576, file 2097152)");
    let f = std::fs::OpenOptions::new().write(true).open(&backing).unwrap();
    f.set_len(1 << 20).unwrap();
    f.set_modified(mtime + Duration::from_secs(60)).unwrap();
    drop(f);
    umlvm(&["run", &format!("ubd0={}", p(&cow))]).assert_one_line_error("mtime mismatch");
    assert_eq!(std::fs::read(&cow).unwrap(), cow_bytes, "nothing written to the COW file");
    let truncated = dir.join("t.cow");
    std::fs::write(&truncated, &cow_bytes[..100]).unwrap();
    umlvm(&["run", &format!("ubd0={}", p(&truncated))])
        .assert_one_line_error("corrupt COW header: truncated header");
    let mut bad = cow_bytes.clone();
    bad[7] = 9;
    let badv = dir.join("v.cow");
    std::fs::write(&badv, &bad).unwrap();
    umlvm(&["run", &format!("ubd0={}", p(&badv))]).assert_one_line_error("COW version 9 is not supported");
    umlvm(&["moo", p(&cow)]).assert_one_line_error("give NEW");
}

#[test]
fn an_image_in_use_by_another_machine_is_refused() {
    let dir = TempDir::new("ubd-lock");
    let img = image(&dir, "shared.img");
    require_kvm();
    // The first machine holds the image for a second (its timer test keeps it alive).
    let mut first = Command::new(umlvm_bin())
        .args(["run", &format!("ubd0={}", p(&img)), "selftest=none", "ticks=1500"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = first.stdout.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("ubda (ubd/0)") {
        use std::io::Read;
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "first machine ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let second = umlvm(&["run", &format!("ubd0={}", p(&img)), "selftest=none"]);
    // Only the machine we started, by its PID.
    let _ = first.kill();
    let _ = first.wait();
    second.assert_one_line_error("shared.img: in use by another machine");
}

#[test]
fn unwritable_images_for_writable_devices_are_refused() {
    let dir = TempDir::new("ubd-perm");
    let img = image(&dir, "ro.img");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("umlvm");
    std::fs::copy(umlvm_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // As an unprivileged user (root could write anyway).
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("run")
        .arg(format!("ubd0={}", p(&img)));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let r = run_command(cmd, Duration::from_secs(30));
    r.assert_one_line_error("ro.img: cannot open: Permission denied");
    // Read-only use of the same image is fine as far as the image goes (KVM access is what
    // stops the unprivileged user then).
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("run")
        .arg(format!("ubd0r={}", p(&img)));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    run_command(cmd, Duration::from_secs(30)).assert_one_line_error("/dev/kvm: permission denied");
}
