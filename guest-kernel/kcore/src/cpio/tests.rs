use super::*;
use alloc::vec;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One newc entry, built by hand: magic, name (NUL added), mode, data.
fn newc(magic: &[u8; 6], name: &[u8], mode: u32, data: &[u8]) -> Vec<u8> {
    let check = if magic == NEWC_CRC_MAGIC { data.iter().map(|&b| b as u32).sum() } else { 0 };
    let fields =
        [7, mode, 1000, 100, 1, 1_700_000_000, data.len() as u32, 8, 1, 4, 64, name.len() as u32 + 1, check];
    let mut e = magic.to_vec();
    for f in fields {
        e.extend(std::format!("{f:08X}").bytes());
    }
    e.extend(name);
    e.push(0);
    e.resize(align4(e.len()), 0);
    e.extend(data);
    e.resize(align4(e.len()), 0);
    e
}

/// An archive of `entries` (name, mode, data) with its trailer.
fn archive(magic: &[u8; 6], entries_: &[(&[u8], u32, &[u8])]) -> Vec<u8> {
    let mut a: Vec<u8> = entries_.iter().flat_map(|&(n, m, d)| newc(magic, n, m, d)).collect();
    a.extend(newc(NEWC_MAGIC, TRAILER, 0, b""));
    a
}

/// All entries' names, failing on errors.
fn names(data: &[u8]) -> Vec<Vec<u8>> {
    entries(data).map(|e| e.unwrap().name.to_vec()).collect()
}

#[test]
fn hand_built_archive() {
    let a = archive(
        NEWC_MAGIC,
        &[
            (b".", 0o40755, b""),
            (b"./bin", 0o40755, b""),
            (b"bin/sh", 0o120777, b"busybox"),
            (b"/init", 0o100755, b"#!"),
        ],
    );
    let all: Vec<Entry> = entries(&a).map(Result::unwrap).collect();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].name, b"");
    assert_eq!(all[1].name, b"bin");
    let sh = all[2];
    assert_eq!((sh.name, sh.mode, sh.data), (&b"bin/sh"[..], 0o120777, &b"busybox"[..]));
    assert_eq!((sh.ino, sh.uid, sh.gid, sh.nlink, sh.mtime), (7, 1000, 100, 1, 1_700_000_000));
    assert_eq!(sh.dev, makedev(8, 1));
    assert_eq!(sh.rdev, makedev(4, 64));
    assert_eq!(all[3].name, b"init");
    assert_eq!(archive_len(&a), Ok(a.len()));
}

#[test]
fn checksummed_entries_are_verified() {
    let a = archive(NEWC_CRC_MAGIC, &[(b"f", 0o100644, b"\xff\xfe data")]);
    assert_eq!(names(&a), [b"f"]);
    let mut bad = a.clone();
    let data_at = align4(HEADER_LEN + 2);
    bad[data_at] ^= 1;
    assert_eq!(
        entries(&bad).next(),
        Some(Err(CpioError { kind: CpioErrorKind::BadChecksum, offset: data_at }))
    );
}

#[test]
fn concatenated_archives_with_zero_padding() {
    let mut two = archive(NEWC_MAGIC, &[(b"a", 0o100644, b"1")]);
    let first = two.len();
    two.extend([0; 512 - 124]);
    two.extend(archive(NEWC_MAGIC, &[(b"b", 0o100644, b"22")]));
    two.extend([0; 8]);
    assert_eq!(names(&two), [b"a", b"b"]);
    assert_eq!(archive_len(&two), Ok(first));
    assert!(entries(&[0u8; 16]).next().is_none());
    assert!(entries(b"").next().is_none());
}

#[test]
fn damaged_archives_report_where() {
    let a = archive(NEWC_MAGIC, &[(b"file", 0o100644, b"contents")]);
    let first_err = |d: &[u8]| entries(d).find_map(Result::err);
    let at = |kind, offset| Some(CpioError { kind, offset });
    assert_eq!(first_err(&a[..50]), at(CpioErrorKind::Truncated, 0));
    assert_eq!(first_err(&a[..HEADER_LEN + 3]), at(CpioErrorKind::Truncated, HEADER_LEN));
    assert_eq!(first_err(&a[..HEADER_LEN + 8]), at(CpioErrorKind::Truncated, 116));
    let mut magic = a.clone();
    magic[5] = b'7';
    assert_eq!(first_err(&magic), at(CpioErrorKind::BadMagic, 0));
    let mut hex = a.clone();
    hex[6 + 8 * 3 + 2] = b'g';
    assert_eq!(first_err(&hex), at(CpioErrorKind::BadHex, 30));
    let mut unterminated = a.clone();
    unterminated[HEADER_LEN + 4] = b'x';
    assert_eq!(first_err(&unterminated), at(CpioErrorKind::NameNotTerminated, HEADER_LEN));
    let mut inner_nul = a.clone();
    inner_nul[HEADER_LEN + 1] = 0;
    assert_eq!(first_err(&inner_nul), at(CpioErrorKind::BadName, HEADER_LEN));
    let empty_name = newc(NEWC_MAGIC, b"", 0, b"");
    let mut zero_size = empty_name.clone();
    zero_size[6 + 8 * 11..6 + 8 * 12].copy_from_slice(b"00000000");
    assert_eq!(first_err(&zero_size), at(CpioErrorKind::BadName, HEADER_LEN));
    // Junk after an archive, and a header off the 4-byte grid.
    let mut junk = a.clone();
    junk.extend(b"junk");
    assert_eq!(first_err(&junk), at(CpioErrorKind::BadMagic, a.len()));
    let mut shifted = vec![0u8; 2];
    shifted.extend(&a);
    assert_eq!(first_err(&shifted), at(CpioErrorKind::BadMagic, 2));
    // The iterator stops after an error.
    let mut it = entries(&magic);
    assert!(it.next().unwrap().is_err());
    assert!(it.next().is_none());
}

#[test]
fn missing_final_padding_is_tolerated() {
    let mut a = newc(NEWC_MAGIC, b"x", 0o100644, b"12345");
    a.truncate(a.len() - 3);
    let all: Vec<_> = entries(&a).collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].unwrap().data, b"12345");
}

#[test]
fn unpack_mixed_image() {
    let plain = archive(NEWC_MAGIC, &[(b"kernel/x86/microcode/GenuineIntel.bin", 0o100644, b"ucode")]);
    assert!(matches!(unpack_image(&plain, 0), Ok(Cow::Borrowed(d)) if d == plain));
    let root = archive(NEWC_MAGIC, &[(b"init", 0o100755, b"#!/bin/sh\n")]);
    let Some(gz) = host_tool("gzip", &["-c"], &root, None) else { return };
    let mut image = plain.clone();
    image.extend([0; 4]);
    image.extend(&gz);
    image.extend([0; 3]);
    let joined = unpack_image(&image, 1 << 20).unwrap();
    assert_eq!(names(&joined), [&b"kernel/x86/microcode/GenuineIntel.bin"[..], b"init"]);
    assert!(matches!(
        unpack_image(&image, 10),
        Err(ImageError::Gzip(GzipError { kind: crate::gzip::GzipErrorKind::TooLarge, offset })) if offset > plain.len()
    ));
    let mut bad = plain.clone();
    bad.extend(b"\xfd7zXZ\0");
    assert_eq!(unpack_image(&bad, 1 << 20), Err(ImageError::Unrecognised(plain.len())));
    let gz_junk = host_tool("gzip", &["-c"], b"070701 not an archive", None).unwrap();
    assert!(matches!(
        unpack_image(&gz_junk, 1 << 20),
        Err(ImageError::Cpio { stream: Some(0), error: CpioError { kind: CpioErrorKind::Truncated, .. } })
    ));
}

/// Runs a host tool with `input` on stdin in `dir`, returning stdout; `None` (with a
/// message) if the tool is missing.
fn host_tool(tool: &str, args: &[&str], input: &[u8], dir: Option<&Path>) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut cmd = Command::new(tool);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let Ok(mut child) = cmd.spawn() else {
        panic!(
            "{tool} is missing on this host: install it (make setup installs cpio; gzip is in Debian's base)"
        );
    };
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} failed");
    Some(out.stdout)
}

/// A scratch directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(std::format!("kcore-cpio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A small tree archived by the host's cpio in `format` (`newc` or `crc`), or `None`.
fn host_archive(tag: &str, format: &str) -> Option<Vec<u8>> {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let scratch = Scratch::new(tag);
    let root = &scratch.0;
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/empty")).unwrap();
    std::fs::write(root.join("init"), b"#!/bin/sh\nexec sh\n").unwrap();
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let big: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(root.join("etc/big"), &big).unwrap();
    symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("bin/busybox"), b"ELF").unwrap();
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/ls")).unwrap();
    let list = b".\n./bin\n./bin/sh\n./bin/busybox\n./bin/ls\n./etc\n./etc/empty\n./etc/big\n./init\n";
    host_tool("cpio", &["--quiet", "-o", "-H", format], list, Some(root))
}

#[test]
fn host_cpio_newc_and_crc() {
    for format in ["newc", "crc"] {
        let Some(a) = host_archive(format, format) else { return };
        assert_eq!(&a[..6], if format == "newc" { NEWC_MAGIC } else { NEWC_CRC_MAGIC });
        let all: Vec<Entry> = entries(&a).map(Result::unwrap).collect();
        let get = |n: &[u8]| *all.iter().find(|e| e.name == n).unwrap_or_else(|| panic!("{n:?} missing"));
        let names: Vec<&[u8]> = all.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                &b""[..],
                b"bin",
                b"bin/sh",
                b"bin/busybox",
                b"bin/ls",
                b"etc",
                b"etc/empty",
                b"etc/big",
                b"init"
            ]
        );
        assert_eq!(get(b"init").mode, 0o100750);
        assert_eq!(get(b"init").data, b"#!/bin/sh\nexec sh\n");
        assert_eq!(get(b"bin/sh").mode & 0o170000, 0o120000);
        assert_eq!(get(b"bin/sh").data, b"busybox");
        assert_eq!(get(b"etc").mode & 0o170000, 0o040000);
        assert_eq!(get(b"etc/big").data.len(), 100_003);
        assert_eq!(get(b"etc/big").data[99_999], (99_999u32 * 7 % 256) as u8);
        let (bb, ls) = (get(b"bin/busybox"), get(b"bin/ls"));
        assert_eq!((bb.ino, bb.dev, bb.nlink), (ls.ino, ls.dev, 2), "hard links share (ino, dev)");
        assert_eq!([bb.data, ls.data].concat(), b"ELF", "the data is stored once");

        // Gzipped, and two archives in a row (GNU cpio pads each to 512 bytes).
        let Some(gz) = host_tool("gzip", &["-c", "-9"], &a, None) else { return };
        assert_eq!(*crate::gzip::maybe_gunzip(&gz, 1 << 20).unwrap(), a[..]);
        let twice = [&a[..], &a[..]].concat();
        assert_eq!(entries(&twice).count(), 2 * all.len());
        assert_eq!(
            entries(&unpack_image(&[&gz[..], &a[..]].concat(), 1 << 20).unwrap()).count(),
            2 * all.len()
        );
    }
}
