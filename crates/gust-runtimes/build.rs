//! Builds the custom-runtime stand-in (`bootstrap/standby/exec.rs`) as a program of its own,
//! with the standard library only, so that Gust can ship it inside its binary like the other
//! bootstraps.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "bootstrap/standby/exec.rs";
    println!("cargo:rerun-if-changed={source}");
    // The control protocol, which the stand-in includes from the Runtime API's crate.
    println!("cargo:rerun-if-changed=../gust-runtime-api/src/control.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let mut command = Command::new(rustc);
    command
        .args([
            "--edition=2024",
            "--crate-name=gust_standby",
            "--crate-type=bin",
        ])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["--target", &target])
        .arg("-o")
        .arg(out.join("standby-exec"))
        .arg(source);
    // The target's linker, where the build configures one (cross builds).
    let linker_variable = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    if let Some(linker) = env::var_os(linker_variable) {
        command.arg("-C").arg({
            let mut flag = std::ffi::OsString::from("linker=");
            flag.push(linker);
            flag
        });
    }
    let status = command.status().expect("running rustc for the stand-in");
    assert!(
        status.success(),
        "building the custom-runtime stand-in failed"
    );
}
