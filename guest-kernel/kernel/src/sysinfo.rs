//! System identity and figures: the host name, the release string `uname` and
//! `/proc/version` report, and `sysinfo`.

use alloc::string::String;
use alloc::vec::Vec;
use spinning_top::Spinlock;

/// The kernel release Linux programs see (`uname -r`). Programs such as glibc check the
/// major version, so it is a Linux-compatible number with our name as the suffix.
pub const RELEASE: &str = "6.1.0-umlvm";

static HOSTNAME: Spinlock<Vec<u8>> = Spinlock::new(Vec::new());

/// The host name (`(none)` until set).
pub fn hostname() -> Vec<u8> {
    let h = HOSTNAME.lock();
    if h.is_empty() { b"(none)".to_vec() } else { h.clone() }
}

/// Sets the host name.
pub fn set_hostname(name: &[u8]) {
    *HOSTNAME.lock() = name.to_vec();
}

/// `uname -v`.
pub fn version_string() -> String {
    alloc::format!("#1 umlvm-kernel {}", crate::VERSION)
}

/// `/proc/version`.
pub fn proc_version() -> String {
    alloc::format!("Linux version {RELEASE} (umlvm-kernel {}, Rust) {}\n", crate::VERSION, version_string())
}

/// The `sysinfo` figures.
pub fn sysinfo() -> umlvm_kcore::abi::Sysinfo {
    let total = crate::mm::total_bytes();
    let free = crate::mm::free_frames() * 4096;
    umlvm_kcore::abi::Sysinfo {
        uptime: (crate::time::now_ns() / 1_000_000_000) as i64,
        loads: [0; 3],
        totalram: total,
        freeram: free,
        procs: crate::process::sched::all_tasks().len() as u16,
        mem_unit: 1,
        ..Default::default()
    }
}
