//! The e2fsprogs steps: `mke2fs -d` makes the image from the staging tree, `debugfs -w` sets
//! owners the staging tree could not have, `e2fsck -fn` checks the result.

use super::tree::{BLOCK_SIZE, BYTES_PER_INODE, INODE_SIZE, OwnerFix};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest e2fsprogs whose `mke2fs` has `-d` (populate from a directory).
pub const MIN_VERSION: (u32, u32) = (1, 43);

/// Directories searched after `$PATH`: e2fsprogs lives in `/sbin`, which an ordinary user's
/// `PATH` may lack.
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

/// The path of e2fsprogs tool `name`: the first in `$PATH`, then `/usr/sbin`, `/sbin`
/// (`$UMLVM_MKROOTFS_SBIN` replaces those two, for tests).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin: Vec<PathBuf> = match std::env::var_os("UMLVM_MKROOTFS_SBIN") {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => SBIN_DIRS.iter().map(PathBuf::from).collect(),
    };
    std::env::split_paths(&path).chain(sbin).map(|d| d.join(name)).find(|p| p.is_file())
}

/// The version in `mke2fs -V` output (`mke2fs 1.47.0 (5-Feb-2023)`).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let word = text.lines().next()?.split_whitespace().nth(1)?;
    let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// `mke2fs`'s version, or why it is not known.
pub fn mke2fs_version(mke2fs: &Path) -> Result<(u32, u32), String> {
    let out = Command::new(mke2fs).arg("-V").output().map_err(|e| e.to_string())?;
    // mke2fs -V writes to stderr.
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    parse_version(&text).ok_or_else(|| format!("cannot tell its version from {:?}", text.trim()))
}

/// The file-system features: revision-1 ext2 as Debian's mke2fs makes it, spelt out so that a
/// host's `mke2fs.conf` cannot add features the guest's ext2 does not implement.
pub const FEATURES: &str = "none,sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr";

/// The `mke2fs` arguments that make `image` of `size_bytes` from `staging`.
pub fn mke2fs_args(staging: &Path, image: &Path, size_bytes: u64) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-t",
        "ext2",
        "-q",
        "-F",
        "-L",
        "root_fs",
        "-O",
        FEATURES,
        "-b",
        &BLOCK_SIZE.to_string(),
        "-I",
        &INODE_SIZE.to_string(),
        "-i",
        &BYTES_PER_INODE.to_string(),
        "-E",
        "root_owner=0:0",
        "-d",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(staging.into());
    args.push(image.into());
    args.push(format!("{}k", size_bytes / 1024).into());
    args
}

/// Runs a tool; its combined output when it fails.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if out.status.success() { Ok(text) } else { Err(one_line(&text, out.status)) }
}

/// A tool's output as one line for an error message.
fn one_line(text: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = lines.iter().rev().take(3).rev().copied().collect::<Vec<_>>().join("; ");
    if tail.is_empty() { format!("failed ({status})") } else { format!("failed ({status}): {tail}") }
}

/// `mke2fs -d`: makes the image.
pub fn mke2fs(tool: &Path, staging: &Path, image: &Path, size_bytes: u64) -> Result<(), String> {
    run(Command::new(tool).args(mke2fs_args(staging, image, size_bytes))).map(|_| ())
}

/// The `debugfs` commands that give each path of `fixes` its owner. Paths with a `"` or a
/// control character cannot be quoted for debugfs and are refused.
pub fn owner_script(fixes: &[OwnerFix]) -> Result<String, PathBuf> {
    let mut script = String::new();
    for fix in fixes {
        let path = fix.path.to_str().filter(|p| !p.contains('"') && !p.chars().any(char::is_control));
        let Some(path) = path else { return Err(fix.path.clone()) };
        script.push_str(&format!("set_inode_field \"/{path}\" uid {}\n", fix.owner.uid));
        script.push_str(&format!("set_inode_field \"/{path}\" gid {}\n", fix.owner.gid));
    }
    Ok(script)
}

/// Runs the `script` of debugfs commands on `image` (writable). debugfs exits 0 even when a
/// command fails, so any message other than its banner is an error.
pub fn debugfs_write(tool: &Path, image: &Path, script: &str, scratch: &Path) -> Result<(), String> {
    let file = scratch.join("debugfs-commands");
    std::fs::write(&file, script).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = Command::new(tool)
        .arg("-w")
        .arg("-f")
        .arg(&file)
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> =
        stderr.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs ")).collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(format!("failed ({}): {}", out.status, errors.join("; ")));
    }
    Ok(())
}

/// `e2fsck -fn`: a forced, read-only check; an error unless the image is clean.
pub fn e2fsck(tool: &Path, image: &Path) -> Result<(), String> {
    run(Command::new(tool).arg("-fn").arg(image)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::super::tree::Owner;
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("mke2fs 1.47.0 (5-Feb-2023)\n\tUsing EXT2FS Library"), Some((1, 47)));
        assert_eq!(parse_version("mke2fs 1.42.9 (28-Dec-2013)"), Some((1, 42)));
        assert_eq!(parse_version("garbage"), None);
        assert!((1, 42) < MIN_VERSION && (1, 47) >= MIN_VERSION);
    }

    #[test]
    fn mke2fs_gets_ext2_label_owner_geometry_and_size_in_kib() {
        let args = mke2fs_args(Path::new("/st"), Path::new("/img"), 256 << 20);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("-t ext2 -q -F -L root_fs -O none,"), "{joined}");
        assert!(joined.contains("-b 4096 -I 256 -i 8192 -E root_owner=0:0 -d /st"), "{joined}");
        assert!(joined.ends_with("/img 262144k"), "{joined}");
    }

    #[test]
    fn owner_script_quotes_paths_and_refuses_unquotable_ones() {
        let fix = |p: &str, owner| OwnerFix { path: p.into(), owner };
        let s = owner_script(&[fix("home/user", Owner::USER), fix("etc/a b", Owner::ROOT)]).unwrap();
        assert_eq!(
            s,
            "set_inode_field \"/home/user\" uid 1000\nset_inode_field \"/home/user\" gid 1000\n\
             set_inode_field \"/etc/a b\" uid 0\nset_inode_field \"/etc/a b\" gid 0\n"
        );
        assert_eq!(owner_script(&[fix("etc/a\"b", Owner::ROOT)]), Err(PathBuf::from("etc/a\"b")));
        assert_eq!(owner_script(&[fix("etc/a\nb", Owner::ROOT)]), Err(PathBuf::from("etc/a\nb")));
    }
}
