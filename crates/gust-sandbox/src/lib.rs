//! Where an execution environment's processes run.
//!
//! A [`Launcher`] creates one [`Sandbox`] per execution environment: the place its runtime
//! process runs, its private `/tmp`, and the listener its Runtime API is served on (created
//! where the runtime can reach it and nothing else can). The invoke path only talks to these
//! traits, so the plain [`ProcessLauncher`] and the Linux sandbox are interchangeable.

#[cfg(target_os = "linux")]
pub mod linux;
pub mod process;

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

pub use process::ProcessLauncher;

/// What one environment needs from its sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Unique id of the environment (also the suffix of its log stream).
    pub environment_id: String,
    /// Host path of the function's extracted code.
    pub code_dir: PathBuf,
    /// Host path of Gust's runtime bootstraps.
    pub runtime_dir: PathBuf,
    pub memory_mb: u32,
    pub ephemeral_storage_mb: u32,
    /// Host directories the runtime needs at their own paths, read-only (interpreters
    /// installed outside /usr, such as pyenv's or nvm's).
    pub read_only_paths: Vec<PathBuf>,
    /// Outbound network through NAT (otherwise only the Runtime API is reachable).
    pub egress: bool,
    /// A SnapStart snapshot process: it runs its function's init once and forks each new
    /// environment, which confines itself (see [`Confinement`]). It may therefore create
    /// namespaces and mount in them, and has no Landlock domain (which forbids mounting).
    pub zygote: bool,
}

/// How an environment forked from a snapshot process confines itself once it has its own
/// namespaces: what a sandbox's runtime is confined with, from the same definition, so that
/// the two end up alike. A fork is never exec'd, so it applies explicitly what exec does for
/// a fresh runtime (dropping capabilities). [`Confinement::document`] is what the fork reads.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The uid and gid the runtime runs as inside its sandbox.
    pub uid: u32,
    pub gid: u32,
    /// The restrictions, in the order a runtime takes them on: `Capabilities`, `NoNewPrivs`,
    /// `Landlock`, `Rlimits`, `Seccomp`.
    pub order: Vec<&'static str>,
    pub capabilities: Capabilities,
    /// The Landlock rights this kernel handles (0: none).
    pub landlock_handled: u64,
    /// Paths and the rights granted beneath them (only rights in `landlock_handled`).
    pub landlock_rules: Vec<(PathBuf, u64)>,
    /// Resource limits `(name, resource, value)`, each set as both soft and hard limit.
    pub rlimits: Vec<(&'static str, u32, u64)>,
    /// Seccomp programs, in the order they are installed: `(code, jt, jf, k)` instructions.
    pub seccomp: Vec<Vec<(u16, u8, u8, u32)>>,
    /// The flags of seccomp(SECCOMP_SET_MODE_FILTER).
    pub seccomp_flags: u32,
}

/// The capabilities a runtime ends with, as capset(2) and prctl(2) set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Kept in the effective, permitted and inheritable sets (bit N: capability N).
    pub kept: u64,
    /// Whether the ambient set is cleared.
    pub clear_ambient: bool,
    /// Dropped from the bounding set.
    pub drop_bounding: Vec<u32>,
}

impl Confinement {
    /// The document a fork applies (`gust/confinement.json`): this definition, and the
    /// kernel's numbers for applying it (system calls, prctl options, structure versions and
    /// sizes), so that the runtime's side types in none of them.
    pub fn document(&self) -> serde_json::Value {
        #[cfg(target_os = "linux")]
        let kernel = linux::confinement_kernel();
        #[cfg(not(target_os = "linux"))]
        let kernel = serde_json::Value::Null;
        serde_json::json!({
            "Uid": self.uid,
            "Gid": self.gid,
            "Order": self.order,
            "Capabilities": {
                "Kept": self.capabilities.kept,
                "ClearAmbient": self.capabilities.clear_ambient,
                "DropBounding": self.capabilities.drop_bounding,
            },
            "Landlock": {
                "Handled": self.landlock_handled,
                "Rules": self
                    .landlock_rules
                    .iter()
                    .map(|(path, access)| serde_json::json!([path.display().to_string(), access]))
                    .collect::<Vec<_>>(),
            },
            "Rlimits": self
                .rlimits
                .iter()
                .map(|(name, resource, value)| serde_json::json!({
                    "Name": name,
                    "Resource": resource,
                    "Soft": value,
                    "Hard": value,
                }))
                .collect::<Vec<_>>(),
            "Seccomp": {
                "Flags": self.seccomp_flags,
                "Programs": self
                    .seccomp
                    .iter()
                    .map(|program| {
                        program
                            .iter()
                            .map(|(c, t, f, k)| serde_json::json!([c, t, f, k]))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>(),
            },
            "Kernel": kernel,
        })
    }

    /// Writes [`Confinement::document`] to `path`, replacing any previous one at once (a
    /// snapshot process starting meanwhile reads either whole).
    pub fn publish(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, self.document().to_string())?;
        std::fs::rename(&tmp, path)
    }
}

/// A process to start in the sandbox.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment: nothing of Gust's own environment leaks in.
    pub env: Vec<(String, String)>,
}

/// A started runtime process.
pub struct Spawned {
    pub child: tokio::process::Child,
    /// Read end of the pipe that carries the process's stdout and stderr.
    pub output: OwnedFd,
}

/// Why a sandbox could not be made, fitted or started: each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot create the environment's directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the Runtime API listener: {0}")]
    Listener(std::io::Error),
    #[error("cannot create the cgroup {path}: {source}")]
    CreateCgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the cgroup limit {path}: {source}")]
    CgroupLimit {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open {path} for the runtime to join its cgroup: {source}")]
    OpenCgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move process {pid} into its cgroup ({path}): {source}")]
    JoinCgroup {
        pid: u32,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the network namespace: {0}")]
    NetworkNamespace(std::io::Error),
    #[error("cannot connect the environment to the outside network: {0}")]
    Egress(std::io::Error),
    /// The environment's /tmp volume (the host's room for /tmp may be taken).
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    TmpVolume(#[from] linux::tmp_volume::VolumeError),
    #[error("cannot mount the environment's /tmp: {0}")]
    MountTmp(std::io::Error),
    #[error("cannot mount the function's code at /var/task: {0}")]
    MountTaskRoot(std::io::Error),
    #[error("cannot open the listeners in the network namespace of fork {pid}: {source}")]
    ForkNetwork { pid: u32, source: std::io::Error },
    #[error("cannot make the runtime's output pipe: {0}")]
    Output(std::io::Error),
    #[error("cannot make the pipe the sandbox reports a failed step on: {0}")]
    ReportPipe(std::io::Error),
    /// A step of the sandbox's start between fork and exec, as the child reported it.
    #[error("cannot start {program}: the sandbox's {step} failed: {source}")]
    Child {
        program: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the sandbox is destroyed")]
    Destroyed,
    #[error("{0}")]
    Unsupported(&'static str),
}

impl SandboxError {
    /// Whether the host's room for environments' /tmp is taken: retiring idle environments
    /// may make room for another.
    pub fn is_storage_full(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Self::TmpVolume(e) = self {
            return e.is_storage_full();
        }
        false
    }
}

/// Starts `process` with only its own environment, no input, and its stdout and stderr on
/// one new pipe; `prepare` adds what the launcher needs (working directory, pre-exec steps).
fn spawn_with_output(
    process: &ProcessSpec,
    prepare: impl FnOnce(&mut tokio::process::Command),
) -> Result<Spawned, SandboxError> {
    let (reader, writer) = std::io::pipe().map_err(SandboxError::Output)?;
    let writer_err = writer.try_clone().map_err(SandboxError::Output)?;
    let mut command = tokio::process::Command::new(&process.program);
    command
        .args(&process.args)
        .env_clear()
        .envs(process.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .kill_on_drop(true);
    prepare(&mut command);
    let child = command.spawn().map_err(|source| SandboxError::Spawn {
        program: process.program.clone(),
        source,
    })?;
    // The command keeps our copies of the pipe's write end; without dropping them the reader
    // would never see the end of the output.
    drop(command);
    Ok(Spawned {
        child,
        output: OwnedFd::from(reader),
    })
}

/// How strongly environments are isolated, for logs and status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Plain child processes of Gust: no isolation beyond separate directories.
    Process,
    /// Each environment in its own namespaces, cgroups, seccomp and Landlock sandbox.
    Linux,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Linux => "linux",
        }
    }
}

/// Creates sandboxes.
pub trait Launcher: Send + Sync + 'static {
    fn isolation(&self) -> Isolation;
    /// Whether its sandboxes support [`Sandbox::assign`].
    fn starts_ahead(&self) -> bool {
        false
    }
    /// MB of `/tmp` storage held by live environments (and made ahead), and the most the host
    /// allows; `None` where `/tmp` is a plain directory.
    fn tmp_usage(&self) -> Option<(u64, u64)> {
        None
    }
    fn create(&self, spec: &SandboxSpec) -> Result<Box<dyn Sandbox>, SandboxError>;
    /// What a process forked from a snapshot process (a sandbox of `spec.zygote`) applies to
    /// itself; `None` where the launcher has no snapshot processes.
    fn confinement(&self) -> Option<Confinement> {
        None
    }
    /// Makes the sandbox of an environment forked from a snapshot process or a runtime
    /// template: `pid` (a host pid) has made its own namespaces and waits. Returns the sandbox
    /// (its cgroup holds `pid`, its Runtime API listener is inside `pid`'s network namespace)
    /// and a second listener there, at [`LOG_SINK_ADDRESS`], that the process sends its
    /// output to. With `mount_code`, `spec.code_dir` is mounted at its `/var/task` (a
    /// template's fork; a snapshot's has its function's code already).
    fn adopt_fork(
        &self,
        _pid: u32,
        _spec: &SandboxSpec,
        _mount_code: bool,
    ) -> Result<(Box<dyn Sandbox>, std::net::TcpListener), SandboxError> {
        Err(SandboxError::Unsupported(
            "this launcher has no snapshot processes",
        ))
    }
}

/// Where the Runtime API listens inside every sandbox with its own network namespace.
pub const RUNTIME_API_ADDRESS: &str = "127.0.0.1:9001";

/// Where an environment forked from a snapshot process sends its stdout and stderr.
pub const LOG_SINK_ADDRESS: &str = "127.0.0.1:9002";

/// What a sandbox's `/tmp` counts for against the host's budget for `/tmp` (where `/tmp` is
/// storage of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpCount {
    /// Its full size: it runs (or is about to), and may fill it.
    Full,
    /// What it holds of the host's disk now: it is idle (under the measured policy; the
    /// reserved one counts the full size).
    Used,
    /// Nothing: it is being torn down.
    Nothing,
}

/// One execution environment's sandbox.
pub trait Sandbox: Send + Sync {
    /// The Runtime API listener for this environment (taken once).
    fn take_listener(&mut self) -> Option<std::net::TcpListener>;
    /// `AWS_LAMBDA_RUNTIME_API` as the runtime must use it: `host:port`, no scheme.
    /// (Sandboxes with their own network namespace serve it at Lambda's fixed address.)
    fn runtime_api_address(&self) -> &str {
        RUNTIME_API_ADDRESS
    }
    /// The function's code as the runtime sees it (`LAMBDA_TASK_ROOT`); Lambda's path in a
    /// sandbox with its own root.
    fn task_root(&self) -> &Path {
        Path::new("/var/task")
    }
    /// Gust's bootstraps as the runtime sees them (`LAMBDA_RUNTIME_DIR`).
    fn runtime_dir(&self) -> &Path {
        Path::new("/var/runtime")
    }
    /// The environment's writable scratch directory as the runtime sees it.
    fn tmp_dir(&self) -> &Path {
        Path::new("/tmp")
    }
    /// Starts a process with its working directory at the task root.
    fn spawn(&mut self, process: &ProcessSpec) -> Result<Spawned, SandboxError>;
    /// Kills every process started in the sandbox, including their descendants.
    fn kill_all(&mut self);
    /// Peak memory use of the environment since its runtime started, in bytes.
    fn peak_memory(&self) -> Option<u64>;
    /// Memory the environment holds now that the host cannot reclaim without it (its
    /// working set: usage less inactive file pages), in bytes; `None` where it is not known.
    fn memory_usage(&self) -> Option<u64> {
        None
    }
    /// Whether the kernel has killed a process of the sandbox for exceeding its memory limit
    /// (such an environment is retired rather than reused).
    fn out_of_memory(&self) -> bool {
        false
    }
    /// Hands a sandbox whose runtime was started ahead of demand (before its function was
    /// known) to a function: its code appears at the task root, its memory limit applies (its
    /// /tmp size must be the sandbox's), and later starts of the runtime use the same code.
    /// `runtime_pid` is the
    /// process [`Sandbox::spawn`] started.
    fn assign(
        &mut self,
        _code_dir: &Path,
        _memory_mb: u32,
        _ephemeral_storage_mb: u32,
        _runtime_pid: u32,
    ) -> Result<(), SandboxError> {
        Err(SandboxError::Unsupported(
            "this launcher cannot start runtimes ahead of demand",
        ))
    }
    /// Lets the sandbox use only CPU time nobody else wants (until [`Sandbox::assign`] gives
    /// it its function's weight): for work done ahead of demand.
    fn run_in_background(&mut self) {}
    /// Sets what its `/tmp` counts for against the host's budget for `/tmp`; never fails
    /// (counting in full again may take the total past the budget). [`Sandbox::assign`]
    /// counts it in full.
    fn count_tmp(&mut self, _count: TmpCount) {}
    /// Releases what the sandbox holds on the host. Kills first.
    fn destroy(&mut self);
}
