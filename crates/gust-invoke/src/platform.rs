//! What every way of starting an environment shares: the server-wide facts (region, runtimes,
//! launcher, code store), where a function's code is, the sandbox and command it runs with,
//! and the platform's own errors.

use std::sync::Arc;

use gust_model::FunctionConfig;
use gust_runtimes::{CommandError, Placement, RuntimeTable};
use gust_sandbox::{Launcher, Sandbox, SandboxSpec};

/// Server-wide facts every environment's variables need.
#[derive(Clone)]
pub struct Platform {
    pub region: String,
    pub runtimes: Arc<RuntimeTable>,
    pub launcher: Arc<dyn Launcher>,
    /// Directory of the function's extracted code, by package digest.
    pub code_root: std::path::PathBuf,
}

/// Environments cannot be created for reasons that are the platform's, not the function's.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error(transparent)]
    Sandbox(#[from] gust_sandbox::SandboxError),
    #[error("{0}")]
    Runtime(CommandError),
    /// What a runtime started ahead would be handed cannot be written to it.
    #[error("the runtime's environment cannot be handed over: {0}")]
    Control(#[source] gust_runtime_api::control::ControlError),
}

/// Runs blocking sandbox work (starting a sandboxed process builds its filesystem before
/// exec; killing one waits for its processes to go) without stalling the other tasks of a
/// multi-threaded runtime.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Where `config`'s extracted code is on the host.
pub(crate) fn code_dir(platform: &Platform, config: &FunctionConfig) -> std::path::PathBuf {
    platform
        .code_root
        .join(&config.code.digest_hex)
        .join("task")
}

/// The sandbox an environment `id` of `config` runs in.
pub(crate) fn sandbox_spec(platform: &Platform, config: &FunctionConfig, id: &str) -> SandboxSpec {
    let runtime = config.runtime.clone().unwrap_or_default();
    SandboxSpec {
        environment_id: id.to_string(),
        code_dir: code_dir(platform, config),
        runtime_dir: platform.runtimes.runtime_dir().to_path_buf(),
        memory_mb: config.memory_size,
        ephemeral_storage_mb: config.ephemeral_storage,
        read_only_paths: platform
            .runtimes
            .install_prefix(&runtime)
            .into_iter()
            .collect(),
        egress: config.network() == gust_model::Network::Egress,
        zygote: false,
    }
}

/// The command that starts `config`'s runtime in `sandbox`.
pub(crate) fn function_command(
    platform: &Platform,
    config: &FunctionConfig,
    sandbox: &dyn Sandbox,
) -> Result<gust_runtimes::RuntimeCommand, CommandError> {
    let code_dir = code_dir(platform, config);
    let placement = Placement {
        host_task_root: &code_dir,
        task_root: sandbox.task_root(),
        runtime_dir: sandbox.runtime_dir(),
    };
    platform.runtimes.command(
        config.runtime.as_deref().unwrap_or_default(),
        placement,
        config.memory_size,
    )
}

/// The command that starts runtime `runtime_id` (with `memory_mb`) in `sandbox` before its
/// function is known, whose task root is the empty directory `placeholder`.
pub(crate) fn placeholder_command(
    platform: &Platform,
    runtime_id: &str,
    memory_mb: u32,
    placeholder: &std::path::Path,
    sandbox: &dyn Sandbox,
) -> Result<gust_runtimes::RuntimeCommand, EnvironmentError> {
    let placement = Placement {
        host_task_root: placeholder,
        task_root: sandbox.task_root(),
        runtime_dir: sandbox.runtime_dir(),
    };
    platform
        .runtimes
        .command(runtime_id, placement, memory_mb)
        .map_err(EnvironmentError::Runtime)
}
