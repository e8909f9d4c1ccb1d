//! A start by fork: a SnapStart snapshot (the version's initialised runtime) or a runtime
//! template (the runtime loaded, no function yet) forks into a sandbox of its own, and the
//! fork carries on as this environment.

use gust_runtime_api::control::ForkAnswer;

use super::*;
use crate::forking::{ForkCode, ForkError, Forker, Prepared, STEP_LIMIT};
use crate::snapshot::Snapshot;
use crate::templates::Template;

/// What an environment was forked from. It is kept while the environment lives: the
/// environment's processes are in its parent's PID namespace and end with it.
pub(crate) enum Origin {
    /// Restored from its version's SnapStart snapshot: the first invocation reports a Restore
    /// Duration.
    Snapshot(Arc<Snapshot>),
    /// Forked from its runtime's template; it initialises the function as a fresh start does.
    Template(Arc<Template>),
}

impl Origin {
    pub(crate) fn forker(&self) -> &Forker {
        match self {
            Self::Snapshot(snapshot) => &snapshot.forker,
            Self::Template(template) => &template.forker,
        }
    }

    fn code(&self) -> ForkCode {
        match self {
            Self::Snapshot(_) => ForkCode::Inherited,
            Self::Template(_) => ForkCode::Mounted,
        }
    }
}

impl Environment {
    /// Starts an environment of `config` by fork: the parent forks, the fork makes its own
    /// namespaces, Gust gives it its cgroup, /tmp, Runtime API and log listener (and, from a
    /// template, the function's code), and the runtime carries on. Its first invocation
    /// reports the time from here to its first `next` as its Restore Duration (from a
    /// snapshot) or Init Duration (from a template).
    pub(crate) async fn fork(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        origin: Origin,
        claim: MemoryClaim,
    ) -> Result<Self, ForkError> {
        let forker = origin.forker();
        let command = function_command(platform, &config, forker.sandbox.as_ref())
            .map_err(ForkError::Command)?;
        let mut spare = forker.forking.lock().await;
        // Waiting for another fork to finish with the parent is not this one's.
        let started = Instant::now();
        let prepared = match spare.take() {
            Some(prepared) => prepared,
            None => forker.prepare(platform, &config, origin.code()).await?,
        };
        // From here the fork gets its answer whatever happens.
        let Prepared {
            id,
            pid,
            mut sandbox,
            log_sink,
        } = prepared;
        let log_stream = log_stream(&config, &id);
        let mut env = variables(
            platform,
            &config,
            forker.sandbox.as_ref(),
            &log_stream,
            Some(&command),
        );
        if let Origin::Snapshot(_) = origin {
            set(&mut env, "AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start");
        }
        let answer = ForkAnswer::Restore {
            environment: env.clone(),
        };
        // Checked here: the Runtime API could only refuse to write it to the fork.
        if let Err(e) = answer.encode() {
            forker.link().answer_fork(ForkAnswer::Abandon);
            return Err(ForkError::Answer(e));
        }
        forker.link().answer_fork(answer);
        drop(spare);
        tracing::debug!(function = %config.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "fork answered");
        forker.touch();
        if let Origin::Snapshot(snapshot) = &origin {
            // The next restore finds its fork made and in its sandbox.
            Snapshot::prepare_spare(snapshot.clone(), platform.clone(), config.clone());
        }
        let output = async {
            let listener = tokio::net::TcpListener::from_std(log_sink)?;
            let (stream, _) = listener.accept().await?;
            stream.into_std().map(OwnedFd::from)
        };
        let output = tokio::time::timeout(STEP_LIMIT, output)
            .await
            .map_err(|_| ForkError::OutputNotConnected)?
            .map_err(ForkError::Output)?;
        let (link, server) = serve_runtime_api(sandbox.as_mut()).map_err(ForkError::RuntimeApi)?;
        let log = SharedLog::default();
        let process = RuntimeProcess::follow(pid, link.clone(), output, &log, &config.name)
            .map_err(ForkError::Follow)?;
        let runtime = Waiting {
            link,
            server,
            process,
            log,
            pid,
        };
        let spec = ProcessSpec {
            program: command.program,
            args: command.args,
            env,
        };
        let mut env = Self::initialising(id, config, claim, sandbox, runtime, spec, started);
        env.origin = Some(origin);
        Ok(env)
    }
}
