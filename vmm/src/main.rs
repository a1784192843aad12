//! `umlvm`: a KVM microVM monitor for umlvm's para-virtual Rust guest kernel.

mod config;
mod devices;
mod exit;
mod hotplug;
mod initrd;
mod kvm;
mod logger;
mod mconsole;
mod mkrootfs;
mod run;
mod symbolize;
mod sys;
mod tools;
mod umid;
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
    /// Talk to a running machine's management console (as uml_mconsole): one command, or
    /// an interactive prompt without one.
    Mconsole {
        /// The machine's umid, or the path of its mconsole socket.
        #[arg(value_name = "UMID")]
        target: String,
        /// The command (version, help, halt, reboot, stop, go, config DEV, ...).
        #[arg(value_name = "COMMAND", trailing_var_arg = true)]
        command: Vec<String>,
        /// Base directory of machine directories (default $UML_DIR or ~/.uml).
        #[arg(long, value_name = "DIR")]
        uml_dir: Option<PathBuf>,
    },
    /// List running machines: umid, pid, uptime.
    List {
        /// Base directory of machine directories (default $UML_DIR or ~/.uml).
        #[arg(long, value_name = "DIR")]
        uml_dir: Option<PathBuf>,
    },
    /// Merge a UML COW file with its backing file (uml_moo).
    Moo(tools::MooArgs),
    /// Build a bootable ext2 root filesystem image with busybox (as UML's root_fs images).
    Mkrootfs(mkrootfs::MkrootfsArgs),
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
root=DEV, initrd=FILE, pvm=off, ...). umlvm acts on the ones it knows and passes all of them, in order, \
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
    /// Initial RAM disk (e.g. a gzipped newc cpio archive) loaded into guest RAM for the
    /// kernel (same as the initrd= switch).
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// Root filesystem image (same as ubd0=FILE).
    #[arg(long, value_name = "FILE")]
    rootfs: Option<PathBuf>,
    /// Block device N: an image, or COW,BACKING (same as ubdN=SPEC); repeatable.
    #[arg(long, value_name = "N=SPEC")]
    ubd: Vec<String>,
    /// Base directory for machine directories (same as uml_dir=; default $UML_DIR or ~/.uml).
    #[arg(long, value_name = "DIR")]
    uml_dir: Option<PathBuf>,
    /// Stop the guest after SECS seconds (exit status 124), e.g. for CI jobs that may hang.
    #[arg(long, value_name = "SECS")]
    timeout: Option<String>,
    /// Report host kind, guest mode and timings on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// UML-style switches.
    #[arg(value_name = "SWITCH")]
    switches: Vec<String>,
    /// After `--`: a command for the guest to run (CI mode), or init's arguments with init=.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
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
            if args.command.is_empty() && std::env::args().skip(2).any(|a| a == "--") {
                eprintln!(
                    "umlvm: --: expected a command after it (umlvm run [OPTIONS] -- COMMAND [ARGS...])"
                );
                return ExitCode::from(exit::CONFIG_ERROR);
            }
            let input = CliInput {
                kernel: args.kernel,
                mem: args.mem,
                umid: args.umid,
                initrd: args.initrd,
                rootfs: args.rootfs,
                ubd: args.ubd,
                uml_dir: args.uml_dir,
                verbose: args.verbose,
                switches: args.switches,
                command: args.command,
                timeout: args.timeout,
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
        Command::Mconsole { target, command, uml_dir } => {
            mconsole_client(&target, &command, uml_dir.as_deref())
        }
        Command::List { uml_dir } => list_machines(uml_dir.as_deref()),
        Command::Moo(args) => match tools::moo(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report(&e);
                ExitCode::from(exit::CONFIG_ERROR)
            }
        },
        Command::Mkrootfs(args) => match mkrootfs::mkrootfs(&args) {
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

/// The socket of `target`: a path, or a umid under the base directory.
fn mconsole_socket(target: &str, uml_dir: Option<&std::path::Path>) -> Result<PathBuf, String> {
    if target.contains('/') {
        return Ok(PathBuf::from(target));
    }
    let base = umid::base_dir(uml_dir).map_err(|e| e.to_string())?;
    Ok(base.join(target).join("mconsole"))
}

fn mconsole_client(target: &str, command: &[String], uml_dir: Option<&std::path::Path>) -> ExitCode {
    let socket = match mconsole_socket(target, uml_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("umlvm: {e}");
            return ExitCode::from(exit::CONFIG_ERROR);
        }
    };
    if !socket.exists() {
        eprintln!("umlvm: {}: no such machine (no mconsole socket)", socket.display());
        return ExitCode::from(exit::CONFIG_ERROR);
    }
    let run_one = |line: &str| -> bool {
        match mconsole::send_command(&socket, line) {
            Ok((err, text)) => {
                println!("{} {text}", if err { "ERR" } else { "OK" });
                !err
            }
            Err(e) => {
                eprintln!("umlvm: {}: {e}", socket.display());
                false
            }
        }
    };
    if !command.is_empty() {
        return if run_one(&command.join(" ")) { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    // Interactive. On a terminal: a line editor with history (arrows, ^R), like
    // uml_mconsole's readline prompt; otherwise plain lines from stdin, for scripts.
    // `quit` or end of input leaves; the exit status is that of the last command.
    let mut ok = true;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let mut editor = match rustyline::DefaultEditor::new() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("umlvm: terminal: {e}");
                return ExitCode::from(1);
            }
        };
        let prompt = format!("({target}) ");
        loop {
            match editor.readline(&prompt) {
                Ok(line) => {
                    let line = line.trim();
                    if line == "quit" {
                        break;
                    }
                    if !line.is_empty() {
                        let _ = editor.add_history_entry(line);
                        ok = run_one(line);
                    }
                }
                // ^C abandons the line being typed, as in readline.
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(rustyline::error::ReadlineError::Eof) => break,
                Err(e) => {
                    eprintln!("umlvm: terminal: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    } else {
        let mut line = String::new();
        loop {
            line.clear();
            if std::io::stdin().read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim();
            if line == "quit" {
                break;
            }
            if !line.is_empty() {
                ok = run_one(line);
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

fn list_machines(uml_dir: Option<&std::path::Path>) -> ExitCode {
    let base = match umid::base_dir(uml_dir) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("umlvm: {e}");
            return ExitCode::from(exit::CONFIG_ERROR);
        }
    };
    println!("{:<20} {:>8} {:>10}", "UMID", "PID", "UPTIME");
    let mut entries: Vec<_> = std::fs::read_dir(&base).map(|d| d.flatten().collect()).unwrap_or_default();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let dir = e.path();
        let Some(pid) = umid::read_pid(&dir) else { continue };
        if !umid::alive(pid) {
            continue;
        }
        let uptime = std::fs::metadata(dir.join("pid"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .map_or("?".into(), |d| format!("{}s", d.as_secs()));
        println!("{:<20} {:>8} {:>10}", e.file_name().to_string_lossy(), pid, uptime);
    }
    ExitCode::SUCCESS
}
