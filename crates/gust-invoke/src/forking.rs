//! A process that forks environments: a SnapStart snapshot (one function version, initialised)
//! or a runtime template (one runtime, loaded, no function yet).
//!
//! It runs Gust's runtime in a sandbox of its own and waits on its Runtime API. For each new
//! environment Gust asks it to fork (`fork`); the fork makes namespaces of its own and the
//! parent reports it (`forked`). Gust then makes the fork's sandbox around it (its cgroup, its
//! /tmp, its Runtime API and log listeners inside its network namespace, and, for a template,
//! the function's code at `/var/task`) and answers with the environment's variables, which the
//! parent hands to the fork. One fork at a time: the parent answers them in turn. Environments
//! forked from it live in its PID namespace, so it lives as long as the last of them.

use std::time::Instant;

use gust_model::FunctionConfig;
use gust_runtime_api::Link;
use gust_runtime_api::control::{Claim, ControlError, ForkAnswer, ForkReport, ForkRequest};
use gust_runtimes::{CommandError, RuntimeCommand};
use gust_sandbox::{Sandbox, SandboxError, SandboxSpec};

use crate::platform::{EnvironmentError, Platform, blocking, sandbox_spec};
use crate::runtime_process::Waiting;

/// How long a parent may take to fork, and a fork to connect its output.
pub(crate) const STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why an environment could not be forked: the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("the parent process did not report a fork in time")]
    ForkNotReported,
    #[error("the parent process is gone")]
    ParentGone,
    #[error("the parent process could not fork ({reason})")]
    ForkFailed { reason: String },
    #[error(
        "the parent process reported a fork (pid {pid} in its namespace) that is not its child"
    )]
    ForkNotFound { pid: u32 },
    #[error("making the fork's sandbox: {0}")]
    AdoptFork(#[source] SandboxError),
    #[error("the function's runtime: {0}")]
    Command(#[source] CommandError),
    #[error("the fork's environment cannot be sent to it: {0}")]
    Answer(#[source] ControlError),
    #[error("the forked environment did not connect its output")]
    OutputNotConnected,
    #[error("accepting the forked environment's output: {0}")]
    Output(#[source] std::io::Error),
    #[error("serving the forked environment's Runtime API: {0}")]
    RuntimeApi(#[source] EnvironmentError),
    #[error("following the forked runtime: {0}")]
    Follow(#[source] std::io::Error),
}

/// Why a parent could not be started: the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("starting it: {0}")]
    Spawn(#[source] EnvironmentError),
    #[error("it ended before it was ready to fork (its init failed)")]
    Exited,
    #[error("it was not ready to fork within {} s", .0.as_secs())]
    TimedOut(std::time::Duration),
}

/// Whether a fork already sees its function's code at `/var/task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForkCode {
    /// A snapshot's fork: its parent ran with the function's code.
    Inherited,
    /// A template's fork: Gust mounts the function's code before it answers.
    Mounted,
}

/// A fork of the parent in its own namespaces and sandbox, waiting for its environment's
/// variables.
pub(crate) struct Prepared {
    pub(crate) id: String,
    /// Its host pid.
    pub(crate) pid: u32,
    pub(crate) sandbox: Box<dyn Sandbox>,
    /// Where it will connect its output.
    pub(crate) log_sink: std::net::TcpListener,
}

/// The parent process, started and waiting to fork environments.
pub(crate) struct Forker {
    pub(crate) sandbox: Box<dyn Sandbox>,
    /// The parent (Gust started its sandbox's first process; the parent is that one's
    /// grandchild).
    pub(crate) runtime: Waiting,
    /// One fork at a time. Holds the next environment's fork once made (a spare), in its
    /// sandbox, waiting for its variables.
    pub(crate) forking: tokio::sync::Mutex<Option<Prepared>>,
    pub(crate) last_used: std::sync::Mutex<Instant>,
}

impl Forker {
    /// Starts `command` with `env` in a new sandbox of `spec` that may fork environments.
    pub(crate) fn spawn(
        platform: &Platform,
        spec: &SandboxSpec,
        command: impl FnOnce(&dyn Sandbox) -> Result<RuntimeCommand, EnvironmentError>,
        env: impl FnOnce(&dyn Sandbox, &RuntimeCommand) -> Vec<(String, String)>,
        name: &str,
    ) -> Result<Self, EnvironmentError> {
        let mut sandbox = platform.launcher.create(&SandboxSpec {
            zygote: true,
            ..spec.clone()
        })?;
        let command = command(sandbox.as_ref())?;
        let env = env(sandbox.as_ref(), &command);
        let runtime = Waiting::start(sandbox.as_mut(), &command, env, name)?;
        Ok(Self {
            sandbox,
            runtime,
            forking: tokio::sync::Mutex::new(None),
            last_used: std::sync::Mutex::new(Instant::now()),
        })
    }

    /// Waits (at most `limit`) until the parent is ready to fork; on failure it is torn
    /// down. What it printed meanwhile is returned.
    pub(crate) async fn ready(
        self,
        limit: std::time::Duration,
    ) -> (Result<Self, StartError>, Vec<u8>) {
        let mut exited = self.runtime.process.exited.clone();
        let outcome = tokio::select! {
            _ = self.runtime.link.standing_by() => Ok(()),
            _ = exited.wait_for(Option::is_some) => Err(StartError::Exited),
            _ = tokio::time::sleep(limit) => Err(StartError::TimedOut(limit)),
        };
        self.runtime.process.output.flush().await;
        let output = crate::logs::lock(&self.runtime.log).take();
        match outcome {
            Ok(()) => (Ok(self), output),
            Err(e) => {
                // Killing its sandbox waits for its processes to go.
                blocking(|| drop(self));
                (Err(e), output)
            }
        }
    }

    /// Asks the parent for a fork and makes the fork's sandbox for an environment of
    /// `config`. The fork then waits for its environment's variables (the answer to the
    /// parent's report). The caller holds `forking`.
    pub(crate) async fn prepare(
        &self,
        platform: &Platform,
        config: &FunctionConfig,
        code: ForkCode,
    ) -> Result<Prepared, ForkError> {
        self.link().claim_standby(Claim::Fork(ForkRequest {
            tmp_mb: config.ephemeral_storage,
        }));
        let report = tokio::time::timeout(STEP_LIMIT, self.link().fork_reported())
            .await
            .map_err(|_| {
                // A fork reported late would be taken for the next one's: end it all.
                self.link().close();
                ForkError::ForkNotReported
            })?
            .map_err(|_| ForkError::ParentGone)?;
        let forked = match report {
            ForkReport::Forked { pid } => {
                self.forked_pid(pid).ok_or(ForkError::ForkNotFound { pid })
            }
            ForkReport::Failed { reason } => Err(ForkError::ForkFailed { reason }),
        };
        let pid = match forked {
            Ok(pid) => pid,
            Err(e) => {
                // The parent hands the answer on to its fork, if it made one.
                self.link().answer_fork(ForkAnswer::Abandon);
                return Err(e);
            }
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = sandbox_spec(platform, config, &id);
        let mount_code = code == ForkCode::Mounted;
        let reported = Instant::now();
        let adopted = blocking(|| platform.launcher.adopt_fork(pid, &spec, mount_code));
        tracing::debug!(
            adopt_ms = reported.elapsed().as_secs_f64() * 1e3,
            "fork's sandbox made"
        );
        match adopted {
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
                Err(ForkError::AdoptFork(e))
            }
        }
    }

    /// Whether the parent still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.runtime.is_alive()
    }

    /// The parent's Runtime API.
    pub(crate) fn link(&self) -> &Link {
        &self.runtime.link
    }

    /// Marks it used now.
    pub(crate) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When it last forked an environment (or one forked from it served an invocation).
    pub(crate) fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host pid of the process the parent forked, given its pid as the parent sees it.
    fn forked_pid(&self, pid_inside: u32) -> Option<u32> {
        // Gust started the sandbox's first process; its child is the sandbox's init, whose
        // child is the parent.
        let child_of = |pid: u32| -> Vec<u32> {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        };
        let init = *child_of(self.runtime.pid).first()?;
        let parent = *child_of(init).first()?;
        child_of(parent).into_iter().find(|pid| {
            // NSpid: the pid in each namespace from the host's down; the parent's namespace
            // is the second.
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

impl Drop for Forker {
    fn drop(&mut self) {
        self.runtime.stop();
        self.sandbox.destroy();
    }
}
