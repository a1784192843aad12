//! The guest loader, used by the VMM (feature `host`).
//!
//! [`setup::build_boot`] takes guest memory, a kernel ELF image and [`setup::BootParams`],
//! and leaves guest memory ready for the first instruction: kernel segments loaded, boot GDT
//! and TSS, page tables, command line and [`crate::BootInfo`] written. It returns the
//! [`setup::EntryState`] the VMM loads into the vCPU. [`initrd`] places the initial RAM disk
//! and reads it into guest memory. Nothing here touches KVM.

pub mod elf;
pub mod initrd;
pub mod paging;
pub mod setup;

pub use elf::{KernelImage, LoadError};
pub use initrd::InitrdError;
pub use paging::{PageTableError, PageTables, SupervisorAccess};
pub use setup::{BootParams, BootSetup, EntryState, ExecutionMode, HostKind, SetupError, build_boot};

#[cfg(test)]
pub(crate) mod test_util {
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// A plain anonymous buffer as guest memory: no KVM involved.
    pub fn guest_memory(bytes: u64) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), bytes as usize)]).unwrap()
    }
}
