use super::*;
use crate::vfs::{FileType, makedev};
use core::mem::{offset_of, size_of};

/// Asserts a libc structure's size and field offsets.
macro_rules! layout {
    ($ty:ty, $size:expr, { $($field:ident => $off:expr),* $(,)? }) => {{
        assert_eq!(size_of::<$ty>(), $size, "size of {}", stringify!($ty));
        $(assert_eq!(offset_of!($ty, $field), $off, "{}.{}", stringify!($ty), stringify!($field));)*
    }};
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(get(b, at))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(get(b, at))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(get(b, at))
}

fn metadata() -> Metadata {
    Metadata {
        ino: 0x1122_3344_5566,
        mode: FileType::CharDevice.mode_bits() | 0o620,
        nlink: 3,
        uid: 1000,
        gid: 5,
        size: 0x1_0000_0001,
        blocks: 16,
        blksize: 4096,
        rdev: makedev(136, 2),
        atime: Timespec { sec: 1_700_000_001, nsec: 11 },
        mtime: Timespec { sec: 1_700_000_002, nsec: 22 },
        ctime: Timespec { sec: -3, nsec: 999_999_999 },
    }
}

#[test]
fn stat_layout_and_encoding() {
    layout!(libc::stat, STAT_SIZE, {
        st_dev => 0, st_ino => 8, st_nlink => 16, st_mode => 24, st_uid => 28, st_gid => 32,
        st_rdev => 40, st_size => 48, st_blksize => 56, st_blocks => 64, st_atime => 72,
        st_atime_nsec => 80, st_mtime => 88, st_mtime_nsec => 96, st_ctime => 104, st_ctime_nsec => 112,
    });
    let md = metadata();
    let b = encode_stat(&md, makedev(0, 17));
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_dev)), makedev(0, 17));
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_ino)), md.ino);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_nlink)), 3);
    assert_eq!(u32_at(&b, offset_of!(libc::stat, st_mode)), 0o20620);
    assert_eq!(u32_at(&b, offset_of!(libc::stat, st_uid)), 1000);
    assert_eq!(u32_at(&b, offset_of!(libc::stat, st_gid)), 5);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_rdev)), makedev(136, 2));
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_size)), 0x1_0000_0001);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_blksize)), 4096);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_blocks)), 16);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_mtime)), 1_700_000_002);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_mtime_nsec)), 22);
    assert_eq!(u64_at(&b, offset_of!(libc::stat, st_ctime)) as i64, -3);
    assert_eq!(b[120..], [0; 24], "reserved words");
}

#[test]
fn statx_layout_and_mask() {
    layout!(libc::statx, STATX_STRUCT_SIZE, {
        stx_mask => 0, stx_blksize => 4, stx_attributes => 8, stx_nlink => 16, stx_uid => 20,
        stx_gid => 24, stx_mode => 28, stx_ino => 32, stx_size => 40, stx_blocks => 48,
        stx_attributes_mask => 56, stx_atime => 64, stx_btime => 80, stx_ctime => 96, stx_mtime => 112,
        stx_rdev_major => 128, stx_rdev_minor => 132, stx_dev_major => 136, stx_dev_minor => 140,
        stx_mnt_id => 144,
    });
    layout!(libc::statx_timestamp, 16, { tv_sec => 0, tv_nsec => 8 });
    let md = metadata();
    let b = encode_statx(&md, makedev(8, 3), STATX_TYPE | STATX_SIZE, 42).unwrap();
    assert_eq!(u32_at(&b, 0), STATX_BASIC_STATS | STATX_MNT_ID, "basic stats whatever was asked");
    assert_eq!(u32_at(&b, 4), 4096);
    assert_eq!(u32_at(&b, 16), 3);
    assert_eq!(u16_at(&b, 28), 0o20620);
    assert_eq!(u64_at(&b, 32), md.ino);
    assert_eq!(u64_at(&b, 40), md.size);
    assert_eq!((u64_at(&b, 64), u32_at(&b, 72)), (1_700_000_001, 11), "atime");
    assert_eq!(b[80..96], [0; 16], "no birth time");
    assert_eq!((u64_at(&b, 96) as i64, u32_at(&b, 104)), (-3, 999_999_999), "ctime");
    assert_eq!((u64_at(&b, 112), u32_at(&b, 120)), (1_700_000_002, 22), "mtime");
    assert_eq!((u32_at(&b, 128), u32_at(&b, 132)), (136, 2));
    assert_eq!((u32_at(&b, 136), u32_at(&b, 140)), (8, 3));
    assert_eq!(u64_at(&b, 144), 42);
    assert_eq!(encode_statx(&md, 0, STATX_RESERVED, 0), Err(Errno::EINVAL));
}

#[test]
fn dirent64_records() {
    let names: [&[u8]; 4] = [b".", b"..", b"a-longer-name", b"12345"];
    let entries = names.iter().enumerate().map(|(i, n)| Dirent64 {
        ino: 100 + i as u64,
        off: i as i64 + 1,
        kind: 4,
        name: n,
    });
    let mut buf = [0xaau8; 256];
    let (used, count) = fill_dirents64(&mut buf, entries.clone()).unwrap();
    assert_eq!(count, 4);
    assert_eq!(used, 24 + 24 + 40 + 32);
    // Walk the records as a program would.
    let mut at = 0;
    for (i, name) in names.iter().enumerate() {
        let reclen = u16_at(&buf, at + 16) as usize;
        assert_eq!(reclen % 8, 0);
        assert_eq!(u64_at(&buf, at), 100 + i as u64);
        assert_eq!(u64_at(&buf, at + 8), i as u64 + 1);
        assert_eq!(buf[at + 18], 4);
        assert_eq!(&buf[at + 19..at + 19 + name.len()], *name);
        assert!(buf[at + 19 + name.len()..at + reclen].iter().all(|&b| b == 0), "NUL and zero padding");
        at += reclen;
    }
    // A buffer that holds two entries, then one too small for any.
    let (used, count) = fill_dirents64(&mut buf[..50], entries.clone()).unwrap();
    assert_eq!((used, count), (48, 2));
    assert_eq!(fill_dirents64(&mut buf[..23], entries.clone()), Err(Errno::EINVAL));
    assert_eq!(fill_dirents64(&mut buf, core::iter::empty()), Ok((0, 0)));
    let long = [b'x'; 255];
    assert_eq!(Dirent64 { ino: 1, off: 1, kind: 8, name: &long }.reclen(), 280);
}

#[test]
fn utsname_layout() {
    layout!(libc::utsname, UTSNAME_SIZE, {
        sysname => 0, nodename => 65, release => 130, version => 195, machine => 260, domainname => 325,
    });
    let long = [b'n'; 100];
    let u = Utsname { sysname: b"Linux", nodename: &long, machine: b"x86_64", ..Default::default() };
    let b = encode_utsname(&u);
    assert_eq!(&b[..6], b"Linux\0");
    assert_eq!(&b[65..129], &long[..64]);
    assert_eq!(b[129], 0, "cut to 64 bytes and NUL-terminated");
    assert_eq!(&b[260..267], b"x86_64\0");
}

#[test]
fn sysinfo_layout() {
    layout!(libc::sysinfo, SYSINFO_SIZE, {
        uptime => 0, loads => 8, totalram => 32, freeram => 40, sharedram => 48, bufferram => 56,
        totalswap => 64, freeswap => 72, procs => 80, totalhigh => 88, freehigh => 96, mem_unit => 104,
    });
    let s = Sysinfo {
        uptime: 77,
        loads: [1, 2, 3],
        totalram: 1 << 30,
        freeram: 5,
        procs: 9,
        mem_unit: 1,
        ..Default::default()
    };
    let b = encode_sysinfo(&s);
    assert_eq!((u64_at(&b, 0), u64_at(&b, 24), u64_at(&b, 32), u64_at(&b, 40)), (77, 3, 1 << 30, 5));
    assert_eq!((u16_at(&b, 80), u32_at(&b, 104)), (9, 1));
}

#[test]
fn time_structures() {
    layout!(libc::timespec, TIMESPEC_SIZE, { tv_sec => 0, tv_nsec => 8 });
    layout!(libc::timeval, TIMESPEC_SIZE, { tv_sec => 0, tv_usec => 8 });
    let t = Timespec { sec: -5, nsec: 7 };
    assert_eq!(decode_timespec(&encode_timespec(t)), Ok(t));
    let raw = |sec: i64, sub: i64| [sec.to_le_bytes(), sub.to_le_bytes()].concat();
    assert_eq!(decode_timespec(&raw(1, 1_000_000_000)), Err(Errno::EINVAL));
    assert_eq!(decode_timespec(&raw(1, -1)), Err(Errno::EINVAL));
    assert_eq!(decode_timespec(&raw(1, 2)[..15]), Err(Errno::EFAULT));
    assert_eq!(decode_utime(&raw(9, UTIME_NOW)), Ok(UtimeSpec::Now));
    assert_eq!(decode_utime(&raw(9, UTIME_OMIT)), Ok(UtimeSpec::Omit));
    assert_eq!(decode_utime(&raw(9, 3)), Ok(UtimeSpec::Set(Timespec { sec: 9, nsec: 3 })));
    assert_eq!(decode_utime(&raw(9, UTIME_NOW + 1)), Err(Errno::EINVAL));
    let tv = Timeval { sec: 3, usec: 999_999 };
    assert_eq!(decode_timeval(&encode_timeval(tv)), Ok(tv));
    assert_eq!(decode_timeval(&raw(3, 1_000_000)), Err(Errno::EINVAL));

    layout!(libc::tms, TMS_SIZE, { tms_utime => 0, tms_stime => 8, tms_cutime => 16, tms_cstime => 24 });
    let b = encode_tms(&Tms { utime: 1, stime: 2, cutime: 3, cstime: 4 });
    assert_eq!([u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16), u64_at(&b, 24)], [1, 2, 3, 4]);
}

#[test]
fn rusage_layout() {
    layout!(libc::rusage, RUSAGE_SIZE, {
        ru_utime => 0, ru_stime => 16, ru_maxrss => 32, ru_minflt => 64, ru_majflt => 72,
        ru_inblock => 88, ru_oublock => 96, ru_nvcsw => 128, ru_nivcsw => 136,
    });
    let r = Rusage {
        utime: Timeval { sec: 1, usec: 2 },
        stime: Timeval { sec: 3, usec: 4 },
        maxrss: 5,
        minflt: 6,
        nivcsw: 7,
        ..Default::default()
    };
    let b = encode_rusage(&r);
    assert_eq!([u64_at(&b, 0), u64_at(&b, 8), u64_at(&b, 16), u64_at(&b, 24)], [1, 2, 3, 4]);
    assert_eq!((u64_at(&b, 32), u64_at(&b, 64), u64_at(&b, 136)), (5, 6, 7));
}

#[test]
fn rlimit_round_trip() {
    layout!(libc::rlimit, RLIMIT_SIZE, { rlim_cur => 0, rlim_max => 8 });
    let r = Rlimit { cur: 1024, max: RLIM_INFINITY };
    assert_eq!(decode_rlimit(&encode_rlimit(r)), Ok(r));
    assert_eq!(libc::RLIM_INFINITY, RLIM_INFINITY);
    assert_eq!(decode_rlimit(&encode_rlimit(Rlimit { cur: 2, max: 1 })), Err(Errno::EINVAL));
    assert_eq!(decode_rlimit(&[0; 8]), Err(Errno::EFAULT));
}

#[test]
fn statfs_layout() {
    layout!(libc::statfs, STATFS_SIZE, {
        f_type => 0, f_bsize => 8, f_blocks => 16, f_bfree => 24, f_bavail => 32, f_files => 40,
        f_ffree => 48, f_fsid => 56, f_namelen => 64, f_frsize => 72,
    });
    let s = StatFs {
        magic: 0x0102_1994,
        block_size: 4096,
        blocks: 100,
        blocks_free: 60,
        files: 50,
        files_free: 40,
        name_max: 255,
    };
    let b = encode_statfs(&s, 0x0000_0002_0000_0001, ST_RDONLY | ST_NOSUID);
    let words: Vec<u64> = (0..11).map(|i| u64_at(&b, 8 * i)).collect();
    assert_eq!(words, [0x0102_1994, 4096, 100, 60, 60, 50, 40, 0x0000_0002_0000_0001, 255, 4096, 0x23]);
    assert_eq!((u32_at(&b, 56), u32_at(&b, 60)), (1, 2), "f_fsid.val[0], val[1]");
    assert_eq!(b[88..], [0; 32]);
    assert_eq!(
        [ST_RDONLY, ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_SYNCHRONOUS, ST_NOATIME, ST_RELATIME],
        [
            libc::ST_RDONLY,
            libc::ST_NOSUID,
            libc::ST_NODEV,
            libc::ST_NOEXEC,
            libc::ST_SYNCHRONOUS,
            libc::ST_NOATIME,
            libc::ST_RELATIME
        ]
    );
}

#[test]
fn pollfd_arrays() {
    layout!(libc::pollfd, POLLFD_SIZE, { fd => 0, events => 4, revents => 6 });
    assert_eq!(
        [
            POLLIN, POLLPRI, POLLOUT, POLLERR, POLLHUP, POLLNVAL, POLLRDNORM, POLLRDBAND, POLLWRNORM,
            POLLWRBAND, POLLRDHUP
        ],
        [
            libc::POLLIN,
            libc::POLLPRI,
            libc::POLLOUT,
            libc::POLLERR,
            libc::POLLHUP,
            libc::POLLNVAL,
            libc::POLLRDNORM,
            libc::POLLRDBAND,
            libc::POLLWRNORM,
            libc::POLLWRBAND,
            libc::POLLRDHUP,
        ]
    );
    let fds =
        [PollFd { fd: 0, events: POLLIN, revents: 0 }, PollFd { fd: -1, events: POLLOUT, revents: POLLNVAL }];
    let b = encode_pollfds(&fds);
    assert_eq!(b.len(), 16);
    assert_eq!(u32_at(&b, 8), u32::MAX);
    assert_eq!(decode_pollfds(&b).unwrap(), fds);
    assert_eq!(decode_pollfds(&b[..12]), Err(Errno::EFAULT));
    assert_eq!(decode_pollfds(&[]), Ok(Vec::new()));
}

#[test]
fn iovec_arrays() {
    layout!(libc::iovec, IOVEC_SIZE, { iov_base => 0, iov_len => 8 });
    let raw = |v: &[(u64, u64)]| {
        v.iter().flat_map(|&(b, l)| [b.to_le_bytes(), l.to_le_bytes()]).flatten().collect::<Vec<u8>>()
    };
    let iovs = decode_iovecs(&raw(&[(0x1000, 10), (0x2000, 0), (0x3000, 5)])).unwrap();
    assert_eq!(iovs[2], IoVec { base: 0x3000, len: 5 });
    assert_eq!(iov_total(&iovs), 15);
    assert_eq!(iov_total(&[IoVec { base: 0, len: i64::MAX as u64 }; 2]), MAX_RW_COUNT);
    assert_eq!(decode_iovecs(&raw(&[(0, 1 << 63)])), Err(Errno::EINVAL));
    assert_eq!(decode_iovecs(&raw(&[(0, 1); UIO_MAXIOV + 1])), Err(Errno::EINVAL));
    assert_eq!(decode_iovecs(&raw(&[(0, 1); UIO_MAXIOV])).map(|v| v.len()), Ok(UIO_MAXIOV));
    assert_eq!(decode_iovecs(&[0; 17]), Err(Errno::EFAULT));
    assert_eq!(libc::UIO_MAXIOV as usize, UIO_MAXIOV);
}

#[test]
fn fd_set_bits() {
    assert_eq!(FD_SETSIZE, libc::FD_SETSIZE);
    assert_eq!(size_of::<libc::fd_set>(), fd_set_len(FD_SETSIZE));
    assert_eq!((fd_set_len(0), fd_set_len(1), fd_set_len(64), fd_set_len(65)), (0, 8, 8, 16));
    let mut set = [0u8; 16];
    for fd in [0, 7, 8, 63, 64, 127] {
        fd_set(&mut set, fd);
    }
    fd_set(&mut set, 500); // past the end: ignored
    assert!(fd_isset(&set, 63) && !fd_isset(&set, 62) && !fd_isset(&set, 500));
    // Bit fd % 64 of little-endian word fd / 64, as the C macros set it.
    assert_eq!(u64::from_le_bytes(get(&set, 0)), 1 | 1 << 7 | 1 << 8 | 1 << 63);
    assert_eq!(u64::from_le_bytes(get(&set, 8)), 1 | 1 << 63);
    fd_clr(&mut set, 7);
    assert_eq!(fd_set_iter(&set, 128).collect::<Vec<_>>(), [0, 8, 63, 64, 127]);
    assert_eq!(fd_set_iter(&set, 64).collect::<Vec<_>>(), [0, 8, 63]);
}
