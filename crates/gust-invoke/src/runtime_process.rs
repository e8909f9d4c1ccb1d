//! A runtime process and what follows it: its exit, its output, and the Runtime API it talks
//! to. Every way of starting an environment ends with one of these.

use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Instant;

use gust_runtime_api::Link;
use gust_sandbox::{ProcessSpec, Sandbox};
use tokio::sync::watch;

use crate::logs::{OutputReader, SharedLog};
use crate::platform::{EnvironmentError, blocking};

pub(crate) struct RuntimeProcess {
    pub(crate) exited: watch::Receiver<Option<ExitStatus>>,
    pub(crate) started: Instant,
    pub(crate) output: OutputReader,
}

impl RuntimeProcess {
    /// Follows a started process: its output into `log`, its exit into `exited`. Returns it
    /// with its pid.
    pub(crate) fn watch(
        spawned: gust_sandbox::Spawned,
        log: &SharedLog,
        name: &str,
    ) -> std::io::Result<(Self, u32)> {
        let output = OutputReader::start(spawned.output, log.clone(), name.to_string())?;
        let mut child = spawned.child;
        let pid = child.id().unwrap_or(0);
        let (tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let _ = tx.send(status);
        });
        Ok((
            Self {
                exited,
                started: Instant::now(),
                output,
            },
            pid,
        ))
    }
}

impl RuntimeProcess {
    /// Follows an environment forked from a SnapStart snapshot process: `pid` (a host pid,
    /// not Gust's child) is its first process, which reports how the runtime ended on `link`
    /// before it exits; `output` carries the runtime's stdout and stderr.
    pub(crate) fn follow(
        pid: u32,
        link: Arc<Link>,
        output: OwnedFd,
        log: &SharedLog,
        name: &str,
    ) -> std::io::Result<Self> {
        use std::os::unix::process::ExitStatusExt;
        let output = OutputReader::start(output, log.clone(), name.to_string())?;
        let pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| std::io::Error::other("no such process"))?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK)?;
        // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until dropped.
        let exit = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }
        .map_err(std::io::Error::from)?;
        let (tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            // A pidfd turns readable when its process has exited.
            let _ = exit.readable().await;
            let status = link.reported_exit().unwrap_or(KILLED);
            let _ = tx.send(Some(ExitStatus::from_raw(status)));
        });
        Ok(Self {
            exited,
            started: Instant::now(),
            output,
        })
    }
}

/// The wait status of a process killed by SIGKILL.
pub(crate) const KILLED: i32 = 9;

/// A runtime started before it has anything to do (ahead of demand, or a snapshot's), with
/// its Runtime API.
pub(crate) struct Waiting {
    pub(crate) link: Arc<Link>,
    pub(crate) server: tokio::task::JoinHandle<()>,
    pub(crate) process: RuntimeProcess,
    pub(crate) log: SharedLog,
    /// The process Gust started.
    pub(crate) pid: u32,
}

impl Waiting {
    pub(crate) fn is_alive(&self) -> bool {
        self.process.exited.borrow().is_none()
    }

    /// Ends its Runtime API (the runtime is told to exit).
    pub(crate) fn stop(&self) {
        self.link.close();
        self.server.abort();
    }

    /// Serves the sandbox's Runtime API and starts `command` in it with `env`.
    pub(crate) fn start(
        sandbox: &mut dyn Sandbox,
        command: &gust_runtimes::RuntimeCommand,
        env: Vec<(String, String)>,
        name: &str,
    ) -> Result<Self, EnvironmentError> {
        let (link, server) = serve_runtime_api(sandbox)?;
        let spawned = blocking(|| {
            sandbox.spawn(&ProcessSpec {
                program: command.program.clone(),
                args: command.args.clone(),
                env,
            })
        });
        let spawned = match spawned {
            Ok(s) => s,
            Err(e) => {
                server.abort();
                return Err(e.into());
            }
        };
        let log = SharedLog::default();
        let (process, pid) = RuntimeProcess::watch(spawned, &log, name)
            .map_err(gust_sandbox::SandboxError::Output)?;
        Ok(Self {
            link,
            server,
            process,
            log,
            pid,
        })
    }
}

/// Serves the Runtime API on the sandbox's listener.
pub(crate) fn serve_runtime_api(
    sandbox: &mut dyn Sandbox,
) -> Result<(Arc<Link>, tokio::task::JoinHandle<()>), EnvironmentError> {
    let listener = sandbox
        .take_listener()
        .ok_or_else(|| std::io::Error::other("the sandbox has no Runtime API listener"))
        .map_err(gust_sandbox::SandboxError::Listener)?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(gust_sandbox::SandboxError::Listener)?;
    let link = Arc::new(Link::new());
    let server = gust_runtime_api::spawn(listener, link.clone());
    Ok((link, server))
}

pub(crate) async fn exit_of(exited: &mut watch::Receiver<Option<ExitStatus>>) -> ExitStatus {
    loop {
        if let Some(status) = *exited.borrow_and_update() {
            return status;
        }
        if exited.changed().await.is_err() {
            // The waiter is gone without a status: treat as killed.
            use std::os::unix::process::ExitStatusExt;
            return ExitStatus::from_raw(9);
        }
    }
}

pub(crate) fn describe_exit(status: ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            9 => "killed".to_string(),
            6 => "aborted".to_string(),
            11 => "segmentation fault".to_string(),
            15 => "terminated".to_string(),
            n => format!("signal {n}"),
        };
        return Some(format!("signal: {name}"));
    }
    match status.code() {
        Some(0) | None => None,
        Some(code) => Some(format!("exit status {code}")),
    }
}
