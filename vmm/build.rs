//! Builds the guest kernel (its own workspace, target `x86_64-unknown-none`) and hands its path
//! to the `umlvm` crate, which embeds it with `include_bytes!`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "x86_64-unknown-none";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("vmm/ sits in the workspace root").to_path_buf();
    let guest = root.join("guest-kernel");
    for p in [
        "kernel/src",
        "kernel/Cargo.toml",
        "kernel/build.rs",
        "kernel/linker.ld",
        "kcore/src",
        "kcore/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", guest.join(p).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("boot/src").display());
    println!("cargo:rerun-if-changed={}", root.join("boot/Cargo.toml").display());
    println!("cargo:rerun-if-env-changed=UMLVM_GUEST_PROFILE");

    check_target_installed();

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let target_dir = out.join("guest-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guest)
        .args(["build", "--release", "--locked", "-p", "umlvm-kernel", "--target", GUEST_TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings are for the host: keep them away from the guest build.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let host_only = key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS"
            || matches!(
                key.as_str(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOCFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
            );
        if host_only {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo for the guest kernel: {e}"));
    if !status.success() {
        panic!(
            "building the guest kernel (guest-kernel/, target {GUEST_TARGET}) failed; see the errors above"
        );
    }
    let elf = target_dir.join(GUEST_TARGET).join("release").join("umlvm-kernel");
    assert!(elf.is_file(), "guest kernel build produced no {}", elf.display());
    println!("cargo:rustc-env=UMLVM_EMBEDDED_KERNEL={}", elf.display());
}

/// Fails with an actionable message when the guest target's standard library is missing.
fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        let lib = sysroot.join("lib/rustlib").join(GUEST_TARGET);
        if !Path::new(&lib).is_dir() {
            panic!(
                "the Rust target {GUEST_TARGET} is not installed (no {}); run `rustup target add {GUEST_TARGET}` (`make` does this for you)",
                lib.display()
            );
        }
    }
}
