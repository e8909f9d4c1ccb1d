//! A start from a SnapStart snapshot: the version's initialised runtime is forked into a
//! sandbox of its own and carries on from its snapshot.

use gust_runtime_api::control::ForkAnswer;

use super::*;
use crate::snapshot::SnapshotError;

impl Environment {
    /// Starts an environment of `config` from its version's SnapStart snapshot: the snapshot
    /// process forks, the fork makes its own namespaces, Gust gives it its cgroup, Runtime API
    /// and log listener, and the runtime carries on from the initialised state. Its first
    /// invocation reports the time from here to its first `next` as its Restore Duration.
    pub async fn restore(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        snapshot: &Arc<crate::snapshot::Snapshot>,
        claim: MemoryClaim,
    ) -> Result<Self, SnapshotError> {
        let command = function_command(platform, &config, snapshot.sandbox.as_ref())
            .map_err(SnapshotError::Command)?;
        let mut spare = snapshot.forking.lock().await;
        // Waiting for another restore to finish with the snapshot is not this one's.
        let started = Instant::now();
        let prepared = match spare.take() {
            Some(prepared) => prepared,
            None => snapshot.prepare(platform, &config).await?,
        };
        // From here the fork gets its answer whatever happens.
        let crate::snapshot::Prepared {
            id,
            pid,
            mut sandbox,
            log_sink,
        } = prepared;
        let log_stream = log_stream(&config, &id);
        let mut env = variables(
            platform,
            &config,
            snapshot.sandbox.as_ref(),
            &log_stream,
            Some(&command),
        );
        set(&mut env, "AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start");
        let answer = ForkAnswer::Restore {
            environment: env.clone(),
        };
        // Checked here: the Runtime API could only refuse to write it to the fork.
        if let Err(e) = answer.encode() {
            snapshot.link().answer_fork(ForkAnswer::Abandon);
            return Err(SnapshotError::Answer(e));
        }
        snapshot.link().answer_fork(answer);
        drop(spare);
        // The next restore finds its fork made and in its sandbox.
        crate::snapshot::Snapshot::prepare_spare(
            snapshot.clone(),
            platform.clone(),
            config.clone(),
        );
        let output = async {
            let listener = tokio::net::TcpListener::from_std(log_sink)?;
            let (stream, _) = listener.accept().await?;
            stream.into_std().map(OwnedFd::from)
        };
        let output = tokio::time::timeout(crate::snapshot::STEP_LIMIT, output)
            .await
            .map_err(|_| SnapshotError::OutputNotConnected)?
            .map_err(SnapshotError::Output)?;
        let (link, server) =
            serve_runtime_api(sandbox.as_mut()).map_err(SnapshotError::RuntimeApi)?;
        let log = SharedLog::default();
        let process = RuntimeProcess::follow(pid, link.clone(), output, &log, &config.name)
            .map_err(SnapshotError::Follow)?;
        *snapshot.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
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
        env.restored = true;
        env._snapshot = Some(snapshot.clone());
        Ok(env)
    }
}
