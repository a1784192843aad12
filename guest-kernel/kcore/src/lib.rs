//! Hardware-independent logic of the umlvm guest kernel.
//!
//! Everything here is safe, `no_std` when built for the guest, and unit-tested on the host by
//! `make test`: the command-line parser, the physical frame allocator's bookkeeping, the
//! early-console line buffer, the frame-pointer backtrace walker, exception decoding and clock
//! arithmetic. The kernel crate supplies the hardware through small traits.

#![cfg_attr(target_os = "none", no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod abi;
pub mod areas;
pub mod backtrace;
pub mod cmdline;
pub mod console;
pub mod cpio;
pub mod errno;
pub mod exception;
pub mod exec;
pub mod ext2;
pub mod frame;
pub mod gzip;
pub mod signal;
pub mod sysnames;
pub mod termios;
pub mod time;
pub mod vfs;
pub mod vma;
