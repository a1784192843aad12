//! The machine configuration: one plain [`VmConfig`] built from command-line flags and
//! UML-style `key=value` switches.
//!
//! As in UML, every switch is also passed to the guest kernel's command line, in order; the
//! VMM consumes the ones it understands (`mem=`, `umid=`, `pvm=`, `initrd=`, `ubdN=`, ...)
//! and validates them first.
//! When a flag and a switch set the same thing, the switch wins (it comes later on a UML
//! command line); among switches the last one wins.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use umlvm_boot::layout::{MAX_MEM_BYTES, MIN_MEM_BYTES};
use umlvm_devices::ubd::{self, UbdError, UbdSpec};
use umlvm_devices::virtio::console::{
    self, ChannelError, ConsoleKind, ConsoleName, ConsoleSpec, TerminalEmulator,
};

/// The image UML boots when no `ubd0=` is given, if it exists in the current directory.
pub const DEFAULT_ROOT_FS: &str = "root_fs";

/// Default guest RAM (UML's default is 32 MiB; ours has room for userland).
pub const DEFAULT_MEM_BYTES: u64 = 64 << 20;

/// Which guest kernel to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The kernel built into the `umlvm` binary.
    Embedded,
    /// An ELF file.
    File(PathBuf),
}

/// An initial RAM disk to load into guest memory (`--initrd FILE`, `initrd=FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitrdSpec {
    /// The file.
    pub file: PathBuf,
    /// How the user named it (`--initrd FILE` or `initrd=FILE`), for messages.
    pub input: String,
}

/// Whether to use the PVM para-virtual mode on a PVM host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvmChoice {
    /// Use it where the host is `kvm_pvm` (the default).
    Auto,
    /// Force the native (ring-0) mode: `pvm=off`.
    Off,
}

/// How much the VMM reports on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Host kind, mode, timings (`-v`).
    Verbose,
}

/// Everything needed to start a machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel to boot.
    pub kernel: KernelSource,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// Machine name (`umid=`).
    pub umid: Option<String>,
    /// PVM mode choice.
    pub pvm: PvmChoice,
    /// Initial RAM disk, if any.
    pub initrd: Option<InitrdSpec>,
    /// The guest kernel command line.
    pub cmdline: String,
    /// Block devices, by device number.
    pub ubd: Vec<UbdSpec>,
    /// Consoles and serial lines to create, with their channels.
    pub consoles: Vec<(ConsoleName, ConsoleSpec)>,
    /// The terminal emulator for `xterm` channels (`xterm=`).
    pub xterm: TerminalEmulator,
    /// Base directory for umid directories (`uml_dir=`, `--uml-dir`; default `$UML_DIR` or
    /// `~/.uml`).
    pub uml_dir: Option<PathBuf>,
    /// `--timeout SECS`: stop the guest after this long (CI mode).
    pub timeout: Option<std::time::Duration>,
    /// The command after `--`, if any.
    pub command: Vec<String>,
    /// Reporting level.
    pub verbosity: Verbosity,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A size that does not parse.
    #[error("{input}: not a size (use a number of bytes with an optional K, M, G or T suffix, e.g. 128M)")]
    BadSize {
        /// The offending input as the user wrote it.
        input: String,
    },
    /// A size outside what umlvm supports.
    #[error("{input}: {why}")]
    SizeOutOfRange {
        /// The offending input.
        input: String,
        /// What is wrong.
        why: String,
    },
    /// A ubd switch or flag that is not allowed.
    #[error(transparent)]
    Ubd(#[from] UbdError),
    /// A console switch that is not allowed.
    #[error(transparent)]
    Console(#[from] ChannelError),
    /// Two definitions of one device.
    #[error("{input}: ubd{index} is already defined ({previous})")]
    DuplicateUbd {
        /// The second definition.
        input: String,
        /// Device number.
        index: u8,
        /// The first definition.
        previous: String,
    },
    /// A switch value that is not allowed.
    #[error("{input}: {why}")]
    BadSwitch {
        /// The offending switch.
        input: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Parses a size: bytes, or a number with a K/M/G/T suffix (powers of 1024, as UML does);
/// an optional `B`/`iB` after the suffix is accepted.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()?.to_ascii_uppercase() {
        'K' => (&t[..t.len() - 1], 10),
        'M' => (&t[..t.len() - 1], 20),
        'G' => (&t[..t.len() - 1], 30),
        'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// Parses and checks a guest RAM size given as `input` (for messages) with value `value`.
fn parse_mem(input: &str, value: &str) -> Result<u64, ConfigError> {
    let bytes = parse_size(value).ok_or_else(|| ConfigError::BadSize { input: input.into() })?;
    let out_of_range = |why: String| ConfigError::SizeOutOfRange { input: input.into(), why };
    if bytes < MIN_MEM_BYTES {
        return Err(out_of_range(format!(
            "too small: the guest kernel needs at least {} MiB",
            MIN_MEM_BYTES >> 20
        )));
    }
    if bytes > MAX_MEM_BYTES {
        return Err(out_of_range(format!("larger than umlvm's limit of {} GiB", MAX_MEM_BYTES >> 30)));
    }
    if bytes % 4096 != 0 {
        return Err(out_of_range("not a multiple of 4 KiB".into()));
    }
    Ok(bytes)
}

/// Builder input: what the CLI collected.
#[derive(Clone, Debug, Default)]
pub struct CliInput {
    /// `--kernel FILE`.
    pub kernel: Option<PathBuf>,
    /// `--mem SIZE`.
    pub mem: Option<String>,
    /// `--umid NAME`.
    pub umid: Option<String>,
    /// `-v` count.
    pub verbose: u8,
    /// `--initrd FILE`.
    pub initrd: Option<PathBuf>,
    /// `--rootfs FILE` (ubd0).
    pub rootfs: Option<PathBuf>,
    /// `--ubd N=SPEC` flags.
    pub ubd: Vec<String>,
    /// `--uml-dir DIR`.
    pub uml_dir: Option<PathBuf>,
    /// `--timeout SECS`.
    pub timeout: Option<String>,
    /// Positional UML-style switches, in order.
    pub switches: Vec<String>,
    /// Words after `--`: the command the guest runs (init's arguments with `init=`).
    pub command: Vec<String>,
}

impl VmConfig {
    /// Builds the configuration from flags and switches.
    pub fn from_cli(cli: &CliInput) -> Result<Self, ConfigError> {
        let mut cfg = VmConfig {
            kernel: cli.kernel.clone().map_or(KernelSource::Embedded, KernelSource::File),
            mem_bytes: DEFAULT_MEM_BYTES,
            umid: cli.umid.clone(),
            pvm: PvmChoice::Auto,
            initrd: cli
                .initrd
                .as_ref()
                .map(|f| InitrdSpec { file: f.clone(), input: format!("--initrd {}", f.display()) }),
            cmdline: String::new(),
            ubd: Vec::new(),
            consoles: Vec::new(),
            xterm: TerminalEmulator::default(),
            uml_dir: cli.uml_dir.clone(),
            timeout: None,
            command: cli.command.clone(),
            verbosity: if cli.verbose > 0 { Verbosity::Verbose } else { Verbosity::Quiet },
        };
        let mut ubds: Vec<(UbdSpec, String)> = Vec::new();
        let mut add_ubd = |spec: UbdSpec, input: String| -> Result<(), ConfigError> {
            if let Some((_, previous)) = ubds.iter().find(|(s, _)| s.index == spec.index) {
                return Err(ConfigError::DuplicateUbd {
                    input,
                    index: spec.index,
                    previous: previous.clone(),
                });
            }
            ubds.push((spec, input));
            Ok(())
        };
        if let Some(root) = &cli.rootfs {
            let input = format!("--rootfs {}", root.display());
            let spec = ubd::parse_switch("ubd0", &root.to_string_lossy())?.expect("ubd0 is a ubd switch");
            add_ubd(spec, input)?;
        }
        for flag in &cli.ubd {
            let input = format!("--ubd {flag}");
            let (n, spec) = flag.split_once('=').ok_or(ConfigError::BadSwitch {
                input: input.clone(),
                why: "expected --ubd N=FILE or N=COW,BACKING",
            })?;
            match ubd::parse_switch(&format!("ubd{n}"), spec)? {
                Some(s) => add_ubd(s, input)?,
                None => {
                    return Err(ConfigError::BadSwitch {
                        input,
                        why: "expected --ubd N=FILE or N=COW,BACKING",
                    });
                }
            }
        }
        if let Some(t) = &cli.timeout {
            let secs: f64 =
                t.parse().ok().filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 1e7).ok_or_else(|| {
                    ConfigError::BadSwitch {
                        input: format!("--timeout {t}"),
                        why: "expected a number of seconds greater than 0",
                    }
                })?;
            cfg.timeout = Some(std::time::Duration::from_secs_f64(secs));
        }
        if let Some(m) = &cli.mem {
            cfg.mem_bytes = parse_mem(&format!("--mem {m}"), m)?;
        }
        if let Some(u) = &cli.umid {
            check_umid(&format!("--umid {u}"), u)?;
        }
        let mut general: HashMap<ConsoleKind, ConsoleSpec> = HashMap::new();
        let mut specific: BTreeMap<ConsoleName, ConsoleSpec> = BTreeMap::new();
        let mut words = Vec::with_capacity(cli.switches.len());
        for sw in &cli.switches {
            if sw.contains(|c: char| c.is_ascii_whitespace() || c.is_control()) {
                return Err(ConfigError::BadSwitch {
                    input: sw.clone(),
                    why: "switches cannot contain spaces or control characters",
                });
            }
            match sw.split_once('=') {
                Some(("mem", v)) => cfg.mem_bytes = parse_mem(sw, v)?,
                Some(("umid", v)) => {
                    check_umid(sw, v)?;
                    cfg.umid = Some(v.to_string());
                }
                Some(("pvm", v)) => {
                    cfg.pvm = match v {
                        "off" | "0" | "no" => PvmChoice::Off,
                        "on" | "auto" | "1" | "yes" => PvmChoice::Auto,
                        _ => {
                            return Err(ConfigError::BadSwitch {
                                input: sw.clone(),
                                why: "expected pvm=on or pvm=off",
                            });
                        }
                    }
                }
                Some(("initrd", v)) if !v.is_empty() => {
                    cfg.initrd = Some(InitrdSpec { file: PathBuf::from(v), input: sw.clone() });
                }
                Some(("uml_dir", v)) if !v.is_empty() => cfg.uml_dir = Some(PathBuf::from(v)),
                Some(("xterm", v)) => {
                    cfg.xterm = TerminalEmulator::parse(v).ok_or_else(|| ConfigError::BadSwitch {
                        input: sw.clone(),
                        why: "expected xterm=PROGRAM,TITLE_SWITCH,EXEC_SWITCH (e.g. xterm,-T,-e)",
                    })?;
                }
                Some(("init" | "root" | "initrd", "")) => {
                    return Err(ConfigError::BadSwitch { input: sw.clone(), why: "needs a value" });
                }
                Some((key, value)) => {
                    if let Some(spec) = ubd::parse_switch(key, value)? {
                        add_ubd(spec, sw.clone())?;
                    } else if let Some((kind, unit, spec)) = console::parse_switch(key, value)? {
                        match unit {
                            Some(unit) => specific.insert(ConsoleName { kind, unit }, spec),
                            None => general.insert(kind, spec),
                        };
                    }
                }
                None => {}
            }
            words.push(sw.as_str());
        }
        // As in UML: with no ubd0, use ./root_fs when there is one.
        if !ubds.iter().any(|(s, _)| s.index == 0) && std::path::Path::new(DEFAULT_ROOT_FS).is_file() {
            let spec = ubd::parse_switch("ubd0", DEFAULT_ROOT_FS)?.expect("ubd0 is a ubd switch");
            ubds.push((spec, format!("ubd0={DEFAULT_ROOT_FS} (default)")));
        }
        ubds.sort_by_key(|(s, _)| s.index);
        cfg.ubd = ubds.into_iter().map(|(s, _)| s).collect();
        cfg.consoles = console::resolve(&general, &specific);
        console::check_inputs(&cfg.consoles)?;
        cfg.cmdline = words.join(" ");
        // CI mode with stdin from a pipe or file: the guest's console behaves like one (no
        // echo, no output translation, no line editing), and its end is passed on.
        let con0_stdio = !specific.keys().any(|n| n.kind == console::ConsoleKind::Con && n.unit == 0)
            && !general.contains_key(&console::ConsoleKind::Con);
        if !cli.command.is_empty() && con0_stdio && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            if !cfg.cmdline.is_empty() {
                cfg.cmdline.push(' ');
            }
            cfg.cmdline.push_str("stdio=pipe");
        }
        if !cli.command.is_empty() {
            cfg.cmdline.push_str(if cfg.cmdline.is_empty() { "--" } else { " --" });
            for w in &cli.command {
                cfg.cmdline.push(' ');
                cfg.cmdline.push_str(&quote_word(w)?);
            }
        }
        Ok(cfg)
    }
}

fn check_umid(input: &str, umid: &str) -> Result<(), ConfigError> {
    let ok = !umid.is_empty()
        && umid.len() <= 64
        && umid.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !umid.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadSwitch {
            input: input.into(),
            why: "a umid is 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
        })
    }
}

/// A command word for the kernel command line: as is, or in double quotes when it has
/// spaces (the guest kernel splits on spaces outside quotes, as Linux does). Double quotes and
/// control characters cannot be expressed there.
fn quote_word(w: &str) -> Result<String, ConfigError> {
    if w.contains('"') || w.contains(|c: char| c.is_control()) {
        return Err(ConfigError::BadSwitch {
            input: w.to_string(),
            why: "command words after -- cannot contain double quotes or control characters",
        });
    }
    if w.is_empty() || w.contains(|c: char| c.is_ascii_whitespace()) {
        Ok(format!("\"{w}\""))
    } else {
        Ok(w.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(switches: &[&str]) -> CliInput {
        CliInput { switches: switches.iter().map(|s| s.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn sizes_parse_like_uml() {
        assert_eq!(parse_size("128M"), Some(128 << 20));
        assert_eq!(parse_size("128m"), Some(128 << 20));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("16777216"), Some(16 << 20));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        for bad in ["", "M", "12X", "-1M", "1.5G", "0x10M", "99999999999999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = VmConfig::from_cli(&CliInput::default()).unwrap();
        assert_eq!(c.kernel, KernelSource::Embedded);
        assert_eq!(c.mem_bytes, DEFAULT_MEM_BYTES);
        assert_eq!(c.pvm, PvmChoice::Auto);
        assert_eq!(c.cmdline, "");
        assert_eq!(c.verbosity, Verbosity::Quiet);
    }

    #[test]
    fn switches_and_flags_both_work_and_go_to_the_guest() {
        let c = VmConfig::from_cli(&cli(&[
            "mem=128M",
            "umid=debian",
            "init=/bin/sh",
            "root=/dev/ubda",
            "single",
            "foo=bar",
        ]))
        .unwrap();
        assert_eq!(c.mem_bytes, 128 << 20);
        assert_eq!(c.umid.as_deref(), Some("debian"));
        assert_eq!(c.cmdline, "mem=128M umid=debian init=/bin/sh root=/dev/ubda single foo=bar");

        let mut input = cli(&[]);
        input.mem = Some("128M".into());
        input.kernel = Some("/tmp/k".into());
        input.verbose = 1;
        let c = VmConfig::from_cli(&input).unwrap();
        assert_eq!(c.mem_bytes, 128 << 20);
        assert_eq!(c.kernel, KernelSource::File("/tmp/k".into()));
        assert_eq!(c.verbosity, Verbosity::Verbose);
    }

    #[test]
    fn the_last_switch_wins_over_flags_and_earlier_switches() {
        let mut input = cli(&["mem=32M", "mem=96M"]);
        input.mem = Some("256M".into());
        assert_eq!(VmConfig::from_cli(&input).unwrap().mem_bytes, 96 << 20);
    }

    #[test]
    fn pvm_switch() {
        assert_eq!(VmConfig::from_cli(&cli(&["pvm=off"])).unwrap().pvm, PvmChoice::Off);
        assert_eq!(VmConfig::from_cli(&cli(&["pvm=on"])).unwrap().pvm, PvmChoice::Auto);
        let e = VmConfig::from_cli(&cli(&["pvm=maybe"])).unwrap_err();
        assert_eq!(e.to_string(), "pvm=maybe: expected pvm=on or pvm=off");
    }

    #[test]
    fn bad_memory_sizes_name_the_input() {
        let e = VmConfig::from_cli(&cli(&["mem=lots"])).unwrap_err();
        assert!(e.to_string().starts_with("mem=lots: not a size"), "{e}");
        let e = VmConfig::from_cli(&cli(&["mem=4M"])).unwrap_err();
        assert_eq!(e.to_string(), "mem=4M: too small: the guest kernel needs at least 16 MiB");
        let e = VmConfig::from_cli(&cli(&["mem=1T"])).unwrap_err();
        assert_eq!(e.to_string(), "mem=1T: larger than umlvm's limit of 128 GiB");
        let e = VmConfig::from_cli(&cli(&["mem=16777217"])).unwrap_err();
        assert!(e.to_string().contains("multiple of 4 KiB"));
        let mut input = cli(&[]);
        input.mem = Some("zzz".into());
        assert!(VmConfig::from_cli(&input).unwrap_err().to_string().starts_with("--mem zzz: not a size"));
    }

    #[test]
    fn ubd_switches_and_flags() {
        let mut input = cli(&["ubd1=data.img", "ubd2r=cow,backing"]);
        input.rootfs = Some("root.img".into());
        input.ubd = vec!["4=other".into()];
        let c = VmConfig::from_cli(&input).unwrap();
        let idx: Vec<u8> = c.ubd.iter().map(|s| s.index).collect();
        assert_eq!(idx, [0, 1, 2, 4]);
        assert_eq!(c.ubd[0].file, std::path::Path::new("root.img"));
        assert!(c.ubd[2].read_only);
        assert_eq!(c.cmdline, "ubd1=data.img ubd2r=cow,backing", "switches still reach the guest");
        let e = VmConfig::from_cli(&cli(&["ubd0=a", "ubd0=b"])).unwrap_err();
        assert_eq!(e.to_string(), "ubd0=b: ubd0 is already defined (ubd0=a)");
        let mut input = cli(&["ubd0=a"]);
        input.rootfs = Some("r".into());
        assert!(VmConfig::from_cli(&input).unwrap_err().to_string().contains("already defined (--rootfs r)"));
        assert!(
            VmConfig::from_cli(&cli(&["ubd16=x"]))
                .unwrap_err()
                .to_string()
                .starts_with("ubd16=x: device number out of range")
        );
        let mut input = cli(&[]);
        input.ubd = vec!["x".into()];
        assert!(VmConfig::from_cli(&input).is_err());
    }

    #[test]
    fn console_switches_resolve() {
        let c = VmConfig::from_cli(&cli(&[])).unwrap();
        assert_eq!(c.consoles.len(), 1, "con0 on stdin/stdout by default");
        let c = VmConfig::from_cli(&cli(&["con1=pty", "ssl=null", "con0=null"])).unwrap();
        let names: Vec<String> = c.consoles.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(names, ["con0", "con1", "ssl0", "ssl1", "ssl2", "ssl3"]);
        assert!(
            VmConfig::from_cli(&cli(&["con0=bogus"]))
                .unwrap_err()
                .to_string()
                .starts_with("con0=bogus: unknown channel")
        );
    }

    #[test]
    fn bad_umids_and_values_are_refused() {
        assert!(VmConfig::from_cli(&cli(&["umid=../etc"])).is_err());
        assert!(VmConfig::from_cli(&cli(&["umid="])).is_err());
        assert!(VmConfig::from_cli(&cli(&["init="])).is_err());
        let e = VmConfig::from_cli(&cli(&["initrd="])).unwrap_err();
        assert_eq!(e.to_string(), "initrd=: needs a value");
        assert!(VmConfig::from_cli(&cli(&["a b"])).is_err());
    }

    #[test]
    fn initrd_flag_and_switch() {
        assert_eq!(VmConfig::from_cli(&cli(&[])).unwrap().initrd, None);
        let mut input = cli(&[]);
        input.initrd = Some("a.cpio.gz".into());
        let c = VmConfig::from_cli(&input).unwrap();
        let spec = c.initrd.unwrap();
        assert_eq!(spec.file, std::path::Path::new("a.cpio.gz"));
        assert_eq!(spec.input, "--initrd a.cpio.gz");
        assert_eq!(c.cmdline, "");
        // The switch wins over the flag, the last switch over earlier ones, and it reaches
        // the guest's command line as every switch does.
        let mut input = cli(&["initrd=b.cpio", "initrd=c.cpio", "single"]);
        input.initrd = Some("a.cpio.gz".into());
        let c = VmConfig::from_cli(&input).unwrap();
        let spec = c.initrd.unwrap();
        assert_eq!(spec.file, std::path::Path::new("c.cpio"));
        assert_eq!(spec.input, "initrd=c.cpio");
        assert_eq!(c.cmdline, "initrd=b.cpio initrd=c.cpio single");
    }
}
