//! Open files and file-descriptor tables: regular files and directories of the VFS, pipes,
//! terminals and the memory devices (`null`, `zero`, `full`, `random`, `urandom`).

use crate::arch::sync::IrqMutex;
use crate::process::sched;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use spinning_top::Spinlock;
use umlvm_kcore::errno::{Errno, KResult};
use umlvm_kcore::vfs::mount::Location;
use umlvm_kcore::vfs::{FileType, Inode, major, minor};

/// `open` flags used by the kernel.
pub mod oflags {
    /// Access mode mask.
    pub const ACCMODE: u32 = 3;
    /// Write only.
    pub const WRONLY: u32 = 1;
    /// Read-write.
    pub const RDWR: u32 = 2;
    /// Create.
    pub const CREAT: u32 = 0o100;
    /// Fail if it exists.
    pub const EXCL: u32 = 0o200;
    /// Do not become the controlling terminal.
    pub const NOCTTY: u32 = 0o400;
    /// Truncate.
    pub const TRUNC: u32 = 0o1000;
    /// Append.
    pub const APPEND: u32 = 0o2000;
    /// Non-blocking.
    pub const NONBLOCK: u32 = 0o4000;
    /// Must be a directory.
    pub const DIRECTORY: u32 = 0o200000;
    /// Do not follow a final symlink.
    pub const NOFOLLOW: u32 = 0o400000;
    /// Close on exec.
    pub const CLOEXEC: u32 = 0o2000000;
    /// Path only.
    pub const PATH: u32 = 0o10000000;
}

/// What an open file is.
pub enum FileKind {
    /// A VFS inode (regular file, directory, symlink with O_PATH).
    Inode(Arc<dyn Inode>),
    /// The read end of a pipe.
    PipeRead(Arc<Pipe>),
    /// The write end of a pipe.
    PipeWrite(Arc<Pipe>),
    /// A terminal (index into the tty table).
    Tty(usize),
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/dev/full`.
    Full,
    /// `/dev/random`, `/dev/urandom`.
    Random,
    /// A ubd block device (index), read and written directly.
    Block(usize),
    /// The kernel console, write-only (the built-in self-check programs' output).
    KernelConsole,
}

/// An open file description (shared by dup'ed descriptors and across fork).
pub struct OpenFile {
    /// What it is.
    pub kind: FileKind,
    /// File offset.
    pub offset: Spinlock<u64>,
    /// Status flags (`O_APPEND`, `O_NONBLOCK`, access mode).
    pub flags: AtomicU32,
    /// Where it was opened (for `fchdir`, `/proc/PID/fd`).
    pub location: Option<Location>,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        match &self.kind {
            FileKind::PipeRead(p) => p.close_reader(),
            FileKind::PipeWrite(p) => p.close_writer(),
            _ => {}
        }
    }
}

/// Readiness for poll/select.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// Data (or EOF) can be read.
    pub read: bool,
    /// Data can be written.
    pub write: bool,
    /// The other end is gone.
    pub hangup: bool,
}

impl OpenFile {
    /// A new open file.
    pub fn new(kind: FileKind, flags: u32, location: Option<Location>) -> Arc<Self> {
        Arc::new(Self { kind, offset: Spinlock::new(0), flags: AtomicU32::new(flags), location })
    }

    /// Status flags.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    fn nonblock(&self) -> bool {
        self.flags() & oflags::NONBLOCK != 0
    }

    /// Readable?
    pub fn can_read(&self) -> bool {
        self.flags() & oflags::ACCMODE != oflags::WRONLY && self.flags() & oflags::PATH == 0
    }

    /// Writable?
    pub fn can_write(&self) -> bool {
        matches!(self.flags() & oflags::ACCMODE, oflags::WRONLY | oflags::RDWR)
    }

    /// The inode, for inode-backed files.
    pub fn inode(&self) -> Option<&Arc<dyn Inode>> {
        match &self.kind {
            FileKind::Inode(i) => Some(i),
            _ => None,
        }
    }

    /// `read` at the file offset (may block).
    pub fn read(&self, buf: &mut [u8]) -> KResult<usize> {
        if !self.can_read() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            FileKind::Inode(i) => {
                if i.metadata().file_type() == FileType::Directory {
                    return Err(Errno::EISDIR);
                }
                let mut off = self.offset.lock();
                let n = i.read_at(*off, buf)?;
                *off += n as u64;
                Ok(n)
            }
            FileKind::PipeRead(p) => p.read(buf, self.nonblock()),
            FileKind::PipeWrite(_) => Err(Errno::EBADF),
            FileKind::Tty(t) => crate::tty::read(*t, buf, self.nonblock()),
            FileKind::Null => Ok(0),
            FileKind::Zero | FileKind::Full => {
                buf.fill(0);
                Ok(buf.len())
            }
            FileKind::Random => {
                crate::dev::random::fill(buf);
                Ok(buf.len())
            }
            FileKind::Block(b) => {
                let mut off = self.offset.lock();
                let n = crate::dev::block::read_bytes(*b, *off, buf)?;
                *off += n as u64;
                Ok(n)
            }
            FileKind::KernelConsole => Err(Errno::EBADF),
        }
    }

    /// `write` at the file offset (may block).
    pub fn write(&self, buf: &[u8]) -> KResult<usize> {
        if !self.can_write() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            FileKind::Inode(i) => {
                let mut off = self.offset.lock();
                if self.flags() & oflags::APPEND != 0 {
                    *off = i.metadata().size;
                }
                let n = i.write_at(*off, buf)?;
                *off += n as u64;
                Ok(n)
            }
            FileKind::PipeWrite(p) => p.write(buf, self.nonblock()),
            FileKind::PipeRead(_) => Err(Errno::EBADF),
            FileKind::Tty(t) => crate::tty::write_user(*t, buf),
            FileKind::Null | FileKind::Zero | FileKind::Random => Ok(buf.len()),
            FileKind::Full => Err(Errno::ENOSPC),
            FileKind::KernelConsole => {
                crate::console::write_bytes(buf);
                Ok(buf.len())
            }
            FileKind::Block(b) => {
                let mut off = self.offset.lock();
                let n = crate::dev::block::write_bytes(*b, *off, buf)?;
                *off += n as u64;
                Ok(n)
            }
        }
    }

    /// `pread64`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> KResult<usize> {
        if !self.can_read() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            FileKind::Inode(i) => i.read_at(offset, buf),
            FileKind::Block(b) => crate::dev::block::read_bytes(*b, offset, buf),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) | FileKind::Tty(_) => Err(Errno::ESPIPE),
            _ => self.read(buf),
        }
    }

    /// `pwrite64`.
    pub fn write_at(&self, offset: u64, buf: &[u8]) -> KResult<usize> {
        if !self.can_write() {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            FileKind::Inode(i) => i.write_at(offset, buf),
            FileKind::Block(b) => crate::dev::block::write_bytes(*b, offset, buf),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) | FileKind::Tty(_) => Err(Errno::ESPIPE),
            _ => self.write(buf),
        }
    }

    /// `lseek`.
    pub fn seek(&self, offset: i64, whence: u32) -> KResult<u64> {
        let size = match &self.kind {
            FileKind::Inode(i) => i.metadata().size,
            FileKind::Block(b) => crate::dev::block::size_bytes(*b),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) | FileKind::Tty(_) => return Err(Errno::ESPIPE),
            _ => 0,
        };
        let mut off = self.offset.lock();
        let base = match whence {
            0 => 0i64,
            1 => *off as i64,
            2 => size as i64,
            _ => return Err(Errno::EINVAL),
        };
        let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
        if new < 0 {
            return Err(Errno::EINVAL);
        }
        *off = new as u64;
        Ok(new as u64)
    }

    /// Readiness now.
    pub fn ready(&self) -> Ready {
        match &self.kind {
            FileKind::PipeRead(p) => p.ready_read(),
            FileKind::PipeWrite(p) => p.ready_write(),
            FileKind::Tty(t) => Ready { read: crate::tty::readable(*t), write: true, hangup: false },
            _ => Ready { read: true, write: true, hangup: false },
        }
    }
}

/// A pipe: a bounded byte queue with reader and writer counts.
pub struct Pipe {
    buf: IrqMutex<VecDeque<u8>>,
    readers: AtomicU32,
    writers: AtomicU32,
}

/// Pipe capacity (Linux's default).
pub const PIPE_CAPACITY: usize = 64 * 1024;

impl Pipe {
    /// A new pipe with one reader and one writer.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            buf: IrqMutex::new(VecDeque::new()),
            readers: AtomicU32::new(1),
            writers: AtomicU32::new(1),
        })
    }

    /// A fifo's pipe with one end open (the other end's count starts at zero).
    pub fn new_fifo(writer: bool) -> Arc<Self> {
        Arc::new(Self {
            buf: IrqMutex::new(VecDeque::new()),
            readers: AtomicU32::new(u32::from(!writer)),
            writers: AtomicU32::new(u32::from(writer)),
        })
    }

    /// Another open of a fifo.
    pub fn add_end(&self, writer: bool) {
        if writer {
            self.writers.fetch_add(1, Ordering::Relaxed);
        } else {
            self.readers.fetch_add(1, Ordering::Relaxed);
        }
        sched::wake_all(self.chan());
    }

    fn chan(&self) -> u64 {
        self as *const Self as u64
    }

    fn close_reader(&self) {
        self.readers.fetch_sub(1, Ordering::Relaxed);
        sched::wake_all(self.chan());
    }

    fn close_writer(&self) {
        self.writers.fetch_sub(1, Ordering::Relaxed);
        sched::wake_all(self.chan());
    }

    /// Another descriptor of an end (fork/dup share the OpenFile, so this is only for
    /// explicitly new ends).
    fn ready_read(&self) -> Ready {
        let n = self.buf.lock().len();
        let eof = self.writers.load(Ordering::Relaxed) == 0;
        Ready { read: n > 0 || eof, write: false, hangup: eof }
    }

    fn ready_write(&self) -> Ready {
        let n = self.buf.lock().len();
        let gone = self.readers.load(Ordering::Relaxed) == 0;
        Ready { read: false, write: n < PIPE_CAPACITY || gone, hangup: gone }
    }

    /// Bytes queued.
    pub fn available(&self) -> usize {
        self.buf.lock().len()
    }

    fn read(&self, out: &mut [u8], nonblock: bool) -> KResult<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let r = sched::wait_event(self.chan(), true, None, || {
            let mut b = self.buf.lock();
            if !b.is_empty() {
                let n = out.len().min(b.len());
                for (dst, src) in out.iter_mut().zip(b.drain(..n)) {
                    *dst = src;
                }
                return Some(Ok(n));
            }
            if self.writers.load(Ordering::Relaxed) == 0 {
                return Some(Ok(0));
            }
            if nonblock {
                return Some(Err(Errno::EAGAIN));
            }
            None
        });
        let r = r.map_err(|_| Errno::ERESTARTSYS)?;
        sched::wake_all(self.chan());
        r
    }

    fn write(&self, data: &[u8], nonblock: bool) -> KResult<usize> {
        let mut done = 0usize;
        while done < data.len() {
            let r = sched::wait_event(self.chan(), true, None, || {
                if self.readers.load(Ordering::Relaxed) == 0 {
                    return Some(Err(Errno::EPIPE));
                }
                let mut b = self.buf.lock();
                let room = PIPE_CAPACITY - b.len();
                // Writes up to PIPE_BUF (4096) are atomic.
                let want = (data.len() - done).min(PIPE_CAPACITY);
                if room > 0 && (room >= want.min(4096)) {
                    let n = room.min(data.len() - done);
                    b.extend(&data[done..done + n]);
                    return Some(Ok(n));
                }
                if nonblock {
                    return Some(Err(Errno::EAGAIN));
                }
                None
            });
            match r {
                Ok(Ok(n)) => {
                    done += n;
                    sched::wake_all(self.chan());
                }
                Ok(Err(Errno::EPIPE)) => {
                    let me = sched::current();
                    crate::process::signal::send(&me, umlvm_kcore::signal::SIGPIPE, 0, 0);
                    return if done > 0 { Ok(done) } else { Err(Errno::EPIPE) };
                }
                Ok(Err(e)) => return if done > 0 { Ok(done) } else { Err(e) },
                Err(_) => return if done > 0 { Ok(done) } else { Err(Errno::ERESTARTSYS) },
            }
        }
        Ok(done)
    }
}

/// One descriptor slot.
#[derive(Clone)]
pub struct Fd {
    /// The open file.
    pub file: Arc<OpenFile>,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// A process's descriptors.
#[derive(Clone, Default)]
pub struct FdTable {
    slots: Vec<Option<Fd>>,
}

/// Highest number of descriptors.
pub const MAX_FDS: usize = 1024;

impl FdTable {
    /// No descriptors.
    pub fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// A copy sharing the open files (fork).
    pub fn duplicate(&self) -> Self {
        self.clone()
    }

    /// The file behind `fd`.
    pub fn get(&self, fd: i32) -> KResult<Arc<OpenFile>> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// The slot of `fd`.
    pub fn slot_mut(&mut self, fd: i32) -> KResult<&mut Fd> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(Errno::EBADF)
    }

    /// Installs `file` at the lowest free descriptor >= `min`.
    pub fn install(&mut self, file: Arc<OpenFile>, cloexec: bool, min: usize) -> KResult<i32> {
        let i =
            (min..MAX_FDS).find(|&i| self.slots.get(i).is_none_or(|s| s.is_none())).ok_or(Errno::EMFILE)?;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(Fd { file, cloexec });
        Ok(i as i32)
    }

    /// Installs `file` at exactly `fd` (dup2), closing what was there.
    pub fn install_at(&mut self, fd: i32, file: Arc<OpenFile>, cloexec: bool) -> KResult<()> {
        let i = usize::try_from(fd).ok().filter(|&i| i < MAX_FDS).ok_or(Errno::EBADF)?;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(Fd { file, cloexec });
        Ok(())
    }

    /// Closes `fd`; returns the file so the caller drops it outside locks.
    pub fn close(&mut self, fd: i32) -> KResult<Arc<OpenFile>> {
        let slot = usize::try_from(fd).ok().and_then(|i| self.slots.get_mut(i)).ok_or(Errno::EBADF)?;
        slot.take().map(|s| s.file).ok_or(Errno::EBADF)
    }

    /// Closes every close-on-exec descriptor.
    pub fn close_on_exec(&mut self) {
        for s in &mut self.slots {
            if s.as_ref().is_some_and(|f| f.cloexec) {
                *s = None;
            }
        }
    }

    /// Open descriptors, in order.
    pub fn open_fds(&self) -> Vec<(i32, Arc<OpenFile>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as i32, s.file.clone())))
            .collect()
    }
}

/// Opens a device inode: the driver behind its device number.
pub fn open_device(kind: FileType, rdev: u64) -> KResult<FileKind> {
    let (ma, mi) = (major(rdev), minor(rdev));
    match (kind, ma, mi) {
        (FileType::CharDevice, 1, 3) => Ok(FileKind::Null),
        (FileType::CharDevice, 1, 5) => Ok(FileKind::Zero),
        (FileType::CharDevice, 1, 7) => Ok(FileKind::Full),
        (FileType::CharDevice, 1, 8 | 9) => Ok(FileKind::Random),
        (FileType::CharDevice, 5, 0) => {
            let me = sched::current();
            let ctty = me.proc.inner.lock().ctty;
            ctty.map(FileKind::Tty).ok_or(Errno::ENXIO)
        }
        (FileType::CharDevice, 5, 1) => {
            crate::tty::index_of_unit(false, 0).map(FileKind::Tty).ok_or(Errno::ENODEV)
        }
        (FileType::CharDevice, 4, n) if n < 64 => {
            crate::tty::index_of_unit(false, n).map(FileKind::Tty).ok_or(Errno::ENODEV)
        }
        (FileType::CharDevice, 4, n) => {
            crate::tty::index_of_unit(true, n - 64).map(FileKind::Tty).ok_or(Errno::ENODEV)
        }
        (FileType::BlockDevice, 98, n) if n % 16 == 0 => {
            crate::dev::block::index_of_unit(n / 16).map(FileKind::Block).ok_or(Errno::ENXIO)
        }
        _ => Err(Errno::ENXIO),
    }
}
