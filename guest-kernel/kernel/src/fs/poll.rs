//! Waiting on several files at once (poll, select): pollers sleep on one shared channel that
//! every wakeup also pokes, then re-check their files.

/// The channel pollers sleep on.
pub const POLL_CHAN: u64 = 0x7b00_0000_0000_0001;
