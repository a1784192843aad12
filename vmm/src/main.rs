//! `umlvm`: a KVM microVM monitor for umlvm's para-virtual Rust guest kernel.

mod config;
mod devices;
mod exit;
mod kvm;
mod logger;
mod run;
mod symbolize;
mod sys;
mod tools;
mod vcpu;
mod vm;

use clap::{Args, Parser, Subcommand};
use config::{CliInput, VmConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// umlvm: User Mode Linux, on hardware virtualisation.
#[derive(Parser, Debug)]
#[command(name = "umlvm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a machine (the embedded guest kernel unless --kernel is given).
    Run(RunArgs),
    /// Describe this host's KVM: kind (hardware or PVM), capabilities, the mode guests get.
    Info,
    /// Merge a UML COW file with its backing file (uml_moo).
    Moo(tools::MooArgs),
    /// Inspect or create UML COW files.
    #[command(subcommand)]
    Cow(tools::CowCommand),
    /// Runs inside a terminal window for an `xterm` console channel: hands the window's
    /// terminal to umlvm and waits (UML's port-helper).
    #[command(hide = true)]
    XtermHelper {
        /// umlvm's socket.
        socket: PathBuf,
    },
    /// Write the embedded guest kernel ELF (with symbols, for gdb or --kernel) to FILE.
    DumpKernel {
        /// Where to write it.
        #[arg(value_name = "FILE")]
        output: PathBuf,
    },
}

#[derive(Args, Debug)]
#[command(after_help = "SWITCHES are UML-style key=value words (mem=128M, umid=NAME, init=PATH, \
root=DEV, pvm=off, ...). umlvm acts on the ones it knows and passes all of them, in order, \
to the guest kernel's command line, as UML does.")]
struct RunArgs {
    /// Guest kernel ELF to boot instead of the embedded one.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Guest RAM, e.g. 128M or 1G (same as the mem= switch).
    #[arg(long, value_name = "SIZE")]
    mem: Option<String>,
    /// Machine name (same as the umid= switch).
    #[arg(long, value_name = "NAME")]
    umid: Option<String>,
    /// Root filesystem image (same as ubd0=FILE).
    #[arg(long, value_name = "FILE")]
    rootfs: Option<PathBuf>,
    /// Block device N: an image, or COW,BACKING (same as ubdN=SPEC); repeatable.
    #[arg(long, value_name = "N=SPEC")]
    ubd: Vec<String>,
    /// Report host kind, guest mode and timings on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// UML-style switches.
    #[arg(value_name = "SWITCH")]
    switches: Vec<String>,
}

fn start_time() -> vm::StartTime {
    let tsc = sys::rdtsc();
    let unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    vm::StartTime { tsc, instant: Instant::now(), unix_ns }
}

/// Prints `umlvm: error: cause: cause` on one line.
fn report(err: &dyn std::error::Error) {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    eprintln!("umlvm: {line}");
}

fn info() -> Result<(), kvm::KvmError> {
    let kvm = kvm::open()?;
    println!("KVM device: {}", kvm::device_path());
    println!("KVM API version: {}", kvm.get_api_version());
    let vm = kvm.create_vm().map_err(|e| kvm::KvmError::NotKvm(kvm::device_path(), e))?;
    let vcpu = vm.create_vcpu(0).map_err(|e| kvm::KvmError::NotKvm(kvm::device_path(), e))?;
    let host = kvm::detect_host(&vcpu);
    println!("host: {}", kvm::host_name(host));
    let mode = match host {
        umlvm_boot::host::HostKind::Pvm => {
            "pvm (para-virtual; pvm=off forces native ring 0, kernel-only work)"
        }
        umlvm_boot::host::HostKind::Hardware => "native (ring 0)",
    };
    println!("guest mode: {mode}");
    println!("required capabilities: all present");
    Ok(())
}

fn main() -> ExitCode {
    let start = start_time();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            logger::init(args.verbose);
            let input = CliInput {
                kernel: args.kernel,
                mem: args.mem,
                umid: args.umid,
                rootfs: args.rootfs,
                ubd: args.ubd,
                verbose: args.verbose,
                switches: args.switches,
            };
            let cfg = match VmConfig::from_cli(&input) {
                Ok(cfg) => cfg,
                Err(e) => {
                    report(&e);
                    return ExitCode::from(exit::CONFIG_ERROR);
                }
            };
            let verbose = cfg.verbosity >= config::Verbosity::Verbose;
            let status = match run::run(&cfg, &start) {
                Ok(status) => status,
                Err(e) => {
                    report(&e);
                    e.exit_status()
                }
            };
            if verbose {
                eprintln!(
                    "umlvm: exit status {status} after {:.3} ms; peak RSS {} KiB",
                    start.instant.elapsed().as_secs_f64() * 1e3,
                    sys::peak_rss_kib()
                );
            }
            ExitCode::from(status)
        }
        Command::XtermHelper { socket } => {
            use vmm_sys_util::sock_ctrl_msg::ScmSocket;
            let sent = std::os::unix::net::UnixDatagram::unbound()
                .and_then(|s| s.connect(&socket).map(|_| s))
                .map_err(|e| e.to_string())
                .and_then(|s| s.send_with_fd(&b"umlvm"[..], 0).map_err(|e| e.to_string()));
            if let Err(e) = sent {
                eprintln!("umlvm: xterm helper: {}: {e}", socket.display());
                std::thread::sleep(std::time::Duration::from_secs(5));
                return ExitCode::from(exit::CONFIG_ERROR);
            }
            // Keep the terminal open until the window goes (SIGHUP) or umlvm closes it.
            loop {
                std::thread::park();
            }
        }
        Command::Moo(args) => match tools::moo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::from(exit::CONFIG_ERROR)
            }
        },
        Command::Cow(cmd) => match tools::cow(&cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::from(exit::CONFIG_ERROR)
            }
        },
        Command::DumpKernel { output } => match std::fs::write(&output, run::EMBEDDED_KERNEL) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("umlvm: {}: cannot write: {e}", output.display());
                ExitCode::from(exit::CONFIG_ERROR)
            }
        },
        Command::Info => match info() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::from(exit::CONFIG_ERROR)
            }
        },
    }
}
