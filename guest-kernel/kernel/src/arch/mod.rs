//! The hardware layer: every `unsafe` block of the kernel lives under this module.
//!
//! The rest of the kernel is `#![deny(unsafe_code)]` and sees only safe functions. The
//! execution-mode boundary ([`mode`]) is here too: interrupt enable/disable, halt, CR2, CR3
//! loads, TLB flushes and MSR writes go through it, and it picks the native (ring 0) or the
//! PVM para-virtual instruction for each. Nothing outside this module knows which mode runs.

pub mod apic;
pub mod context;
pub mod cpu;
mod entry;
pub mod heap;
pub mod hooks;
pub mod ioapic;
pub mod memory;
pub mod mode;
pub mod paging;
pub mod programs;
pub mod pv;
pub mod sync;
pub mod trap;
pub mod user;
pub mod uspace;
pub mod virtio;

pub use entry::BootEntry;
