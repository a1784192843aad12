//! UML's `ubdN` switches and the disk stack behind each device.
//!
//! `ubd<N>[flags]=FILE` or `ubd<N>[flags]=COW,BACKING`, N in 0..16, flags `r` (read-only)
//! and `s` (synchronous: every write is made durable before it completes), as in UML.
//! `ubd0=COW` alone uses the backing file named in the COW header.

use crate::disk::cow::{COW_MAGIC, CowDisk, CowError};
use crate::disk::raw::{Access, OpenError, RawDisk};
use crate::disk::{Disk, SECTOR_SIZE};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Number of ubd devices.
pub const MAX_UBD: u8 = 16;

/// One `ubdN=` switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UbdSpec {
    /// Device number (ubd0 is `/dev/ubda`).
    pub index: u8,
    /// `r`: read-only.
    pub read_only: bool,
    /// `s`: synchronous writes.
    pub sync: bool,
    /// The image, or the COW file.
    pub file: PathBuf,
    /// The backing file, for `COW,BACKING`.
    pub backing: Option<PathBuf>,
}

impl UbdSpec {
    /// The guest's name for the device: ubd0 is `ubda`.
    pub fn guest_name(&self) -> String {
        format!("ubd{}", (b'a' + self.index) as char)
    }
}

/// Why a ubd switch or image was refused.
#[derive(Debug, thiserror::Error)]
pub enum UbdError {
    /// The switch does not parse.
    #[error("{0}: {1}")]
    BadSwitch(String, &'static str),
    /// The image could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The COW layer refused.
    #[error(transparent)]
    Cow(#[from] CowError),
    /// The image is not a whole number of sectors.
    #[error("{}: size {} is not a multiple of 512 bytes", .0.display(), .1)]
    OddSize(PathBuf, u64),
}

/// Parses `key=value` where key starts with `ubd`; `Ok(None)` if the key is not a ubd switch.
pub fn parse_switch(key: &str, value: &str) -> Result<Option<UbdSpec>, UbdError> {
    let Some(rest) = key.strip_prefix("ubd") else { return Ok(None) };
    let input = format!("{key}={value}");
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return Ok(None);
    }
    let index: u32 = digits.parse().map_err(|_| UbdError::BadSwitch(input.clone(), "bad device number"))?;
    if index >= u32::from(MAX_UBD) {
        return Err(UbdError::BadSwitch(input, "device number out of range (ubd0 to ubd15)"));
    }
    let (mut read_only, mut sync) = (false, false);
    for flag in rest[digits.len()..].chars() {
        match flag {
            'r' => read_only = true,
            's' => sync = true,
            _ => return Err(UbdError::BadSwitch(input, "unknown flag (r: read-only, s: synchronous)")),
        }
    }
    let (file, backing) = match value.split_once(',') {
        Some((cow, backing)) if !cow.is_empty() && !backing.is_empty() => (cow, Some(PathBuf::from(backing))),
        Some(_) => return Err(UbdError::BadSwitch(input, "expected FILE or COW,BACKING")),
        None if value.is_empty() => return Err(UbdError::BadSwitch(input, "needs a file")),
        None => (value, None),
    };
    Ok(Some(UbdSpec { index: index as u8, read_only, sync, file: PathBuf::from(file), backing }))
}

/// Whether `path` starts with the COW magic (either byte order).
pub fn is_cow_file(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && (u32::from_be_bytes(magic) == COW_MAGIC || u32::from_le_bytes(magic) == COW_MAGIC)
}

/// Makes every write durable before it completes (`ubdNs=`).
struct SyncDisk(Box<dyn Disk>);

impl Disk for SyncDisk {
    fn size(&self) -> u64 {
        self.0.size()
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset)?;
        self.0.flush()
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
}

/// Opens the disk stack for `spec`: raw image or COW over a backing file, locked.
pub fn open(spec: &UbdSpec) -> Result<Box<dyn Disk>, UbdError> {
    let disk: Box<dyn Disk> = if spec.backing.is_some() || is_cow_file(&spec.file) {
        Box::new(CowDisk::open(&spec.file, spec.backing.as_deref(), spec.read_only)?)
    } else {
        let access = if spec.read_only { Access::ReadOnly } else { Access::ReadWrite };
        Box::new(RawDisk::open(&spec.file, access)?)
    };
    if !disk.size().is_multiple_of(SECTOR_SIZE) {
        return Err(UbdError::OddSize(spec.file.clone(), disk.size()));
    }
    Ok(if spec.sync { Box::new(SyncDisk(disk)) } else { disk })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_like_uml() {
        let s = parse_switch("ubd0", "root_fs").unwrap().unwrap();
        assert_eq!(
            (s.index, s.read_only, s.sync, s.file.as_path(), s.backing.clone()),
            (0, false, false, Path::new("root_fs"), None)
        );
        assert_eq!(s.guest_name(), "ubda");
        let s = parse_switch("ubd4rs", "cow,backing").unwrap().unwrap();
        assert_eq!((s.index, s.read_only, s.sync), (4, true, true));
        assert_eq!(s.backing.as_deref(), Some(Path::new("backing")));
        assert_eq!(s.guest_name(), "ubde");
        assert!(parse_switch("mem", "64M").unwrap().is_none());
        assert!(parse_switch("ubdx", "f").unwrap().is_none());
        for (k, v, why) in [
            ("ubd16", "f", "out of range"),
            ("ubd0z", "f", "unknown flag"),
            ("ubd0", "", "needs a file"),
            ("ubd0", ",b", "expected FILE"),
            ("ubd0", "c,", "expected FILE"),
        ] {
            let e = parse_switch(k, v).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{k}={v}: ")) && e.contains(why), "{e}");
        }
    }
}
