//! umlvm's versioned host<->guest boot ABI.
//!
//! The core of this crate is `no_std` and shared by the VMM (`umlvm`) and the guest kernel:
//! the [`BootInfo`](abi::BootInfo) block the VMM hands to the kernel, the guest physical and
//! virtual memory layout ([`layout`]), the para-virtual I/O ports ([`ports`]) and the x86
//! descriptor constants both sides must agree on ([`x86`]).
//!
//! Behind the `host` feature, [`host`] holds the loader the VMM uses: ELF loading (through
//! linux-loader), page tables, GDT/TSS and the initial vCPU state for a direct long-mode entry.
//! Everything there writes into guest memory through `vm-memory` and is unit-tested on a plain
//! buffer, without KVM.

#![cfg_attr(not(feature = "host"), no_std)]
#![deny(unsafe_code)]

pub mod abi;
pub mod layout;
pub mod ports;
pub mod x86;

#[cfg(feature = "host")]
pub mod host;

pub use abi::{BootInfo, DeviceEntry, MemoryKind, MemoryRegion, PanicRecord, Span};
