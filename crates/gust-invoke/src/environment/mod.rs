//! One execution environment: a sandbox, its Runtime API, and the runtime process in it.
//!
//! An environment runs one invocation at a time and outlives its runtime process: after a
//! timeout, a crash or an init failure the process is killed and the next invocation starts a
//! fresh one in the same sandbox (the same `/tmp`), as Lambda resets an environment.

use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use gust_model::FunctionConfig;
use gust_model::timefmt::iso_millis;
use gust_runtime_api::{Invocation, Link, Outcome};
use gust_runtimes::CommandError;
use gust_sandbox::{ProcessSpec, Sandbox, TmpCount};

use crate::budget::MemoryClaim;
use crate::logs::{self, SharedLog};
use crate::platform::{
    EnvironmentError, Platform, blocking, code_dir, function_command, sandbox_spec,
};
pub use crate::provisioned::ProvisionTag;
use crate::report::{self, Report, Status};
use crate::runtime_process::{RuntimeProcess, Waiting, describe_exit, exit_of, serve_runtime_api};
use crate::standbys::Standby;
use crate::variables::{log_stream, set, trace_id, variables};

mod ahead;
mod forked;
mod fresh;

pub(crate) use forked::Origin;

/// On-demand init may take this long before the invocation's own timeout starts counting
/// against it (Lambda's 10-second init limit).
const INIT_ALLOWANCE: Duration = Duration::from_secs(10);

/// One invocation as the environment receives it.
#[derive(Debug)]
pub struct Request {
    pub request_id: String,
    pub payload: Bytes,
    pub invoked_function_arn: String,
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
    /// Held while a new environment starts its runtime; released once the runtime has
    /// initialised (or failed to), so that the next cold start may proceed.
    pub setup: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What an invocation produced.
#[derive(Debug, Clone)]
pub struct Response {
    pub body: Bytes,
    pub content_type: Option<String>,
    /// The function failed (`X-Amz-Function-Error: Unhandled`).
    pub function_error: bool,
    pub log: Vec<u8>,
    pub report: Report,
}

/// How an environment came to be (`AWS_LAMBDA_INITIALIZATION_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitializationType {
    OnDemand,
    Provisioned,
}

impl InitializationType {
    fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::Provisioned => "provisioned-concurrency",
        }
    }
}

pub struct Environment {
    pub id: String,
    pub config: Arc<FunctionConfig>,
    pub last_used: Instant,
    /// Set for environments of a provisioned concurrency configuration: they are kept
    /// initialised and never retire for idleness or memory.
    pub provision: Option<ProvisionTag>,
    /// Memory (MB) counted against the host's budget while the environment lives: its
    /// `MemorySize` while it runs; while idle, under the measured policy, what it really uses.
    claim: MemoryClaim,
    /// The claim is what the sandbox was measured to use (not its `MemorySize`).
    claim_measured: bool,
    sandbox: Box<dyn Sandbox>,
    link: Arc<Link>,
    server: tokio::task::JoinHandle<()>,
    runtime: Option<RuntimeProcess>,
    log: SharedLog,
    process: ProcessSpec,
    /// The runtime was started ahead of demand and is initialising for this function now:
    /// the next invocation is a cold start that does not start the runtime again.
    pending_init: bool,
    /// What it was forked from, if it was (kept while it lives: its processes are in the
    /// parent's PID namespace). A forked runtime is never started again: the environment
    /// retires instead.
    origin: Option<Origin>,
}

fn error_body(error_type: &str, message: String) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

impl Environment {
    /// An environment whose runtime was started before its invocation and is initialising
    /// for `config` since `started` (its next invocation is its cold start).
    pub(super) fn initialising(
        id: String,
        config: Arc<FunctionConfig>,
        claim: MemoryClaim,
        sandbox: Box<dyn Sandbox>,
        runtime: Waiting,
        process: ProcessSpec,
        started: Instant,
    ) -> Self {
        let Waiting {
            link,
            server,
            process: mut running,
            log,
            ..
        } = runtime;
        running.started = started;
        let mut env = Self::unstarted(id, config, claim, sandbox, link, server, process);
        env.runtime = Some(running);
        env.log = log;
        env.pending_init = true;
        env
    }

    /// An environment whose sandbox and Runtime API are ready and whose runtime has not
    /// started.
    pub(super) fn unstarted(
        id: String,
        config: Arc<FunctionConfig>,
        claim: MemoryClaim,
        sandbox: Box<dyn Sandbox>,
        link: Arc<Link>,
        server: tokio::task::JoinHandle<()>,
        process: ProcessSpec,
    ) -> Self {
        Self {
            id,
            config,
            last_used: Instant::now(),
            provision: None,
            claim,
            claim_measured: false,
            sandbox,
            link,
            server,
            runtime: None,
            log: SharedLog::default(),
            process,
            pending_init: false,
            origin: None,
        }
    }

    /// Starts the runtime process. On failure returns the invocation error to report.
    fn start_runtime(&mut self, request_id: &str) -> Result<(), Bytes> {
        if self.process.program.as_os_str().is_empty() {
            let searched: Vec<String> = self
                .process
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            return Err(error_body(
                "Runtime.InvalidEntrypoint",
                format!(
                    "RequestId: {request_id} Error: Couldn't find valid bootstrap(s): [{}]",
                    searched.join(" ")
                ),
            ));
        }
        self.link.reset();
        let spawned = blocking(|| self.sandbox.spawn(&self.process));
        let spawned = spawned.map_err(|e| {
            let detail = match &e {
                gust_sandbox::SandboxError::Spawn { program, source } => {
                    let reason = match source.kind() {
                        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                        _ => source.to_string(),
                    };
                    format!("fork/exec {}: {reason}", program.display())
                }
                other => other.to_string(),
            };
            error_body(
                "Runtime.InvalidEntrypoint",
                format!("RequestId: {request_id} Error: {detail}"),
            )
        })?;
        let (process, _) =
            RuntimeProcess::watch(spawned, &self.log, &self.config.name).map_err(|e| {
                error_body(
                    "Runtime.Unknown",
                    format!("RequestId: {request_id} Error: {e}"),
                )
            })?;
        self.runtime = Some(process);
        Ok(())
    }

    /// Kills the runtime and everything it started; the next invocation starts it again.
    fn reset(&mut self) {
        // Killing a cgroup's members waits for them to go.
        blocking(|| self.sandbox.kill_all());
        self.runtime = None;
        self.link.reset();
    }

    /// Starts the runtime and waits for its init to finish (it asks for the first event), as
    /// provisioned concurrency does ahead of any invocation. Init output goes to Gust's log.
    pub async fn prewarm(&mut self, limit: Duration) -> Result<(), String> {
        let describe = |body: Bytes| {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
        };
        self.start_runtime("provisioned-concurrency-init")
            .map_err(describe)?;
        let runtime = self.runtime.as_mut().expect("started above");
        let mut exited = runtime.exited.clone();
        let outcome = tokio::select! {
            _ = self.link.ready() => Ok(()),
            status = exit_of(&mut exited) => Err(match describe_exit(status) {
                Some(reason) => format!("Runtime exited with error: {reason}"),
                None => "Runtime exited during init".to_string(),
            }),
            _ = tokio::time::sleep(limit) => Err(format!("init did not finish in {} s", limit.as_secs())),
        };
        runtime.output.flush().await;
        let init_log = logs::lock(&self.log).take();
        if !init_log.is_empty() {
            tracing::debug!(function = %self.config.name, environment = %self.id, log = %String::from_utf8_lossy(&init_log), "provisioned environment initialised");
        }
        if outcome.is_err() {
            self.reset();
        }
        outcome
    }

    /// Whether the environment has a live runtime (a warm start is possible).
    pub fn is_warm(&self) -> bool {
        self.runtime
            .as_ref()
            .is_some_and(|r| r.exited.borrow().is_none())
    }

    /// Runs one invocation to its end.
    pub async fn invoke(&mut self, mut request: Request) -> Response {
        let mut setup = request.setup.take();
        let timeout = Duration::from_secs(self.config.timeout as u64);
        let adopted = std::mem::take(&mut self.pending_init);
        let mut cold = !self.is_warm() || adopted;
        if let Some(runtime) = self.runtime.as_ref().filter(|_| !cold) {
            // The previous invocation ends when the runtime asks for the next event; a runtime
            // that exits (or hangs) instead gets replaced.
            let mut exited = runtime.exited.clone();
            cold = tokio::select! {
                biased;
                _ = exit_of(&mut exited) => true,
                _ = self.link.idle() => false,
                _ = tokio::time::sleep(timeout) => true,
            };
        }
        // A cold start replaces the runtime, except one started ahead that is alive and now
        // initialising for this function.
        if cold && self.runtime.is_some() && !(adopted && self.is_warm()) {
            self.reset();
        }
        let before = logs::lock(&self.log).take();
        let start = Instant::now();
        if cold
            && self.runtime.is_none()
            && let Err(body) = self.start_runtime(&request.request_id)
        {
            return self.finish(
                &request,
                before,
                Vec::new(),
                start.elapsed(),
                None,
                None,
                Ended::Failed(body),
                cold,
            );
        }
        let trace_id = trace_id();
        let pending = self.link.dispatch(Invocation {
            request_id: request.request_id.clone(),
            payload: request.payload.clone(),
            invoked_function_arn: request.invoked_function_arn.clone(),
            timeout,
            trace_id,
            client_context: request.client_context.clone(),
            cognito_identity: None,
            tenant_id: request.tenant_id.clone(),
        });
        let runtime = self.runtime.as_mut().expect("started above");
        let mut exited = runtime.exited.clone();
        // Until the runtime takes the event, the deadline allows for an init that is under
        // way (measured from when the runtime started); a runtime that finished its init
        // long ago (a warm one, a provisioned one) gets the timeout from this invocation.
        let init_deadline = (runtime.started + INIT_ALLOWANCE).max(start) + timeout;
        let mut delivered = Some(pending.delivered);
        let mut outcome = pending.outcome;
        let mut delivery = None;
        let mut before = before;
        let ended = loop {
            let deadline = delivery
                .map(|d: gust_runtime_api::Delivery| d.deadline)
                .unwrap_or(init_deadline);
            tokio::select! {
                biased;
                result = &mut outcome => break match result {
                    Ok(o) => Ended::Runtime(o),
                    Err(_) => Ended::Failed(error_body(
                        "Runtime.Unknown",
                        format!("RequestId: {} Error: the Runtime API lost the invocation", request.request_id),
                    )),
                },
                result = async { delivered.as_mut().expect("guarded").await }, if delivered.is_some() => {
                    delivered = None;
                    // Initialised: the next environment may start setting up.
                    drop(setup.take());
                    if let Ok(d) = result {
                        delivery = Some(d);
                        if cold {
                            // Output so far is the init phase's: it goes before START.
                            runtime.output.flush().await;
                            before.extend(logs::lock(&self.log).take());
                        }
                    }
                }
                status = exit_of(&mut exited) => break Ended::Exited(status),
                _ = tokio::time::sleep_until(deadline.into()) => break Ended::TimedOut,
            }
        };
        // The invocation ends here: collecting its output below is Gust's time, not the
        // function's.
        let ended_at = Instant::now();
        runtime.output.flush().await;
        let during = logs::lock(&self.log).take();
        let init_duration = if cold {
            let ready = self.link.ready_at().unwrap_or(ended_at);
            Some(ready.saturating_duration_since(runtime.started))
        } else {
            None
        };
        // REPORT's Duration runs from when the runtime took the event to its result. A cold
        // start that never took it counts its init in Init Duration, and only what came after
        // in Duration; a timeout lasts exactly the timeout.
        let invoke_start = match delivery {
            Some(d) => d.at,
            None if cold => self.link.ready_at().unwrap_or(ended_at).max(start),
            None => start,
        };
        let mut duration = ended_at.saturating_duration_since(invoke_start);
        if let Ended::TimedOut = ended {
            duration = duration.min(timeout);
        }
        self.finish(
            &request,
            before,
            during,
            duration,
            init_duration,
            Some(timeout),
            ended,
            cold,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        request: &Request,
        before: Vec<u8>,
        during: Vec<u8>,
        duration: Duration,
        init_duration: Option<Duration>,
        timeout: Option<Duration>,
        ended: Ended,
        cold: bool,
    ) -> Response {
        let max_memory = self.sandbox.peak_memory().unwrap_or(0);
        let id = &request.request_id;
        let mut extra = None;
        let (body, content_type, function_error, status, reset) = match ended {
            Ended::Runtime(Outcome::Response { body, content_type }) => {
                (body, content_type, false, Status::Success, false)
            }
            Ended::Runtime(Outcome::Error { body, .. }) => (body, None, true, Status::Error, false),
            Ended::Runtime(Outcome::ResponseTooLarge) => (
                error_body(
                    "Function.ResponseSizeTooLarge",
                    format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        gust_model::limits::RUNTIME_RESPONSE_MAX
                    ),
                ),
                None,
                true,
                Status::Error,
                false,
            ),
            Ended::Runtime(Outcome::InitError { body, .. }) => {
                (body, None, true, Status::Error, true)
            }
            Ended::Exited(exit) => {
                let message = match describe_exit(exit) {
                    Some(reason) => {
                        format!("RequestId: {id} Error: Runtime exited with error: {reason}")
                    }
                    None => {
                        format!("RequestId: {id} Error: Runtime exited without providing a reason")
                    }
                };
                extra = Some(message.clone());
                (
                    error_body("Runtime.ExitError", message),
                    None,
                    true,
                    Status::Error,
                    true,
                )
            }
            Ended::TimedOut => {
                let seconds = timeout.unwrap_or_default().as_secs_f64();
                extra = Some(format!(
                    "{} {id} Task timed out after {seconds:.2} seconds",
                    iso_millis(SystemTime::now())
                ));
                (
                    error_body(
                        "Sandbox.Timedout",
                        format!("RequestId: {id} Error: Task timed out after {seconds:.2} seconds"),
                    ),
                    None,
                    true,
                    Status::Timeout,
                    true,
                )
            }
            Ended::Failed(body) => (body, None, true, Status::Error, cold),
        };
        if reset {
            self.reset();
        }
        self.last_used = Instant::now();
        if let Some(Origin::Snapshot(snapshot)) = &self.origin {
            // The snapshot is in use while environments restored from it serve invocations.
            snapshot.forker.touch();
        }
        let (init_duration, restore_duration) = if self.is_restored() {
            (None, init_duration)
        } else {
            (init_duration, None)
        };
        let report = Report {
            request_id: id.clone(),
            version: self.config.version.clone(),
            duration,
            init_duration,
            restore_duration,
            memory_size_mb: self.config.memory_size,
            max_memory_used_mb: max_memory.div_ceil(1024 * 1024),
            status,
        };
        let log = report::assemble(&before, &during, extra.as_deref(), &report);
        Response {
            body,
            content_type,
            function_error,
            log,
            report,
        }
    }

    /// Whether the environment may serve another invocation. One whose memory ran out is
    /// retired: Lambda gives the next invocation a fresh environment.
    /// (A forked environment whose runtime ended is retired too: the next one is forked
    /// afresh.)
    pub fn is_reusable(&self) -> bool {
        !self.sandbox.out_of_memory() && (self.origin.is_none() || self.is_warm())
    }

    /// Restored from a SnapStart snapshot: its first invocation reports a Restore Duration.
    fn is_restored(&self) -> bool {
        matches!(self.origin, Some(Origin::Snapshot(_)))
    }

    /// Tears the environment down: kills its processes, stops its Runtime API, frees its
    /// directories.
    pub fn destroy(mut self) {
        self.link.close();
        self.server.abort();
        self.runtime = None;
        self.sandbox.destroy();
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.link.close();
        self.server.abort();
    }
}

enum Ended {
    Runtime(Outcome),
    Exited(ExitStatus),
    TimedOut,
    /// The runtime could not be started or the invocation was lost.
    Failed(Bytes),
}

impl crate::pool::Pooled for Environment {
    fn key(&self) -> crate::pool::PoolKey {
        crate::pool::PoolKey::of(&self.config)
    }

    fn is_provisioned(&self) -> bool {
        self.provision.is_some()
    }

    fn last_used(&self) -> Instant {
        self.last_used
    }

    fn code_digest(&self) -> &str {
        &self.config.code.digest_hex
    }
}

impl Environment {
    /// Counts the environment at its full `MemorySize` (and `/tmp` at its full size) again:
    /// it is about to run, and may use all of it.
    pub(crate) fn claim_in_full(&mut self) {
        self.sandbox.count_tmp(TmpCount::Full);
        if self.claim_measured {
            self.claim.resize(u64::from(self.config.memory_size));
            self.claim_measured = false;
        }
    }

    /// Returns the environment's share of the budgets (it is being torn down).
    pub(crate) fn release_claim(&mut self) {
        self.sandbox.count_tmp(TmpCount::Nothing);
        self.claim.resize(0);
        self.claim_measured = true;
    }

    /// What the environment counts for against the budget now (MB).
    pub(crate) fn claimed_mb(&self) -> u64 {
        self.claim.mb()
    }

    /// Counts the idle environment at what its sandbox uses now (never more than its
    /// `MemorySize`), if it has not been measured since it last ran and its launcher can say;
    /// and its `/tmp` at what it holds of the disk now (a cheap `fstat`, so every time).
    pub(crate) fn measure_claim(&mut self) {
        self.sandbox.count_tmp(TmpCount::Used);
        if self.claim_measured {
            return;
        }
        if let Some(bytes) = self.sandbox.memory_usage() {
            let mb = bytes.div_ceil(1024 * 1024).max(1);
            self.claim
                .resize(mb.min(u64::from(self.config.memory_size)));
            self.claim_measured = true;
        }
    }
}
