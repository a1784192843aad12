//! The initial RAM disk file (`--initrd`, `initrd=`): opened and checked before anything
//! starts, then read straight into guest memory at every boot (a reboot reads the file again,
//! from the descriptor opened at start).
//!
//! An empty file is refused rather than ignored: UML logs "zero-size initrd" and boots on
//! without one, but an empty image is almost always a failed build step, and a machine that
//! boots without its userland is harder to diagnose than a refusal.

use crate::config::InitrdSpec;
use std::fs::File;
use std::io::Seek;
use umlvm_boot::Span;
use umlvm_boot::host::initrd::{self, InitrdError};
use umlvm_boot::layout::GIB;
use vm_memory::GuestMemoryMmap;

/// Why the initrd cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InitrdFileError {
    /// It cannot be opened or read.
    #[error("{input}: cannot read it")]
    Read {
        /// The option as the user gave it.
        input: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// It is a directory.
    #[error("{input}: is a directory, not an initrd image")]
    Directory {
        /// The option as the user gave it.
        input: String,
    },
    /// A device, FIFO or socket.
    #[error("{input}: not a regular file")]
    NotRegular {
        /// The option as the user gave it.
        input: String,
    },
    /// It has no bytes.
    #[error("{input}: the file is empty (leave the option out to boot without an initrd)")]
    Empty {
        /// The option as the user gave it.
        input: String,
    },
    /// It needs more guest RAM than configured.
    #[error("{input} ({}) does not fit in {} MiB of guest RAM; use mem={}", size(*.len), .mem_bytes >> 20, suggest_mem(*.needed_mem_bytes))]
    NeedsMoreMemory {
        /// The option as the user gave it.
        input: String,
        /// File size.
        len: u64,
        /// Configured guest RAM.
        mem_bytes: u64,
        /// The least RAM it fits.
        needed_mem_bytes: u64,
    },
    /// It cannot fit below the MMIO hole whatever the RAM size.
    #[error("{input} ({}) is too large: an initrd must fit in the RAM below 3 GiB, at most {} with this kernel", size(*.len), size(*.max_len))]
    TooLarge {
        /// The option as the user gave it.
        input: String,
        /// File size.
        len: u64,
        /// The largest initrd there is room for.
        max_len: u64,
    },
    /// Loading it into guest memory failed (at boot or reboot).
    #[error("{input}: cannot load it")]
    Load {
        /// The option as the user gave it.
        input: String,
        /// What failed.
        #[source]
        source: InitrdError,
    },
}

/// `bytes` for people: KiB below 1 MiB, else MiB (with one decimal when not whole).
fn size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes < MIB {
        format!("{} KiB", bytes.div_ceil(1024))
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    }
}

/// A `mem=` value that holds `needed` bytes: the next power of two, at least 64M.
fn suggest_mem(needed: u64) -> String {
    let bytes = needed.next_power_of_two().max(crate::config::DEFAULT_MEM_BYTES);
    if bytes >= GIB { format!("{}G", bytes / GIB) } else { format!("{}M", bytes >> 20) }
}

/// An opened, checked initrd file.
#[derive(Debug)]
pub struct InitrdFile {
    spec: InitrdSpec,
    file: File,
    len: u64,
}

impl InitrdFile {
    /// Opens `spec`'s file and checks that it is a non-empty regular file. The type is checked
    /// before opening, so a FIFO never blocks the open.
    pub fn open(spec: &InitrdSpec) -> Result<Self, InitrdFileError> {
        let input = || spec.input.clone();
        let read_err = |source| InitrdFileError::Read { input: input(), source };
        let meta = std::fs::metadata(&spec.file).map_err(read_err)?;
        if meta.is_dir() {
            return Err(InitrdFileError::Directory { input: input() });
        }
        if !meta.is_file() {
            return Err(InitrdFileError::NotRegular { input: input() });
        }
        let file = File::open(&spec.file).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        if len == 0 {
            return Err(InitrdFileError::Empty { input: input() });
        }
        Ok(Self { spec: spec.clone(), file, len })
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// How the user named it.
    pub fn input(&self) -> &str {
        &self.spec.input
    }

    /// Checks that it fits a guest with `mem_bytes` of RAM whose kernel occupies `kernel`
    /// (the same placement [`umlvm_boot::host::build_boot`] will make).
    pub fn check_fits(&self, mem_bytes: u64, kernel: Span) -> Result<(), InitrdFileError> {
        match initrd::place(mem_bytes, kernel, self.len) {
            Ok(_) => Ok(()),
            Err(InitrdError::NeedsMoreMemory { needed_mem_bytes, .. }) => {
                Err(InitrdFileError::NeedsMoreMemory {
                    input: self.spec.input.clone(),
                    len: self.len,
                    mem_bytes,
                    needed_mem_bytes,
                })
            }
            Err(InitrdError::LargerThanLowRam { max_len, .. }) => {
                Err(InitrdFileError::TooLarge { input: self.spec.input.clone(), len: self.len, max_len })
            }
            Err(source) => Err(InitrdFileError::Load { input: self.spec.input.clone(), source }),
        }
    }

    /// Reads the whole file into guest memory at `span` (from [`umlvm_boot::BootInfo::initrd`]).
    pub fn load(&self, mem: &GuestMemoryMmap, span: Span) -> Result<(), InitrdFileError> {
        let mut file = &self.file;
        file.rewind().map_err(|source| InitrdFileError::Read { input: self.spec.input.clone(), source })?;
        initrd::load(mem, span, &mut file)
            .map_err(|source| InitrdFileError::Load { input: self.spec.input.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use vm_memory::{Bytes, GuestAddress};

    const KERNEL: Span = Span::new(0x20_0000, 0x20_0000);

    fn spec(file: PathBuf) -> InitrdSpec {
        let input = format!("initrd={}", file.display());
        InitrdSpec { file, input }
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("umlvm-initrd-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn sizes_and_advice_read_well() {
        assert_eq!(size(300 << 20), "300 MiB");
        assert_eq!(size((2 << 20) + (1 << 19)), "2.5 MiB");
        assert_eq!(size(1000), "1 KiB");
        assert_eq!(suggest_mem(320 << 20), "512M");
        assert_eq!(suggest_mem(20 << 20), "64M");
        assert_eq!(suggest_mem((1 << 30) + 1), "2G");
    }

    #[test]
    fn the_too_large_message_names_the_file_size_ram_and_fix() {
        let dir = scratch("big");
        let path = dir.join("rootfs.cpio.gz");
        File::create(&path).unwrap().set_len(300 << 20).unwrap(); // sparse
        let f = InitrdFile::open(&spec(path.clone())).unwrap();
        assert_eq!(f.len(), 300 << 20);
        let e = f.check_fits(128 << 20, KERNEL).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("initrd={} (300 MiB) does not fit in 128 MiB of guest RAM; use mem=512M", path.display())
        );
        assert!(f.check_fits(512 << 20, KERNEL).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_directory_empty_and_special_files_are_refused() {
        let dir = scratch("bad");
        let e = InitrdFile::open(&spec(dir.join("missing"))).unwrap_err();
        assert!(matches!(e, InitrdFileError::Read { .. }), "{e:?}");
        let e = InitrdFile::open(&spec(dir.clone())).unwrap_err();
        assert!(matches!(e, InitrdFileError::Directory { .. }), "{e:?}");
        let empty = dir.join("empty");
        File::create(&empty).unwrap();
        let e = InitrdFile::open(&spec(empty)).unwrap_err();
        assert!(matches!(e, InitrdFileError::Empty { .. }), "{e:?}");
        let e = InitrdFile::open(&spec("/dev/null".into())).unwrap_err();
        assert!(matches!(e, InitrdFileError::NotRegular { .. }), "{e:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn loads_the_file_again_for_each_boot() {
        let dir = scratch("load");
        let path = dir.join("initrd");
        let data: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = InitrdFile::open(&spec(path)).unwrap();
        let span = initrd::place(64 << 20, KERNEL, f.len()).unwrap();
        for _boot in 0..2 {
            let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 << 20)]).unwrap();
            f.load(&mem, span).unwrap();
            let mut got = vec![0u8; data.len()];
            mem.read_slice(&mut got, GuestAddress(span.gpa)).unwrap();
            assert_eq!(got, data);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
