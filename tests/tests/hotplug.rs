//! End-to-end: hot-plugging block devices through the management console. Debian's
//! `uml_mconsole` (package uml-utilities) and `umlvm mconsole` add ubd devices to a running
//! guest (`config ubdN=SPEC`), which sees `/dev/ubdX` appear and reads and writes it; `remove
//! ubdN` is refused while the guest uses the device and releases the image (its lock) after.

use std::path::Path;
use std::process::{Command, Stdio};
use umlvm_tests::{Machine, TempDir, umlvm};

/// A machine whose init is `/bin/sh` running `script` (a file in a busybox initramfs).
fn start_script(base: &Path, umid: &str, script: &str) -> Machine {
    let initrd = umlvm_tests::busybox_initramfs(base, &[("hotplug.sh", script.as_bytes(), 0o755)]);
    Machine::start(
        base,
        umid,
        &["--initrd", initrd.to_str().unwrap(), "init=/bin/sh", "--", "/hotplug.sh"],
        "ready",
    )
}

/// A 1 MiB image that starts with `header`, the rest zero.
fn image(path: &Path, header: &[u8]) {
    let mut bytes = vec![0u8; 1 << 20];
    bytes[..header.len()].copy_from_slice(header);
    std::fs::write(path, bytes).unwrap();
}

/// Whether another process could take `path`'s lock now (`flock -n`, util-linux).
fn unlocked(path: &Path) -> bool {
    Command::new("flock").args(["-n"]).arg(path).arg("true").status().expect("flock (util-linux)").success()
}

const HEADER: &[u8; 32] = b"HOTPLUG-0123456789abcdef-PATTERN";

/// The guest waits for `/dev/ubdb`, reads it, holds it open until `/dev/ubdc` appears, then
/// waits for `/dev/ubdb` to go; meanwhile the host checks every refusal and answer.
#[test]
fn uml_mconsole_hot_plugs_and_removes_a_ubd() {
    let base = TempDir::new("hp-ubd");
    let (img, img2) = (base.join("disk.img"), base.join("disk2.img"));
    image(&img, HEADER);
    image(&img2, b"second");
    let script = "echo ready; while [ ! -e /dev/ubdb ]; do sleep 0.1; done; \
        echo \"got: $(head -c 32 /dev/ubdb)\"; ls -l /dev/ubd1; \
        exec 3</dev/ubdb; echo holding; \
        while [ ! -e /dev/ubdc ]; do sleep 0.1; done; exec 3<&-; echo closed; \
        while [ -e /dev/ubdb ]; do sleep 0.1; done; echo gone; \
        if head -c 1 /dev/ubdb 2>/dev/null; then echo still-there; fi; \
        while :; do sleep 1; done";
    let m = start_script(base.path(), "hp", script);
    let spec = format!("ubd1={}", img.display());
    let (status, text) = m.uml_mconsole(&["config", &spec]);
    assert_eq!(status, Some(0), "{text}\n{}", m.output());
    assert!(text.contains("ubdb (ubd/1): 2048 sectors"), "{text}");
    m.wait_for(&format!("got: {}", std::str::from_utf8(HEADER).unwrap()));
    m.wait_for("/dev/ubd1");
    assert!(m.output().contains("brw-rw----"), "a block device node: {}", m.output());
    assert!(!unlocked(&img), "the image is locked while attached");
    // Queries and refusals.
    assert_eq!(m.uml_mconsole(&["config", "ubd1"]), (Some(0), format!("OK {}", img.display())));
    assert_eq!(m.uml_mconsole(&["config", &spec]), (Some(1), "ERR ubd1 is already attached".into()));
    m.wait_for("holding");
    assert_eq!(m.uml_mconsole(&["remove", "ubd1"]), (Some(1), "ERR ubdb is open (pid 1)".into()));
    assert_eq!(m.uml_mconsole(&["remove", "ubd5"]), (Some(1), "ERR ubd5 is not attached".into()));
    // A second device is the guest's signal to close the first.
    let (status, text) = m.uml_mconsole(&["config", &format!("ubd2={}", img2.display())]);
    assert_eq!(status, Some(0), "{text}");
    m.wait_for("closed");
    let (status, text) = m.uml_mconsole(&["remove", "ubd1"]);
    assert_eq!(status, Some(0), "{text}");
    m.wait_for("gone");
    assert!(unlocked(&img), "the image is unlocked after remove");
    assert_eq!(m.uml_mconsole(&["config", "ubd1"]), (Some(1), "ERR ubd1: no such device".into()));
    // The same unit again, through umlvm's own client.
    let sock = m.socket.to_str().unwrap().to_string();
    umlvm(&["mconsole", &sock, "config", &spec]).assert_status(0).assert_stdout("OK ubdb");
    umlvm(&["mconsole", &sock, "remove", "ubd1"]).assert_status(0);
    umlvm(&["mconsole", &sock, "remove", "ubd2"]).assert_status(0);
    assert!(unlocked(&img) && unlocked(&img2));
    assert!(!m.output().contains("still-there"), "{}", m.output());
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    m.wait();
}

/// Errors answer at once and leave the machine running.
#[test]
fn bad_hot_plug_requests_are_refused() {
    let base = TempDir::new("hp-bad");
    let img = base.join("disk.img");
    image(&img, HEADER);
    let ubd1 = format!("1={}", img.display());
    let m =
        Machine::start(base.path(), "bad", &["selftest=none", "ticks=30000", "--ubd", &ubd1], "Boot time:");
    let cases: &[(&str, &str)] = &[
        ("config ubd1=/x", "ERR ubd1 is already attached"),
        ("config ubd3=/nonexistent/image", "ERR "),
        ("config ubd16=/x", "out of range"),
        ("config ubd3z=/x", "unknown flag"),
        ("config eth0=tuntap,,,192.168.0.254", "ERR eth0: network devices are not supported yet"),
        ("config frob=1", "unknown device"),
        ("remove ubd7", "ERR ubd7 is not attached"),
        ("remove ubd1", "attached at boot"),
        ("remove", "which device"),
    ];
    for (command, expected) in cases {
        let words: Vec<&str> = command.split(' ').collect();
        let (status, text) = m.uml_mconsole(&words);
        assert_eq!(status, Some(1), "{command}: {text}");
        assert!(text.contains(expected), "{command}: {text}");
    }
    assert_eq!(m.uml_mconsole(&["config", "ubd1"]), (Some(0), format!("OK {}", img.display())));
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    m.wait();
}

/// A kernel-only boot (no user space) takes hot-plugged devices too; when every device
/// window is in use the request says so; a removed device frees its window.
#[test]
fn kernel_only_boot_hot_plugs_until_the_slots_run_out() {
    let base = TempDir::new("hp-slots");
    let mut args: Vec<String> = ["selftest=none", "ticks=30000"].iter().map(|s| s.to_string()).collect();
    // 8 consoles and 7 disks: 15 of the 16 device windows.
    args.extend(["con0=null", "con1=null", "con2=null", "con3=null"].map(String::from));
    args.extend(["ssl0=null", "ssl1=null", "ssl2=null", "ssl3=null"].map(String::from));
    for n in 1..=9 {
        image(&base.join(&format!("d{n}.img")), format!("disk{n}").as_bytes());
    }
    for n in 1..=7 {
        args.push(format!("ubd{n}={}", base.join(&format!("d{n}.img")).display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let m = Machine::start(base.path(), "slots", &args, "Boot time:");
    let add = |n: u32| {
        m.uml_mconsole(&["config", &format!("ubd{n}={}", base.join(&format!("d{n}.img")).display())])
    };
    let (status, text) = add(8);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("ubdi (ubd/8)") && text.contains("IRQ 23"), "{text}");
    let (status, text) = add(9);
    assert_eq!((status, text.contains("no free device slot")), (Some(1), true), "{text}");
    assert!(unlocked(&base.join("d9.img")), "a refused image is not kept open");
    assert_eq!(m.uml_mconsole(&["remove", "ubd8"]).0, Some(0));
    let (status, text) = add(9);
    assert_eq!(status, Some(0), "{text}");
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    m.wait();
}

/// `config ubdN=COW,BACKING`: the guest's writes go to the COW file; the backing file stays
/// byte for byte what it was.
#[test]
fn hot_plugged_cow_device_keeps_the_backing_file() {
    let base = TempDir::new("hp-cow");
    let (backing, cow) = (base.join("backing.img"), base.join("disk.cow"));
    image(&backing, HEADER);
    let before = std::fs::read(&backing).unwrap();
    let script = "echo ready; while [ ! -e /dev/ubdd ]; do sleep 0.1; done; \
        printf COW-WRITTEN-BY-GUEST | dd of=/dev/ubdd bs=512 seek=3 conv=notrunc 2>/dev/null; \
        echo \"read back: $(dd if=/dev/ubdd bs=512 skip=3 count=1 2>/dev/null | head -c 20)\"; \
        echo \"head: $(head -c 8 /dev/ubdd)\"; \
        while :; do sleep 1; done";
    let m = start_script(base.path(), "cow", script);
    let spec = format!("ubd3={},{}", cow.display(), backing.display());
    let (status, text) = m.uml_mconsole(&["config", &spec]);
    assert_eq!(status, Some(0), "{text}");
    m.wait_for("read back: COW-WRITTEN-BY-GUEST");
    m.wait_for("head: HOTPLUG-");
    assert_eq!(
        m.uml_mconsole(&["config", "ubd3"]),
        (Some(0), format!("OK {},{}", cow.display(), backing.display()))
    );
    assert_eq!(m.uml_mconsole(&["remove", "ubd3"]).0, Some(0));
    assert_eq!(std::fs::read(&backing).unwrap(), before, "the backing file changed");
    let cow_bytes = std::fs::read(&cow).unwrap();
    assert!(cow_bytes.windows(20).any(|w| w == b"COW-WRITTEN-BY-GUEST"), "the write is in the COW file");
    assert!(unlocked(&cow) && unlocked(&backing));
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    m.wait();
}

/// A mounted file system keeps its device: `remove` names the mount point until the guest
/// unmounts it; the guest's file is in the image afterwards.
#[test]
fn mounted_hot_plugged_device_is_not_removed() {
    let base = TempDir::new("hp-mount");
    let (img, img2) = (base.join("fs.img"), base.join("signal.img"));
    image(&img2, b"signal");
    let mkfs =
        Command::new("mkfs.ext2").args(["-q", "-F"]).arg(&img).arg("1024").stdout(Stdio::null()).status();
    assert!(mkfs.expect("mkfs.ext2 (e2fsprogs)").success());
    let script = "echo ready; while [ ! -e /dev/ubdb ]; do sleep 0.1; done; \
        mkdir -p /mnt; mount -t ext2 /dev/ubdb /mnt && echo hello-from-guest > /mnt/hello && echo mounted; \
        while [ ! -e /dev/ubdc ]; do sleep 0.1; done; umount /mnt && echo unmounted; \
        while :; do sleep 1; done";
    let m = start_script(base.path(), "mount", script);
    assert_eq!(m.uml_mconsole(&["config", &format!("ubd1={}", img.display())]).0, Some(0));
    m.wait_for("mounted");
    assert_eq!(m.uml_mconsole(&["remove", "ubd1"]), (Some(1), "ERR ubdb is mounted on /mnt".into()));
    assert_eq!(m.uml_mconsole(&["config", &format!("ubd2={}", img2.display())]).0, Some(0));
    m.wait_for("unmounted");
    let (status, text) = m.uml_mconsole(&["remove", "ubd1"]);
    assert_eq!(status, Some(0), "{text}");
    let cat = Command::new("debugfs").args(["-R", "cat /hello"]).arg(&img).stderr(Stdio::null()).output();
    let cat = cat.expect("debugfs (e2fsprogs)");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "hello-from-guest\n");
    assert_eq!(m.uml_mconsole(&["halt"]).0, Some(0));
    m.wait();
}
