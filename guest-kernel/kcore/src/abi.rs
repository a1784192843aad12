//! The Linux x86-64 user ABI structures the syscall layer reads and writes.
//!
//! Encoders turn kernel values into the exact little-endian bytes of the C structure (as
//! fixed-size arrays, ready to copy to user memory); decoders read the structures programs
//! pass in, from bytes the kernel copied from user memory. A decoder given fewer bytes than
//! its structure returns `EFAULT`. Layouts are those of the kernel's x86-64 UAPI, which glibc
//! uses unchanged; the tests compare them with the host's libc.

use crate::errno::{Errno, KResult};
use crate::vfs::{Metadata, StatFs, Timespec, major, minor};
use alloc::vec::Vec;

/// Writes `bytes` at `at` of `buf`.
fn put<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    buf[at..at + N].copy_from_slice(&bytes);
}

/// The `N` bytes at `at` of `buf` (which the caller made long enough).
fn get<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

/// `bytes` if it holds at least `len` bytes, else `EFAULT`.
fn need(bytes: &[u8], len: usize) -> KResult<&[u8]> {
    bytes.get(..len).ok_or(Errno::EFAULT)
}

/// Size of `struct stat`.
pub const STAT_SIZE: usize = 144;

/// `struct stat` for an inode on device `dev` (`st_dev`).
pub fn encode_stat(md: &Metadata, dev: u64) -> [u8; STAT_SIZE] {
    let mut b = [0; STAT_SIZE];
    put(&mut b, 0, dev.to_le_bytes());
    put(&mut b, 8, md.ino.to_le_bytes());
    put(&mut b, 16, (md.nlink as u64).to_le_bytes());
    put(&mut b, 24, md.mode.to_le_bytes());
    put(&mut b, 28, md.uid.to_le_bytes());
    put(&mut b, 32, md.gid.to_le_bytes());
    put(&mut b, 40, md.rdev.to_le_bytes());
    put(&mut b, 48, md.size.to_le_bytes());
    put(&mut b, 56, (md.blksize as u64).to_le_bytes());
    put(&mut b, 64, md.blocks.to_le_bytes());
    for (at, t) in [(72, md.atime), (88, md.mtime), (104, md.ctime)] {
        put(&mut b, at, t.sec.to_le_bytes());
        put(&mut b, at + 8, (t.nsec as u64).to_le_bytes());
    }
    b
}

/// Size of `struct statx`.
pub const STATX_STRUCT_SIZE: usize = 256;
/// `statx` mask bit: `stx_mode & S_IFMT`.
pub const STATX_TYPE: u32 = 0x1;
/// `statx` mask bit: `stx_mode & !S_IFMT`.
pub const STATX_MODE: u32 = 0x2;
/// `statx` mask bit: `stx_nlink`.
pub const STATX_NLINK: u32 = 0x4;
/// `statx` mask bit: `stx_uid`.
pub const STATX_UID: u32 = 0x8;
/// `statx` mask bit: `stx_gid`.
pub const STATX_GID: u32 = 0x10;
/// `statx` mask bit: `stx_atime`.
pub const STATX_ATIME: u32 = 0x20;
/// `statx` mask bit: `stx_mtime`.
pub const STATX_MTIME: u32 = 0x40;
/// `statx` mask bit: `stx_ctime`.
pub const STATX_CTIME: u32 = 0x80;
/// `statx` mask bit: `stx_ino`.
pub const STATX_INO: u32 = 0x100;
/// `statx` mask bit: `stx_size`.
pub const STATX_SIZE: u32 = 0x200;
/// `statx` mask bit: `stx_blocks`.
pub const STATX_BLOCKS: u32 = 0x400;
/// Everything `struct stat` has.
pub const STATX_BASIC_STATS: u32 = 0x7ff;
/// `statx` mask bit: `stx_btime` (never reported here).
pub const STATX_BTIME: u32 = 0x800;
/// `statx` mask bit: `stx_mnt_id`.
pub const STATX_MNT_ID: u32 = 0x1000;
/// A mask bit reserved for future extension: asking for it is `EINVAL`.
pub const STATX_RESERVED: u32 = 0x8000_0000;

/// `struct statx` for an inode on device `dev` in mount `mnt_id`. Like Linux, all basic
/// fields are filled whatever `request_mask` asks, and `stx_mask` says which those are
/// ([`STATX_BASIC_STATS`] and [`STATX_MNT_ID`]; no birth time). `EINVAL` if the request has
/// the reserved bit.
pub fn encode_statx(
    md: &Metadata,
    dev: u64,
    request_mask: u32,
    mnt_id: u64,
) -> KResult<[u8; STATX_STRUCT_SIZE]> {
    if request_mask & STATX_RESERVED != 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = [0; STATX_STRUCT_SIZE];
    put(&mut b, 0, (STATX_BASIC_STATS | STATX_MNT_ID).to_le_bytes());
    put(&mut b, 4, md.blksize.to_le_bytes());
    put(&mut b, 16, md.nlink.to_le_bytes());
    put(&mut b, 20, md.uid.to_le_bytes());
    put(&mut b, 24, md.gid.to_le_bytes());
    put(&mut b, 28, (md.mode as u16).to_le_bytes());
    put(&mut b, 32, md.ino.to_le_bytes());
    put(&mut b, 40, md.size.to_le_bytes());
    put(&mut b, 48, md.blocks.to_le_bytes());
    for (at, t) in [(64, md.atime), (96, md.ctime), (112, md.mtime)] {
        put(&mut b, at, t.sec.to_le_bytes());
        put(&mut b, at + 8, t.nsec.to_le_bytes());
    }
    put(&mut b, 128, major(md.rdev).to_le_bytes());
    put(&mut b, 132, minor(md.rdev).to_le_bytes());
    put(&mut b, 136, major(dev).to_le_bytes());
    put(&mut b, 140, minor(dev).to_le_bytes());
    put(&mut b, 144, mnt_id.to_le_bytes());
    Ok(b)
}

/// One `struct linux_dirent64` to encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dirent64<'a> {
    /// Inode number.
    pub ino: u64,
    /// The directory offset of the *next* entry (where a later `getdents64` or `lseek`
    /// resumes).
    pub off: i64,
    /// `d_type` (`DT_xxx`, see [`crate::vfs::FileType::dirent_type`]).
    pub kind: u8,
    /// The name, without NUL.
    pub name: &'a [u8],
}

impl Dirent64<'_> {
    /// `d_reclen`: the header, the name, its NUL, padded to 8 bytes.
    pub const fn reclen(&self) -> usize {
        (19 + self.name.len() + 1 + 7) & !7
    }

    /// Writes the record at the start of `buf`; its length, or `None` if it does not fit.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.reclen();
        let rec = buf.get_mut(..len)?;
        rec.fill(0);
        put(rec, 0, self.ino.to_le_bytes());
        put(rec, 8, self.off.to_le_bytes());
        put(rec, 16, (len as u16).to_le_bytes());
        rec[18] = self.kind;
        rec[19..19 + self.name.len()].copy_from_slice(self.name);
        Some(len)
    }
}

/// Fills `buf` with as many records from `entries` as fit, for `getdents64`. Returns the
/// bytes written and the number of entries written; the first entry that did not fit is
/// consumed from the iterator but not written (resume from the last written entry's `off`).
/// `EINVAL` if not even the first entry fits, as Linux says for a too-small buffer.
pub fn fill_dirents64<'a>(
    buf: &mut [u8],
    entries: impl IntoIterator<Item = Dirent64<'a>>,
) -> KResult<(usize, usize)> {
    let (mut used, mut count) = (0, 0);
    for entry in entries {
        match entry.encode(&mut buf[used..]) {
            Some(len) => {
                used += len;
                count += 1;
            }
            None if count == 0 => return Err(Errno::EINVAL),
            None => break,
        }
    }
    Ok((used, count))
}

/// Size of one `struct utsname` field, NUL included.
pub const UTS_FIELD: usize = 65;
/// Size of `struct utsname`.
pub const UTSNAME_SIZE: usize = 6 * UTS_FIELD;

/// The contents of `struct utsname` (`uname`); each field is cut to 64 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Utsname<'a> {
    /// `sysname` (`"Linux"`).
    pub sysname: &'a [u8],
    /// `nodename` (the host name).
    pub nodename: &'a [u8],
    /// `release` (kernel version).
    pub release: &'a [u8],
    /// `version` (build description).
    pub version: &'a [u8],
    /// `machine` (`"x86_64"`).
    pub machine: &'a [u8],
    /// `domainname` (NIS domain, `"(none)"`).
    pub domainname: &'a [u8],
}

/// `struct utsname`.
pub fn encode_utsname(u: &Utsname) -> [u8; UTSNAME_SIZE] {
    let mut b = [0; UTSNAME_SIZE];
    let fields = [u.sysname, u.nodename, u.release, u.version, u.machine, u.domainname];
    for (field, value) in b.chunks_exact_mut(UTS_FIELD).zip(fields) {
        let n = value.len().min(UTS_FIELD - 1);
        field[..n].copy_from_slice(&value[..n]);
    }
    b
}

/// Size of `struct sysinfo`.
pub const SYSINFO_SIZE: usize = 112;

/// The contents of `struct sysinfo`; memory sizes are in `mem_unit` bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sysinfo {
    /// Seconds since boot.
    pub uptime: i64,
    /// 1, 5 and 15 minute load averages, scaled by 65536.
    pub loads: [u64; 3],
    /// Total usable memory.
    pub totalram: u64,
    /// Free memory.
    pub freeram: u64,
    /// Shared memory.
    pub sharedram: u64,
    /// Buffer memory.
    pub bufferram: u64,
    /// Total swap.
    pub totalswap: u64,
    /// Free swap.
    pub freeswap: u64,
    /// Number of processes.
    pub procs: u16,
    /// Total high memory.
    pub totalhigh: u64,
    /// Free high memory.
    pub freehigh: u64,
    /// The unit of the memory sizes, in bytes.
    pub mem_unit: u32,
}

/// `struct sysinfo`.
pub fn encode_sysinfo(s: &Sysinfo) -> [u8; SYSINFO_SIZE] {
    let mut b = [0; SYSINFO_SIZE];
    put(&mut b, 0, s.uptime.to_le_bytes());
    let words = [
        s.loads[0],
        s.loads[1],
        s.loads[2],
        s.totalram,
        s.freeram,
        s.sharedram,
        s.bufferram,
        s.totalswap,
        s.freeswap,
    ];
    for (i, w) in words.into_iter().enumerate() {
        put(&mut b, 8 + 8 * i, w.to_le_bytes());
    }
    put(&mut b, 80, s.procs.to_le_bytes());
    put(&mut b, 88, s.totalhigh.to_le_bytes());
    put(&mut b, 96, s.freehigh.to_le_bytes());
    put(&mut b, 104, s.mem_unit.to_le_bytes());
    b
}

/// `struct timeval`: seconds and microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeval {
    /// Seconds.
    pub sec: i64,
    /// Microseconds, below 1e6.
    pub usec: i64,
}

/// Size of `struct timespec` and `struct timeval`.
pub const TIMESPEC_SIZE: usize = 16;

/// `struct timespec`.
pub fn encode_timespec(t: Timespec) -> [u8; TIMESPEC_SIZE] {
    let mut b = [0; TIMESPEC_SIZE];
    put(&mut b, 0, t.sec.to_le_bytes());
    put(&mut b, 8, (t.nsec as i64).to_le_bytes());
    b
}

/// Reads a `struct timespec`; `EINVAL` unless `0 <= tv_nsec < 1e9`.
pub fn decode_timespec(bytes: &[u8]) -> KResult<Timespec> {
    let (sec, nsec) = timespec_fields(bytes)?;
    let nsec = u32::try_from(nsec).ok().filter(|&n| n < 1_000_000_000).ok_or(Errno::EINVAL)?;
    Ok(Timespec { sec, nsec })
}

/// The two fields of a `struct timespec`, unchecked.
fn timespec_fields(bytes: &[u8]) -> KResult<(i64, i64)> {
    let b = need(bytes, TIMESPEC_SIZE)?;
    Ok((i64::from_le_bytes(get(b, 0)), i64::from_le_bytes(get(b, 8))))
}

/// `tv_nsec` that `utimensat` reads as "the current time".
pub const UTIME_NOW: i64 = (1 << 30) - 1;
/// `tv_nsec` that `utimensat` reads as "leave unchanged".
pub const UTIME_OMIT: i64 = (1 << 30) - 2;

/// One time of `utimensat`'s pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UtimeSpec {
    /// Set to the current time.
    Now,
    /// Leave unchanged.
    Omit,
    /// Set to this time.
    Set(Timespec),
}

/// Reads one `struct timespec` of `utimensat`, honouring [`UTIME_NOW`] and [`UTIME_OMIT`];
/// `EINVAL` for any other out-of-range `tv_nsec`.
pub fn decode_utime(bytes: &[u8]) -> KResult<UtimeSpec> {
    match timespec_fields(bytes)? {
        (_, UTIME_NOW) => Ok(UtimeSpec::Now),
        (_, UTIME_OMIT) => Ok(UtimeSpec::Omit),
        _ => decode_timespec(bytes).map(UtimeSpec::Set),
    }
}

/// `struct timeval`.
pub fn encode_timeval(t: Timeval) -> [u8; TIMESPEC_SIZE] {
    let mut b = [0; TIMESPEC_SIZE];
    put(&mut b, 0, t.sec.to_le_bytes());
    put(&mut b, 8, t.usec.to_le_bytes());
    b
}

/// Reads a `struct timeval`; `EINVAL` unless `0 <= tv_usec < 1e6`.
pub fn decode_timeval(bytes: &[u8]) -> KResult<Timeval> {
    let (sec, usec) = timespec_fields(bytes)?;
    if !(0..1_000_000).contains(&usec) {
        return Err(Errno::EINVAL);
    }
    Ok(Timeval { sec, usec })
}

/// Size of `struct rusage`.
pub const RUSAGE_SIZE: usize = 144;

/// The contents of `struct rusage` (`getrusage`, `wait4`); the `long` counters in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rusage {
    /// User CPU time.
    pub utime: Timeval,
    /// System CPU time.
    pub stime: Timeval,
    /// Peak resident set size, KiB.
    pub maxrss: i64,
    /// Integral shared memory size (unused by Linux).
    pub ixrss: i64,
    /// Integral unshared data size (unused by Linux).
    pub idrss: i64,
    /// Integral unshared stack size (unused by Linux).
    pub isrss: i64,
    /// Minor page faults.
    pub minflt: i64,
    /// Major page faults.
    pub majflt: i64,
    /// Swaps (unused by Linux).
    pub nswap: i64,
    /// Block input operations.
    pub inblock: i64,
    /// Block output operations.
    pub oublock: i64,
    /// Messages sent (unused by Linux).
    pub msgsnd: i64,
    /// Messages received (unused by Linux).
    pub msgrcv: i64,
    /// Signals received (unused by Linux).
    pub nsignals: i64,
    /// Voluntary context switches.
    pub nvcsw: i64,
    /// Involuntary context switches.
    pub nivcsw: i64,
}

/// `struct rusage`.
pub fn encode_rusage(r: &Rusage) -> [u8; RUSAGE_SIZE] {
    let mut b = [0; RUSAGE_SIZE];
    put(&mut b, 0, encode_timeval(r.utime));
    put(&mut b, 16, encode_timeval(r.stime));
    let counters = [
        r.maxrss, r.ixrss, r.idrss, r.isrss, r.minflt, r.majflt, r.nswap, r.inblock, r.oublock, r.msgsnd,
        r.msgrcv, r.nsignals, r.nvcsw, r.nivcsw,
    ];
    for (i, c) in counters.into_iter().enumerate() {
        put(&mut b, 32 + 8 * i, c.to_le_bytes());
    }
    b
}

/// "No limit" in a `struct rlimit`.
pub const RLIM_INFINITY: u64 = u64::MAX;
/// Size of `struct rlimit`.
pub const RLIMIT_SIZE: usize = 16;

/// A resource limit (`getrlimit`, `setrlimit`, `prlimit64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    /// Soft limit.
    pub cur: u64,
    /// Hard limit (ceiling of the soft one).
    pub max: u64,
}

/// `struct rlimit`.
pub fn encode_rlimit(r: Rlimit) -> [u8; RLIMIT_SIZE] {
    let mut b = [0; RLIMIT_SIZE];
    put(&mut b, 0, r.cur.to_le_bytes());
    put(&mut b, 8, r.max.to_le_bytes());
    b
}

/// Reads a `struct rlimit`; `EINVAL` if the soft limit exceeds the hard one.
pub fn decode_rlimit(bytes: &[u8]) -> KResult<Rlimit> {
    let b = need(bytes, RLIMIT_SIZE)?;
    let r = Rlimit { cur: u64::from_le_bytes(get(b, 0)), max: u64::from_le_bytes(get(b, 8)) };
    if r.cur > r.max {
        return Err(Errno::EINVAL);
    }
    Ok(r)
}

/// Size of `struct tms`.
pub const TMS_SIZE: usize = 32;

/// Process times in clock ticks (`times`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tms {
    /// User time.
    pub utime: i64,
    /// System time.
    pub stime: i64,
    /// User time of waited-for children.
    pub cutime: i64,
    /// System time of waited-for children.
    pub cstime: i64,
}

/// `struct tms`.
pub fn encode_tms(t: &Tms) -> [u8; TMS_SIZE] {
    let mut b = [0; TMS_SIZE];
    for (i, v) in [t.utime, t.stime, t.cutime, t.cstime].into_iter().enumerate() {
        put(&mut b, 8 * i, v.to_le_bytes());
    }
    b
}

/// Size of `struct statfs`.
pub const STATFS_SIZE: usize = 120;
/// Mount flag in `f_flags`: read-only.
pub const ST_RDONLY: u64 = 0x1;
/// Mount flag in `f_flags`: set-user-id bits ignored.
pub const ST_NOSUID: u64 = 0x2;
/// Mount flag in `f_flags`: device files unusable.
pub const ST_NODEV: u64 = 0x4;
/// Mount flag in `f_flags`: no execution.
pub const ST_NOEXEC: u64 = 0x8;
/// Mount flag in `f_flags`: synchronous writes.
pub const ST_SYNCHRONOUS: u64 = 0x10;
/// `f_flags` is valid (always set, as Linux does).
pub const ST_VALID: u64 = 0x20;
/// Mount flag in `f_flags`: no access-time updates.
pub const ST_NOATIME: u64 = 0x400;
/// Mount flag in `f_flags`: relative access-time updates.
pub const ST_RELATIME: u64 = 0x1000;

/// `struct statfs` for a file system with id `fsid` (`f_fsid`, low word first) mounted with
/// `flags` (`ST_xxx`; [`ST_VALID`] is added). `f_bavail` is `f_bfree` (nothing is reserved)
/// and `f_frsize` is the block size.
pub fn encode_statfs(s: &StatFs, fsid: u64, flags: u64) -> [u8; STATFS_SIZE] {
    let mut b = [0; STATFS_SIZE];
    let words = [
        s.magic,
        s.block_size,
        s.blocks,
        s.blocks_free,
        s.blocks_free,
        s.files,
        s.files_free,
        fsid,
        s.name_max,
    ];
    for (i, w) in words.into_iter().enumerate() {
        put(&mut b, 8 * i, w.to_le_bytes());
    }
    put(&mut b, 72, s.block_size.to_le_bytes());
    put(&mut b, 80, (flags | ST_VALID).to_le_bytes());
    b
}

/// `poll` event: data to read.
pub const POLLIN: i16 = 0x1;
/// `poll` event: urgent data to read.
pub const POLLPRI: i16 = 0x2;
/// `poll` event: writing will not block.
pub const POLLOUT: i16 = 0x4;
/// `poll` event: error (always reported).
pub const POLLERR: i16 = 0x8;
/// `poll` event: hang-up (always reported).
pub const POLLHUP: i16 = 0x10;
/// `poll` event: the descriptor is not open (always reported).
pub const POLLNVAL: i16 = 0x20;
/// `poll` event: normal data to read.
pub const POLLRDNORM: i16 = 0x40;
/// `poll` event: priority data to read.
pub const POLLRDBAND: i16 = 0x80;
/// `poll` event: normal data may be written.
pub const POLLWRNORM: i16 = 0x100;
/// `poll` event: priority data may be written.
pub const POLLWRBAND: i16 = 0x200;
/// `poll` event: the peer closed its writing end.
pub const POLLRDHUP: i16 = 0x2000;
/// Size of `struct pollfd`.
pub const POLLFD_SIZE: usize = 8;

/// One `struct pollfd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollFd {
    /// The descriptor (negative: ignored, `revents` 0).
    pub fd: i32,
    /// Requested events.
    pub events: i16,
    /// Returned events.
    pub revents: i16,
}

/// Reads an array of `struct pollfd` (all of `bytes`, whose length must be a multiple of 8,
/// else `EFAULT`).
pub fn decode_pollfds(bytes: &[u8]) -> KResult<Vec<PollFd>> {
    if !bytes.len().is_multiple_of(POLLFD_SIZE) {
        return Err(Errno::EFAULT);
    }
    Ok(bytes
        .chunks_exact(POLLFD_SIZE)
        .map(|p| PollFd {
            fd: i32::from_le_bytes(get(p, 0)),
            events: i16::from_le_bytes(get(p, 4)),
            revents: i16::from_le_bytes(get(p, 6)),
        })
        .collect())
}

/// The bytes of an array of `struct pollfd`.
pub fn encode_pollfds(fds: &[PollFd]) -> Vec<u8> {
    let mut b = alloc::vec![0; fds.len() * POLLFD_SIZE];
    for (p, fd) in b.chunks_exact_mut(POLLFD_SIZE).zip(fds) {
        put(p, 0, fd.fd.to_le_bytes());
        put(p, 4, fd.events.to_le_bytes());
        put(p, 6, fd.revents.to_le_bytes());
    }
    b
}

/// Most `struct iovec`s one call takes (`UIO_MAXIOV`).
pub const UIO_MAXIOV: usize = 1024;
/// Most bytes one read or write transfers (`MAX_RW_COUNT`: `INT_MAX` rounded down to a
/// page); longer requests are shortened to it.
pub const MAX_RW_COUNT: usize = 0x7fff_f000;
/// Size of `struct iovec`.
pub const IOVEC_SIZE: usize = 16;

/// One `struct iovec`: a user buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoVec {
    /// User address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Reads an array of `struct iovec` (all of `bytes`; a length not a multiple of 16 is
/// `EFAULT`). `EINVAL` for more than [`UIO_MAXIOV`] entries or a length that is negative as
/// `ssize_t`, as `readv`/`writev` check.
pub fn decode_iovecs(bytes: &[u8]) -> KResult<Vec<IoVec>> {
    if !bytes.len().is_multiple_of(IOVEC_SIZE) {
        return Err(Errno::EFAULT);
    }
    if bytes.len() / IOVEC_SIZE > UIO_MAXIOV {
        return Err(Errno::EINVAL);
    }
    bytes
        .chunks_exact(IOVEC_SIZE)
        .map(|v| {
            let iov = IoVec { base: u64::from_le_bytes(get(v, 0)), len: u64::from_le_bytes(get(v, 8)) };
            if iov.len > i64::MAX as u64 { Err(Errno::EINVAL) } else { Ok(iov) }
        })
        .collect()
}

/// The bytes a vectored transfer moves: the sum of the lengths, capped at
/// [`MAX_RW_COUNT`].
pub fn iov_total(iovs: &[IoVec]) -> usize {
    iovs.iter().fold(0u64, |sum, v| sum.saturating_add(v.len)).min(MAX_RW_COUNT as u64) as usize
}

/// Descriptors a `select` set can hold (`FD_SETSIZE`).
pub const FD_SETSIZE: usize = 1024;

/// How many bytes of an `fd_set` `select` reads and writes for `nfds` descriptors: the
/// bits rounded up to whole 64-bit words, as the kernel copies them.
pub const fn fd_set_len(nfds: usize) -> usize {
    nfds.div_ceil(64) * 8
}

/// Whether `fd` is in the `fd_set` bytes `set` (false past its end).
pub fn fd_isset(set: &[u8], fd: usize) -> bool {
    set.get(fd / 8).is_some_and(|byte| byte & (1 << (fd % 8)) != 0)
}

/// Adds `fd` to the `fd_set` bytes `set` (ignored past its end).
pub fn fd_set(set: &mut [u8], fd: usize) {
    if let Some(byte) = set.get_mut(fd / 8) {
        *byte |= 1 << (fd % 8);
    }
}

/// Removes `fd` from the `fd_set` bytes `set` (ignored past its end).
pub fn fd_clr(set: &mut [u8], fd: usize) {
    if let Some(byte) = set.get_mut(fd / 8) {
        *byte &= !(1 << (fd % 8));
    }
}

/// The descriptors below `nfds` in the `fd_set` bytes `set`, in ascending order.
pub fn fd_set_iter(set: &[u8], nfds: usize) -> impl Iterator<Item = usize> + '_ {
    (0..nfds.min(set.len() * 8)).filter(move |&fd| fd_isset(set, fd))
}

#[cfg(test)]
mod tests;
