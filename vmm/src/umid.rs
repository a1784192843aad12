//! The machine's identity on the host: `umid=NAME` and its directory `~/.uml/NAME/` (or
//! `$UML_DIR/NAME/`, `uml_dir=`), holding `pid` and the `mconsole` socket, as UML does.
//!
//! A directory left by a dead machine (its pid no longer runs) is reused; a live one is
//! refused. The directory is removed when umlvm ends: normally, after a guest panic, and on
//! SIGTERM/SIGINT/SIGHUP/SIGQUIT.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the umid directory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UmidError {
    /// Another live machine has this umid.
    #[error("umid \"{0}\" is already in use by pid {1}")]
    InUse(String, i32),
    /// File system trouble.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] io::Error),
    /// No home directory and no UML_DIR.
    #[error("cannot find the umid base directory: set HOME or UML_DIR, or use uml_dir=")]
    NoBase,
}

/// The base directory for umid directories: `uml_dir` if given, else `$UML_DIR`, else `~/.uml`.
pub fn base_dir(uml_dir: Option<&Path>) -> Result<PathBuf, UmidError> {
    if let Some(d) = uml_dir {
        return Ok(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("UML_DIR") {
        return Ok(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".uml")).ok_or(UmidError::NoBase)
}

/// A random 6-character umid, as UML makes.
pub fn random_umid() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut seed = crate::sys::rdtsc() ^ (u64::from(std::process::id()) << 32);
    (0..6)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            CHARS[(seed % CHARS.len() as u64) as usize] as char
        })
        .collect()
}

/// Whether process `pid` runs.
pub fn alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads the pid file in `dir`.
pub fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("pid")).ok()?.trim().parse().ok()
}

/// A machine's umid directory, removed on drop.
pub struct UmidDir {
    /// The umid.
    pub umid: String,
    /// The directory.
    pub dir: PathBuf,
}

impl UmidDir {
    /// Creates (or reuses a stale) `base/umid/` with mode 0700 and writes `pid`.
    pub fn create(base: &Path, umid: &str) -> Result<Self, UmidError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| UmidError::Io(p, e)
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(base).map_err(io_err(base))?;
        let dir = base.join(umid);
        if dir.exists() {
            match read_pid(&dir) {
                Some(pid) if alive(pid) && pid != std::process::id() as i32 => {
                    return Err(UmidError::InUse(umid.to_string(), pid));
                }
                // A directory without a pid file may be a machine that is starting right now.
                None if std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < std::time::Duration::from_secs(5)) =>
                {
                    return Err(UmidError::InUse(umid.to_string(), 0));
                }
                _ => {
                    // Stale: left by a machine that is gone.
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(io_err(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        // Write the pid file atomically (readers never see it half written).
        let tmp = dir.join(".pid.tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(io_err(&dir))?;
        std::fs::rename(&tmp, dir.join("pid")).map_err(io_err(&dir))?;
        register_cleanup(&dir);
        Ok(Self { umid: umid.to_string(), dir })
    }

    /// Path of the mconsole socket.
    pub fn mconsole_path(&self) -> PathBuf {
        self.dir.join("mconsole")
    }
}

impl Drop for UmidDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Paths the signal handler removes (pid file, socket, directory).
static CLEANUP: std::sync::OnceLock<[CString; 3]> = std::sync::OnceLock::new();

fn register_cleanup(dir: &Path) {
    let c = |p: PathBuf| CString::new(p.into_os_string().into_encoded_bytes()).unwrap_or_default();
    let _ = CLEANUP.set([c(dir.join("pid")), c(dir.join("mconsole")), c(dir.to_path_buf())]);
    crate::sys::install_exit_signal_handlers();
}

/// Called from the signal handler: removes the umid directory (async-signal-safe calls only).
pub fn cleanup_from_signal() {
    if let Some([pid, sock, dir]) = CLEANUP.get() {
        crate::sys::unlink_and_rmdir(pid, sock, dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_are_reused_and_live_ones_refused() {
        let base = std::env::temp_dir().join(format!("umlvm-umid-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // Stale: a pid that does not run.
        std::fs::create_dir_all(base.join("old")).unwrap();
        std::fs::write(base.join("old/pid"), "999999999\n").unwrap();
        let d = UmidDir::create(&base, "old").unwrap();
        assert_eq!(read_pid(&d.dir), Some(std::process::id() as i32));
        let mode = std::fs::metadata(&d.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(d);
        assert!(!base.join("old").exists(), "removed on drop");
        // Live: pid 1 runs.
        std::fs::create_dir_all(base.join("busy")).unwrap();
        std::fs::write(base.join("busy/pid"), "1\n").unwrap();
        let e = UmidDir::create(&base, "busy").err().unwrap();
        assert_eq!(e.to_string(), "umid \"busy\" is already in use by pid 1");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn random_umids_look_like_umls() {
        let u = random_umid();
        assert_eq!(u.len(), 6);
        assert!(u.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
