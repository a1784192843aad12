//! Linux error numbers, as the x86-64 syscall ABI returns them (negated in `rax`).

/// A Linux errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory.
    ENOENT = 2,
    /// Interrupted system call.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// Bad file descriptor.
    EBADF = 9,
    /// Out of memory.
    ENOMEM = 12,
    /// Bad address.
    EFAULT = 14,
    /// Invalid argument.
    EINVAL = 22,
    /// Function not implemented.
    ENOSYS = 38,
}

impl Errno {
    /// The value a syscall returns in `rax`: `-errno` as u64.
    pub const fn as_syscall_return(self) -> u64 {
        (-(self as i64)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_return_negated() {
        assert_eq!(Errno::ENOSYS.as_syscall_return() as i64, -38);
        assert_eq!(Errno::EFAULT.as_syscall_return() as i64, -14);
    }
}
