//! Device drivers above the virtio transport: the block layer (ubd devices) and the kernel's
//! random-number source (`/dev/random`, `getrandom`, AT_RANDOM).

pub mod block;
pub mod random;
