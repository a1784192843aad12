//! Opening KVM, checking what we need of it, and telling which kind of host this is.

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::{Cap, Kvm, VcpuFd};
use std::fs::OpenOptions;
use std::io;
use umlvm_boot::abi::{MSR_PVM_SIGNATURE, PVM_SIGNATURE};
use umlvm_boot::host::HostKind;

/// The KVM device path, overridable with `UMLVM_KVM` (tests use it to check the messages).
pub fn device_path() -> String {
    std::env::var("UMLVM_KVM").unwrap_or_else(|_| "/dev/kvm".into())
}

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node does not exist.
    #[error(
        "{0} does not exist: this host has no KVM (load kvm_intel, kvm_amd or kvm_pvm, or enable nested virtualisation)"
    )]
    Missing(String),
    /// The device node exists but we may not open it.
    #[error(
        "{0}: permission denied: add your user to group `kvm` (sudo usermod -aG kvm $USER, then log in again) or run as root"
    )]
    NoAccess(String),
    /// Some other open failure.
    #[error("{0}: cannot open")]
    Open(String, #[source] io::Error),
    /// Not a KVM device, or KVM too old.
    #[error("{0}: not a usable KVM device")]
    NotKvm(String, #[source] kvm_ioctls::Error),
    /// A capability umlvm needs is absent.
    #[error("{path}: KVM lacks the required capability {cap} (host kernel too old or KVM restricted)")]
    MissingCapability {
        /// Device path.
        path: String,
        /// Capability name.
        cap: &'static str,
    },
}

/// Capabilities every boot needs.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::GetTscKhz, "KVM_CAP_GET_TSC_KHZ"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// Checks `has` for every required capability.
pub fn check_capabilities(path: &str, has: impl Fn(Cap) -> bool) -> Result<(), KvmError> {
    match REQUIRED_CAPS.iter().find(|(cap, _)| !has(*cap)) {
        Some((_, name)) => Err(KvmError::MissingCapability { path: path.into(), cap: name }),
        None => Ok(()),
    }
}

/// Maps an open error to the message a user can act on.
pub fn open_error(path: &str, e: io::Error) -> KvmError {
    match e.kind() {
        io::ErrorKind::NotFound => KvmError::Missing(path.into()),
        io::ErrorKind::PermissionDenied => KvmError::NoAccess(path.into()),
        _ => KvmError::Open(path.into(), e),
    }
}

/// Opens KVM and checks its capabilities.
pub fn open() -> Result<Kvm, KvmError> {
    let path = device_path();
    let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| open_error(&path, e))?;
    let kvm = crate::sys::kvm_from_file(file);
    let version = kvm.get_api_version();
    if version != 12 {
        return Err(KvmError::NotKvm(path, kvm_ioctls::Error::new(libc::EINVAL)));
    }
    check_capabilities(&path, |c| kvm.check_extension(c))?;
    Ok(kvm)
}

/// Tells a `kvm_pvm` host from hardware KVM by the signature MSR (readable through
/// KVM_GET_MSRS only on PVM hosts).
pub fn detect_host(vcpu: &VcpuFd) -> HostKind {
    let Ok(mut msrs) =
        Msrs::from_entries(&[kvm_msr_entry { index: MSR_PVM_SIGNATURE, ..Default::default() }])
    else {
        return HostKind::Hardware;
    };
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) if msrs.as_slice()[0].data == PVM_SIGNATURE => HostKind::Pvm,
        _ => HostKind::Hardware,
    }
}

/// Short description of a host kind.
pub fn host_name(kind: HostKind) -> &'static str {
    match kind {
        HostKind::Pvm => "kvm_pvm (PVM: guest CPL 0 is emulated until the guest registers its VIF page)",
        HostKind::Hardware => "hardware virtualisation (VMX/SVM)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_capability_is_named() {
        let e = check_capabilities("/dev/kvm", |c| c != Cap::Irqchip).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/kvm: KVM lacks the required capability KVM_CAP_IRQCHIP (host kernel too old or KVM restricted)"
        );
        assert!(check_capabilities("/dev/kvm", |_| true).is_ok());
    }

    #[test]
    fn open_errors_say_how_to_fix() {
        let e = open_error("/dev/kvm", io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(e.to_string().contains("group `kvm`"), "{e}");
        let e = open_error("/dev/kvm", io::Error::from(io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("/dev/kvm does not exist"), "{e}");
    }
}
