//! End-to-end: `umlvm mkrootfs` builds ext2 root filesystem images that e2fsck passes, that
//! hold the busybox system with the right modes and owners, whose passwords busybox `login`
//! accepts, and that the guest kernel mounts; every kind of bad input gives one error line,
//! status 2, and leaves nothing behind.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use umlvm_tests::{Run, TempDir, boot_initramfs, busybox_initramfs, pty, read_until, run_command, umlvm_bin};

const LIMIT: Duration = Duration::from_secs(60);

/// Runs `umlvm mkrootfs ARGS` with `TMPDIR` in `dir/tmp` (so leftovers can be seen) and extra
/// environment.
fn mkrootfs(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Run {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut cmd = Command::new(umlvm_bin());
    cmd.arg("mkrootfs").args(args).env("TMPDIR", &tmp).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    run_command(cmd, LIMIT)
}

/// Panics unless mkrootfs left no staging directory in `dir/tmp` and no partial image in
/// `dir` (only `keep` may be there besides `tmp`).
#[track_caller]
fn assert_nothing_left(dir: &TempDir, keep: &[&str]) {
    let names = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&dir.join("tmp")), Vec::<String>::new(), "staging left in TMPDIR");
    let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).chain(["tmp".into()]).collect();
    want.sort();
    assert_eq!(names(dir.path()), want, "files left in the output directory");
}

fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: install Debian's e2fsprogs (`make setup` does)"))
}

/// `debugfs -R REQUEST IMAGE`'s standard output.
fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new(tool("debugfs")).arg("-R").arg(request).arg(image).output().unwrap();
    assert!(out.status.success(), "debugfs -R {request}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (mode in octal as debugfs prints it, uid, gid) of `name` in `debugfs ls -l DIR` output.
fn ls_entry(listing: &str, name: &str) -> (String, u32, u32) {
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().last() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in\n{listing}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[1].to_string(), f[3].parse().unwrap(), f[4].parse().unwrap())
}

#[track_caller]
fn assert_e2fsck_clean(image: &Path) {
    let out = Command::new(tool("e2fsck")).arg("-fn").arg(image).output().unwrap();
    assert!(out.status.success(), "e2fsck -fn {}: {out:?}", image.display());
}

/// Builds the default image (64 MiB) in `dir`.
fn build(dir: &TempDir, extra: &[&str]) -> PathBuf {
    let img = dir.join("root_fs");
    let mut args = vec![img.to_str().unwrap(), "--size", "64M"];
    args.extend_from_slice(extra);
    let r = mkrootfs(dir, &args, &[]);
    r.assert_status(0);
    img
}

#[test]
fn image_is_clean_ext2_with_the_busybox_system() {
    let dir = TempDir::new("mkrootfs-basic");
    let img = build(&dir, &[]);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 << 20);
    assert_e2fsck_clean(&img);
    assert_nothing_left(&dir, &["root_fs"]);

    let etc = debugfs(&img, "ls -l /etc");
    for f in ["inittab", "fstab", "passwd", "group", "hostname", "issue", "profile", "shells"] {
        assert_eq!(ls_entry(&etc, f), ("100644".into(), 0, 0), "/etc/{f}");
    }
    assert_eq!(ls_entry(&etc, "shadow"), ("100600".into(), 0, 0));
    assert_eq!(ls_entry(&debugfs(&img, "ls -l /etc/init.d"), "rcS"), ("100755".into(), 0, 0));

    let inittab = debugfs(&img, "cat /etc/inittab");
    for line in [
        "::sysinit:/etc/init.d/rcS",
        "tty0::respawn:/sbin/getty -L 0 tty0 vt100",
        "::ctrlaltdel:/sbin/reboot",
        "::shutdown:/bin/umount -a -r",
        "::restart:/sbin/init",
    ] {
        assert!(inittab.lines().any(|l| l == line), "inittab lacks {line:?}:\n{inittab}");
    }
    assert!(debugfs(&img, "cat /etc/fstab").lines().any(|l| l == "/dev/ubda / ext2 defaults 0 1"));
    assert_eq!(debugfs(&img, "cat /etc/hostname"), "umlvm\n");
    assert!(
        debugfs(&img, "cat /etc/issue").contains("log in as root (password root) or user (password user)")
    );
    let passwd = debugfs(&img, "cat /etc/passwd");
    assert!(
        passwd.contains("root:x:0:0:root:/root:/bin/sh\n")
            && passwd.contains("user:x:1000:1000:user:/home/user:/bin/sh\n")
    );
    let shadow = debugfs(&img, "cat /etc/shadow");
    for (line, name) in shadow.lines().zip(["root", "user"]) {
        assert!(line.starts_with(&format!("{name}:$6$")), "SHA-512 crypt hash for {name}: {shadow}");
    }

    let root = debugfs(&img, "ls -l /");
    assert_eq!(ls_entry(&root, "tmp").0, "41777");
    assert_eq!(ls_entry(&root, "root").0, "40700");
    for d in ["dev", "proc", "sys", "mnt", "etc", "home", "var", "run", "bin", "sbin", "usr"] {
        assert_eq!(ls_entry(&root, d).1, 0, "/{d} owned by root");
    }
    assert_eq!(ls_entry(&debugfs(&img, "ls -l /home"), "user"), ("40755".into(), 1000, 1000));
    assert!(debugfs(&img, "ls -l /var").contains(" log"));

    let sh = debugfs(&img, "stat /bin/sh");
    assert!(sh.contains("Type: symlink") && sh.contains("Fast link dest: \"busybox\""), "{sh}");
    let awk = debugfs(&img, "stat /usr/bin/awk");
    assert!(awk.contains("Fast link dest: \"../../bin/busybox\""), "{awk}");
    let bin = debugfs(&img, "ls -l /bin");
    let (mode, uid, _) = ls_entry(&bin, "busybox");
    assert_eq!((mode.as_str(), uid), ("100755", 0));
    assert!(debugfs(&img, "stat /sbin/init").contains("Fast link dest: \"../bin/busybox\""));
    assert!(debugfs(&img, "stat /sbin/getty").contains("Type: symlink"));
    assert!(debugfs(&img, "stat /bin/login").contains("Type: symlink"));
    assert!(debugfs(&img, "stats").contains("Filesystem volume name:   root_fs"));
}

#[test]
fn steps_are_reported_one_line_each() {
    let dir = TempDir::new("mkrootfs-steps");
    let img = dir.join("img");
    let r = mkrootfs(&dir, &[img.to_str().unwrap(), "--size", "32M", "--busybox", "/bin/busybox"], &[]);
    r.assert_status(0);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(lines.iter().all(|l| l.starts_with("mkrootfs: ")), "{r}");
    for step in [
        "busybox: /bin/busybox (given with --busybox",
        "passwords:",
        "staging tree:",
        "mke2fs",
        "owners:",
        "e2fsck -fn: clean",
        "wrote ",
    ] {
        assert!(lines.iter().any(|l| l.contains(step)), "no {step:?} step\n{r}");
    }
}

#[test]
fn from_copies_files_with_modes_and_owners() {
    let dir = TempDir::new("mkrootfs-from");
    let from = dir.join("extra");
    std::fs::create_dir_all(from.join("etc")).unwrap();
    std::fs::create_dir_all(from.join("home/user")).unwrap();
    std::fs::create_dir_all(from.join("usr/local/bin")).unwrap();
    std::fs::write(from.join("etc/motd"), "welcome\n").unwrap();
    std::fs::write(from.join("etc/hostname"), "guest\n").unwrap();
    std::fs::write(from.join("home/user/.profile"), "echo hi\n").unwrap();
    std::fs::write(from.join("usr/local/bin/tool"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(from.join("usr/local/bin/tool"), std::fs::Permissions::from_mode(0o750))
        .unwrap();
    let img = build(&dir, &["--from", from.to_str().unwrap()]);
    assert_e2fsck_clean(&img);
    assert_eq!(debugfs(&img, "cat /etc/motd"), "welcome\n");
    assert_eq!(debugfs(&img, "cat /etc/hostname"), "guest\n", "--from wins over the defaults");
    assert!(debugfs(&img, "cat /etc/inittab").contains("::sysinit:"), "directories merge");
    assert_eq!(ls_entry(&debugfs(&img, "ls -l /usr/local/bin"), "tool"), ("100750".into(), 0, 0));
    assert_eq!(ls_entry(&debugfs(&img, "ls -l /home/user"), ".profile"), ("100644".into(), 1000, 1000));
    assert_nothing_left(&dir, &["root_fs", "extra"]);
}

/// Built by an ordinary user, the image still has root's files: mke2fs -d copies the
/// builder's uid, and mkrootfs corrects it.
#[test]
fn owners_do_not_depend_on_who_builds() {
    // The effective uid, from /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let dir = TempDir::new("mkrootfs-nobody");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let img = dir.join("root_fs");
    let mut cmd = if euid == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(umlvm_bin());
        c
    } else {
        Command::new(umlvm_bin())
    };
    cmd.args(["mkrootfs", "--size", "32M"]).arg(&img).env("TMPDIR", dir.join("tmp"));
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let r = run_command(cmd, LIMIT);
    r.assert_status(0);
    assert_e2fsck_clean(&img);
    for (d, name) in
        [("/", "etc"), ("/etc", "passwd"), ("/etc", "shadow"), ("/bin", "busybox"), ("/bin", "sh")]
    {
        let (_, uid, gid) = ls_entry(&debugfs(&img, &format!("ls -l {d}")), name);
        assert_eq!((uid, gid), (0, 0), "{d}/{name}\n{r}");
    }
    assert_eq!(ls_entry(&debugfs(&img, "ls -l /home"), "user").1, 1000);
    assert_nothing_left(&dir, &["root_fs"]);
}

/// Logs in with busybox's own `login` in a chroot of the image's files, on a pty: the
/// passwords are root/root and user/user, and a wrong one is refused.
#[test]
fn busybox_login_accepts_the_passwords() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let root_user = status.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let dir = TempDir::new("mkrootfs-login");
    let img = build(&dir, &[]);
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    debugfs(&img, &format!("rdump / {}", tree.display()));

    let login = |user: &str, password: &str| -> String {
        let (mut master, slave) = pty::open();
        pty::set_nonblocking(&master);
        let mut cmd = Command::new("setsid");
        cmd.arg("-c");
        if !root_user {
            // A user namespace where we are root, so chroot works.
            cmd.args(["unshare", "--map-root-user"]);
        }
        cmd.arg("chroot").arg(&tree).args(["/bin/login", user]);
        cmd.stdin(slave.try_clone().unwrap()).stdout(slave.try_clone().unwrap()).stderr(slave);
        let mut child = cmd.spawn().unwrap();
        let mut seen = read_until(&mut master, "Password: ", Duration::from_secs(10));
        master.write_all(format!("{password}\n").as_bytes()).unwrap();
        let wanted = if password == user { format!("LOGGED-IN as {user}") } else { "Login incorrect".into() };
        if password == user {
            // The echoed command line has `$(id -un)`, not the name: only the output matches.
            master.write_all(b"echo LOGGED-IN as $(id -un); exit\n").unwrap();
        }
        seen += &read_until(&mut master, &wanted, Duration::from_secs(10));
        let _ = child.kill();
        let _ = child.wait();
        seen
    };
    assert!(login("root", "root").contains("LOGGED-IN as root"));
    assert!(login("root", "wrong").contains("Login incorrect"));
    if root_user {
        assert!(login("user", "user").contains("LOGGED-IN as user"));
    } else {
        eprintln!("not root: user's login needs setuid(1000), checked only when run as root");
    }
}

/// The guest kernel mounts the image (from ubd1, next to a busybox initramfs) and runs the
/// busybox inside it.
#[test]
fn guest_mounts_the_image_and_runs_its_busybox() {
    let dir = TempDir::new("mkrootfs-guest");
    let img = build(&dir, &[]);
    let initrd = busybox_initramfs(dir.path(), &[]);
    let ubd = format!("ubd1={}", img.display());
    let script = "mkdir -p /mnt && mount -t ext2 /dev/ubdb /mnt && ls -l /mnt/etc && cat /mnt/etc/inittab && \
                  readlink /mnt/bin/sh && ls -ld /mnt/tmp /mnt/root /mnt/home/user && \
                  /mnt/bin/busybox echo busybox-from-ext2 && umount /mnt && echo unmounted";
    let r = boot_initramfs(&initrd, &["quiet", "mem=256M", &ubd], &["sh", "-c", script], LIMIT);
    let out = r.console();
    assert_eq!(r.status, Some(0), "{r}");
    for want in
        ["inittab", "shadow", "tty0::respawn:/sbin/getty -L 0 tty0 vt100", "busybox-from-ext2", "unmounted"]
    {
        assert!(out.contains(want), "console lacks {want:?}\n{r}");
    }
    assert!(out.lines().any(|l| l.starts_with("drwxrwxrwt") && l.ends_with("/mnt/tmp")), "{r}");
    assert!(out.lines().any(|l| l.starts_with("drwx------") && l.ends_with("/mnt/root")), "{r}");
    assert!(out.lines().any(|l| l.contains(" 1000 ") && l.ends_with("/mnt/home/user")), "{r}");
    assert_e2fsck_clean(&img);
}

#[test]
fn minimum_size_is_computed_said_and_enough() {
    let dir = TempDir::new("mkrootfs-size");
    let img = dir.join("small");
    let r = mkrootfs(&dir, &[img.to_str().unwrap(), "--size", "1M"], &[]);
    r.assert_one_line_error("--size 1M: too small: the tree needs at least ");
    assert_nothing_left(&dir, &[]);
    let min = umlvm_tests::number_after(&r.stderr, "at least").unwrap();
    assert!((3..=16).contains(&min), "{r}");
    let size = format!("{min}M");
    mkrootfs(&dir, &[img.to_str().unwrap(), "--size", &size], &[]).assert_status(0);
    assert_e2fsck_clean(&img);
    // A --from tree counts too.
    let from = dir.join("big");
    std::fs::create_dir(&from).unwrap();
    std::fs::write(from.join("blob"), vec![7u8; 8 << 20]).unwrap();
    let img2 = dir.join("small2");
    mkrootfs(&dir, &[img2.to_str().unwrap(), "--size", &size, "--from", from.to_str().unwrap()], &[])
        .assert_one_line_error("too small: the tree needs at least");
    assert_nothing_left(&dir, &["small", "big"]);
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let dir = TempDir::new("mkrootfs-bad");
    let out = dir.join("root_fs");
    let o = out.to_str().unwrap();

    for (size, why) in [("lots", "--size lots: not a size"), ("1000", "--size 1000: not a multiple of 4 KiB")]
    {
        mkrootfs(&dir, &[o, "--size", size], &[]).assert_one_line_error(why);
    }
    let file = dir.join("file");
    std::fs::write(&file, "x").unwrap();
    mkrootfs(&dir, &[o, "--from", file.to_str().unwrap()], &[]).assert_one_line_error("not a directory");
    mkrootfs(&dir, &[o, "--from", "/nonexistent"], &[])
        .assert_one_line_error("--from /nonexistent: not a directory");
    mkrootfs(&dir, &[o, "--busybox", "/bin/cat"], &[])
        .assert_one_line_error("--busybox /bin/cat: dynamically linked");
    mkrootfs(&dir, &[o, "--busybox", "/nonexistent"], &[])
        .assert_one_line_error("--busybox /nonexistent: No such file");
    mkrootfs(&dir, &[o, "--busybox", file.to_str().unwrap()], &[])
        .assert_one_line_error("not an ELF executable");
    mkrootfs(&dir, &["/nonexistent/dir/img"], &[])
        .assert_one_line_error("/nonexistent/dir: no such directory");
    mkrootfs(&dir, &[dir.path().to_str().unwrap(), "--force"], &[])
        .assert_one_line_error("not a regular file");

    // No busybox on the host and no apt-get to fetch one.
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let path = empty.to_str().unwrap();
    let r = mkrootfs(&dir, &[o], &[("PATH", path), ("UMLVM_MKROOTFS_HOST_BUSYBOX", "/nonexistent/busybox")]);
    r.assert_one_line_error(
        "no statically linked busybox: none at /nonexistent/busybox; no apt-get to fetch",
    );
    r.assert_stderr("apt-get install busybox-static").assert_stderr("--busybox PATH");
    // A dynamic busybox on the host is named.
    let r = mkrootfs(&dir, &[o], &[("PATH", path), ("UMLVM_MKROOTFS_HOST_BUSYBOX", "/bin/cat")]);
    r.assert_one_line_error("/bin/cat: dynamically linked");

    // No e2fsprogs.
    let r = mkrootfs(&dir, &[o], &[("PATH", path), ("UMLVM_MKROOTFS_SBIN", path)]);
    r.assert_one_line_error("mke2fs: not found: install Debian's e2fsprogs (apt-get install e2fsprogs)");
    assert_nothing_left(&dir, &["file", "empty"]);

    // OUT exists: refused without --force and left alone; replaced with it.
    std::fs::write(&out, "precious").unwrap();
    mkrootfs(&dir, &[o], &[]).assert_one_line_error("already exists (use --force to replace it)");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    mkrootfs(&dir, &[o, "--force", "--size", "16M"], &[]).assert_status(0);
    assert_e2fsck_clean(&out);
    assert_nothing_left(&dir, &["file", "empty", "root_fs"]);
}

/// Without a busybox on the host, Debian's busybox-static is fetched with `apt-get download`
/// and unpacked with `dpkg-deb -x` (here a stand-in apt-get hands over a package built from
/// the host's busybox, so the test needs no network).
#[test]
fn busybox_static_is_fetched_when_the_host_has_none() {
    let dir = TempDir::new("mkrootfs-apt");
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", pkg.join("bin/busybox")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: busybox-static\nVersion: 1:1.0-1\nArchitecture: amd64\nMaintainer: test <t@example.org>\nDescription: test\n",
    )
    .unwrap();
    let deb = dir.join("busybox-static_1.0-1_amd64.deb");
    let out =
        Command::new("dpkg-deb").args(["--root-owner-group", "-b"]).arg(&pkg).arg(&deb).output().unwrap();
    assert!(out.status.success(), "dpkg-deb -b: {out:?}");
    let bin = dir.join("fakebin");
    std::fs::create_dir(&bin).unwrap();
    let apt = bin.join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\n[ \"$1\" = download ] && [ \"$3\" = busybox-static ] && cp {} . \n",
            deb.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    let img = dir.join("root_fs");
    let r = mkrootfs(
        &dir,
        &[img.to_str().unwrap(), "--size", "32M"],
        &[("PATH", &path), ("UMLVM_MKROOTFS_HOST_BUSYBOX", "/nonexistent/busybox")],
    );
    r.assert_status(0)
        .assert_stderr("apt-get download busybox-static")
        .assert_stderr("dpkg-deb -x")
        .assert_stderr("from Debian's busybox-static package");
    assert_e2fsck_clean(&img);
    assert!(debugfs(&img, "stat /bin/sh").contains("Type: symlink"));
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0, "download directory removed");
}
