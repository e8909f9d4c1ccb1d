//! SnapStart: one snapshot process per published version that uses it.
//!
//! Lambda initialises a SnapStart version once, snapshots it, and starts every environment of
//! the version from the snapshot. Gust's snapshot is a process: the version's runtime, started
//! in a sandbox of its own, runs the function's init (and its before-snapshot hooks) once and
//! then forks each new environment, which makes namespaces of its own, is given its cgroup and
//! Runtime API by Gust, confines itself exactly as every sandboxed runtime is confined, runs
//! the after-restore hooks and serves events from the initialised state (see the Python
//! runtime's `_gust_snapshot.py` and `_gust_confine.py`; the forking itself is `forking.rs`).
//! Values made during init are therefore the same in every environment, as on Lambda; Python
//! re-seeds `random` in each.

use std::sync::Arc;
use std::time::Duration;

use gust_model::FunctionConfig;

use crate::budget::MemoryClaim;
use crate::forking::{ForkCode, Forker, StartError};
use crate::platform::{EnvironmentError, Platform, function_command, sandbox_spec};
use crate::variables::{set, variables};

/// How long a snapshot's init may take (Lambda allows SnapStart's init the function timeout
/// or 130 seconds, whichever is longer).
const MIN_INIT_LIMIT: Duration = Duration::from_secs(130);

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

/// A version's snapshot process, initialised and waiting to fork environments.
pub struct Snapshot {
    pub config: Arc<FunctionConfig>,
    pub(crate) forker: Forker,
    _claim: MemoryClaim,
}

impl Snapshot {
    /// Starts the snapshot process of `config`'s version and waits until its init is done.
    pub async fn start(
        platform: &Platform,
        config: Arc<FunctionConfig>,
        claim: MemoryClaim,
    ) -> Result<Self, StartError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let log_stream = format!("snapshot/[{}]{id}", config.version);
        let name = format!("snapshot {}:{}", config.name, config.version);
        let forker = Forker::spawn(
            platform,
            &sandbox_spec(platform, &config, &id),
            |sandbox| {
                function_command(platform, &config, sandbox).map_err(EnvironmentError::Runtime)
            },
            |sandbox, command| {
                let mut env = variables(platform, &config, sandbox, &log_stream, Some(command));
                set(&mut env, "AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start");
                set(&mut env, SNAPSHOT_VARIABLE, "1");
                env
            },
            &name,
        )
        .map_err(StartError::Spawn)?;
        let limit = MIN_INIT_LIMIT.max(Duration::from_secs(u64::from(config.timeout)));
        let (forker, init_log) = forker.ready(limit).await;
        if !init_log.is_empty() {
            tracing::debug!(function = %config.name, version = %config.version, log = %String::from_utf8_lossy(&init_log), "snapshot initialised");
        }
        Ok(Self {
            config,
            forker: forker?,
            _claim: claim,
        })
    }

    /// Makes a spare fork in the background, unless there is one.
    pub(crate) fn prepare_spare(
        snapshot: Arc<Snapshot>,
        platform: Platform,
        config: Arc<FunctionConfig>,
    ) {
        tokio::spawn(async move {
            let mut spare = snapshot.forker.forking.lock().await;
            if spare.is_some() || !snapshot.is_alive() {
                return;
            }
            match snapshot
                .forker
                .prepare(&platform, &config, ForkCode::Inherited)
                .await
            {
                Ok(prepared) => *spare = Some(prepared),
                Err(e) => tracing::debug!(function = %config.name, error = %e, "no spare fork"),
            }
        });
    }

    /// Whether the snapshot process still runs.
    pub fn is_alive(&self) -> bool {
        self.forker.is_alive()
    }
}
