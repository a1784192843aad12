//! The thin unsafe layer of the VMM: the few raw calls the rust-vmm crates do not wrap.

/// Reads the host's time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no memory effects; every x86-64 CPU this runs on has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage only writes the zero-initialised struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc == 0 { usage.ru_maxrss as u64 } else { 0 }
}

/// Wraps an opened KVM device file in `Kvm`, which takes ownership of the descriptor.
pub fn kvm_from_file(file: std::fs::File) -> kvm_ioctls::Kvm {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: `into_raw_fd` gives up ownership of a valid, open descriptor, which `Kvm` then
    // owns and closes; nothing else refers to it.
    unsafe { kvm_ioctls::Kvm::from_raw_fd(file.into_raw_fd()) }
}

/// Registers a guest memory region with KVM.
pub fn set_memory_region(
    vm: &kvm_ioctls::VmFd,
    slot: u32,
    region: &vm_memory::GuestRegionMmap,
) -> Result<(), kvm_ioctls::Error> {
    use vm_memory::GuestMemoryRegion;
    let mem_region = kvm_bindings::kvm_userspace_memory_region {
        slot,
        flags: 0,
        guest_phys_addr: region.start_addr().0,
        memory_size: region.len(),
        userspace_addr: region.as_ptr() as u64,
    };
    // SAFETY: the host range is a live mmap owned by the guest memory object, which the
    // machine keeps alive for as long as the VM exists; regions do not overlap.
    unsafe { vm.set_user_memory_region(mem_region) }
}

/// A copy of some bytes at an 8-byte aligned address (ELF parsers need aligned tables, and
/// `include_bytes!` data has no alignment guarantee).
pub struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (w, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Self { words, len: bytes.len() }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: the Vec<u64> owns at least `len` initialised bytes (8 per word, len <= 8 *
        // words.len()), u8 has no alignment or validity requirements, and the slice borrows
        // `self`, so the allocation outlives it.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// The host terminal in raw mode for con0; restored when dropped, on SIGTERM/SIGHUP/SIGINT/
/// SIGQUIT, and on a panic.
pub struct RawTerminal {
    fd: std::os::fd::RawFd,
}

static SAVED_TERMIOS: std::sync::OnceLock<(std::os::fd::RawFd, libc::termios)> = std::sync::OnceLock::new();

extern "C" fn restore_and_exit(sig: libc::c_int) {
    if let Some((fd, t)) = SAVED_TERMIOS.get() {
        umlvm_devices::virtio::console::restore_terminal(*fd, t);
    }
    crate::umid::cleanup_from_signal();
    // SAFETY: _exit is async-signal-safe and ends the process at once.
    unsafe { libc::_exit(128 + sig) };
}

impl RawTerminal {
    /// Puts `file` in raw mode if it is a terminal.
    pub fn enter(file: &std::fs::File) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        if !std::io::IsTerminal::is_terminal(file) {
            return None;
        }
        let saved = umlvm_devices::virtio::console::make_terminal_raw(fd).ok()?;
        let _ = SAVED_TERMIOS.set((fd, saved));
        install_exit_signal_handlers();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some((fd, t)) = SAVED_TERMIOS.get() {
                umlvm_devices::virtio::console::restore_terminal(*fd, t);
            }
            previous(info);
        }));
        Some(Self { fd })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some((fd, t)) = SAVED_TERMIOS.get()
            && *fd == self.fd
        {
            umlvm_devices::virtio::console::restore_terminal(*fd, t);
        }
    }
}

/// Installs handlers for SIGTERM, SIGHUP, SIGINT and SIGQUIT that restore the terminal and
/// remove the umid directory before exiting with 128 + signal.
pub fn install_exit_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: installs an async-signal-safe handler (tcsetattr, unlink, rmdir, _exit).
        unsafe { libc::signal(sig, restore_and_exit as *const () as libc::sighandler_t) };
    }
}

/// unlink(a), unlink(b), rmdir(c): async-signal-safe cleanup of the umid directory.
pub fn unlink_and_rmdir(a: &std::ffi::CStr, b: &std::ffi::CStr, c: &std::ffi::CStr) {
    // SAFETY: unlink and rmdir take NUL-terminated paths and are async-signal-safe.
    unsafe {
        libc::unlink(a.as_ptr());
        libc::unlink(b.as_ptr());
        libc::rmdir(c.as_ptr());
    }
}

/// The calling thread's pthread id.
pub fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// The signal that kicks a vCPU out of KVM_RUN.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn ignore_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) handler for [`kick_signal`], so it interrupts KVM_RUN with EINTR
/// instead of killing the process.
pub fn install_kick_handler() {
    let _ = vmm_sys_util::signal::register_signal_handler(kick_signal(), ignore_kick);
}

/// Sends [`kick_signal`] to thread `thread`.
pub fn kick(thread: u64) {
    // SAFETY: `thread` is the pthread id of our vCPU thread, which runs until its machine is
    // torn down (the caller only kicks it while the machine exists).
    unsafe { libc::pthread_kill(thread as libc::pthread_t, kick_signal()) };
}
