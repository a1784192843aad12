//! `umlvm moo` and `umlvm cow`: UML's uml_moo and uml_mkcow, on UML-compatible COW files.

use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use umlvm_devices::disk::cow::{self, CowError, MergeTarget};

/// `umlvm moo`.
#[derive(Args, Debug)]
#[command(after_help = "As uml_moo: `umlvm moo COW NEW` writes the merged image to NEW (the COW \
and backing files are left alone); `umlvm moo -d COW` merges into the backing file in place.")]
pub struct MooArgs {
    /// Merge into the backing file in place (destructive for the backing file).
    #[arg(short = 'd')]
    in_place: bool,
    /// Backing file (default: the one recorded in the COW header).
    #[arg(short = 'b', value_name = "BACKING")]
    backing: Option<PathBuf>,
    /// The COW file.
    #[arg(value_name = "COW")]
    cow: PathBuf,
    /// The merged image to create (not with -d).
    #[arg(value_name = "NEW")]
    new: Option<PathBuf>,
}

/// `umlvm cow ...`.
#[derive(Subcommand, Debug)]
pub enum CowCommand {
    /// Print a COW file's header.
    Info {
        /// The COW file.
        #[arg(value_name = "COW")]
        cow: PathBuf,
    },
    /// Create an empty COW file over BACKING (as uml_mkcow).
    Create {
        /// The COW file to create.
        #[arg(value_name = "COW")]
        cow: PathBuf,
        /// The backing file.
        #[arg(value_name = "BACKING")]
        backing: PathBuf,
    },
}

/// Why a tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit.
    #[error("{0}")]
    Usage(&'static str),
    /// The COW layer refused.
    #[error(transparent)]
    Cow(#[from] CowError),
}

fn progress_bar(label: &str) -> impl FnMut(u64, u64) {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let label = label.to_string();
    let mut last = u64::MAX;
    move |done, total| {
        if !tty || total == 0 {
            return;
        }
        let pct = done * 100 / total;
        if pct != last {
            last = pct;
            let bar = "#".repeat((pct / 2) as usize);
            eprint!("\r{label} [{bar:<50}] {pct:3}%");
            if done >= total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    }
}

/// `umlvm moo`.
pub fn moo(args: &MooArgs) -> Result<(), ToolError> {
    let target = match (args.in_place, &args.new) {
        (true, None) => MergeTarget::InPlace,
        (false, Some(new)) => MergeTarget::NewFile(new.clone()),
        (true, Some(_)) => return Err(ToolError::Usage("moo: -d merges in place and takes no NEW file")),
        (false, None) => {
            return Err(ToolError::Usage("moo: give NEW (the merged image to write) or -d (merge in place)"));
        }
    };
    cow::merge(&args.cow, args.backing.as_deref(), &target, progress_bar("merging"))?;
    Ok(())
}

/// `umlvm cow ...`.
pub fn cow(cmd: &CowCommand) -> Result<(), ToolError> {
    match cmd {
        CowCommand::Info { cow } => {
            let h = cow::read_header(cow)?;
            let l = h.layout();
            println!("COW file:       {}", cow.display());
            println!("version:        {}", cow::COW_VERSION);
            println!("backing file:   {}", h.backing_file.display());
            println!("backing mtime:  {}", h.mtime);
            println!("backing size:   {} bytes", h.size);
            println!("sector size:    {}", h.sector_size);
            println!("alignment:      {}", h.alignment);
            println!("bitmap:         {} bytes at {}", l.bitmap_len, l.bitmap_offset);
            println!("data offset:    {}", l.data_offset);
            Ok(())
        }
        CowCommand::Create { cow, backing } => {
            if cow.exists() {
                return Err(ToolError::Cow(CowError::Io(
                    cow.clone(),
                    std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                )));
            }
            cow::create(cow, backing)?;
            Ok(())
        }
    }
}
