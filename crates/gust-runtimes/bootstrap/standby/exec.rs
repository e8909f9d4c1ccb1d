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

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// What the Runtime API hands the stand-in when a function adopts its sandbox.
#[derive(Debug, Default, PartialEq)]
pub struct Adoption {
    pub environment: BTreeMap<String, String>,
    pub program: String,
    pub args: Vec<String>,
}

fn main() -> ExitCode {
    let Some(address) = std::env::var_os("AWS_LAMBDA_RUNTIME_API") else {
        eprintln!("gust standby: AWS_LAMBDA_RUNTIME_API is not set");
        return ExitCode::FAILURE;
    };
    let adoption = match wait_for_adoption(&address.to_string_lossy()) {
        Ok(adoption) => adoption,
        Err(e) => {
            eprintln!("gust standby: {e}");
            return ExitCode::FAILURE;
        }
    };
    let task_root = adoption
        .environment
        .get("LAMBDA_TASK_ROOT")
        .map_or("/var/task", String::as_str);
    // `exec` resets SIGPIPE and the signal mask, as every fresh start does.
    let error = Command::new(&adoption.program)
        .args(&adoption.args)
        .env_clear()
        .envs(&adoption.environment)
        .current_dir(task_root)
        .exec();
    eprintln!("gust standby: cannot run {}: {error}", adoption.program);
    ExitCode::from(127)
}

/// Asks the Runtime API for this sandbox's function and waits for the answer.
fn wait_for_adoption(address: &str) -> Result<Adoption, String> {
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connecting: {e}"))?;
    let request =
        format!("GET /2018-06-01/runtime/gust/standby HTTP/1.1\r\nHost: {address}\r\n\r\n");
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
    if !head.starts_with("HTTP/1.1 200") {
        return Err("the Runtime API ended the standby".into());
    }
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
    let text = String::from_utf8(body).map_err(|_| "the answer is not UTF-8")?;
    parse_adoption(&text)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads `{"Environment": {name: value, …}, "Exec": {"Program": p, "Args": [a, …]}}`; other
/// members are skipped.
pub fn parse_adoption(text: &str) -> Result<Adoption, String> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut adoption = Adoption::default();
    parser.object(|p, key| match key.as_str() {
        "Environment" => p.object(|p, name| {
            let value = p.string()?;
            adoption.environment.insert(name, value);
            Ok(())
        }),
        "Exec" => p.object(|p, key| match key.as_str() {
            "Program" => {
                adoption.program = p.string()?;
                Ok(())
            }
            "Args" => p.array(|p| {
                adoption.args.push(p.string()?);
                Ok(())
            }),
            _ => p.skip(),
        }),
        _ => p.skip(),
    })?;
    parser.space();
    if parser.at != parser.bytes.len() {
        return Err("trailing data after the adoption".into());
    }
    if adoption.program.is_empty() {
        return Err("the adoption names no program".into());
    }
    Ok(adoption)
}

/// Just enough JSON for the adoption document.
struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.space();
        if self.bytes.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", byte as char, self.at))
        }
    }

    /// Whether the next byte is `byte` (consumed if so).
    fn next_is(&mut self, byte: u8) -> bool {
        self.space();
        let is = self.bytes.get(self.at) == Some(&byte);
        if is {
            self.at += 1;
        }
        is
    }

    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, String) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'{')?;
        if self.next_is(b'}') {
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            if self.next_is(b'}') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'[')?;
        if self.next_is(b']') {
            return Ok(());
        }
        loop {
            element(self)?;
            if self.next_is(b']') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let byte = *self.bytes.get(self.at).ok_or("unterminated string")?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string()),
                b'\\' => {
                    let escape = *self.bytes.get(self.at).ok_or("unterminated escape")?;
                    self.at += 1;
                    let decoded = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(format!("bad escape at byte {}", self.at)),
                    };
                    let mut buffer = [0u8; 4];
                    out.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
                }
                _ => out.push(byte),
            }
        }
    }

    /// The code point of `\uXXXX` (the `\u` read), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                return Err("unpaired surrogate".into());
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err("unpaired surrogate".into());
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| "invalid code point".into())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or("bad \\u escape")?;
        self.at += 4;
        Ok(digits)
    }

    /// Skips any value.
    fn skip(&mut self) -> Result<(), String> {
        self.space();
        match self.bytes.get(self.at) {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => self.object(|p, _| p.skip()),
            Some(b'[') => self.array(Self::skip),
            Some(_) => {
                while self
                    .bytes
                    .get(self.at)
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
                Ok(())
            }
            None => Err("unexpected end".into()),
        }
    }
}
