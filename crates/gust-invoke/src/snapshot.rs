//! SnapStart: one snapshot process per published version that uses it.
//!
//! Lambda initialises a SnapStart version once, snapshots it, and starts every environment of
//! the version from the snapshot. Gust's snapshot is a process: the version's runtime, started
//! in a sandbox of its own, runs the function's init (and its before-snapshot hooks) once and
//! then forks each new environment, which makes namespaces of its own, is given its cgroup and
//! Runtime API by Gust, confines itself exactly as every sandboxed runtime is confined, runs
//! the after-restore hooks and serves events from the initialised state (see the Python
//! runtime's `_gust_snapshot.py` and `_gust_confine.py`). Values made during init are therefore the same in every
//! environment, as on Lambda; Python re-seeds `random` in each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_model::FunctionConfig;
use gust_runtime_api::Link;
use gust_runtime_api::control::{Claim, ControlError, ForkAnswer, ForkReport, ForkRequest};
use gust_runtimes::CommandError;
use gust_sandbox::{Sandbox, SandboxError, SandboxSpec};

use crate::budget::MemoryClaim;
use crate::logs;
use crate::platform::{EnvironmentError, Platform, blocking, function_command, sandbox_spec};
use crate::runtime_process::Waiting;
use crate::variables::{set, variables};

/// How long a snapshot's init may take (Lambda allows SnapStart's init the function timeout
/// or 130 seconds, whichever is longer).
const MIN_INIT_LIMIT: Duration = Duration::from_secs(130);

/// How long a snapshot process may take to fork, and a fork to connect its output.
pub(crate) const STEP_LIMIT: Duration = Duration::from_secs(10);

/// Tells Gust's Python runtime to be a snapshot process.
const SNAPSHOT_VARIABLE: &str = "_GUST_SNAPSHOT";

/// Whether environments of `config` start from a snapshot (where the launcher can fork them
/// into sandboxes): a published version of a Python function with `SnapStart.ApplyOn =
/// PublishedVersions` and no egress.
pub fn applies(config: &FunctionConfig) -> bool {
    // Egress is attached to a sandbox when it is made; a fork makes its own network.
    config.snap_start_on() && config.network() == gust_model::Network::None
}

/// Writes what forked environments confine themselves with where the runtime reads it
/// (`gust/confinement.json` in the runtime directory). Returns whether the launcher can fork
/// environments from snapshots at all.
pub fn publish_confinement(platform: &Platform) -> std::io::Result<bool> {
    let Some(confinement) = platform.launcher.confinement() else {
        return Ok(false);
    };
    let dir = platform.runtimes.runtime_dir().join("gust");
    std::fs::create_dir_all(&dir)?;
    confinement.publish(&dir.join("confinement.json"))?;
    Ok(true)
}

/// Why a snapshot could not be made, or an environment restored from it: the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("starting the snapshot process: {0}")]
    Start(#[source] EnvironmentError),
    #[error("its init failed")]
    InitFailed,
    #[error("its init did not finish in {} s", .0.as_secs())]
    InitTimedOut(Duration),
    #[error("the snapshot process did not fork")]
    ForkNotReported,
    #[error("the snapshot process is gone")]
    SnapshotGone,
    #[error("the snapshot process could not fork ({reason})")]
    ForkFailed { reason: String },
    #[error(
        "the snapshot process reported a fork (pid {pid} in its namespace) that is not its child"
    )]
    ForkNotFound { pid: u32 },
    #[error("adopting the fork's sandbox: {0}")]
    AdoptFork(#[source] SandboxError),
    #[error("the function's runtime: {0}")]
    Command(#[source] CommandError),
    #[error("the fork's environment cannot be sent to it: {0}")]
    Answer(#[source] ControlError),
    #[error("the restored environment did not connect its output")]
    OutputNotConnected,
    #[error("accepting the restored environment's output: {0}")]
    Output(#[source] std::io::Error),
    #[error("serving the restored environment's Runtime API: {0}")]
    RuntimeApi(#[source] EnvironmentError),
    #[error("following the restored runtime: {0}")]
    Follow(#[source] std::io::Error),
}

/// A fork of the snapshot process in its own namespaces and sandbox, waiting for its
/// environment's variables.
pub(crate) struct Prepared {
    pub(crate) id: String,
    /// Its host pid.
    pub(crate) pid: u32,
    pub(crate) sandbox: Box<dyn Sandbox>,
    /// Where it will connect its output.
    pub(crate) log_sink: std::net::TcpListener,
}

/// A version's snapshot process, initialised and waiting to fork environments.
pub struct Snapshot {
    pub config: Arc<FunctionConfig>,
    pub(crate) sandbox: Box<dyn Sandbox>,
    /// The snapshot process (Gust started its sandbox's first process; the snapshot process
    /// is that one's grandchild).
    runtime: Waiting,
    /// One fork at a time: the snapshot process answers them in turn. Holds the next
    /// environment's fork once made (a spare), in its sandbox, waiting for its variables.
    pub(crate) forking: tokio::sync::Mutex<Option<Prepared>>,
    pub(crate) last_used: std::sync::Mutex<Instant>,
    _claim: MemoryClaim,
}

impl Snapshot {
    /// Starts the snapshot process of `config`'s version and waits until its init is done.
    pub async fn start(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        claim: MemoryClaim,
    ) -> Result<Self, SnapshotError> {
        let snapshot = Self::spawn(platform, config, claim).map_err(SnapshotError::Start)?;
        let limit = MIN_INIT_LIMIT.max(Duration::from_secs(u64::from(snapshot.config.timeout)));
        let mut exited = snapshot.runtime.process.exited.clone();
        let outcome = tokio::select! {
            _ = snapshot.runtime.link.standing_by() => Ok(()),
            _ = exited.wait_for(Option::is_some) => Err(SnapshotError::InitFailed),
            _ = tokio::time::sleep(limit) => Err(SnapshotError::InitTimedOut(limit)),
        };
        snapshot.runtime.process.output.flush().await;
        let init_log = logs::lock(&snapshot.runtime.log).take();
        if !init_log.is_empty() {
            tracing::debug!(function = %snapshot.config.name, version = %snapshot.config.version, log = %String::from_utf8_lossy(&init_log), "snapshot initialised");
        }
        match outcome {
            Ok(()) => Ok(snapshot),
            Err(e) => {
                // Killing its sandbox waits for its processes to go.
                blocking(|| drop(snapshot));
                Err(e)
            }
        }
    }

    fn spawn(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        claim: MemoryClaim,
    ) -> Result<Self, EnvironmentError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut sandbox = platform.launcher.create(&SandboxSpec {
            zygote: true,
            ..sandbox_spec(platform, &config, &id)
        })?;
        let command = function_command(platform, &config, sandbox.as_ref())
            .map_err(EnvironmentError::Runtime)?;
        let log_stream = format!("snapshot/[{}]{id}", config.version);
        let mut env = variables(
            platform,
            &config,
            sandbox.as_ref(),
            &log_stream,
            Some(&command),
        );
        set(&mut env, "AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start");
        set(&mut env, SNAPSHOT_VARIABLE, "1");
        let name = format!("snapshot {}:{}", config.name, config.version);
        let runtime = Waiting::start(sandbox.as_mut(), &command, env, &name)?;
        Ok(Self {
            config,
            sandbox,
            runtime,
            forking: tokio::sync::Mutex::new(None),
            last_used: std::sync::Mutex::new(Instant::now()),
            _claim: claim,
        })
    }

    /// Asks the snapshot process for a fork and makes the fork's sandbox (its cgroup, its
    /// Runtime API and log listeners). The fork then waits for its environment's variables
    /// (the answer to the snapshot process's report). The caller holds `forking`.
    pub(crate) async fn prepare(
        &self,
        platform: &Platform,
        config: &FunctionConfig,
    ) -> Result<Prepared, SnapshotError> {
        self.link().claim_standby(Claim::Fork(ForkRequest {
            tmp_mb: config.ephemeral_storage,
        }));
        let report = tokio::time::timeout(STEP_LIMIT, self.link().fork_reported())
            .await
            .map_err(|_| {
                // A fork reported late would be taken for the next one's: end it all.
                self.link().close();
                SnapshotError::ForkNotReported
            })?
            .map_err(|_| SnapshotError::SnapshotGone)?;
        let forked = match report {
            ForkReport::Forked { pid } => self
                .forked_pid(pid)
                .ok_or(SnapshotError::ForkNotFound { pid }),
            ForkReport::Failed { reason } => Err(SnapshotError::ForkFailed { reason }),
        };
        let pid = match forked {
            Ok(pid) => pid,
            Err(e) => {
                // The snapshot process hands the answer on to its fork, if it made one.
                self.link().answer_fork(ForkAnswer::Abandon);
                return Err(e);
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = sandbox_spec(platform, config, &id);
        match blocking(|| platform.launcher.adopt_fork(pid, &spec)) {
            Ok((sandbox, log_sink)) => Ok(Prepared {
                id,
                pid,
                sandbox,
                log_sink,
            }),
            Err(e) => {
                self.link().answer_fork(ForkAnswer::Abandon);
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                Err(SnapshotError::AdoptFork(e))
            }
        }
    }

    /// Makes a spare fork in the background, unless there is one.
    pub(crate) fn prepare_spare(
        snapshot: Arc<Snapshot>,
        platform: Platform,
        config: Arc<FunctionConfig>,
    ) {
        tokio::spawn(async move {
            let mut spare = snapshot.forking.lock().await;
            if spare.is_some() || !snapshot.is_alive() {
                return;
            }
            match snapshot.prepare(&platform, &config).await {
                Ok(prepared) => *spare = Some(prepared),
                Err(e) => tracing::debug!(function = %config.name, error = %e, "no spare fork"),
            }
        });
    }

    /// Whether the snapshot process still runs.
    pub fn is_alive(&self) -> bool {
        self.runtime.is_alive()
    }

    /// The snapshot process's Runtime API.
    pub(crate) fn link(&self) -> &Link {
        &self.runtime.link
    }

    /// The host pid of the process the snapshot process forked, given its pid as the
    /// snapshot process sees it.
    pub(crate) fn forked_pid(&self, pid_inside: u32) -> Option<u32> {
        // Gust started the sandbox's first process; its child is the sandbox's init, whose
        // child is the snapshot process.
        let child_of = |pid: u32| -> Vec<u32> {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        let init = *child_of(self.runtime.pid).first()?;
        let snapshot = *child_of(init).first()?;
        child_of(snapshot).into_iter().find(|pid| {
            // NSpid: the pid in each namespace from the host's down; the snapshot process's
            // namespace is the second.
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|status| {
                    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
                    line.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pid_inside)
        })
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.runtime.stop();
        self.sandbox.destroy();
    }
}
