//! umlvm's devices and their host backends.
//!
//! - [`virtio`]: the virtio-mmio transport (version 2) shared by every device, and the
//!   virtio-blk device behind umlvm's `ubdN` block devices;
//! - [`disk`]: the disk stack those devices sit on: raw image files, the UML-compatible
//!   copy-on-write layer (COW v3), read-only access, image locking, and `moo` merging.
//!
//! Queue processing is generic over guest memory and the interrupt, so unit tests drive
//! devices with plain buffers and fake interrupts, without KVM.

pub mod disk;
mod sys;
pub mod ubd;
pub mod virtio;
