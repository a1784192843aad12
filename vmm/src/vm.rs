//! Building one machine: the KVM VM, its memory, irqchip, PIT, vCPU, boot state and initrd.

use crate::config::{PvmChoice, VmConfig};
use crate::kvm::detect_host;
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, Msrs, kvm_msr_entry, kvm_segment};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use std::time::{Duration, Instant};
use umlvm_boot::host::{BootParams, EntryState, ExecutionMode, HostKind, SetupError, build_boot};
use umlvm_boot::layout::ram_ranges;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// KVM's local APIC timer runs on a 1 GHz bus clock (1 ns per tick).
pub const KVM_APIC_BUS_HZ: u64 = 1_000_000_000;
/// IA32_TIME_STAMP_COUNTER.
const MSR_IA32_TSC: u32 = 0x10;
/// Where KVM puts the real-mode TSS on VMX hosts (in the MMIO hole, unused by the guest).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// Why a machine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A KVM call failed.
    #[error("{0} failed")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// Guest RAM could not be mapped.
    #[error("cannot map {0} MiB of guest RAM")]
    Memory(u64, #[source] vm_memory::mmap::FromRangesError),
    /// The kernel or boot structures were refused.
    #[error(transparent)]
    Boot(#[from] SetupError),
    /// Devices could not be set up.
    #[error(transparent)]
    Devices(#[from] crate::devices::DeviceError),
    /// The initrd could not be loaded.
    #[error(transparent)]
    Initrd(#[from] crate::initrd::InitrdFileError),
}

/// Host timestamps taken as the process started.
#[derive(Clone, Copy, Debug)]
pub struct StartTime {
    /// Host TSC.
    pub tsc: u64,
    /// Monotonic instant.
    pub instant: Instant,
    /// Wall clock, ns since the Unix epoch.
    pub unix_ns: u64,
}

/// A machine ready to run.
pub struct Machine {
    /// The VM (shared with the management console, which hot-plugs devices).
    pub vm: std::sync::Arc<VmFd>,
    /// Its only vCPU.
    pub vcpu: VcpuFd,
    /// Guest RAM.
    pub mem: GuestMemoryMmap,
    /// Host kind detected.
    pub host: HostKind,
    /// Execution mode chosen.
    pub mode: ExecutionMode,
    /// TSC frequency.
    pub tsc_khz: u64,
    /// Devices.
    pub devices: crate::devices::Devices,
    /// Where the initrd went and how long reading it into guest memory took.
    pub initrd: Option<(umlvm_boot::Span, Duration)>,
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |e| VmError::Kvm(what, e)
}

/// Creates the VM and loads `kernel` (and `initrd`, the opened `cfg.initrd`) per `cfg`.
#[expect(clippy::too_many_arguments, reason = "one call site; the pieces have different lifetimes")]
pub fn create(
    kvm: &Kvm,
    cfg: &VmConfig,
    kernel: &[u8],
    boot_count: u32,
    start: &StartTime,
    disks: &[(umlvm_devices::ubd::UbdSpec, umlvm_devices::disk::SharedDisk)],
    consoles: &[umlvm_devices::virtio::console::OpenedChannel],
    initrd: Option<&crate::initrd::InitrdFile>,
) -> Result<Machine, VmError> {
    let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
    let ranges: Vec<(GuestAddress, usize)> =
        ram_ranges(cfg.mem_bytes).map(|(base, len)| (GuestAddress(base), len as usize)).collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).map_err(|e| VmError::Memory(cfg.mem_bytes >> 20, e))?;
    // Memory slots before the irqchip: the other order costs 5-11 ms on PVM hosts.
    for (slot, region) in mem.iter().enumerate() {
        crate::sys::set_memory_region(&vm, slot as u32, region)
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
    }
    vm.set_tss_address(KVM_TSS_ADDRESS).map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    // No in-kernel PIT: the umlvm kernel times with the LAPIC timer and the TSC, and on PVM
    // hosts tearing a PIT down adds ~9 ms to every exit (measured; docs/benchmarks.md).

    let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;

    let devices = crate::devices::Devices::create(&vm, &mem, disks, consoles)?;
    let table = devices.table();
    let host = detect_host(&vcpu);
    let mode = match (host, cfg.pvm) {
        (HostKind::Pvm, PvmChoice::Auto) => ExecutionMode::Pvm,
        _ => ExecutionMode::Native,
    };
    let tsc_khz = u64::from(vcpu.get_tsc_khz().map_err(kvm_err("KVM_GET_TSC_KHZ"))?);
    let host_start_tsc = guest_tsc_of(&vcpu, start.tsc);

    let params = BootParams {
        mem_bytes: cfg.mem_bytes,
        cmdline: &cfg.cmdline,
        host,
        mode,
        tsc_khz,
        apic_bus_hz: KVM_APIC_BUS_HZ,
        host_start_tsc,
        host_start_unix_ns: start.unix_ns,
        boot_count,
        devices: &table,
        initrd_len: initrd.map_or(0, |f| f.len()),
    };
    let setup = build_boot(&mem, kernel, &params)?;
    let initrd = match initrd {
        Some(file) => {
            let t = Instant::now();
            file.load(&mem, setup.boot_info.initrd)?;
            Some((setup.boot_info.initrd, t.elapsed()))
        }
        None => None,
    };
    set_entry_state(&vcpu, &setup.entry)?;
    Ok(Machine { vm: std::sync::Arc::new(vm), vcpu, mem, host, mode, tsc_khz, devices, initrd })
}

/// Translates a host TSC value into the guest's TSC time base (KVM may offset the guest TSC).
fn guest_tsc_of(vcpu: &VcpuFd, host_tsc: u64) -> u64 {
    let Ok(mut msrs) = Msrs::from_entries(&[kvm_msr_entry { index: MSR_IA32_TSC, ..Default::default() }])
    else {
        return host_tsc;
    };
    let host_now = crate::sys::rdtsc();
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => {
            let offset = msrs.as_slice()[0].data.wrapping_sub(host_now);
            host_tsc.wrapping_add(offset)
        }
        _ => host_tsc,
    }
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        ..Default::default()
    }
}

/// Loads the boot crate's entry state into the vCPU: straight into 64-bit mode.
fn set_entry_state(vcpu: &VcpuFd, e: &EntryState) -> Result<(), VmError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    sregs.cs = segment(e.cs, 0xb, true);
    let data = segment(e.ds, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: e.tss_base,
        limit: umlvm_boot::x86::TSS_SIZE as u32 - 1,
        selector: e.tr,
        type_: 0xb,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = e.gdt_base;
    sregs.gdt.limit = e.gdt_limit;
    sregs.idt.base = e.idt_base;
    sregs.idt.limit = e.idt_limit;
    sregs.cr0 = e.cr0;
    sregs.cr3 = e.cr3;
    sregs.cr4 = e.cr4;
    sregs.efer = e.efer;
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
    let regs =
        kvm_bindings::kvm_regs { rip: e.rip, rsp: e.rsp, rdi: e.rdi, rflags: e.rflags, ..Default::default() };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
    Ok(())
}
