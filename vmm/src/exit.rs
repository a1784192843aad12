//! Exit statuses of `umlvm run` that do not come from the guest.
//!
//! A guest that powers off passes its own status (0-255) through; a kernel-only boot uses 0
//! for success and 1 for a failed self-check.

/// Something about the input or the host is wrong; nothing ran.
pub const CONFIG_ERROR: u8 = 2;
/// The VMM failed while the guest ran (a KVM call failed).
pub const VMM_ERROR: u8 = 1;
/// The guest kernel panicked (it printed the message and a backtrace).
pub const GUEST_PANIC: u8 = 101;
/// The guest triple-faulted (KVM_EXIT_SHUTDOWN); the VMM printed the vCPU registers.
pub const TRIPLE_FAULT: u8 = 102;
/// The guest caused a VM exit the VMM does not handle; the VMM printed the vCPU registers.
pub const UNEXPECTED_EXIT: u8 = 103;
/// The guest did not finish within `--timeout` and was stopped (as timeout(1) reports).
pub const TIMEOUT: u8 = 124;
