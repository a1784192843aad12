//! `umlvm run`: build the machine, run the vCPU on its own thread, drive the event loop, and
//! turn the guest's end into an exit status.

use crate::config::{KernelSource, Verbosity, VmConfig};
use crate::exit;
use crate::vcpu::{self, ExitContext, Outcome};
use crate::vm::{self, StartTime};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// The guest kernel built from `guest-kernel/` and embedded at build time.
pub static EMBEDDED_KERNEL: &[u8] = include_bytes!(env!("UMLVM_EMBEDDED_KERNEL"));

/// Why `umlvm run` could not run the machine.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The kernel file cannot be read.
    #[error("--kernel {0}: cannot read it")]
    KernelFile(String, #[source] std::io::Error),
    /// The kernel file was refused.
    #[error("--kernel {0}")]
    KernelImage(String, #[source] umlvm_boot::host::LoadError),
    /// KVM is unusable.
    #[error(transparent)]
    Kvm(#[from] crate::kvm::KvmError),
    /// The requested memory exceeds the host's.
    #[error("mem={requested_mib}M: larger than this host's {host_mib} MiB of RAM")]
    HostMemory {
        /// Requested MiB.
        requested_mib: u64,
        /// Host MiB.
        host_mib: u64,
    },
    /// The initrd was refused.
    #[error(transparent)]
    Initrd(#[from] crate::initrd::InitrdFileError),
    /// Building the machine failed.
    #[error(transparent)]
    Vm(#[from] vm::VmError),
    /// The event loop failed.
    #[error("event loop")]
    EventLoop(#[source] event_manager::Error),
    /// An eventfd could not be created.
    #[error("eventfd")]
    EventFd(#[source] std::io::Error),
    /// A block device image was refused.
    #[error(transparent)]
    Ubd(#[from] umlvm_devices::ubd::UbdError),
    /// ubd0 (the root file system) names a file that does not exist.
    #[error("{}: no such root file system (make one with `umlvm mkrootfs {}`)", .0.display(), .0.display())]
    NoRootFs(std::path::PathBuf),
    /// A command after `--` but nothing to run it from.
    #[error(
        "-- {0}: nothing to run it from: no ./root_fs here; give --rootfs FILE (make one with `umlvm mkrootfs root_fs`) or --initrd FILE"
    )]
    NoUserSpace(String),
    /// A console channel could not be opened.
    #[error(transparent)]
    Console(#[from] umlvm_devices::virtio::console::ChannelError),
    /// The umid directory could not be set up.
    #[error(transparent)]
    Umid(#[from] crate::umid::UmidError),
    /// The machine's devices could not be wired.
    #[error(transparent)]
    Devices(#[from] crate::devices::DeviceError),
    /// The mconsole socket could not be made.
    #[error("{}: cannot make the mconsole socket", .0.display())]
    Mconsole(std::path::PathBuf, #[source] std::io::Error),
}

impl RunError {
    /// Exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            Self::EventLoop(_) => exit::VMM_ERROR,
            _ => exit::CONFIG_ERROR,
        }
    }
}

/// Wakes the event loop when the vCPU thread has finished.
struct VcpuDone {
    evt: EventFd,
    done: bool,
}

impl MutEventSubscriber for VcpuDone {
    fn init(&mut self, ops: &mut EventOps) {
        // Registration of a fresh eventfd in a fresh epoll set cannot fail but for ENOMEM;
        // then the loop would never wake, so report it.
        if let Err(e) = ops.add(Events::new(&self.evt, EventSet::IN)) {
            log::error!("cannot watch the vCPU eventfd: {e}");
            self.done = true;
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.event_set().contains(EventSet::IN) {
            let _ = self.evt.read();
            self.done = true;
        }
    }
}

/// Host RAM in bytes, from /proc/meminfo.
fn host_mem_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs the machine described by `cfg`, rebooting it when the guest asks; returns the exit
/// status for the process.
pub fn run(cfg: &VmConfig, start: &StartTime) -> Result<u8, RunError> {
    let file_kernel;
    let kernel: &[u8] = match &cfg.kernel {
        KernelSource::Embedded => EMBEDDED_KERNEL,
        KernelSource::File(path) => {
            let shown = path.display().to_string();
            file_kernel = std::fs::read(path).map_err(|e| RunError::KernelFile(shown.clone(), e))?;
            umlvm_boot::host::KernelImage::parse(&file_kernel)
                .map_err(|e| RunError::KernelImage(shown, e))?;
            &file_kernel
        }
    };
    if let Some(host) = host_mem_bytes()
        && cfg.mem_bytes > host
    {
        return Err(RunError::HostMemory { requested_mib: cfg.mem_bytes >> 20, host_mib: host >> 20 });
    }
    // The initrd is checked against the kernel's placement before anything starts.
    let initrd = match &cfg.initrd {
        Some(spec) => {
            let file = crate::initrd::InitrdFile::open(spec)?;
            let image = umlvm_boot::host::KernelImage::parse(kernel)
                .map_err(|e| RunError::KernelImage(describe_kernel(&cfg.kernel), e))?;
            file.check_fits(cfg.mem_bytes, image.phys)?;
            Some(file)
        }
        None => None,
    };
    // A COW layer is created when missing; its backing file (or a plain image) must exist.
    if let Some(root) = cfg.ubd.iter().find(|u| u.index == 0) {
        let image = root.backing.as_ref().unwrap_or(&root.file);
        if !image.exists() {
            return Err(RunError::NoRootFs(image.clone()));
        }
    }
    if !cfg.command.is_empty()
        && cfg.initrd.is_none()
        && !cfg.ubd.iter().any(|u| u.index == 0)
        && !cfg.cmdline.contains("root=")
    {
        return Err(RunError::NoUserSpace(cfg.command.join(" ")));
    }
    let disks = cfg
        .ubd
        .iter()
        .map(|spec| Ok((spec.clone(), umlvm_devices::disk::SharedDisk::new(umlvm_devices::ubd::open(spec)?))))
        .collect::<Result<Vec<_>, RunError>>()?;
    let mut ports = crate::devices::PortConnections::default();
    let xterm = umlvm_devices::virtio::console::XtermSetup {
        emulator: cfg.xterm.clone(),
        helper: std::env::current_exe().unwrap_or_else(|_| "umlvm".into()),
    };
    let consoles = cfg
        .consoles
        .iter()
        .map(|(name, spec)| umlvm_devices::virtio::console::open(*name, spec, &mut ports.servers, &xterm))
        .collect::<Result<Vec<_>, _>>()?;
    ports.specs = cfg.consoles.iter().cloned().collect();
    for c in &consoles {
        if let Some(a) = &c.announce {
            eprintln!("umlvm: {a}");
        }
    }
    let kvm = crate::kvm::open()?;
    // The machine's name, directory and management console.
    let umid = cfg.umid.clone().unwrap_or_else(crate::umid::random_umid);
    let umid_dir = crate::umid::UmidDir::create(&crate::umid::base_dir(cfg.uml_dir.as_deref())?, &umid)?;
    let control = Arc::new(crate::mconsole::Control::default());
    crate::sys::install_kick_handler();
    let version = match &cfg.kernel {
        KernelSource::Embedded => {
            format!("umlvm-kernel {} (umlvm {})", env!("CARGO_PKG_VERSION"), env!("CARGO_PKG_VERSION"))
        }
        KernelSource::File(p) => format!("{} (umlvm {})", p.display(), env!("CARGO_PKG_VERSION")),
    };
    let mut device_list: Vec<(String, String)> =
        cfg.ubd.iter().map(|u| (format!("ubd{}", u.index), describe_ubd(u))).collect();
    device_list.extend(cfg.consoles.iter().map(|(n, s)| (n.to_string(), describe_console(s))));
    let socket_path = umid_dir.mconsole_path();
    let server = crate::mconsole::Server::bind(&socket_path, control.clone(), version, device_list)
        .map_err(|e| RunError::Mconsole(socket_path.clone(), e))?;
    log::info!("{}: mconsole (version 2) initialized on {}", umid_dir.umid, socket_path.display());
    server.guest_requests().set_kernel(cfg.kernel.clone());
    // con0 on the host terminal: raw mode, restored on every way out. The terminal's
    // descriptor is held here (declared first, dropped last), so the restore still reaches it
    // when con0 was re-attached elsewhere meanwhile.
    let con0_terminal =
        consoles.iter().find(|c| c.name.to_string() == "con0").and_then(|c| c.input_fd.clone());
    let _raw = con0_terminal.as_deref().and_then(crate::sys::RawTerminal::enter);
    // As in UML, a con0 on a port waits for its connection before the machine boots.
    if let Some(port) = consoles.iter().find(|c| c.name.to_string() == "con0").and_then(|c| c.port) {
        eprintln!("umlvm: con0 is waiting for a connection on port {port} (telnet localhost {port})");
        loop {
            if let Some(conn) = ports.servers.accept(port) {
                ports.conns.push((conn.0, conn.1, 0));
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    ports.channels = consoles;
    let hub = crate::devices::ConsoleHub::new(ports, xterm)?;
    let mut boot_count = 0u32;
    // --timeout runs over reboots: it bounds the whole job.
    let deadline = cfg.timeout.map(|t| Instant::now() + t);
    loop {
        let t_setup = Instant::now();
        let consoles = hub.channels();
        let machine = vm::create(&kvm, cfg, kernel, boot_count, start, &disks, &consoles, initrd.as_ref())?;
        if cfg.verbosity >= Verbosity::Verbose {
            eprintln!(
                "umlvm: host {}; guest mode {:?}; {} MiB; TSC {} kHz; machine built in {:.3} ms ({:.3} ms since start)",
                crate::kvm::host_name(machine.host),
                machine.mode,
                cfg.mem_bytes >> 20,
                machine.tsc_khz,
                t_setup.elapsed().as_secs_f64() * 1e3,
                start.instant.elapsed().as_secs_f64() * 1e3,
            );
            if let (Some((span, took)), Some(file)) = (machine.initrd, &initrd) {
                eprintln!(
                    "umlvm: {}: {} bytes read into guest RAM at {:#x} in {:.3} ms",
                    file.input(),
                    span.len,
                    span.gpa,
                    took.as_secs_f64() * 1e3
                );
            }
            let table = machine.devices.table();
            if !table.is_empty() {
                eprintln!(
                    "umlvm: devices (as a Linux guest would see them): {}",
                    crate::devices::linux_cmdline(&table)
                );
            }
        }
        let mem = machine.mem.clone();
        let link = crate::mconsole::GuestLink {
            mem: machine.mem.clone(),
            irq: machine.devices.control_irq()?,
            slots: crate::hotplug::Slots {
                vm: machine.vm.clone(),
                mem: machine.mem.clone(),
                bus: machine.devices.bus(),
            },
            consoles: hub.clone(),
        };
        let mconsole = server.for_machine(link).map_err(|e| RunError::Mconsole(socket_path.clone(), e))?;
        let (outcome, timed_out) = run_machine(machine, &hub, mconsole, &control, deadline)?;
        if timed_out {
            let secs = cfg.timeout.map_or(0.0, |t| t.as_secs_f64());
            eprintln!("umlvm: the guest did not finish within {secs} s (--timeout); stopped it");
            return Ok(exit::TIMEOUT);
        }
        match outcome {
            Outcome::PowerOff(status) => return Ok(status),
            Outcome::Reboot => {
                boot_count += 1;
                if cfg.verbosity >= Verbosity::Verbose {
                    eprintln!("umlvm: guest rebooted (boot {boot_count})");
                }
            }
            Outcome::Panic(record_gpa) => {
                eprintln!("umlvm: guest kernel panicked (see its console output above)");
                print_guest_backtrace(&mem, record_gpa, kernel);
                return Ok(exit::GUEST_PANIC);
            }
            Outcome::TripleFault(regs) => {
                eprintln!("umlvm: guest triple fault (KVM_EXIT_SHUTDOWN); vCPU registers:\n{regs}");
                return Ok(exit::TRIPLE_FAULT);
            }
            Outcome::Unexpected(what, regs) => {
                eprintln!("umlvm: unexpected VM exit: {what}; vCPU registers:\n{regs}");
                return Ok(exit::UNEXPECTED_EXIT);
            }
            Outcome::Error(e) => {
                eprintln!("umlvm: KVM_RUN failed: {e}");
                return Ok(exit::VMM_ERROR);
            }
        }
    }
}

/// Prints the backtrace a panicking guest recorded, resolved with the kernel's symbols.
fn print_guest_backtrace(mem: &vm_memory::GuestMemoryMmap, record_gpa: u64, kernel: &[u8]) {
    use vm_memory::{Bytes, GuestAddress};
    if record_gpa == 0 {
        return;
    }
    // The record comes from the guest: read it through checked guest memory, then validate.
    let Ok(record) = mem.read_obj::<umlvm_boot::PanicRecord>(GuestAddress(record_gpa)) else {
        eprintln!("umlvm: the guest's backtrace record at {record_gpa:#x} is outside guest memory");
        return;
    };
    let Some(frames) = record.valid_frames() else {
        eprintln!("umlvm: the guest's backtrace record at {record_gpa:#x} is malformed");
        return;
    };
    let symbols = crate::symbolize::Symbols::from_elf(kernel);
    eprintln!("umlvm: guest backtrace:");
    for (i, addr) in frames.iter().enumerate() {
        let name = if i == 0 { symbols.lookup(*addr) } else { symbols.lookup_return(*addr) };
        let name = name.unwrap_or_else(|| "?".into());
        eprintln!("  #{i} {addr:#018x} {name}");
    }
}

/// Runs one machine until its guest stops: the vCPU on its own thread, the event loop here.
fn run_machine(
    machine: vm::Machine,
    consoles: &crate::devices::ConsoleHub,
    mconsole: crate::mconsole::Server,
    control: &Arc<crate::mconsole::Control>,
    deadline: Option<Instant>,
) -> Result<(Outcome, bool), RunError> {
    let mut timed_out = false;
    let vm::Machine { vm, mut vcpu, mem, devices, .. } = machine;
    let done_evt = EventFd::new(EFD_NONBLOCK).map_err(RunError::EventFd)?;
    let thread_evt = done_evt.try_clone().map_err(RunError::EventFd)?;
    let mut events: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
        EventManager::new().map_err(RunError::EventLoop)?;
    let watcher = Arc::new(Mutex::new(VcpuDone { evt: done_evt, done: false }));
    events.add_subscriber(watcher.clone());
    for slot in &devices.slots {
        for queue in 0..slot.notify.len() {
            let notifier = crate::devices::QueueNotifier::new(slot, queue, control.clone())
                .map_err(RunError::EventFd)?;
            events.add_subscriber(Arc::new(Mutex::new(notifier)));
        }
    }
    let transports = devices.console_transports();
    events.add_subscriber(Arc::new(Mutex::new(crate::devices::ConsoleSubscriber::new(
        consoles.clone(),
        transports,
        control.clone(),
    ))));
    let bus = devices.bus();
    let guest_requests = mconsole.guest_requests();
    let guest_requests_for_loop = guest_requests.clone();
    events.add_subscriber(Arc::new(Mutex::new(mconsole)));

    let outcome = std::thread::scope(|scope| {
        let vcpu_thread = std::thread::Builder::new().name("vcpu0".into()).spawn_scoped(scope, || {
            let mut ctx = ExitContext {
                mem: &mem,
                vm: &vm,
                console: std::io::stdout(),
                max_gsi: 24,
                bus,
                control,
                guest_requests,
            };
            let outcome = vcpu::run(&mut vcpu, &mut ctx);
            control.vcpu_ending();
            let _ = thread_evt.write(1);
            outcome
        });
        let vcpu_thread = match vcpu_thread {
            Ok(t) => t,
            Err(e) => return Err(RunError::EventFd(e)),
        };
        let mut loop_error = None;
        loop {
            if watcher.lock().map(|w| w.done).unwrap_or(true) {
                break;
            }
            guest_requests_for_loop.expire();
            let mut wait_ms = 500;
            if let Some(d) = deadline.filter(|_| !timed_out) {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    timed_out = true;
                    control.request(crate::mconsole::Stop::Halt);
                    continue;
                }
                wait_ms = wait_ms.min(left.as_millis() as i32 + 1);
            }
            if let Err(e) = events.run_with_timeout(wait_ms) {
                // Stop the vCPU before leaving, or the scope would wait for it forever.
                control.request(crate::mconsole::Stop::Halt);
                loop_error = Some(e);
                break;
            }
        }
        let outcome =
            vcpu_thread.join().unwrap_or(Outcome::Unexpected("vCPU thread panicked".into(), String::new()));
        match loop_error {
            Some(e) => Err(RunError::EventLoop(e)),
            None => Ok(outcome),
        }
    })?;
    Ok((outcome, timed_out))
}

/// How messages name the kernel.
fn describe_kernel(kernel: &KernelSource) -> String {
    match kernel {
        KernelSource::Embedded => "embedded kernel".into(),
        KernelSource::File(p) => p.display().to_string(),
    }
}

/// How `config ubdN` describes a device (as on the command line).
pub(crate) fn describe_ubd(u: &umlvm_devices::ubd::UbdSpec) -> String {
    match &u.backing {
        Some(b) => format!("{},{}", u.file.display(), b.display()),
        None => u.file.display().to_string(),
    }
}

/// How `config conN` describes a console (as on the command line).
pub(crate) fn describe_console(s: &umlvm_devices::virtio::console::ConsoleSpec) -> String {
    use umlvm_devices::virtio::console::ChannelSpec;
    let one = |c: &ChannelSpec| match c {
        ChannelSpec::Fd(n) => format!("fd:{n}"),
        ChannelSpec::Pty => "pty".into(),
        ChannelSpec::Tty(d) => format!("tty:{}", d.display()),
        ChannelSpec::Port(p) => format!("port:{p}"),
        ChannelSpec::Xterm => "xterm".into(),
        ChannelSpec::File(p) => format!("file:{}", p.display()),
        ChannelSpec::Null => "null".into(),
        ChannelSpec::None => "none".into(),
    };
    if s.input == s.output { one(&s.input) } else { format!("{},{}", one(&s.input), one(&s.output)) }
}
