//! UML's copy-on-write file format, version 3, compatible with UML's ubd driver and
//! `uml_moo` (facts in `../shared/uml/cow_format.md`).
//!
//! A COW file starts with a big-endian header (magic, version, backing mtime and size, sector
//! size, alignment, format, 4096-byte absolute backing path), then a bitmap (1 bit per backing
//! sector, LSB first) at the header rounded up to the alignment, then the data area: a dirty
//! sector `s` lives at `data_offset + s * 512`; clean sectors are read from the backing file.

use super::raw::{Access, OpenError, open_locked};
use super::{Disk, SECTOR_SIZE, check_range, read_only_error};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// "OOOM" read as a big-endian u32.
pub const COW_MAGIC: u32 = 0x4F4F_4F4D;
/// The only version we write (and read).
pub const COW_VERSION: u32 = 3;
/// Bytes of the backing-path field.
pub const PATH_LEN: usize = 4096;
/// Size of the v3 header struct.
pub const HEADER_LEN: usize = 32 + PATH_LEN;
/// Alignment UML uses (its page size).
pub const ALIGNMENT: u32 = 4096;

/// A parsed COW header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CowHeader {
    /// Backing file's mtime (seconds) when the COW file was made.
    pub mtime: u32,
    /// Backing file's size in bytes.
    pub size: u64,
    /// Sector size (512).
    pub sector_size: u32,
    /// Alignment of bitmap and data (4096).
    pub alignment: u32,
    /// Bitmap format (0).
    pub cow_format: u32,
    /// Absolute path of the backing file.
    pub backing_file: PathBuf,
}

/// Why a COW file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CowError {
    /// I/O on a file.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] io::Error),
    /// Opening a file failed (missing, locked, not a file).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Not a COW file.
    #[error("{}: not a UML COW file (bad magic)", .0.display())]
    BadMagic(PathBuf),
    /// A version other than 3.
    #[error("{}: COW version {} is not supported (only version 3, which UML writes)", .0.display(), .1)]
    Version(PathBuf, u32),
    /// A header that does not hold together.
    #[error("{}: corrupt COW header: {}", .0.display(), .1)]
    Corrupt(PathBuf, &'static str),
    /// The backing file changed since the COW file was made.
    #[error(
        "{cow}: backing file {backing} changed: {what} mismatch (COW header {expected}, file {actual}); refusing to use it"
    )]
    BackingChanged {
        /// COW path.
        cow: PathBuf,
        /// Backing path.
        backing: PathBuf,
        /// "mtime" or "size".
        what: &'static str,
        /// Value in the header.
        expected: u64,
        /// Value of the file.
        actual: u64,
    },
    /// The backing file given differs from the header's.
    #[error("{}: backing file mismatch: {} requested, {} recorded in the COW header", cow.display(), requested.display(), recorded.display())]
    BackingMismatch {
        /// COW path.
        cow: PathBuf,
        /// Given.
        requested: PathBuf,
        /// In the header.
        recorded: PathBuf,
    },
    /// A path too long for the header.
    #[error("{}: backing path longer than {PATH_LEN} bytes", .0.display())]
    PathTooLong(PathBuf),
}

/// Where the bitmap and data live for a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CowLayout {
    /// Bitmap offset.
    pub bitmap_offset: u64,
    /// Bitmap length in bytes.
    pub bitmap_len: u64,
    /// Data offset.
    pub data_offset: u64,
    /// Number of sectors.
    pub sectors: u64,
}

impl CowHeader {
    /// Bitmap and data placement, as UML computes it.
    pub fn layout(&self) -> CowLayout {
        let align = u64::from(self.alignment.max(1));
        let sectors = self.size.div_ceil(u64::from(self.sector_size.max(1)));
        let bitmap_offset = (HEADER_LEN as u64).next_multiple_of(align);
        let bitmap_len = sectors.div_ceil(8);
        let data_offset = (bitmap_offset + bitmap_len).next_multiple_of(align);
        CowLayout { bitmap_offset, bitmap_len, data_offset, sectors }
    }

    /// The header's bytes (big-endian, zero padded).
    pub fn encode(&self) -> Result<Vec<u8>, CowError> {
        let path = self.backing_file.as_os_str().as_encoded_bytes();
        if path.len() >= PATH_LEN {
            return Err(CowError::PathTooLong(self.backing_file.clone()));
        }
        let mut b = vec![0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&COW_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&COW_VERSION.to_be_bytes());
        b[8..12].copy_from_slice(&self.mtime.to_be_bytes());
        b[12..20].copy_from_slice(&self.size.to_be_bytes());
        b[20..24].copy_from_slice(&self.sector_size.to_be_bytes());
        b[24..28].copy_from_slice(&self.alignment.to_be_bytes());
        b[28..32].copy_from_slice(&self.cow_format.to_be_bytes());
        b[32..32 + path.len()].copy_from_slice(path);
        Ok(b)
    }

    /// Parses a header; `path` names the file in errors. Accepts the magic in either byte
    /// order (host order means host-order fields, as UML does).
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self, CowError> {
        if bytes.len() < 8 {
            return Err(CowError::BadMagic(path.to_path_buf()));
        }
        let be = match bytes[0..4].try_into().map(u32::from_be_bytes) {
            Ok(COW_MAGIC) => true,
            Ok(m) if m.swap_bytes() == COW_MAGIC => false,
            _ => return Err(CowError::BadMagic(path.to_path_buf())),
        };
        let u32_at = |o: usize| {
            let a: [u8; 4] = bytes[o..o + 4].try_into().expect("4 bytes");
            if be { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }
        };
        let version = u32_at(4);
        if version != COW_VERSION {
            return Err(CowError::Version(path.to_path_buf(), version));
        }
        if bytes.len() < HEADER_LEN {
            return Err(CowError::Corrupt(path.to_path_buf(), "truncated header"));
        }
        let size_bytes: [u8; 8] = bytes[12..20].try_into().expect("8 bytes");
        let size = if be { u64::from_be_bytes(size_bytes) } else { u64::from_le_bytes(size_bytes) };
        let name = &bytes[32..HEADER_LEN];
        let end = name
            .iter()
            .position(|&c| c == 0)
            .ok_or(CowError::Corrupt(path.to_path_buf(), "backing path not terminated"))?;
        if end == 0 {
            return Err(CowError::Corrupt(path.to_path_buf(), "empty backing path (old 64-bit layout?)"));
        }
        let h = CowHeader {
            mtime: u32_at(8),
            size,
            sector_size: u32_at(20),
            alignment: u32_at(24),
            cow_format: u32_at(28),
            backing_file: PathBuf::from(String::from_utf8_lossy(&name[..end]).into_owned()),
        };
        if h.sector_size != SECTOR_SIZE as u32 {
            return Err(CowError::Corrupt(path.to_path_buf(), "sector size is not 512"));
        }
        if h.alignment == 0 || !h.alignment.is_power_of_two() || h.alignment > 1 << 20 {
            return Err(CowError::Corrupt(path.to_path_buf(), "alignment is not a power of two up to 1 MiB"));
        }
        if h.cow_format != 0 {
            return Err(CowError::Corrupt(path.to_path_buf(), "unknown bitmap format"));
        }
        if h.size > 1 << 50 {
            return Err(CowError::Corrupt(path.to_path_buf(), "implausible backing size"));
        }
        Ok(h)
    }
}

/// Reads the header of the COW file at `path`.
pub fn read_header(path: &Path) -> Result<CowHeader, CowError> {
    let f = File::open(path).map_err(|e| CowError::Io(path.to_path_buf(), e))?;
    let mut b = vec![0u8; HEADER_LEN];
    let n = read_up_to(&f, &mut b, 0).map_err(|e| CowError::Io(path.to_path_buf(), e))?;
    CowHeader::decode(&b[..n], path)
}

fn read_up_to(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

fn absolute(path: &Path) -> Result<PathBuf, CowError> {
    std::path::absolute(path).map_err(|e| CowError::Io(path.to_path_buf(), e))
}

/// Checks the backing file's mtime and size against the header.
fn check_backing(cow: &Path, backing: &Path, h: &CowHeader, file: &File) -> Result<(), CowError> {
    let meta = file.metadata().map_err(|e| CowError::Io(backing.to_path_buf(), e))?;
    let mismatch = |what, expected, actual| CowError::BackingChanged {
        cow: cow.to_path_buf(),
        backing: backing.to_path_buf(),
        what,
        expected,
        actual,
    };
    if meta.mtime() as u32 != h.mtime {
        return Err(mismatch("mtime", u64::from(h.mtime), meta.mtime() as u64));
    }
    if meta.len() != h.size {
        return Err(mismatch("size", h.size, meta.len()));
    }
    Ok(())
}

/// A COW layer over a read-only backing file.
#[derive(Debug)]
pub struct CowDisk {
    cow: File,
    backing: File,
    header: CowHeader,
    layout: CowLayout,
    bitmap: Vec<u8>,
    read_only: bool,
}

impl CowDisk {
    /// Opens the COW file `cow`, creating it over `backing` if it does not exist. Without
    /// `backing`, the header's backing path is used. The backing file is opened read-only and
    /// share-locked; the COW file is exclusively locked unless `read_only`.
    pub fn open(cow: &Path, backing: Option<&Path>, read_only: bool) -> Result<Self, CowError> {
        if !cow.exists() {
            let backing = backing.ok_or_else(|| {
                CowError::Io(
                    cow.to_path_buf(),
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "no such COW file, and no backing file to create it over",
                    ),
                )
            })?;
            create(cow, backing)?;
        }
        let access = if read_only { Access::ReadOnly } else { Access::ReadWrite };
        let cow_file = open_locked(cow, access)?;
        let mut head = vec![0u8; HEADER_LEN];
        let n = read_up_to(&cow_file, &mut head, 0).map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
        let header = CowHeader::decode(&head[..n], cow)?;
        let recorded = header.backing_file.clone();
        let backing_path = match backing {
            Some(b) => {
                let b = absolute(b)?;
                if b != recorded && !same_file(&b, &recorded) {
                    return Err(CowError::BackingMismatch { cow: cow.to_path_buf(), requested: b, recorded });
                }
                b
            }
            None => recorded,
        };
        let backing_file = open_locked(&backing_path, Access::ReadOnly)?;
        check_backing(cow, &backing_path, &header, &backing_file)?;
        let layout = header.layout();
        let meta = cow_file.metadata().map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
        if meta.len() < layout.data_offset {
            return Err(CowError::Corrupt(cow.to_path_buf(), "file shorter than its bitmap"));
        }
        let mut bitmap = vec![0u8; layout.bitmap_len as usize];
        cow_file
            .read_exact_at(&mut bitmap, layout.bitmap_offset)
            .map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
        Ok(Self { cow: cow_file, backing: backing_file, header, layout, bitmap, read_only })
    }

    /// The header.
    pub fn header(&self) -> &CowHeader {
        &self.header
    }

    /// Whether sector `s` has been written to the COW file.
    pub fn is_dirty(&self, s: u64) -> bool {
        self.bitmap.get((s / 8) as usize).is_some_and(|b| b & (1 << (s % 8)) != 0)
    }

    /// Number of dirty sectors.
    pub fn dirty_sectors(&self) -> u64 {
        self.bitmap.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// Reads sector `s` (merged view) into `buf` (512 bytes).
    fn read_sector(&self, s: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.is_dirty(s) {
            self.cow.read_exact_at(buf, self.layout.data_offset + s * SECTOR_SIZE)
        } else {
            // The last sector may be partial when the backing size is not a sector multiple.
            let off = s * SECTOR_SIZE;
            let avail = (self.header.size - off).min(SECTOR_SIZE) as usize;
            buf[avail..].fill(0);
            self.backing.read_exact_at(&mut buf[..avail], off)
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

impl Disk for CowDisk {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.header.size)?;
        let mut sector = [0u8; SECTOR_SIZE as usize];
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let s = pos / SECTOR_SIZE;
            let within = (pos % SECTOR_SIZE) as usize;
            let n = (SECTOR_SIZE as usize - within).min(buf.len() - done);
            if within == 0 && n == SECTOR_SIZE as usize {
                // Coalesce a run of whole sectors from the same source.
                let dirty = self.is_dirty(s);
                let mut run = 1u64;
                while done + ((run + 1) * SECTOR_SIZE) as usize <= buf.len()
                    && self.is_dirty(s + run) == dirty
                {
                    run += 1;
                }
                let len = (run * SECTOR_SIZE) as usize;
                let dst = &mut buf[done..done + len];
                if dirty {
                    self.cow.read_exact_at(dst, self.layout.data_offset + pos)?;
                } else {
                    self.backing.read_exact_at(dst, pos)?;
                }
                done += len;
            } else {
                self.read_sector(s, &mut sector)?;
                buf[done..done + n].copy_from_slice(&sector[within..within + n]);
                done += n;
            }
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(read_only_error());
        }
        check_range(offset, buf.len(), self.header.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        let first = offset / SECTOR_SIZE;
        let last = (offset + buf.len() as u64 - 1) / SECTOR_SIZE;
        // Partial sectors that are still clean must be filled from the backing file first.
        for s in [first, last] {
            let partial = (s == first && !offset.is_multiple_of(SECTOR_SIZE))
                || (s == last && !(offset + buf.len() as u64).is_multiple_of(SECTOR_SIZE));
            if partial && !self.is_dirty(s) {
                let mut sector = [0u8; SECTOR_SIZE as usize];
                self.read_sector(s, &mut sector)?;
                self.cow.write_all_at(&sector, self.layout.data_offset + s * SECTOR_SIZE)?;
            }
        }
        // Data first, then the bitmap, as UML does.
        self.cow.write_all_at(buf, self.layout.data_offset + offset)?;
        for s in first..=last {
            self.bitmap[(s / 8) as usize] |= 1 << (s % 8);
        }
        let (b0, b1) = ((first / 8) as usize, (last / 8) as usize);
        self.cow.write_all_at(&self.bitmap[b0..=b1], self.layout.bitmap_offset + b0 as u64)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only { Ok(()) } else { self.cow.sync_data() }
    }

    fn read_to_guest(
        &mut self,
        mem: &vm_memory::GuestMemoryMmap,
        addr: vm_memory::GuestAddress,
        len: usize,
        offset: u64,
    ) -> io::Result<()> {
        use vm_memory::GuestMemoryBackend;
        check_range(offset, len, self.header.size)?;
        let whole = offset.is_multiple_of(SECTOR_SIZE) && (len as u64).is_multiple_of(SECTOR_SIZE);
        let Ok(slice) = mem.get_slice(addr, len) else {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        };
        // Partial sectors (and a partial last sector of the backing file) take the slow path.
        if !whole || !self.header.size.is_multiple_of(SECTOR_SIZE) {
            let mut buf = vec![0u8; len];
            self.read_at(&mut buf, offset)?;
            return vm_memory::Bytes::write_slice(mem, &buf, addr)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
        }
        // Runs of sectors from the same file go straight into guest memory.
        let mut done = 0usize;
        while done < len {
            let s = (offset + done as u64) / SECTOR_SIZE;
            let dirty = self.is_dirty(s);
            let mut run = 1u64;
            while done + ((run + 1) * SECTOR_SIZE) as usize <= len && self.is_dirty(s + run) == dirty {
                run += 1;
            }
            let n = (run * SECTOR_SIZE) as usize;
            let part = slice.subslice(done, n).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let pos = offset + done as u64;
            if dirty {
                crate::sys::pread_volatile(&self.cow, &part, self.layout.data_offset + pos)?;
            } else {
                crate::sys::pread_volatile(&self.backing, &part, pos)?;
            }
            done += n;
        }
        Ok(())
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

/// Creates the COW file `cow` over `backing` (sparse, UML layout).
pub fn create(cow: &Path, backing: &Path) -> Result<CowHeader, CowError> {
    let backing_abs = absolute(backing)?;
    let meta = std::fs::metadata(&backing_abs).map_err(|e| CowError::Io(backing_abs.clone(), e))?;
    if !meta.is_file() {
        return Err(CowError::Open(OpenError::NotAFile(backing_abs)));
    }
    let header = CowHeader {
        mtime: meta.mtime() as u32,
        size: meta.len(),
        sector_size: SECTOR_SIZE as u32,
        alignment: ALIGNMENT,
        cow_format: 0,
        backing_file: backing_abs,
    };
    let bytes = header.encode()?;
    let layout = header.layout();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(cow)
        .map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
    let result = f
        .write_all(&bytes)
        .and_then(|_| f.set_len(layout.data_offset + header.size))
        .and_then(|_| f.sync_all());
    if let Err(e) = result {
        drop(f);
        let _ = std::fs::remove_file(cow);
        return Err(CowError::Io(cow.to_path_buf(), e));
    }
    Ok(header)
}

/// Where a merge writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeTarget {
    /// A new file (must not exist).
    NewFile(PathBuf),
    /// The backing file itself, in place.
    InPlace,
}

/// Merges the COW file `cow` with its backing file into `target`, calling `progress(done,
/// total)` in bytes as it goes. The backing file must still match the header.
pub fn merge(
    cow: &Path,
    backing: Option<&Path>,
    target: &MergeTarget,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, CowError> {
    let disk = CowDisk::open(cow, backing, true)?;
    let size = disk.header.size;
    let sectors = disk.layout.sectors;
    match target {
        MergeTarget::NewFile(out) => {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(out)
                .map_err(|e| CowError::Io(out.clone(), e))?;
            let result = (|| -> io::Result<()> {
                f.set_len(size)?;
                let mut buf = vec![0u8; 1 << 20];
                let mut pos = 0u64;
                while pos < size {
                    let n = ((size - pos) as usize).min(buf.len());
                    let mut d = CowReader(&disk);
                    d.read(&mut buf[..n], pos)?;
                    // Keep the output sparse: skip all-zero blocks of 4 KiB.
                    for (i, chunk) in buf[..n].chunks(4096).enumerate() {
                        if chunk.iter().any(|&b| b != 0) {
                            f.write_all_at(chunk, pos + (i * 4096) as u64)?;
                        }
                    }
                    pos += n as u64;
                    progress(pos, size);
                }
                f.sync_all()
            })();
            if let Err(e) = result {
                let _ = std::fs::remove_file(out);
                return Err(CowError::Io(out.clone(), e));
            }
        }
        MergeTarget::InPlace => {
            // Keep what we need from the COW side, then give up our shared lock on the backing
            // file and take it exclusively: nobody else may use it while it is rewritten.
            let backing_path =
                backing.map(Path::to_path_buf).unwrap_or_else(|| disk.header.backing_file.clone());
            let cow_file = disk.cow.try_clone().map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
            let data_offset = disk.layout.data_offset;
            let dirty: Vec<u64> = (0..sectors).filter(|&s| disk.is_dirty(s)).collect();
            drop(disk);
            let out = open_locked(&backing_path, Access::ReadWrite)?;
            let mut sector = [0u8; SECTOR_SIZE as usize];
            for (i, &s) in dirty.iter().enumerate() {
                cow_file
                    .read_exact_at(&mut sector, data_offset + s * SECTOR_SIZE)
                    .map_err(|e| CowError::Io(cow.to_path_buf(), e))?;
                let off = s * SECTOR_SIZE;
                let n = (size - off).min(SECTOR_SIZE) as usize;
                out.write_all_at(&sector[..n], off).map_err(|e| CowError::Io(backing_path.clone(), e))?;
                if i % 8192 == 0 || i + 1 == dirty.len() {
                    progress((i as u64 + 1) * SECTOR_SIZE, dirty.len() as u64 * SECTOR_SIZE);
                }
            }
            out.sync_all().map_err(|e| CowError::Io(backing_path.clone(), e))?;
        }
    }
    Ok(size)
}

/// Read-only view for merging (no lock juggling).
struct CowReader<'a>(&'a CowDisk);

impl CowReader<'_> {
    fn read(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let d = self.0;
        let mut sector = [0u8; SECTOR_SIZE as usize];
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let s = pos / SECTOR_SIZE;
            let within = (pos % SECTOR_SIZE) as usize;
            let n = (SECTOR_SIZE as usize - within).min(buf.len() - done);
            d.read_sector(s, &mut sector)?;
            buf[done..done + n].copy_from_slice(&sector[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Dir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("umlvm-cow-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn backing(dir: &Dir, len: usize) -> PathBuf {
        let p = dir.file("backing");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn header_layout_matches_uml() {
        let h = CowHeader {
            mtime: 1767323045,
            size: 64 << 20,
            sector_size: 512,
            alignment: 4096,
            cow_format: 0,
            backing_file: "/tmp/umlcow/root_fs".into(),
        };
        let l = h.layout();
        // Values observed on a real UML-created file for a 64 MiB backing file.
        assert_eq!((l.bitmap_offset, l.bitmap_len, l.data_offset), (8192, 16384, 24576));
        let b = h.encode().unwrap();
        assert_eq!(&b[0..8], &[0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 3]);
        assert_eq!(&b[8..12], &[0x69, 0x57, 0x35, 0xa5]);
        assert_eq!(&b[12..20], &[0, 0, 0, 0, 4, 0, 0, 0]);
        assert_eq!(CowHeader::decode(&b, Path::new("x")).unwrap(), h);
        // Garbage after the NUL is ignored, as UML leaves some there.
        let mut g = b.clone();
        g[32 + 20 + 5] = 0x60;
        assert_eq!(CowHeader::decode(&g, Path::new("x")).unwrap(), h);
    }

    #[test]
    fn bad_headers_are_refused() {
        let p = Path::new("c");
        assert!(matches!(CowHeader::decode(b"not a cow file at all", p), Err(CowError::BadMagic(_))));
        let h = CowHeader {
            mtime: 1,
            size: 4096,
            sector_size: 512,
            alignment: 4096,
            cow_format: 0,
            backing_file: "/b".into(),
        };
        let good = h.encode().unwrap();
        let mut v2 = good.clone();
        v2[7] = 2;
        assert!(matches!(CowHeader::decode(&v2, p), Err(CowError::Version(_, 2))));
        assert!(matches!(CowHeader::decode(&good[..100], p), Err(CowError::Corrupt(..))));
        let mut sect = good.clone();
        sect[22] = 4;
        assert!(matches!(CowHeader::decode(&sect, p), Err(CowError::Corrupt(..))));
        let mut noname = good.clone();
        noname[32] = 0;
        assert!(matches!(CowHeader::decode(&noname, p), Err(CowError::Corrupt(..))));
        let mut unterminated = good.clone();
        unterminated[32..].fill(b'a');
        assert!(matches!(CowHeader::decode(&unterminated, p), Err(CowError::Corrupt(..))));
    }

    #[test]
    fn writes_go_to_the_cow_and_reads_merge() {
        let dir = Dir::new("rw");
        let b = backing(&dir, 64 * 1024);
        let before = std::fs::read(&b).unwrap();
        let c = dir.file("root.cow");
        let mut d = CowDisk::open(&c, Some(&b), false).unwrap();
        assert_eq!(d.size(), 64 * 1024);
        d.write_at(&[0xaa; 1024], 4096).unwrap();
        d.write_at(b"xyz", 10_000).unwrap(); // partial sector
        let mut got = vec![0u8; 64 * 1024];
        d.read_at(&mut got, 0).unwrap();
        let mut want = before.clone();
        want[4096..5120].fill(0xaa);
        want[10_000..10_003].copy_from_slice(b"xyz");
        assert_eq!(got, want);
        assert_eq!(d.dirty_sectors(), 3);
        drop(d);
        assert_eq!(std::fs::read(&b).unwrap(), before, "backing file untouched");
        // Reopen without the backing path: the header finds it.
        let mut d = CowDisk::open(&c, None, true).unwrap();
        let mut again = vec![0u8; 64 * 1024];
        d.read_at(&mut again, 0).unwrap();
        assert_eq!(again, want);
        assert!(d.write_at(b"no", 0).is_err());
        // Merge into a new file equals the merged view.
        drop(d);
        let out = dir.file("merged");
        merge(&c, None, &MergeTarget::NewFile(out.clone()), |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), want);
        // In place.
        merge(&c, None, &MergeTarget::InPlace, |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), want);
    }

    #[test]
    fn changed_backing_files_are_refused_without_writing() {
        let dir = Dir::new("changed");
        let b = backing(&dir, 8192);
        let c = dir.file("c.cow");
        drop(CowDisk::open(&c, Some(&b), false).unwrap());
        let cow_before = std::fs::read(&c).unwrap();
        // Grow the backing file, keep the mtime.
        let mtime = std::fs::metadata(&b).unwrap().modified().unwrap();
        let f = OpenOptions::new().write(true).open(&b).unwrap();
        f.set_len(16384).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let e = CowDisk::open(&c, None, false).unwrap_err();
        assert!(e.to_string().contains("size mismatch"), "{e}");
        // Restore the size, change the mtime.
        let f = OpenOptions::new().write(true).open(&b).unwrap();
        f.set_len(8192).unwrap();
        f.set_modified(mtime + std::time::Duration::from_secs(5)).unwrap();
        drop(f);
        let e = CowDisk::open(&c, None, false).unwrap_err();
        assert!(e.to_string().contains("mtime mismatch"), "{e}");
        assert_eq!(std::fs::read(&c).unwrap(), cow_before, "COW file untouched");
        // Another backing file than the header's.
        let other = dir.file("other");
        std::fs::write(&other, vec![0u8; 8192]).unwrap();
        assert!(matches!(CowDisk::open(&c, Some(&other), false), Err(CowError::BackingMismatch { .. })));
    }

    #[test]
    fn reads_into_guest_memory_match_reads_into_buffers() {
        use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
        let dir = Dir::new("guest");
        let b = backing(&dir, 64 * 1024);
        let c = dir.file("g.cow");
        let mut d = CowDisk::open(&c, Some(&b), false).unwrap();
        d.write_at(&[0xee; 1536], 2048).unwrap();
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        for (off, len) in [(0u64, 64 * 1024usize), (1024, 4096), (2560, 100)] {
            d.read_to_guest(&mem, GuestAddress(0x1000), len, off).unwrap();
            let mut via_guest = vec![0u8; len];
            mem.read_slice(&mut via_guest, GuestAddress(0x1000)).unwrap();
            let mut direct = vec![0u8; len];
            d.read_at(&mut direct, off).unwrap();
            assert_eq!(via_guest, direct, "at {off} + {len}");
        }
        assert!(d.read_to_guest(&mem, GuestAddress((1 << 20) - 10), 512, 0).is_err());
    }

    #[test]
    fn new_cow_files_are_sparse() {
        use std::os::unix::fs::MetadataExt;
        let dir = Dir::new("sparse");
        let b = dir.file("big");
        File::create(&b).unwrap().set_len(256 << 20).unwrap();
        let c = dir.file("big.cow");
        let mut d = CowDisk::open(&c, Some(&b), false).unwrap();
        d.write_at(&[1u8; 4096], 100 << 20).unwrap();
        let m = std::fs::metadata(&c).unwrap();
        assert_eq!(m.len(), d.layout.data_offset + (256 << 20));
        assert!(m.blocks() * 512 < 1 << 20, "{} bytes allocated", m.blocks() * 512);
    }
}
