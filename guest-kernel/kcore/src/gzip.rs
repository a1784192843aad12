//! gzip (RFC 1952) decoding, for compressed initramfs images.
//!
//! The deflate data is inflated by `miniz_oxide`; this module reads the member headers
//! (`FEXTRA`, `FNAME`, `FCOMMENT`, `FHCRC`), checks each member's CRC-32 and length, joins
//! concatenated members as `gunzip` does, and bounds the output so that a small image cannot
//! inflate into all of memory.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

/// The two bytes every gzip member starts with.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Header flag: a CRC-16 of the header follows it.
const FHCRC: u8 = 1 << 1;
/// Header flag: an extra field follows.
const FEXTRA: u8 = 1 << 2;
/// Header flag: a NUL-terminated file name follows.
const FNAME: u8 = 1 << 3;
/// Header flag: a NUL-terminated comment follows.
const FCOMMENT: u8 = 1 << 4;
/// Header flags that must be zero.
const FRESERVED: u8 = 0xe0;
/// The only compression method (`CM`): deflate.
const CM_DEFLATE: u8 = 8;

/// What is wrong with a gzip stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GzipErrorKind {
    /// The data ends inside a member.
    Truncated,
    /// A compression method other than deflate.
    BadMethod,
    /// Reserved header flags are set.
    ReservedFlags,
    /// The header's CRC-16 (`FHCRC`) does not match.
    HeaderCrc,
    /// The deflate data is corrupt.
    Corrupt,
    /// The member's CRC-32 does not match its data.
    CrcMismatch,
    /// The member's length (`ISIZE`) does not match its data.
    SizeMismatch,
    /// The output would exceed the caller's limit.
    TooLarge,
    /// Bytes other than zero padding follow the last member.
    TrailingGarbage,
}

/// A gzip decoding failure at a byte offset of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GzipError {
    /// What went wrong.
    pub kind: GzipErrorKind,
    /// Where: the start of the header field, deflate data or trailer concerned.
    pub offset: usize,
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            GzipErrorKind::Truncated => "truncated gzip data",
            GzipErrorKind::BadMethod => "gzip compression method is not deflate",
            GzipErrorKind::ReservedFlags => "reserved gzip header flags set",
            GzipErrorKind::HeaderCrc => "gzip header CRC mismatch",
            GzipErrorKind::Corrupt => "corrupt deflate data",
            GzipErrorKind::CrcMismatch => "gzip CRC-32 mismatch",
            GzipErrorKind::SizeMismatch => "gzip length mismatch",
            GzipErrorKind::TooLarge => "gzip output exceeds the limit",
            GzipErrorKind::TrailingGarbage => "garbage after gzip data",
        };
        write!(f, "{what} at offset {}", self.offset)
    }
}

/// Whether `data` starts like a gzip member.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// `data` itself if it is not gzip-compressed, else its decompressed contents (all members
/// joined; zero bytes may pad the end). At most `limit` bytes of output.
pub fn maybe_gunzip(data: &[u8], limit: usize) -> Result<Cow<'_, [u8]>, GzipError> {
    if !is_gzip(data) {
        return Ok(Cow::Borrowed(data));
    }
    let (out, used) = gunzip(data, limit)?;
    match data[used..].iter().position(|&b| b != 0) {
        Some(at) => Err(GzipError { kind: GzipErrorKind::TrailingGarbage, offset: used + at }),
        None => Ok(Cow::Owned(out)),
    }
}

/// Decompresses the gzip members at the start of `data`, one after another as long as
/// another member follows, into at most `limit` bytes. Returns the output and how many input
/// bytes the members took; what follows them is the caller's.
pub fn gunzip(data: &[u8], limit: usize) -> Result<(Vec<u8>, usize), GzipError> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        pos +=
            member(&data[pos..], &mut out, limit).map_err(|e| GzipError { offset: e.offset + pos, ..e })?;
        if !is_gzip(&data[pos..]) {
            return Ok((out, pos));
        }
    }
}

/// Decodes one member at the start of `data`, appending to `out`; returns its length.
fn member(data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, GzipError> {
    let err = |kind, offset| GzipError { kind, offset };
    let truncated = |offset| err(GzipErrorKind::Truncated, offset);
    let header = data.get(..10).ok_or(truncated(0))?;
    if header[2] != CM_DEFLATE {
        return Err(err(GzipErrorKind::BadMethod, 2));
    }
    let flags = header[3];
    if flags & FRESERVED != 0 {
        return Err(err(GzipErrorKind::ReservedFlags, 3));
    }
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let xlen = data.get(pos..pos + 2).ok_or(truncated(pos))?;
        pos += 2 + u16::from_le_bytes([xlen[0], xlen[1]]) as usize;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let len = data.get(pos..).and_then(|s| s.iter().position(|&b| b == 0)).ok_or(truncated(pos))?;
            pos += len + 1;
        }
    }
    if flags & FHCRC != 0 {
        let stored = data.get(pos..pos + 2).ok_or(truncated(pos))?;
        if u16::from_le_bytes([stored[0], stored[1]]) != crc32(&data[..pos]) as u16 {
            return Err(err(GzipErrorKind::HeaderCrc, pos));
        }
        pos += 2;
    }
    let deflate = data.get(pos..).ok_or(truncated(pos))?;
    let start = out.len();
    let used = inflate(deflate, out, limit).map_err(|kind| err(kind, pos))?;
    pos += used;

    let trailer = data.get(pos..pos + 8).ok_or(truncated(pos))?;
    let word =
        |at: usize| u32::from_le_bytes([trailer[at], trailer[at + 1], trailer[at + 2], trailer[at + 3]]);
    if word(0) != crc32(&out[start..]) {
        return Err(err(GzipErrorKind::CrcMismatch, pos));
    }
    if word(4) != (out.len() - start) as u32 {
        return Err(err(GzipErrorKind::SizeMismatch, pos + 4));
    }
    Ok(pos + 8)
}

/// Inflates the raw deflate stream at the start of `input`, appending to `out` (which never
/// grows past `limit`); returns how many input bytes the stream took.
fn inflate(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, GzipErrorKind> {
    // The whole output vector is the window: back-references reach into it directly.
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let mut state = Box::<DecompressorOxide>::default();
    let mut in_pos = 0;
    let mut out_pos = out.len();
    out.resize(limit.min(out_pos.saturating_add(input.len().saturating_mul(4)).max(4096)), 0);
    loop {
        let (status, read, written) = decompress(&mut state, &input[in_pos..], out, out_pos, flags);
        in_pos += read;
        out_pos += written;
        let failure = match status {
            TINFLStatus::Done => {
                out.truncate(out_pos);
                return Ok(in_pos);
            }
            TINFLStatus::HasMoreOutput if out.len() < limit => {
                out.resize(out.len().saturating_mul(2).min(limit), 0);
                continue;
            }
            TINFLStatus::HasMoreOutput => GzipErrorKind::TooLarge,
            TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => GzipErrorKind::Truncated,
            _ => GzipErrorKind::Corrupt,
        };
        out.truncate(out_pos);
        return Err(failure);
    }
}

/// The CRC-32 (IEEE 802.3, as gzip and zlib use) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// Extends a CRC-32 computed over earlier bytes with `data` (start from 0).
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    !data.iter().fold(!crc, |c, &b| CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// The byte-at-a-time table of the reflected polynomial 0xEDB88320.
static CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Compresses `data` with the host's gzip, or `None` (with a message) without one.
    fn host_gzip(data: &[u8], extra_args: &[&str]) -> Option<Vec<u8>> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let child = Command::new("gzip")
            .args(["-c", "-n"])
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            panic!("gzip is missing on this host: install Debian's gzip");
        };
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        Some(out.stdout)
    }

    /// Some compressible, not entirely regular data.
    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn crc32_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32_update(crc32(b"1234"), b"56789"), 0xcbf4_3926);
    }

    #[test]
    fn not_gzip_is_borrowed() {
        let data = b"070701...";
        assert!(matches!(maybe_gunzip(data, 10), Ok(Cow::Borrowed(d)) if d == data));
    }

    #[test]
    fn host_gzip_round_trip() {
        let data = sample(300_000);
        let Some(gz) = host_gzip(&data, &["-9"]) else { return };
        assert_eq!(*maybe_gunzip(&gz, 1 << 20).unwrap(), data[..]);
        let mut padded = gz.clone();
        padded.extend([0; 13]);
        assert_eq!(*maybe_gunzip(&padded, 1 << 20).unwrap(), data[..]);
        assert_eq!(maybe_gunzip(&padded, data.len()).unwrap().len(), data.len(), "exact limit");
        assert_eq!(maybe_gunzip(&gz, data.len() - 1).unwrap_err().kind, GzipErrorKind::TooLarge);
        let empty = host_gzip(b"", &[]).unwrap();
        assert!(maybe_gunzip(&empty, 0).unwrap().is_empty());
    }

    #[test]
    fn concatenated_members_join() {
        let (a, b) = (sample(70_000), b"second member".to_vec());
        let (Some(ga), Some(gb)) = (host_gzip(&a, &[]), host_gzip(&b, &["-1"])) else { return };
        let mut both = ga.clone();
        both.extend(&gb);
        let mut joined = a.clone();
        joined.extend(&b);
        assert_eq!(*maybe_gunzip(&both, 1 << 20).unwrap(), joined[..]);
        let (out, used) = gunzip(&[&both[..], b"070701"].concat(), 1 << 20).unwrap();
        assert_eq!((out.len(), used), (joined.len(), both.len()), "stops where the members end");
        let garbage = [&ga[..], b"\0\0junk"].concat();
        assert_eq!(
            maybe_gunzip(&garbage, 1 << 20).unwrap_err(),
            GzipError { kind: GzipErrorKind::TrailingGarbage, offset: ga.len() + 2 }
        );
    }

    /// A stored (uncompressed) deflate member of `data` with the given header flags and
    /// optional fields.
    fn stored_member(data: &[u8], flags: u8, fields: &[u8]) -> Vec<u8> {
        let mut m = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
        m.extend(fields);
        if flags & FHCRC != 0 {
            let crc = crc32(&m) as u16;
            m.extend(crc.to_le_bytes());
        }
        m.push(1); // final stored block
        m.extend((data.len() as u16).to_le_bytes());
        m.extend((!(data.len() as u16)).to_le_bytes());
        m.extend(data);
        m.extend(crc32(data).to_le_bytes());
        m.extend((data.len() as u32).to_le_bytes());
        m
    }

    #[test]
    fn header_fields_are_skipped_and_checked() {
        let fields = [&[3, 0, b'x', b'y', b'z'][..], b"name\0", b"a comment\0"].concat();
        let m = stored_member(b"hello", FEXTRA | FNAME | FCOMMENT | FHCRC, &fields);
        assert_eq!(*maybe_gunzip(&m, 100).unwrap(), *b"hello");

        let mut bad_hcrc = m.clone();
        bad_hcrc[10 + fields.len()] ^= 1;
        assert_eq!(maybe_gunzip(&bad_hcrc, 100).unwrap_err().kind, GzipErrorKind::HeaderCrc);
        let mut method = m.clone();
        method[2] = 7;
        assert_eq!(
            maybe_gunzip(&method, 100).unwrap_err(),
            GzipError { kind: GzipErrorKind::BadMethod, offset: 2 }
        );
        let mut reserved = m.clone();
        reserved[3] |= 0x20;
        assert_eq!(maybe_gunzip(&reserved, 100).unwrap_err().kind, GzipErrorKind::ReservedFlags);
    }

    #[test]
    fn damage_is_detected() {
        let m = stored_member(b"hello world", 0, &[]);
        let n = m.len();
        let kind = |d: &[u8]| maybe_gunzip(d, 100).unwrap_err().kind;
        let mut crc = m.clone();
        crc[n - 8] ^= 1;
        assert_eq!(kind(&crc), GzipErrorKind::CrcMismatch);
        let mut size = m.clone();
        size[n - 4] ^= 1;
        assert_eq!(kind(&size), GzipErrorKind::SizeMismatch);
        let mut data = m.clone();
        data[16] ^= 1;
        assert_eq!(kind(&data), GzipErrorKind::CrcMismatch);
        let mut block = m.clone();
        block[10] = 0x07; // reserved block type 3
        assert_eq!(kind(&block), GzipErrorKind::Corrupt);
        for cut in [2, 5, 12, 20, n - 3] {
            assert_eq!(kind(&m[..cut]), GzipErrorKind::Truncated, "cut at {cut}");
        }
        let named = stored_member(b"x", FNAME, b"no terminator");
        assert_eq!(kind(&named[..20]), GzipErrorKind::Truncated);
    }

    #[test]
    fn bombs_are_stopped() {
        let zeros = vec![0u8; 4 << 20];
        let Some(gz) = host_gzip(&zeros, &["-9"]) else { return };
        assert!(gz.len() < 8192);
        let err = maybe_gunzip(&gz, 1 << 20).unwrap_err();
        assert_eq!(err.kind, GzipErrorKind::TooLarge);
        assert_eq!(maybe_gunzip(&gz, 4 << 20).unwrap().len(), 4 << 20);
    }
}
