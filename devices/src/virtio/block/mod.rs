//! virtio-blk: umlvm's `ubdN` block devices.

mod device;
mod request;

pub use device::Block;
pub use request::{Request, RequestError, RequestType};

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
/// Feature: the device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: maximum segments in `seg_max`.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: flush supported.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
/// Queue size.
pub const QUEUE_SIZE: u16 = 256;
/// Largest request we accept (bytes of data).
pub const MAX_REQUEST_BYTES: u64 = 16 << 20;
/// Longest chain (descriptors) we accept; also advertised as `seg_max` + 2.
pub const MAX_SEGMENTS: u32 = 128;
