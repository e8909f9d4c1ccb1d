//! Gust's stand-in for a custom runtime started ahead of demand.
//!
//! It runs in a sandbox of its own before any function is known, waits on the Runtime API for
//! the environment of the function that adopts the sandbox, and then replaces itself with that
//! function's `bootstrap`, exactly as a fresh start would run it: same variables, same working
//! directory, signals at their defaults, no descriptor of its own left open.
//!
//! It is a program of its own (built by this crate's build script with the standard library
//! only) so that waiting costs little memory and the exec at adoption is as cheap as an exec
//! can be.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// Gust's control protocol: the one Rust definition, in the Runtime API's crate (standard
/// library only, so that this program can include it).
#[allow(dead_code)]
#[path = "../../../gust-runtime-api/src/control.rs"]
mod control;

use control::{Adoption, Claim, Exec};

fn main() -> ExitCode {
    let Some(address) = std::env::var_os("AWS_LAMBDA_RUNTIME_API") else {
        eprintln!("gust standby: AWS_LAMBDA_RUNTIME_API is not set");
        return ExitCode::FAILURE;
    };
    let (environment, exec) = match wait_for_adoption(&address.to_string_lossy()) {
        Ok(adopted) => adopted,
        Err(e) => {
            eprintln!("gust standby: {e}");
            return ExitCode::FAILURE;
        }
    };
    let task_root = environment
        .iter()
        .rev()
        .find(|(name, _)| name == "LAMBDA_TASK_ROOT")
        .map_or("/var/task", |(_, value)| value.as_str());
    // `exec` resets SIGPIPE and the signal mask, as every fresh start does.
    let error = Command::new(&exec.program)
        .args(&exec.args)
        .env_clear()
        .envs(environment.iter().map(|(k, v)| (k, v)))
        .current_dir(task_root)
        .exec();
    eprintln!("gust standby: cannot run {}: {error}", exec.program);
    ExitCode::from(127)
}

/// Asks the Runtime API for this sandbox's function and waits for the answer.
fn wait_for_adoption(address: &str) -> Result<Adopted, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connecting: {e}"))?;
    let request = format!(
        "GET /2018-06-01/runtime/gust/standby HTTP/1.1\r\nHost: {address}\r\n{}: {}\r\n\r\n",
        control::HEADER,
        control::VERSION
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("asking: {e}"))?;
    let mut data = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(at) = find(&data, b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err("the Runtime API closed the connection".into()),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let refused = !head.starts_with("HTTP/1.1 200");
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .ok_or("the answer has no length")?;
    let mut body = data.split_off(head_end + 4);
    // Read exactly the body: waiting for the server to close costs a round of scheduling.
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Err("the answer ended early".into()),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    body.truncate(length);
    drop(stream);
    if refused {
        // The Runtime API's error document names why (a version it does not speak).
        let status = head.lines().next().unwrap_or_default();
        return Err(format!(
            "the Runtime API ended the standby ({status}): {}",
            String::from_utf8_lossy(&body)
        ));
    }
    adoption(&body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The environment a stand-in is adopted with, and the program it execs.
pub type Adopted = (Vec<(String, String)>, Exec);

/// Reads Gust's answer to the standby: an adoption that names a program.
pub fn adoption(message: &[u8]) -> Result<Adopted, String> {
    match Claim::decode(message) {
        Ok(Claim::Adopt(Adoption {
            environment,
            exec: Some(exec),
        })) => Ok((environment, exec)),
        Ok(Claim::Adopt(_)) => Err("the adoption names no program".into()),
        Ok(Claim::Fork(_)) => Err("Gust asked a stand-in to fork".into()),
        Err(e) => Err(format!("refusing Gust's message: {e}")),
    }
}
