//! Gust's control protocol with its own bootstraps: the messages that adopt a runtime started
//! ahead, fork an environment from a SnapStart snapshot process and report how it ended.
//! `PROTOCOL.md` at the repository root describes it for the bootstraps' side.
//!
//! A message is a run of fields, each ended by a NUL byte: the version ([`VERSION`]), the
//! kind, then `name=value` fields (names repeat where a field is a list). Environment names and
//! values cannot contain NUL, so nothing needs escaping and every bootstrap reads a message
//! with a split.
//!
//! This file uses the standard library only: the custom-runtime stand-in
//! (`gust-runtimes/bootstrap/standby/exec.rs`) compiles it into itself with `rustc` alone, so
//! that there is one Rust definition of the protocol. For the same reason [`ControlError`]
//! writes its `Display` by hand instead of deriving it with `thiserror`.

use std::fmt;

/// The protocol version this side speaks: the first field of every message, and what a
/// bootstrap states in the [`HEADER`] of each control call.
pub const VERSION: &str = "gust-control/1";

/// What every version's first field starts with: tells another version from garbage.
pub const PROTOCOL: &str = "gust-control/";

/// The request header in which a bootstrap states the version it speaks.
pub const HEADER: &str = "Gust-Protocol";

/// The content type of a control message in an HTTP body.
pub const CONTENT_TYPE: &str = "application/vnd.gust.control";

/// The program a runtime started ahead runs once adopted, as a fresh start would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub program: String,
    pub args: Vec<String>,
}

/// A runtime started ahead becomes its function's: it takes `environment` as its whole
/// environment. The stand-in then execs `exec`; an interpreter's bootstrap is already that
/// program and goes on to initialise the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub environment: Vec<(String, String)>,
    pub exec: Option<Exec>,
}

/// A snapshot process forks a new environment, whose `/tmp` holds `tmp_mb` MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkRequest {
    pub tmp_mb: u32,
}

/// What a runtime waiting on `GET …/gust/standby` is claimed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// (kind `adopt`) A pre-started runtime becomes a function's.
    Adopt(Adoption),
    /// (kind `fork`) A snapshot process forks an environment.
    Fork(ForkRequest),
}

/// How a snapshot process's fork went (the body of `POST …/gust/forked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkReport {
    /// (kind `forked`) The fork, by its pid as the snapshot process sees it, waits in
    /// namespaces of its own for its answer.
    Forked { pid: u32 },
    /// (kind `fork-failed`) There is no fork to answer.
    Failed { reason: String },
}

/// Gust's answer to a fork report, which the snapshot process hands to its fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForkAnswer {
    /// (kind `restore`) The fork's sandbox is ready: it carries on with these variables.
    Restore { environment: Vec<(String, String)> },
    /// (kind `abandon`) Gust could not make the fork an environment: it must exit.
    Abandon,
}

/// (kind `exited`) How a restored environment's runtime ended: a wait status, as `waitpid`
/// gives it (the environment's first process reports it, as Gust is not the runtime's parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    pub status: i32,
}

/// Why a message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The message does not end with a NUL: it was cut short, or is not a control message.
    Unterminated,
    /// The first field names no version of this protocol.
    NotControl,
    /// The first field names a version of the protocol this side does not speak.
    Version(String),
    /// A field is not UTF-8.
    NotUtf8,
    /// The message has no kind.
    NoKind,
    /// A kind this side does not take here (or no kind of the protocol at all).
    Unexpected {
        kind: String,
        expected: &'static str,
    },
    /// A field without `=`.
    NotAField(String),
    UnknownField {
        kind: &'static str,
        field: String,
    },
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    RepeatedField {
        kind: &'static str,
        field: &'static str,
    },
    /// A field whose value is not what it must be (a number, a variable, a program).
    InvalidValue {
        field: &'static str,
        value: String,
    },
    /// A value that cannot be sent: it contains NUL (or, for a variable's name, `=` or
    /// nothing).
    Unencodable {
        field: &'static str,
        value: String,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unterminated => f.write_str("the message does not end with a NUL"),
            Self::NotControl => write!(f, "not a {PROTOCOL}* message"),
            Self::Version(got) => write!(
                f,
                "the message is of protocol {}, this side speaks {VERSION}",
                excerpt(got)
            ),
            Self::NotUtf8 => f.write_str("a field is not UTF-8"),
            Self::NoKind => f.write_str("the message has no kind"),
            Self::Unexpected { kind, expected } => write!(
                f,
                "a message of kind {:?} where {expected} was expected",
                excerpt(kind)
            ),
            Self::NotAField(field) => write!(f, "{:?} is not a name=value field", excerpt(field)),
            Self::UnknownField { kind, field } => {
                write!(f, "{kind} has no field {:?}", excerpt(field))
            }
            Self::MissingField { kind, field } => write!(f, "{kind} lacks its {field} field"),
            Self::RepeatedField { kind, field } => {
                write!(f, "{kind} has its {field} field more than once")
            }
            Self::InvalidValue { field, value } => {
                write!(f, "{field} cannot be {:?}", excerpt(value))
            }
            Self::Unencodable { field, value } => {
                write!(f, "{field} {:?} cannot be sent", excerpt(value))
            }
        }
    }
}

impl std::error::Error for ControlError {}

/// At most 64 characters of text from a message, for an error that names it.
fn excerpt(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Writes a message field by field.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn new(kind: &str) -> Self {
        let mut out = Vec::with_capacity(256);
        for field in [VERSION, kind] {
            out.extend_from_slice(field.as_bytes());
            out.push(0);
        }
        Self { out }
    }

    fn field(&mut self, name: &'static str, value: &str) -> Result<(), ControlError> {
        if value.contains('\0') {
            return Err(ControlError::Unencodable {
                field: name,
                value: value.replace('\0', "\\0"),
            });
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'=');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(0);
        Ok(())
    }

    /// An `env=NAME=value` field.
    fn variable(&mut self, name: &str, value: &str) -> Result<(), ControlError> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(ControlError::Unencodable {
                field: "env",
                value: name.replace('\0', "\\0"),
            });
        }
        self.field("env", &format!("{name}={value}"))
    }

    fn environment(&mut self, environment: &[(String, String)]) -> Result<(), ControlError> {
        environment
            .iter()
            .try_for_each(|(name, value)| self.variable(name, value))
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// A message as read: its kind and its fields, in order.
struct Frame<'a> {
    kind: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Frame<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ControlError> {
        let Some((&0, body)) = bytes.split_last() else {
            return Err(ControlError::Unterminated);
        };
        let mut parts = body
            .split(|&b| b == 0)
            .map(|part| std::str::from_utf8(part).map_err(|_| ControlError::NotUtf8));
        let version = parts.next().ok_or(ControlError::Unterminated)??;
        if version != VERSION {
            return Err(if version.starts_with(PROTOCOL) {
                ControlError::Version(version.to_string())
            } else {
                ControlError::NotControl
            });
        }
        let kind = parts.next().ok_or(ControlError::NoKind)??;
        if kind.is_empty() {
            return Err(ControlError::NoKind);
        }
        let fields = parts
            .map(|part| {
                let part = part?;
                part.split_once('=')
                    .ok_or_else(|| ControlError::NotAField(part.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { kind, fields })
    }

    /// Refuses fields other than `allowed`.
    fn only(&self, kind: &'static str, allowed: &[&str]) -> Result<(), ControlError> {
        match self.fields.iter().find(|(name, _)| !allowed.contains(name)) {
            Some((name, _)) => Err(ControlError::UnknownField {
                kind,
                field: name.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn all(&self, name: &str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The value of a field that appears at most once.
    fn optional(
        &self,
        kind: &'static str,
        name: &'static str,
    ) -> Result<Option<&'a str>, ControlError> {
        let mut values = self.all(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ControlError::RepeatedField { kind, field: name });
        }
        Ok(first)
    }

    /// The value of a field that appears exactly once.
    fn one(&self, kind: &'static str, name: &'static str) -> Result<&'a str, ControlError> {
        self.optional(kind, name)?
            .ok_or(ControlError::MissingField { kind, field: name })
    }

    fn number<T: std::str::FromStr>(
        &self,
        kind: &'static str,
        name: &'static str,
    ) -> Result<T, ControlError> {
        let value = self.one(kind, name)?;
        // `FromStr` takes a leading `+`; the protocol writes plain digits.
        let plain = value.strip_prefix('-').unwrap_or(value);
        match plain.bytes().all(|b| b.is_ascii_digit()) {
            true => value.parse().ok(),
            false => None,
        }
        .ok_or_else(|| ControlError::InvalidValue {
            field: name,
            value: value.to_string(),
        })
    }

    /// The `env=NAME=value` fields.
    fn environment(&self) -> Result<Vec<(String, String)>, ControlError> {
        self.all("env")
            .map(|variable| match variable.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    Ok((name.to_string(), value.to_string()))
                }
                _ => Err(ControlError::InvalidValue {
                    field: "env",
                    value: variable.to_string(),
                }),
            })
            .collect()
    }

    fn unexpected(&self, expected: &'static str) -> ControlError {
        ControlError::Unexpected {
            kind: self.kind.to_string(),
            expected,
        }
    }
}

impl Claim {
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        match self {
            Self::Adopt(adoption) => {
                let mut w = Writer::new("adopt");
                w.environment(&adoption.environment)?;
                if let Some(exec) = &adoption.exec {
                    if exec.program.is_empty() {
                        return Err(ControlError::Unencodable {
                            field: "program",
                            value: String::new(),
                        });
                    }
                    w.field("program", &exec.program)?;
                    for arg in &exec.args {
                        w.field("arg", arg)?;
                    }
                }
                Ok(w.finish())
            }
            Self::Fork(request) => {
                let mut w = Writer::new("fork");
                w.field("tmp-mb", &request.tmp_mb.to_string())?;
                Ok(w.finish())
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        let frame = Frame::parse(bytes)?;
        match frame.kind {
            "adopt" => {
                frame.only("adopt", &["env", "program", "arg"])?;
                let exec = match frame.optional("adopt", "program")? {
                    Some("") => {
                        return Err(ControlError::InvalidValue {
                            field: "program",
                            value: String::new(),
                        });
                    }
                    Some(program) => Some(Exec {
                        program: program.to_string(),
                        args: frame.all("arg").map(str::to_string).collect(),
                    }),
                    None if frame.all("arg").next().is_some() => {
                        return Err(ControlError::MissingField {
                            kind: "adopt",
                            field: "program",
                        });
                    }
                    None => None,
                };
                Ok(Self::Adopt(Adoption {
                    environment: frame.environment()?,
                    exec,
                }))
            }
            "fork" => {
                frame.only("fork", &["tmp-mb"])?;
                Ok(Self::Fork(ForkRequest {
                    tmp_mb: frame.number("fork", "tmp-mb")?,
                }))
            }
            _ => Err(frame.unexpected("adopt or fork")),
        }
    }
}

impl ForkReport {
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        match self {
            Self::Forked { pid } => {
                let mut w = Writer::new("forked");
                w.field("pid", &pid.to_string())?;
                Ok(w.finish())
            }
            Self::Failed { reason } => {
                let mut w = Writer::new("fork-failed");
                w.field("reason", reason)?;
                Ok(w.finish())
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        let frame = Frame::parse(bytes)?;
        match frame.kind {
            "forked" => {
                frame.only("forked", &["pid"])?;
                let pid = frame.number("forked", "pid")?;
                if pid == 0 {
                    return Err(ControlError::InvalidValue {
                        field: "pid",
                        value: "0".to_string(),
                    });
                }
                Ok(Self::Forked { pid })
            }
            "fork-failed" => {
                frame.only("fork-failed", &["reason"])?;
                Ok(Self::Failed {
                    reason: frame.one("fork-failed", "reason")?.to_string(),
                })
            }
            _ => Err(frame.unexpected("forked or fork-failed")),
        }
    }
}

impl ForkAnswer {
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        match self {
            Self::Restore { environment } => {
                let mut w = Writer::new("restore");
                w.environment(environment)?;
                Ok(w.finish())
            }
            Self::Abandon => Ok(Writer::new("abandon").finish()),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        let frame = Frame::parse(bytes)?;
        match frame.kind {
            "restore" => {
                frame.only("restore", &["env"])?;
                Ok(Self::Restore {
                    environment: frame.environment()?,
                })
            }
            "abandon" => {
                frame.only("abandon", &[])?;
                Ok(Self::Abandon)
            }
            _ => Err(frame.unexpected("restore or abandon")),
        }
    }
}

impl ExitReport {
    pub fn encode(&self) -> Result<Vec<u8>, ControlError> {
        let mut w = Writer::new("exited");
        w.field("status", &self.status.to_string())?;
        Ok(w.finish())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ControlError> {
        let frame = Frame::parse(bytes)?;
        match frame.kind {
            "exited" => {
                frame.only("exited", &["status"])?;
                Ok(Self {
                    status: frame.number("exited", "status")?,
                })
            }
            _ => Err(frame.unexpected("exited")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment() -> Vec<(String, String)> {
        [
            ("PATH", "/usr/bin:/bin"),
            ("EQUALS", "a=b==c"),
            ("EMPTY", ""),
            ("CONTROL", "tab\tline\nbell\u{7}"),
            ("UNICODE", "é ü 中文 🎉"),
            ("QUOTES", "\"'\\"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn every_message_round_trips() {
        let claims = [
            Claim::Adopt(Adoption {
                environment: environment(),
                exec: Some(Exec {
                    program: "/var/task/bootstrap".into(),
                    args: vec!["--x".into(), String::new(), "a=b".into(), "ü".into()],
                }),
            }),
            Claim::Adopt(Adoption {
                environment: environment(),
                exec: Some(Exec {
                    program: "/bin/true".into(),
                    args: Vec::new(),
                }),
            }),
            Claim::Adopt(Adoption {
                environment: Vec::new(),
                exec: None,
            }),
            Claim::Fork(ForkRequest { tmp_mb: 10240 }),
            Claim::Fork(ForkRequest { tmp_mb: 0 }),
        ];
        for claim in claims {
            let bytes = claim.encode().unwrap();
            assert!(bytes.starts_with(b"gust-control/1\0"));
            assert_eq!(Claim::decode(&bytes).unwrap(), claim);
        }
        for report in [
            ForkReport::Forked { pid: 1 },
            ForkReport::Forked { pid: u32::MAX },
            ForkReport::Failed {
                reason: "unshare: Operation not permitted".into(),
            },
            ForkReport::Failed {
                reason: String::new(),
            },
        ] {
            let bytes = report.encode().unwrap();
            assert_eq!(ForkReport::decode(&bytes).unwrap(), report);
        }
        for answer in [
            ForkAnswer::Restore {
                environment: environment(),
            },
            ForkAnswer::Abandon,
        ] {
            let bytes = answer.encode().unwrap();
            assert_eq!(ForkAnswer::decode(&bytes).unwrap(), answer);
        }
        for status in [0, 9, 256, 0x7f00, -1, i32::MIN, i32::MAX] {
            let report = ExitReport { status };
            assert_eq!(
                ExitReport::decode(&report.encode().unwrap()).unwrap(),
                report
            );
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let adopt = Claim::Adopt(Adoption {
            environment: vec![("A".into(), "1=2".into())],
            exec: Some(Exec {
                program: "/p".into(),
                args: vec!["x".into(), String::new()],
            }),
        });
        assert_eq!(
            adopt.encode().unwrap(),
            b"gust-control/1\0adopt\0env=A=1=2\0program=/p\0arg=x\0arg=\0"
        );
        assert_eq!(
            Claim::Fork(ForkRequest { tmp_mb: 512 }).encode().unwrap(),
            b"gust-control/1\0fork\0tmp-mb=512\0"
        );
        assert_eq!(
            ForkReport::Forked { pid: 7 }.encode().unwrap(),
            b"gust-control/1\0forked\0pid=7\0"
        );
        assert_eq!(
            ForkAnswer::Abandon.encode().unwrap(),
            b"gust-control/1\0abandon\0"
        );
        assert_eq!(
            ExitReport { status: 9 }.encode().unwrap(),
            b"gust-control/1\0exited\0status=9\0"
        );
    }

    #[test]
    fn another_version_is_refused_by_name() {
        for message in [
            &b"gust-control/2\0abandon\0"[..],
            b"gust-control/0\0adopt\0",
            b"gust-control/\0exited\0status=1\0",
        ] {
            let version = std::str::from_utf8(message.split(|&b| b == 0).next().unwrap()).unwrap();
            let expected = ControlError::Version(version.to_string());
            assert_eq!(ForkAnswer::decode(message), Err(expected.clone()));
            assert_eq!(Claim::decode(message), Err(expected.clone()));
            assert_eq!(ForkReport::decode(message), Err(expected.clone()));
            assert_eq!(ExitReport::decode(message), Err(expected.clone()));
            let text = expected.to_string();
            assert!(text.contains(version) && text.contains(VERSION), "{text}");
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        use ControlError::*;
        let cases: &[(&[u8], ControlError)] = &[
            (b"", Unterminated),
            (b"gust-control/1\0adopt", Unterminated),
            (b"\0", NotControl),
            (b"{\"Environment\":{}}\0", NotControl),
            (b"gust-control/1\0", NoKind),
            (b"gust-control/1\0\0", NoKind),
            (b"gust-control/1\0\xff\0", NotUtf8),
            (b"gust-control/1\0adopt\0env=A=\xc3\0", NotUtf8),
            (
                b"gust-control/1\0restore\0",
                Unexpected {
                    kind: "restore".into(),
                    expected: "adopt or fork",
                },
            ),
            (b"gust-control/1\0adopt\0env\0", NotAField("env".into())),
            (
                b"gust-control/1\0adopt\0env=NOVALUE\0",
                InvalidValue {
                    field: "env",
                    value: "NOVALUE".into(),
                },
            ),
            (
                b"gust-control/1\0adopt\0env==x\0",
                InvalidValue {
                    field: "env",
                    value: "=x".into(),
                },
            ),
            (
                b"gust-control/1\0adopt\0arg=x\0",
                MissingField {
                    kind: "adopt",
                    field: "program",
                },
            ),
            (
                b"gust-control/1\0adopt\0program=\0",
                InvalidValue {
                    field: "program",
                    value: String::new(),
                },
            ),
            (
                b"gust-control/1\0adopt\0program=a\0program=b\0",
                RepeatedField {
                    kind: "adopt",
                    field: "program",
                },
            ),
            (
                b"gust-control/1\0adopt\0Env=A=1\0",
                UnknownField {
                    kind: "adopt",
                    field: "Env".into(),
                },
            ),
            (
                b"gust-control/1\0fork\0",
                MissingField {
                    kind: "fork",
                    field: "tmp-mb",
                },
            ),
            (
                b"gust-control/1\0fork\0tmp-mb=+5\0",
                InvalidValue {
                    field: "tmp-mb",
                    value: "+5".into(),
                },
            ),
            (
                b"gust-control/1\0fork\0tmp-mb=-5\0",
                InvalidValue {
                    field: "tmp-mb",
                    value: "-5".into(),
                },
            ),
            (
                b"gust-control/1\0fork\0tmp-mb=99999999999\0",
                InvalidValue {
                    field: "tmp-mb",
                    value: "99999999999".into(),
                },
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(
                Claim::decode(message).as_ref(),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
        let reports: &[(&[u8], ControlError)] = &[
            (
                b"gust-control/1\0forked\0pid=0\0",
                InvalidValue {
                    field: "pid",
                    value: "0".into(),
                },
            ),
            (
                b"gust-control/1\0forked\0pid=12 \0",
                InvalidValue {
                    field: "pid",
                    value: "12 ".into(),
                },
            ),
            (
                b"gust-control/1\0forked\0pid=\0",
                InvalidValue {
                    field: "pid",
                    value: String::new(),
                },
            ),
            (
                b"gust-control/1\0fork-failed\0",
                MissingField {
                    kind: "fork-failed",
                    field: "reason",
                },
            ),
            (
                b"gust-control/1\0exited\0status=9\0",
                Unexpected {
                    kind: "exited".into(),
                    expected: "forked or fork-failed",
                },
            ),
        ];
        for (message, expected) in reports {
            assert_eq!(ForkReport::decode(message).as_ref(), Err(expected));
        }
        assert_eq!(
            ForkAnswer::decode(b"gust-control/1\0abandon\0env=A=1\0"),
            Err(UnknownField {
                kind: "abandon",
                field: "env".into()
            })
        );
        assert_eq!(
            ExitReport::decode(b"gust-control/1\0exited\0status=--1\0"),
            Err(InvalidValue {
                field: "status",
                value: "--1".into()
            })
        );
    }

    #[test]
    fn what_cannot_be_sent_is_refused() {
        let with = |name: &str, value: &str| {
            Claim::Adopt(Adoption {
                environment: vec![(name.to_string(), value.to_string())],
                exec: None,
            })
            .encode()
        };
        assert!(matches!(
            with("A", "x\0y"),
            Err(ControlError::Unencodable { field: "env", .. })
        ));
        for name in ["", "A=B", "A\0"] {
            assert!(with(name, "v").is_err(), "{name:?}");
        }
        let adopt = |program: &str, arg: &str| {
            Claim::Adopt(Adoption {
                environment: Vec::new(),
                exec: Some(Exec {
                    program: program.to_string(),
                    args: vec![arg.to_string()],
                }),
            })
            .encode()
        };
        assert!(adopt("", "a").is_err());
        assert!(adopt("/p\0", "a").is_err());
        assert!(adopt("/p", "a\0").is_err());
        assert!(
            ForkAnswer::Restore {
                environment: vec![("A".into(), "\0".into())]
            }
            .encode()
            .is_err()
        );
        assert!(
            ForkReport::Failed {
                reason: "\0".into()
            }
            .encode()
            .is_err()
        );
    }

    /// Every input, however broken, is an error or a message: never a panic. (A small
    /// deterministic fuzzer: mutations of valid messages, and random bytes.)
    #[test]
    fn no_input_panics() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let valid: Vec<Vec<u8>> = vec![
            Claim::Adopt(Adoption {
                environment: environment(),
                exec: Some(Exec {
                    program: "/p".into(),
                    args: vec!["a".into()],
                }),
            })
            .encode()
            .unwrap(),
            Claim::Fork(ForkRequest { tmp_mb: 512 }).encode().unwrap(),
            ForkReport::Forked { pid: 42 }.encode().unwrap(),
            ForkReport::Failed { reason: "r".into() }.encode().unwrap(),
            ForkAnswer::Restore {
                environment: environment(),
            }
            .encode()
            .unwrap(),
            ForkAnswer::Abandon.encode().unwrap(),
            ExitReport { status: 9 }.encode().unwrap(),
        ];
        let alphabet = b"\0=-+0123456789aegz\xc3\xa9\xff/";
        for round in 0..20_000 {
            let mut input = if round % 10 == 0 {
                (0..next() % 40).map(|_| next() as u8).collect()
            } else {
                valid[next() as usize % valid.len()].clone()
            };
            for _ in 0..1 + next() % 4 {
                let at = if input.is_empty() {
                    0
                } else {
                    next() as usize % input.len()
                };
                match next() % 4 {
                    0 if !input.is_empty() => {
                        input.remove(at);
                    }
                    1 => input.insert(at, alphabet[next() as usize % alphabet.len()]),
                    2 if !input.is_empty() => {
                        input[at] = alphabet[next() as usize % alphabet.len()]
                    }
                    _ => input.truncate(at),
                }
            }
            let _ = Claim::decode(&input);
            let _ = ForkReport::decode(&input);
            let _ = ForkAnswer::decode(&input);
            let _ = ExitReport::decode(&input);
        }
    }
}
