//! The newc cpio format of initramfs images (`070701`, and `070702` with checksums).
//!
//! An entry is a 110-byte ASCII header (the magic and thirteen 8-digit hex fields), the
//! NUL-terminated name, padding to a multiple of 4, the file data, and padding to a multiple
//! of 4 again. An archive ends with an entry named `TRAILER!!!`. As in Linux's initramfs,
//! several archives may follow one another with zero bytes between them; [`entries`] walks
//! them all. [`unpack_image`] additionally accepts gzip-compressed archives among them, as a
//! bootloader-assembled initramfs (an uncompressed microcode archive followed by a
//! compressed root file system) has.
//!
//! Hard links: an entry whose `nlink` is at least 2 and whose (`ino`, `dev`) was seen before
//! names the same file; GNU cpio stores the data with the last such entry.

use crate::gzip::{self, GzipError};
use crate::vfs::{FileType, S_IFMT, makedev};
use alloc::borrow::Cow;
use alloc::vec::Vec;
use core::fmt;

/// The magic of a newc header without checksums.
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The magic of a newc header whose `check` field holds the sum of a regular file's bytes.
pub const NEWC_CRC_MAGIC: &[u8; 6] = b"070702";
/// The name of the entry that ends an archive.
pub const TRAILER: &[u8] = b"TRAILER!!!";
/// Size of a newc header.
const HEADER_LEN: usize = 110;
/// Longest name accepted, NUL included (Linux's `PATH_MAX`).
const NAME_MAX_LEN: usize = crate::vfs::PATH_MAX;

/// One archive member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path, without leading `/` or `./` (the archive root itself, `.`, is empty).
    pub name: &'a [u8],
    /// Inode number in the archive (identifies hard links, with `dev`).
    pub ino: u32,
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of links.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Device the file was archived from (see [`makedev`]).
    pub dev: u64,
    /// Device number of a device file (see [`makedev`]).
    pub rdev: u64,
    /// The contents (the target, for a symlink).
    pub data: &'a [u8],
}

/// What is wrong with an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpioErrorKind {
    /// The data ends inside a header, name or file.
    Truncated,
    /// No `070701`/`070702` magic where a header must start (or a header that does not start
    /// on a 4-byte boundary).
    BadMagic,
    /// A header field is not 8 hex digits.
    BadHex,
    /// The name does not end with a NUL where its size says.
    NameNotTerminated,
    /// The name is empty, too long, or has a NUL inside.
    BadName,
    /// A `070702` regular file's data does not add up to its checksum.
    BadChecksum,
}

/// An archive failure at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpioError {
    /// What went wrong.
    pub kind: CpioErrorKind,
    /// Where: the start of the header, field, name or data concerned.
    pub offset: usize,
}

impl fmt::Display for CpioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CpioErrorKind::Truncated => "truncated cpio archive",
            CpioErrorKind::BadMagic => "no cpio newc header",
            CpioErrorKind::BadHex => "bad hex number in cpio header",
            CpioErrorKind::NameNotTerminated => "cpio name not NUL-terminated",
            CpioErrorKind::BadName => "bad cpio name",
            CpioErrorKind::BadChecksum => "cpio checksum mismatch",
        };
        write!(f, "{what} at offset {}", self.offset)
    }
}

/// The entries of the (concatenated) newc archives in `data`, trailers left out.
pub fn entries(data: &[u8]) -> Entries<'_> {
    Entries { data, pos: 0, failed: false }
}

/// Iterator over archive entries; see [`entries`]. After an error it ends.
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, CpioError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            // Between archives (and before the first) zero bytes are padding.
            self.pos += self.data[self.pos..].iter().take_while(|&&b| b == 0).count();
            if self.pos == self.data.len() {
                return None;
            }
            match parse_entry(self.data, self.pos) {
                Ok((entry, next)) => {
                    self.pos = next;
                    if entry.name != TRAILER {
                        return Some(Ok(entry));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// The length of the single archive at the start of `data`, through its trailer and the
/// padding after it (or to the end of `data` if it has no trailer).
pub fn archive_len(data: &[u8]) -> Result<usize, CpioError> {
    let mut pos = 0;
    while pos < data.len() {
        let (entry, next) = parse_entry(data, pos)?;
        pos = next;
        if entry.name == TRAILER {
            break;
        }
    }
    Ok(pos)
}

/// Parses the entry whose header is at `at`; returns it and where the next one may start.
fn parse_entry(data: &[u8], at: usize) -> Result<(Entry<'_>, usize), CpioError> {
    let err = |kind, offset| CpioError { kind, offset };
    if !at.is_multiple_of(4) {
        return Err(err(CpioErrorKind::BadMagic, at));
    }
    // A short header with the start of a magic is truncated; anything else is not a header.
    let magic = &data[at..data.len().min(at + 6)];
    if !NEWC_MAGIC.starts_with(magic) && !NEWC_CRC_MAGIC.starts_with(magic) {
        return Err(err(CpioErrorKind::BadMagic, at));
    }
    let header = data.get(at..at + HEADER_LEN).ok_or(err(CpioErrorKind::Truncated, at))?;
    let with_checksum = header.starts_with(NEWC_CRC_MAGIC);
    let field = |i: usize| {
        let start = 6 + 8 * i;
        hex8(&header[start..start + 8]).ok_or(err(CpioErrorKind::BadHex, at + start))
    };
    let [
        ino,
        mode,
        uid,
        gid,
        nlink,
        mtime,
        size,
        dev_major,
        dev_minor,
        rdev_major,
        rdev_minor,
        name_size,
        check,
    ] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(field);
    let (size, name_size) = (size? as usize, name_size? as usize);

    let name_at = at + HEADER_LEN;
    if name_size == 0 || name_size > NAME_MAX_LEN {
        return Err(err(CpioErrorKind::BadName, name_at));
    }
    let name = data.get(name_at..name_at + name_size).ok_or(err(CpioErrorKind::Truncated, name_at))?;
    let (&last, name) = name.split_last().unwrap_or((&0, name));
    if last != 0 {
        return Err(err(CpioErrorKind::NameNotTerminated, name_at));
    }
    if name.contains(&0) {
        return Err(err(CpioErrorKind::BadName, name_at));
    }

    let data_at = align4(name_at + name_size);
    let file = data.get(data_at..data_at + size).ok_or(err(CpioErrorKind::Truncated, data_at))?;
    let mode = mode?;
    // Like Linux (and GNU cpio, which writes 0 for the rest), only regular files are summed.
    let summed = with_checksum && mode & S_IFMT == FileType::Regular.mode_bits();
    if summed && file.iter().fold(0u32, |sum, &b| sum.wrapping_add(b as u32)) != check? {
        return Err(err(CpioErrorKind::BadChecksum, data_at));
    }
    let entry = Entry {
        name: strip_root(name),
        ino: ino?,
        mode,
        uid: uid?,
        gid: gid?,
        nlink: nlink?,
        mtime: mtime?,
        dev: makedev(dev_major?, dev_minor?),
        rdev: makedev(rdev_major?, rdev_minor?),
        data: file,
    };
    // The last padding may be missing at the very end of the input.
    Ok((entry, align4(data_at + size).min(data.len())))
}

/// Eight ASCII hex digits as a number.
fn hex8(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| Some(n << 4 | (d as char).to_digit(16)?))
}

/// `n` rounded up to a multiple of 4.
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A name without leading `/` and `./` (`.` alone becomes empty).
fn strip_root(mut name: &[u8]) -> &[u8] {
    loop {
        name = match name {
            [b'/', rest @ ..] | [b'.', b'/', rest @ ..] => rest,
            [b'.'] => &[],
            _ => return name,
        };
    }
}

/// What is wrong with an initramfs image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// A damaged archive (offset within the data that holds it: the image, or the
    /// decompressed output of the gzip stream at `stream`).
    Cpio {
        /// Offset of the gzip stream the archive came from, if it was compressed.
        stream: Option<usize>,
        /// The failure.
        error: CpioError,
    },
    /// A damaged gzip stream (offset within the image).
    Gzip(GzipError),
    /// Data that is neither a cpio archive nor gzip (xz, zstd, lz4 and others are not
    /// supported), at this offset.
    Unrecognised(usize),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpio { stream: None, error } => write!(f, "{error}"),
            Self::Cpio { stream: Some(at), error } => write!(f, "{error} in the gzip stream at {at}"),
            Self::Gzip(error) => write!(f, "{error}"),
            Self::Unrecognised(at) => write!(f, "unrecognised initramfs data at offset {at}"),
        }
    }
}

/// Linux's initramfs rule: the image is a sequence of cpio archives, each uncompressed or
/// gzip-compressed, with zero padding between them (an uncompressed archive may start at any
/// offset here; each part is realigned in the joined buffer). Returns the archives as one buffer
/// for [`entries`] (the image itself when it is a single uncompressed run), after checking
/// each archive's structure. Decompression stops beyond `limit` bytes of output in all.
pub fn unpack_image(image: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, ImageError> {
    let mut parts: Vec<Cow<'_, [u8]>> = Vec::new();
    let mut inflated = 0usize;
    let mut pos = 0;
    loop {
        pos += image[pos..].iter().take_while(|&&b| b == 0).count();
        let rest = &image[pos..];
        if rest.is_empty() {
            break;
        }
        if gzip::is_gzip(rest) {
            let (out, used) = gzip::gunzip(rest, limit - inflated)
                .map_err(|e| ImageError::Gzip(GzipError { offset: e.offset + pos, ..e }))?;
            if let Some(Err(error)) = entries(&out).find(Result::is_err) {
                return Err(ImageError::Cpio { stream: Some(pos), error });
            }
            inflated += out.len();
            parts.push(Cow::Owned(out));
            pos += used;
        } else if rest[0] == b'0' {
            let len = archive_len(rest).map_err(|e| ImageError::Cpio {
                stream: None,
                error: CpioError { offset: e.offset + pos, ..e },
            })?;
            parts.push(Cow::Borrowed(&rest[..len]));
            pos += len;
        } else {
            return Err(ImageError::Unrecognised(pos));
        }
    }
    if let [Cow::Borrowed(_)] | [] = parts[..] {
        return Ok(parts.pop().unwrap_or(Cow::Borrowed(&[])));
    }
    // Join the parts, each starting on a 4-byte boundary as headers must.
    let mut joined = Vec::with_capacity(parts.iter().map(|p| p.len() + 3).sum());
    for part in &parts {
        joined.resize(align4(joined.len()), 0);
        joined.extend_from_slice(part);
    }
    Ok(Cow::Owned(joined))
}

#[cfg(test)]
mod tests;
