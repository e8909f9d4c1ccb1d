//! The runtimes Gust runs.
//!
//! Python and Node.js functions run on the host's interpreters with Gust's own bootstraps
//! (shipped inside the binary and written to the runtime directory at start); custom runtimes
//! (`provided*`) run the function's `bootstrap`. [`RuntimeTable`] is resolved once at start and
//! then only answers "which command starts this function's runtime".

pub mod ids;
pub mod resolve;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use ids::{Family, RuntimeId, Support, support};
pub use resolve::Interpreter;

const PYTHON_BOOTSTRAP: &str = include_str!("../bootstrap/python/bootstrap.py");
/// The Python runtime itself, imported by `bootstrap.py` so that its compiled form is reused.
const PYTHON_RUNTIME: &str = include_str!("../bootstrap/python/_gust_runtime.py");
/// The Python runtime's SnapStart side (the snapshot process and the restored environments).
const PYTHON_SNAPSHOT: &str = include_str!("../bootstrap/python/_gust_snapshot.py");
/// How a SnapStart fork confines itself, from the rules Gust writes (`gust/confinement.json`).
const PYTHON_CONFINE: &str = include_str!("../bootstrap/python/_gust_confine.py");
/// SnapStart's runtime hooks module, which Lambda's Python runtimes provide to every function.
const PYTHON_RUNTIME_HOOKS: &str = include_str!("../bootstrap/python/lib/snapshot_restore_py.py");
/// The stand-in a custom runtime's sandbox started ahead runs until adopted: a small program
/// of its own (see `bootstrap/standby/exec.rs`), built with this crate.
pub const STANDBY_EXEC: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/standby-exec"));

/// Where [`STANDBY_EXEC`] is, relative to the runtime directory.
pub const STANDBY_EXEC_PATH: &str = "standby/exec";

/// The command of the stand-in, for a sandbox whose runtime directory is at `runtime_dir`.
pub fn standby_command(runtime_dir: &Path) -> RuntimeCommand {
    RuntimeCommand {
        program: runtime_dir.join(STANDBY_EXEC_PATH),
        args: Vec::new(),
        env: Vec::new(),
    }
}

/// Writes the stand-in, executable, into `runtime_dir` (what [`RuntimeTable::install`] does
/// for it; the benchmark uses it on its own).
pub fn install_standby(runtime_dir: &Path) -> io::Result<()> {
    install(runtime_dir, STANDBY_EXEC_PATH, STANDBY_EXEC, 0o755)
}

const NODE_BOOTSTRAP: &str = include_str!("../bootstrap/node/bootstrap.cjs");

/// Where a custom runtime's bootstrap is looked for, in Lambda's order (after the task root).
const LAYER_BOOTSTRAP: &str = "/opt/bootstrap";

/// What serves one runtime id on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// A host interpreter; `exact` is false when the requested version is missing and the
    /// nearest available one serves it instead.
    Interpreter {
        interpreter: Interpreter,
        exact: bool,
        configured: bool,
    },
    /// The function's own `bootstrap` executable.
    FunctionBootstrap,
    /// Nothing on this host can run it.
    Missing { what: &'static str },
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub runtime: RuntimeId,
    pub provider: Provider,
}

/// The program, arguments and runtime-specific environment that start a runtime process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Gust does not run the {0} runtime")]
    UnsupportedRuntime(String),
    #[error("no {what} interpreter is installed on this host to run {runtime}")]
    NoInterpreter {
        runtime: &'static str,
        what: &'static str,
    },
    #[error("Couldn't find valid bootstrap(s): [{}]", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "))]
    NoBootstrap { searched: Vec<PathBuf> },
}

/// Where a runtime process finds the function's code and Gust's bootstraps. In a sandbox they
/// appear at Lambda's paths (`/var/task`, `/var/runtime`), not where the host keeps them.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The function's code on the host (to check that a bootstrap exists).
    pub host_task_root: &'a Path,
    /// The function's code as the runtime sees it.
    pub task_root: &'a Path,
    /// Gust's bootstraps as the runtime sees them.
    pub runtime_dir: &'a Path,
}

/// Resolved runtimes and the installed bootstraps.
#[derive(Debug, Clone)]
pub struct RuntimeTable {
    runtime_dir: PathBuf,
    entries: Vec<Entry>,
}

impl RuntimeTable {
    /// Resolves every runtime id; bootstraps will live under `runtime_dir` (see
    /// [`install`](Self::install)). `configured` maps runtime ids to interpreters chosen by the
    /// operator.
    pub fn discover(runtime_dir: &Path, configured: &BTreeMap<String, PathBuf>) -> Self {
        let pythons = resolve::find_pythons();
        let nodes = resolve::find_nodes();
        let entries = ids::GUST_RUNTIMES
            .iter()
            .map(|&runtime| {
                let provider = if let Some(path) = configured.get(runtime.id) {
                    Provider::Interpreter {
                        interpreter: Interpreter {
                            path: fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
                            version: runtime.version.to_string(),
                        },
                        exact: true,
                        configured: true,
                    }
                } else {
                    let (available, what) = match runtime.family {
                        Family::Python => (&pythons, "python3"),
                        Family::Node => (&nodes, "node"),
                        Family::Custom => {
                            return Entry {
                                runtime,
                                provider: Provider::FunctionBootstrap,
                            };
                        }
                    };
                    match resolve::closest(available, runtime.version) {
                        Some((interpreter, exact)) => Provider::Interpreter {
                            interpreter: interpreter.clone(),
                            exact,
                            configured: false,
                        },
                        None => Provider::Missing { what },
                    }
                };
                Entry { runtime, provider }
            })
            .collect();
        Self {
            runtime_dir: runtime_dir.to_path_buf(),
            entries,
        }
    }

    /// Writes Gust's bootstraps into the runtime directory.
    pub fn install(&self) -> io::Result<()> {
        for (path, content) in [
            ("python/bootstrap.py", PYTHON_BOOTSTRAP),
            ("python/_gust_runtime.py", PYTHON_RUNTIME),
            ("python/_gust_snapshot.py", PYTHON_SNAPSHOT),
            ("python/_gust_confine.py", PYTHON_CONFINE),
            ("python/lib/snapshot_restore_py.py", PYTHON_RUNTIME_HOOKS),
        ] {
            install(&self.runtime_dir, path, content.as_bytes(), 0o644)?;
        }
        install_standby(&self.runtime_dir)?;
        self.compile_python();
        install(
            &self.runtime_dir,
            "node/bootstrap.cjs",
            NODE_BOOTSTRAP.as_bytes(),
            0o644,
        )
    }

    /// Writes the compiled form of the Python runtime's modules for every Python interpreter
    /// that serves a runtime: Python compiles what it imports on every start unless it finds
    /// it compiled, and a sandbox's runtime directory is read-only. Without it each start
    /// compiles them (about 2 ms), so a failure is only logged.
    fn compile_python(&self) {
        let modules: Vec<PathBuf> = ["_gust_runtime.py", "_gust_snapshot.py", "_gust_confine.py"]
            .iter()
            .map(|m| self.runtime_dir.join("python").join(m))
            .collect();
        let mut interpreters: Vec<&Path> = self
            .entries
            .iter()
            .filter(|e| e.runtime.family == Family::Python)
            .filter_map(|e| match &e.provider {
                Provider::Interpreter { interpreter, .. } => Some(interpreter.path.as_path()),
                _ => None,
            })
            .collect();
        interpreters.sort();
        interpreters.dedup();
        for interpreter in interpreters {
            let compiled = std::process::Command::new(interpreter)
                .args(["-I", "-c", "import py_compile, sys\nfor m in sys.argv[1:]: py_compile.compile(m, doraise=True)"])
                .args(&modules)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output();
            match compiled {
                Ok(out) if out.status.success() => {}
                Ok(out) => tracing::warn!(
                    interpreter = %interpreter.display(),
                    error = %String::from_utf8_lossy(&out.stderr).trim(),
                    "could not compile the Python runtime; it compiles at every start"
                ),
                Err(e) => tracing::warn!(
                    interpreter = %interpreter.display(),
                    error = %e,
                    "could not compile the Python runtime; it compiles at every start"
                ),
            }
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The table as a JSON document (what `gust runtimes` shows).
    pub fn describe(&self) -> serde_json::Value {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut doc = serde_json::json!({ "Runtime": e.runtime.id });
                match &e.provider {
                    Provider::Interpreter {
                        interpreter,
                        exact,
                        configured,
                    } => {
                        doc["Interpreter"] = interpreter.path.display().to_string().into();
                        doc["Version"] = interpreter.version.clone().into();
                        doc["Exact"] = (*exact).into();
                        doc["Configured"] = (*configured).into();
                    }
                    Provider::FunctionBootstrap => {
                        doc["Interpreter"] = "the function's bootstrap".into();
                        doc["Exact"] = true.into();
                    }
                    Provider::Missing { what } => {
                        doc["Missing"] = format!("no {what} interpreter found").into();
                    }
                }
                doc
            })
            .collect();
        serde_json::json!({
            "Runtimes": entries,
            "RuntimeDirectory": self.runtime_dir.display().to_string(),
        })
    }

    /// `LAMBDA_RUNTIME_DIR`: where Gust's bootstraps live.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    pub fn entry(&self, runtime: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.runtime.id == runtime)
    }

    /// The command that starts `runtime` for a function whose code is at `task_root`.
    pub fn command(
        &self,
        runtime: &str,
        placement: Placement<'_>,
        memory_mb: u32,
    ) -> Result<RuntimeCommand, CommandError> {
        let entry = self
            .entry(runtime)
            .ok_or_else(|| CommandError::UnsupportedRuntime(runtime.to_string()))?;
        let task_root = placement.task_root;
        let runtime_dir = placement.runtime_dir;
        let mut env = vec![(
            "LAMBDA_RUNTIME_DIR".to_string(),
            runtime_dir.display().to_string(),
        )];
        let task = task_root.display().to_string();
        env.push((
            "LD_LIBRARY_PATH".into(),
            format!("{task}:{task}/lib:/opt/lib"),
        ));
        match &entry.provider {
            Provider::FunctionBootstrap => {
                env.push((
                    "PATH".into(),
                    "/usr/local/bin:/usr/bin:/bin:/opt/bin".into(),
                ));
                // Layers are not supported, so only the function's own bootstrap can exist;
                // the layer path is still named in the error, as Lambda names it.
                if !placement.host_task_root.join("bootstrap").is_file() {
                    return Err(CommandError::NoBootstrap {
                        searched: vec![task_root.join("bootstrap"), PathBuf::from(LAYER_BOOTSTRAP)],
                    });
                }
                let program = task_root.join("bootstrap");
                Ok(RuntimeCommand {
                    program,
                    args: Vec::new(),
                    env,
                })
            }
            Provider::Missing { what } => Err(CommandError::NoInterpreter {
                runtime: entry.runtime.id,
                what,
            }),
            Provider::Interpreter { interpreter, .. } => {
                let bin_dir = interpreter
                    .path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                env.push((
                    "PATH".into(),
                    format!("{bin_dir}:/usr/local/bin:/usr/bin:/bin:/opt/bin"),
                ));
                env.push((
                    "AWS_EXECUTION_ENV".into(),
                    format!("AWS_Lambda_{}", entry.runtime.id),
                ));
                let (args, extra) = match entry.runtime.family {
                    Family::Python => (
                        vec![
                            OsString::from("-u"),
                            runtime_dir.join("python/bootstrap.py").into(),
                        ],
                        Vec::new(),
                    ),
                    _ => {
                        let major = entry.runtime.version;
                        let node_path = format!(
                            "/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:{rt}/node_modules:{rt}:{task}",
                            rt = runtime_dir.display()
                        );
                        (
                            vec![
                                OsString::from("--expose-gc"),
                                OsString::from("--max-http-header-size=81920"),
                                OsString::from(format!(
                                    "--max-old-space-size={}",
                                    (memory_mb as u64 * 90 / 100).max(64)
                                )),
                                runtime_dir.join("node/bootstrap.cjs").into(),
                            ],
                            vec![("NODE_PATH".to_string(), node_path)],
                        )
                    }
                };
                env.extend(extra);
                Ok(RuntimeCommand {
                    program: interpreter.path.clone(),
                    args,
                    env,
                })
            }
        }
    }
}

impl RuntimeTable {
    /// The directory an interpreter is installed under (`<prefix>/bin/<interpreter>`), which a
    /// sandbox must show at the same path for the interpreter to find its libraries.
    pub fn install_prefix(&self, runtime: &str) -> Option<PathBuf> {
        match &self.entry(runtime)?.provider {
            Provider::Interpreter { interpreter, .. } => {
                interpreter.path.parent()?.parent().map(Path::to_path_buf)
            }
            _ => None,
        }
    }
}

/// Writes a bootstrap file with `mode` unless it already has the right content and mode.
fn install(dir: &Path, relative: &str, content: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(relative);
    let current = fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o777 == mode)
        && fs::read(&path).is_ok_and(|existing| existing == content);
    if current {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = dir.join(format!("{relative}.tmp"));
    fs::write(&tmp, content)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, &path)
}

/// The stand-in's source, compiled here too so that its parser is tested.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../bootstrap/standby/exec.rs"]
mod standby_exec;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_runtimes_need_a_bootstrap() {
        let dir = tempfile::tempdir().unwrap();
        let table = RuntimeTable::discover(&dir.path().join("rt"), &BTreeMap::new());
        table.install().unwrap();
        let task = dir.path().join("task");
        fs::create_dir(&task).unwrap();
        let placement = Placement {
            host_task_root: &task,
            task_root: Path::new("/var/task"),
            runtime_dir: Path::new("/var/runtime"),
        };
        let err = table
            .command("provided.al2023", placement, 128)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Couldn't find valid bootstrap(s): [")
        );
        fs::write(task.join("bootstrap"), "#!/bin/sh\n").unwrap();
        let cmd = table.command("provided.al2023", placement, 128).unwrap();
        assert_eq!(cmd.program, Path::new("/var/task/bootstrap"));
        assert!(cmd.env.iter().all(|(k, _)| k != "AWS_EXECUTION_ENV"));
        assert!(dir.path().join("rt/python/bootstrap.py").is_file());
        assert!(matches!(
            table.command("java21", placement, 128),
            Err(CommandError::UnsupportedRuntime(_))
        ));
    }

    #[test]
    fn configured_interpreters_win() {
        let dir = tempfile::tempdir().unwrap();
        let configured: BTreeMap<String, PathBuf> =
            [("python3.12".to_string(), PathBuf::from("/bin/sh"))].into();
        let table = RuntimeTable::discover(dir.path(), &configured);
        let placement = Placement {
            host_task_root: dir.path(),
            task_root: dir.path(),
            runtime_dir: dir.path(),
        };
        let cmd = table.command("python3.12", placement, 128).unwrap();
        assert_eq!(cmd.program, fs::canonicalize("/bin/sh").unwrap());
        let prefix = fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(
            table.install_prefix("python3.12"),
            prefix
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        );
        assert!(cmd.env.contains(&(
            "AWS_EXECUTION_ENV".to_string(),
            "AWS_Lambda_python3.12".to_string()
        )));
    }

    #[test]
    fn the_stand_in_reads_what_gust_sends() {
        use gust_runtime_api::control::{Adoption, Claim, Exec};
        let environment: Vec<(String, String)> = [
            ("PATH", "/usr/bin:/bin"),
            ("QUOTES", "a \"b\" \\ c/d"),
            ("CONTROL", "tab\tline\n\u{1}\u{1f}"),
            ("UNICODE", "é ü 中文 🎉"),
            ("EQUALS", "a=b"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let message = Claim::Adopt(Adoption {
            environment: environment.clone(),
            exec: Some(Exec {
                program: "/var/task/bootstrap".into(),
                args: vec!["--x".into(), "ü".into(), String::new()],
            }),
        })
        .encode()
        .unwrap();
        let (adopted, exec) = standby_exec::adoption(&message).unwrap();
        assert_eq!(adopted, environment);
        assert_eq!(exec.program, "/var/task/bootstrap");
        assert_eq!(exec.args, ["--x", "ü", ""]);
    }

    #[test]
    fn the_stand_in_refuses_what_it_cannot_run() {
        use gust_runtime_api::control::{Adoption, Claim, ForkRequest};
        let no_program = Claim::Adopt(Adoption {
            environment: Vec::new(),
            exec: None,
        });
        let fork = Claim::Fork(ForkRequest { tmp_mb: 512 });
        for (message, why) in [
            (no_program.encode().unwrap(), "names no program"),
            (fork.encode().unwrap(), "fork"),
            (
                b"gust-control/2\0adopt\0program=/p\0".to_vec(),
                "gust-control/2, this side speaks gust-control/1",
            ),
            (
                br#"{"Exec":{"Program":"p","Args":[]}}"#.to_vec(),
                "does not end with a NUL",
            ),
            (b"gust-control/1\0adopt\0program=/p".to_vec(), "NUL"),
        ] {
            let error = standby_exec::adoption(&message).unwrap_err();
            assert!(error.contains(why), "{error}");
        }
    }
}
