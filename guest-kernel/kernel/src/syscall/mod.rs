//! The Linux x86-64 system-call interface.
//!
//! Numbers and conventions are Linux's: number in rax, arguments in rdi, rsi, rdx, r10, r8,
//! r9, result (or -errno) in rax. Every user pointer goes through [`User`], which faults
//! pages in and turns bad addresses into `EFAULT`. Unknown calls return -ENOSYS and are
//! logged once each with their name. docs/syscalls.md is the table of what is implemented.

mod fs;
mod mem;
mod proc;
mod time;

pub use fs::describe as describe_file;

use crate::arch::trap::TrapFrame;
use crate::process::sched;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spinning_top::Spinlock;
use umlvm_kcore::errno::{Errno, KResult};

/// The arguments of a call.
pub type Args = [u64; 6];

/// Bitmap of unknown syscall numbers already logged (0..512).
static LOGGED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Access to the current process's user memory.
pub struct User {
    mm: Arc<Spinlock<crate::mm::vm::MemSpace>>,
}

/// Longest path accepted.
pub const PATH_MAX: usize = 4096;

impl User {
    /// The current process's memory.
    pub fn current() -> KResult<Self> {
        Ok(Self { mm: sched::current().proc.mm().ok_or(Errno::EFAULT)? })
    }

    /// Reads `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> KResult<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.mm.lock().read(addr, &mut v)?;
        Ok(v)
    }

    /// Reads into `buf`.
    pub fn read_into(&self, addr: u64, buf: &mut [u8]) -> KResult<()> {
        self.mm.lock().read(addr, buf)
    }

    /// Writes `bytes` at `addr`.
    pub fn write(&self, addr: u64, bytes: &[u8]) -> KResult<()> {
        self.mm.lock().write(addr, bytes)
    }

    /// Reads a u64.
    pub fn read_u64(&self, addr: u64) -> KResult<u64> {
        let mut b = [0u8; 8];
        self.read_into(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads an i32.
    pub fn read_i32(&self, addr: u64) -> KResult<i32> {
        let mut b = [0u8; 4];
        self.read_into(addr, &mut b)?;
        Ok(i32::from_le_bytes(b))
    }

    /// Writes a u64.
    pub fn write_u64(&self, addr: u64, v: u64) -> KResult<()> {
        self.write(addr, &v.to_le_bytes())
    }

    /// Writes an i32.
    pub fn write_i32(&self, addr: u64, v: i32) -> KResult<()> {
        self.write(addr, &v.to_le_bytes())
    }

    /// A NUL-terminated string (paths: at most [`PATH_MAX`]).
    pub fn cstr(&self, addr: u64) -> KResult<Vec<u8>> {
        if addr == 0 {
            return Err(Errno::EFAULT);
        }
        self.mm.lock().read_cstr(addr, PATH_MAX)
    }

    /// A NULL-terminated array of strings (argv, envp).
    pub fn cstr_array(&self, addr: u64) -> KResult<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        let mut total = 0usize;
        for i in 0.. {
            let p = self.read_u64(addr + 8 * i)?;
            if p == 0 {
                break;
            }
            let s = self
                .mm
                .lock()
                .read_cstr(p, 128 * 1024)
                .map_err(|e| if e == Errno::ENAMETOOLONG { Errno::E2BIG } else { e })?;
            total += s.len() + 1;
            if total > 2 << 20 {
                return Err(Errno::E2BIG);
            }
            out.push(s);
        }
        Ok(out)
    }
}

/// Handles the syscall in `frame` for the current task.
pub fn dispatch(frame: &mut TrapFrame) {
    let nr = frame.rax;
    let args: Args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    {
        let me = sched::current();
        let mut i = me.proc.inner.lock();
        i.orig_rax = nr as i64;
        i.stats.syscalls += 1;
    }
    let result = call(nr, args, frame);
    frame.rax = match result {
        Ok(v) => v,
        Err(e) => e.as_syscall_return(),
    };
}

fn call(nr: u64, a: Args, frame: &mut TrapFrame) -> KResult<u64> {
    match nr {
        0 => fs::read(a[0] as i32, a[1], a[2]),
        1 => fs::write(a[0] as i32, a[1], a[2]),
        2 => fs::openat(fs::AT_FDCWD, a[0], a[1] as u32, a[2] as u32),
        3 => fs::close(a[0] as i32),
        4 => fs::fstatat(fs::AT_FDCWD, a[0], a[1], 0),
        5 => fs::fstat(a[0] as i32, a[1]),
        6 => fs::fstatat(fs::AT_FDCWD, a[0], a[1], fs::AT_SYMLINK_NOFOLLOW),
        7 => fs::poll(a[0], a[1], a[2] as i32 as i64),
        8 => fs::lseek(a[0] as i32, a[1] as i64, a[2] as u32),
        9 => mem::mmap(a),
        10 => mem::mprotect(a[0], a[1], a[2]),
        11 => mem::munmap(a[0], a[1]),
        12 => mem::brk(a[0]),
        13 => proc::rt_sigaction(a[0], a[1], a[2], a[3]),
        14 => proc::rt_sigprocmask(a[0], a[1], a[2], a[3]),
        15 => proc::rt_sigreturn(frame),
        16 => fs::ioctl(a[0] as i32, a[1], a[2]),
        17 => fs::pread(a[0] as i32, a[1], a[2], a[3]),
        18 => fs::pwrite(a[0] as i32, a[1], a[2], a[3]),
        19 => fs::readv(a[0] as i32, a[1], a[2]),
        20 => fs::writev(a[0] as i32, a[1], a[2]),
        21 => fs::faccessat(fs::AT_FDCWD, a[0], a[1] as u32),
        22 => fs::pipe2(a[0], 0),
        23 => fs::select(a[0] as i32, a[1], a[2], a[3], a[4], false),
        24 => {
            sched::yield_now();
            Ok(0)
        }
        25 => mem::mremap(a[0], a[1], a[2], a[3]),
        26 => Ok(0), // msync: private mappings only
        27 => Err(Errno::ENOSYS),
        28 => Ok(0), // madvise: advice only
        32 => fs::dup(a[0] as i32),
        33 => fs::dup3(a[0] as i32, a[1] as i32, 0, true),
        34 => proc::pause(),
        35 => time::nanosleep(a[0], a[1]),
        37 => proc::alarm(a[0]),
        36 => time::getitimer(a[0] as u32, a[1]),
        38 => time::setitimer(a[0] as u32, a[1], a[2]),
        39 => Ok(u64::from(sched::current().pid)),
        40 => fs::sendfile(a[0] as i32, a[1] as i32, a[2], a[3]),
        56 => proc::clone(frame, a[0], a[1], a[2], a[3], a[4]),
        57 => proc::clone(frame, 17, 0, 0, 0, 0),
        58 => proc::clone(frame, 0x4000 | 0x100 | 17, 0, 0, 0, 0),
        59 => proc::execve(frame, fs::AT_FDCWD, a[0], a[1], a[2]),
        60 | 231 => crate::process::exit(((a[0] & 0xff) << 8) as i32),
        61 => proc::wait4(a[0] as i32 as i64, a[1], a[2], a[3]),
        62 => proc::kill(a[0] as i32 as i64, a[1] as u32),
        63 => proc::uname(a[0]),
        72 => fs::fcntl(a[0] as i32, a[1] as u32, a[2]),
        73 => Ok(0), // flock: one machine, advisory
        74 | 75 => fs::fsync(a[0] as i32),
        76 => fs::truncate(a[0], a[1]),
        77 => fs::ftruncate(a[0] as i32, a[1]),
        79 => fs::getcwd(a[0], a[1]),
        80 => fs::chdir(a[0]),
        81 => fs::fchdir(a[0] as i32),
        82 => fs::renameat(fs::AT_FDCWD, a[0], fs::AT_FDCWD, a[1], 0),
        83 => fs::mkdirat(fs::AT_FDCWD, a[0], a[1] as u32),
        84 => fs::unlinkat(fs::AT_FDCWD, a[0], fs::AT_REMOVEDIR),
        85 => fs::openat(fs::AT_FDCWD, a[0], 0o1101, a[1] as u32),
        86 => fs::linkat(fs::AT_FDCWD, a[0], fs::AT_FDCWD, a[1], 0),
        87 => fs::unlinkat(fs::AT_FDCWD, a[0], 0),
        88 => fs::symlinkat(a[0], fs::AT_FDCWD, a[1]),
        89 => fs::readlinkat(fs::AT_FDCWD, a[0], a[1], a[2]),
        90 => fs::fchmodat(fs::AT_FDCWD, a[0], a[1] as u32),
        91 => fs::fchmod(a[0] as i32, a[1] as u32),
        92 | 94 => fs::fchownat(
            fs::AT_FDCWD,
            a[0],
            a[1] as u32,
            a[2] as u32,
            if nr == 94 { fs::AT_SYMLINK_NOFOLLOW } else { 0 },
        ),
        93 => fs::fchown(a[0] as i32, a[1] as u32, a[2] as u32),
        95 => proc::umask(a[0] as u32),
        96 => time::gettimeofday(a[0]),
        97 => proc::prlimit(0, a[0] as u32, 0, a[1]),
        98 => proc::getrusage(a[0] as i32, a[1]),
        99 => proc::sysinfo(a[0]),
        100 => proc::times(a[0]),
        102 | 107 => Ok(u64::from(sched::current().proc.inner.lock().uid)),
        104 | 108 => Ok(u64::from(sched::current().proc.inner.lock().gid)),
        105 | 106 | 113 | 114 | 117 | 119 => proc::setid(nr, a),
        109 => proc::setpgid(a[0] as u32, a[1] as u32),
        110 => Ok(u64::from(sched::current().proc.inner.lock().ppid)),
        111 => Ok(u64::from(sched::current().proc.inner.lock().pgid)),
        112 => proc::setsid(),
        115 => proc::getgroups(a[0] as i32, a[1]),
        116 => proc::setgroups(a[0] as usize, a[1]),
        118 | 120 => proc::getresid(nr, a[0], a[1], a[2]),
        121 => proc::getpgid(a[0] as u32),
        124 => proc::getsid(a[0] as u32),
        127 => proc::rt_sigpending(a[0]),
        128 => proc::rt_sigtimedwait(a[0], a[1], a[2], a[3]),
        130 => proc::rt_sigsuspend(a[0], a[1]),
        131 => proc::sigaltstack(a[0], a[1]),
        132 | 235 => fs::utimes_compat(nr, a[0], a[1]),
        133 => fs::mknodat(fs::AT_FDCWD, a[0], a[1] as u32, a[2]),
        137 => fs::statfs(a[0], a[1]),
        138 => fs::fstatfs(a[0] as i32, a[1]),
        157 => proc::prctl(a[0], a[1]),
        158 => proc::arch_prctl(a[0], a[1]),
        160 => proc::prlimit(0, a[0] as u32, a[1], 0),
        161 => fs::chroot(a[0]),
        162 => fs::sync(),
        165 => fs::mount(a[0], a[1], a[2], a[3], a[4]),
        166 => fs::umount(a[0], a[1]),
        169 => proc::reboot(a[0] as u32, a[1] as u32, a[2] as u32),
        170 => proc::sethostname(a[0], a[1]),
        186 => Ok(u64::from(sched::current().pid)),
        200 => proc::kill(a[0] as i32 as i64, a[1] as u32),
        201 => time::time(a[0]),
        202 => crate::process::futex::futex(a[0], a[1] as u32, a[2] as u32, a[3]),
        204 => proc::sched_getaffinity(a[1], a[2]),
        217 => fs::getdents64(a[0] as i32, a[1], a[2]),
        218 => {
            let me = sched::current();
            me.proc.inner.lock().clear_child_tid = a[0];
            Ok(u64::from(me.pid))
        }
        228 => time::clock_gettime(a[0] as u32, a[1]),
        229 => time::clock_getres(a[0] as u32, a[1]),
        230 => time::clock_nanosleep(a[0] as u32, a[1] as u32, a[2], a[3]),
        234 => proc::kill(a[1] as i32 as i64, a[2] as u32),
        247 => proc::waitid(a[0] as u32, a[1] as u32, a[2], a[3] as u32),
        257 => fs::openat(a[0] as i32, a[1], a[2] as u32, a[3] as u32),
        258 => fs::mkdirat(a[0] as i32, a[1], a[2] as u32),
        259 => fs::mknodat(a[0] as i32, a[1], a[2] as u32, a[3]),
        260 => fs::fchownat(a[0] as i32, a[1], a[2] as u32, a[3] as u32, a[4] as u32),
        262 => fs::fstatat(a[0] as i32, a[1], a[2], a[3] as u32),
        263 => fs::unlinkat(a[0] as i32, a[1], a[2] as u32),
        264 => fs::renameat(a[0] as i32, a[1], a[2] as i32, a[3], 0),
        265 => fs::linkat(a[0] as i32, a[1], a[2] as i32, a[3], a[4] as u32),
        266 => fs::symlinkat(a[0], a[1] as i32, a[2]),
        267 => fs::readlinkat(a[0] as i32, a[1], a[2], a[3]),
        268 => fs::fchmodat(a[0] as i32, a[1], a[2] as u32),
        269 | 439 => fs::faccessat(a[0] as i32, a[1], a[2] as u32),
        270 => fs::select(a[0] as i32, a[1], a[2], a[3], a[4], true),
        271 => fs::ppoll(a[0], a[1], a[2], a[3]),
        273 => Ok(0), // set_robust_list: recorded nowhere; no threads to clean up
        280 => fs::utimensat(a[0] as i32, a[1], a[2], a[3] as u32),
        292 => fs::dup3(a[0] as i32, a[1] as i32, a[2] as u32, false),
        293 => fs::pipe2(a[0], a[1] as u32),
        302 => proc::prlimit(a[0] as u32, a[1] as u32, a[2], a[3]),
        316 => fs::renameat(a[0] as i32, a[1], a[2] as i32, a[3], a[4] as u32),
        318 => proc::getrandom(a[0], a[1]),
        332 => fs::statx(a[0] as i32, a[1], a[2] as u32, a[3] as u32, a[4]),
        // Restartable sequences: glibc falls back when the kernel has none (documented).
        334 => Err(Errno::ENOSYS),
        _ => {
            unknown(nr);
            Err(Errno::ENOSYS)
        }
    }
}

fn unknown(nr: u64) {
    if nr < 512 {
        let bit = 1u64 << (nr % 64);
        if LOGGED[(nr / 64) as usize].fetch_or(bit, Ordering::Relaxed) & bit != 0 {
            return;
        }
    }
    let name = umlvm_kcore::sysnames::name(nr).unwrap_or("?");
    log::warn!("pid {}: unimplemented syscall {name} ({nr}), returning ENOSYS", sched::current().pid);
}
