//! Finding a busybox the guest can run (statically linked, x86-64), asking it for its applets,
//! and hashing passwords with its `mkpasswd` applet, the code its `login` checks them with.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the host keeps Debian's busybox-static (`/bin/busybox`; `/usr/bin/busybox` on a
/// merged-usr system), in the order they are tried.
pub const HOST_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Why a file is no busybox the guest can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfProblem {
    /// Not an ELF file at all.
    #[error("not an ELF executable")]
    NotElf,
    /// An ELF file for another machine or class.
    #[error("not a 64-bit x86-64 executable")]
    NotX86_64,
    /// Linked against shared libraries.
    #[error("dynamically linked (the guest needs a statically linked busybox: Debian's busybox-static)")]
    Dynamic,
}

/// Checks that `elf` is a 64-bit little-endian x86-64 executable without a program
/// interpreter (`PT_INTERP`), i.e. statically linked.
pub fn check_static_x86_64(elf: &[u8]) -> Result<(), ElfProblem> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        elf.get(o..o + 8).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(ElfProblem::NotElf);
    }
    const EM_X86_64: u16 = 62;
    if elf[4] != 2 || elf[5] != 1 || u16_at(18) != Some(EM_X86_64) {
        return Err(ElfProblem::NotX86_64);
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return Err(ElfProblem::NotElf);
    };
    const PT_INTERP: u32 = 3;
    for i in 0..u64::from(phnum) {
        let ph = phoff.saturating_add(i * u64::from(phentsize));
        match usize::try_from(ph).ok().and_then(u32_at) {
            None => return Err(ElfProblem::NotElf),
            Some(PT_INTERP) => return Err(ElfProblem::Dynamic),
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks the file at `path` (see [`check_static_x86_64`]).
pub fn check_file(path: &Path) -> Result<(), std::io::Error> {
    let bytes = std::fs::read(path)?;
    check_static_x86_64(&bytes).map_err(std::io::Error::other)
}

/// What `busybox --list-full` printed, or why it failed.
pub fn list_full(busybox: &Path) -> Result<String, String> {
    let out = Command::new(busybox).arg("--list-full").output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("--list-full failed ({})", out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| "--list-full printed something that is not UTF-8".into())
}

/// The version line busybox prints first (`BusyBox v1.35.0 (Debian ...)`), or `busybox`.
pub fn version(busybox: &Path) -> String {
    let out = Command::new(busybox).arg("--help").output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let first = text.lines().next().unwrap_or("");
    let line = first.strip_suffix(" multi-call binary.").unwrap_or(first);
    if line.starts_with("BusyBox") { line.to_string() } else { "busybox".into() }
}

/// The characters of a crypt salt.
const SALT_CHARS: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A 16-character crypt salt from 16 random bytes.
pub fn salt_from(random: [u8; 16]) -> String {
    random.iter().map(|b| SALT_CHARS[usize::from(*b) % SALT_CHARS.len()] as char).collect()
}

/// A fresh random salt (from `/dev/urandom`).
pub fn random_salt() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(salt_from(bytes))
}

/// Whether `hash` is a SHA-512 crypt string with salt `salt`: `$6$SALT$` and 86 characters
/// of the crypt alphabet.
pub fn is_sha512_crypt(hash: &str, salt: &str) -> bool {
    hash.strip_prefix(&format!("$6${salt}$"))
        .is_some_and(|h| h.len() == 86 && h.bytes().all(|b| SALT_CHARS.contains(&b)))
}

/// Hashes `password` with SHA-512 crypt and `salt` using `busybox mkpasswd -m sha512`:
/// busybox's `login` and `su` check passwords with the same function (`pw_encrypt`), so the
/// guest accepts what this returns. The hash is computed twice and the results compared,
/// and its shape is checked, so a busybox without SHA-512 support is caught here rather
/// than at the login prompt.
pub fn mkpasswd(busybox: &Path, password: &str, salt: &str) -> Result<String, String> {
    let once = || -> Result<String, String> {
        let out = Command::new(busybox)
            .args(["mkpasswd", "-m", "sha512", password, salt])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!("mkpasswd -m sha512 failed: {}", why.trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let hash = once()?;
    if !is_sha512_crypt(&hash, salt) {
        return Err(format!("mkpasswd -m sha512 printed {hash:?}, not a SHA-512 crypt hash"));
    }
    if once()? != hash {
        return Err("mkpasswd -m sha512 is not deterministic for a fixed salt".into());
    }
    Ok(hash)
}

/// Where a busybox came from, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--busybox PATH`.
    Given,
    /// One of [`HOST_PATHS`].
    Host,
    /// Debian's busybox-static, fetched with `apt-get download` and unpacked.
    Downloaded,
}

/// A busybox to install.
#[derive(Debug, Clone)]
pub struct Found {
    /// The executable.
    pub path: PathBuf,
    /// Where it came from.
    pub origin: Origin,
}

/// Whether `$PATH` has an executable named `name`.
fn in_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(name).is_file())
}

/// Fetches Debian's busybox-static with `apt-get download` into `dir` and unpacks it with
/// `dpkg-deb -x`; returns the busybox inside. `say` reports what it does.
pub fn download(dir: &Path, say: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
    for tool in ["apt-get", "dpkg-deb"] {
        if !in_path(tool) {
            return Err(format!("no {tool} to fetch Debian's busybox-static with"));
        }
    }
    say("fetching Debian's busybox-static: apt-get download busybox-static");
    let out = Command::new("apt-get")
        .args(["download", "-q", "busybox-static"])
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run apt-get: {e}"))?;
    let deb = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"));
    let Some(deb) = deb.filter(|_| out.status.success()) else {
        let why = String::from_utf8_lossy(&out.stderr);
        let why = why.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no .deb file");
        return Err(format!("apt-get download busybox-static failed: {}", why.trim()));
    };
    let name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    say(&format!("unpacking {name}: dpkg-deb -x"));
    let tree = dir.join("busybox-static");
    let out = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .output()
        .map_err(|e| format!("cannot run dpkg-deb: {e}"))?;
    if !out.status.success() {
        return Err(format!("dpkg-deb -x {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} holds no bin/busybox"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_check_tells_static_dynamic_and_foreign_apart() {
        assert_eq!(check_static_x86_64(b"#!/bin/sh\necho hi\n"), Err(ElfProblem::NotElf));
        // The test binary itself is a dynamically linked x86-64 executable.
        let me = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(check_static_x86_64(&me), Err(ElfProblem::Dynamic));
        let mut arm = me.clone();
        arm[18] = 183;
        assert_eq!(check_static_x86_64(&arm), Err(ElfProblem::NotX86_64));
        // A minimal static ELF: a header with no program headers.
        let mut tiny = vec![0u8; 64];
        tiny[..4].copy_from_slice(b"\x7fELF");
        tiny[4] = 2;
        tiny[5] = 1;
        tiny[18] = 62;
        assert_eq!(check_static_x86_64(&tiny), Ok(()));
        // Program headers past the end of the file.
        tiny[32] = 200;
        tiny[54] = 56;
        tiny[56] = 1;
        assert_eq!(check_static_x86_64(&tiny), Err(ElfProblem::NotElf));
    }

    #[test]
    fn salts_use_the_crypt_alphabet() {
        let s = salt_from([0, 1, 63, 64, 255, 128, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(s.len(), 16);
        assert!(s.starts_with("./z.z"), "{s}");
        assert!(s.bytes().all(|b| SALT_CHARS.contains(&b)));
        assert_ne!(random_salt().unwrap(), random_salt().unwrap());
    }

    #[test]
    fn sha512_crypt_shape() {
        let h = format!("$6$abcdefgh12345678${}", "a".repeat(86));
        assert!(is_sha512_crypt(&h, "abcdefgh12345678"));
        assert!(!is_sha512_crypt(&h, "other"));
        assert!(!is_sha512_crypt("$5$abcdefgh12345678$short", "abcdefgh12345678"));
    }

    /// The known-answer test against the host's busybox-static, when it has one (the
    /// integration tests require it; unit tests stay runnable without).
    #[test]
    fn busybox_mkpasswd_gives_the_known_sha512_crypt() {
        let Some(bb) = HOST_PATHS.iter().map(Path::new).find(|p| check_file(p).is_ok()) else {
            return;
        };
        // The same value as `openssl passwd -6 -salt abcdefgh12345678 root`.
        let want = "$6$abcdefgh12345678$qbSRzEsaypxoir1NY9PMkN7yFakpH1TR/DE5VnN5wS0yZvoJNxs0/wxanXnEZ7rsjmyQIY/OWv/F357P6Ij6E/";
        assert_eq!(mkpasswd(bb, "root", "abcdefgh12345678").unwrap(), want);
        assert!(version(bb).starts_with("BusyBox v"));
        assert!(list_full(bb).unwrap().lines().any(|l| l == "bin/sh"));
    }
}
