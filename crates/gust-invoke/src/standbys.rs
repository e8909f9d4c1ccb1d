//! Sandboxes started ahead of demand, for cold starts that skip the sandbox's and the
//! interpreter's start-up.
//!
//! Setting up a sandbox costs a few milliseconds, and starting Python or Node.js with Gust's
//! bootstrap most of a cold start; none of it depends on the function. So after a cold start,
//! Gust keeps a few sandboxes of that kind started and waiting: for Python and Node.js, with
//! the interpreter and the bootstrap loaded; for custom runtimes, and for Python and Node.js
//! functions that set a variable their interpreter reads as it starts, with a stand-in that
//! execs the function's runtime command when adopted. The next cold start adopts one (its
//! function's code is mounted in, its memory limit and /tmp size set, its variables handed
//! over) instead of starting from nothing. Each is used by one environment only, and only
//! where an adopted environment cannot be told from a fresh one. Those nobody has needed for a
//! keep-alive retire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use gust_model::{FunctionConfig, Network};
use gust_runtimes::RuntimeTable;

use gust_runtimes::Placement;
use gust_sandbox::{Sandbox, SandboxSpec};

use crate::budget::MemoryClaim;
use crate::platform::{EnvironmentError, Platform};
use crate::runtime_process::Waiting;
use crate::variables::standby_variables;

/// Variables (or prefixes, ending in `*`) the dynamic loader, the C library and the locale
/// read when any process starts: a function that sets one gets a fresh start.
const READ_AT_EXEC: &[&str] = &["LD_*", "LANG", "LC_*", "TZ", "GLIBC_TUNABLES", "MALLOC_*"];

/// What Python reads as it starts, besides [`READ_AT_EXEC`].
const PYTHON_READS_AT_START: &[&str] = &["PYTHON*"];

/// What Node.js (and the OpenSSL and libuv it initialises) reads as it starts.
const NODE_READS_AT_START: &[&str] = &["NODE_*", "UV_*", "OPENSSL_*", "SSL_CERT_*"];

/// Whether the function sets one of `variables` or of [`READ_AT_EXEC`].
fn sets_any(config: &FunctionConfig, variables: &[&str]) -> bool {
    config.environment.iter().flatten().any(|(key, _)| {
        variables
            .iter()
            .chain(READ_AT_EXEC)
            .any(|v| match v.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == v,
            })
    })
}

/// The runtime id and memory size (MB) of a Node.js pool: Node.js sizes its heap from the
/// memory at start-up, so its pools are per memory size (`nodejs20.x/512`).
pub fn node_kind(kind: &str) -> Option<(&str, u32)> {
    let (runtime, memory) = kind.split_once('/')?;
    Some((runtime, memory.parse().ok()?))
}

#[derive(Default)]
struct Pool {
    ready: Vec<Standby>,
    starting: usize,
    /// The last cold start of this runtime.
    wanted: Option<Instant>,
}

/// The pool that serves custom runtimes (`provided*`): the function's own `bootstrap` is
/// exec'd at adoption, so one kind serves them all.
pub const CUSTOM: &str = "provided";

/// The kind of sandboxes whose stand-in execs a runtime command at adoption; `prefix` is the
/// interpreter's installation a sandbox must show for it (none for custom runtimes), as a
/// fresh sandbox for that runtime would.
pub fn stand_in_kind(prefix: Option<&Path>) -> String {
    match prefix {
        None => CUSTOM.to_string(),
        Some(prefix) => format!("{CUSTOM}:{}", prefix.display()),
    }
}

/// For a kind of [`stand_in_kind`], the installation its sandboxes show.
pub fn stand_in_prefix(kind: &str) -> Option<Option<PathBuf>> {
    if kind == CUSTOM {
        return Some(None);
    }
    let prefix = kind.strip_prefix(CUSTOM)?.strip_prefix(':')?;
    Some(Some(PathBuf::from(prefix)))
}

#[derive(Default)]
pub struct Standbys {
    per_runtime: usize,
    pools: Mutex<HashMap<String, Pool>>,
}

impl Standbys {
    pub fn new(per_runtime: usize) -> Self {
        Self {
            per_runtime,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool whose sandboxes an environment of `config` may adopt, if any.
    pub fn kind(&self, config: &FunctionConfig, runtimes: &RuntimeTable) -> Option<String> {
        // Egress attaches the network namespace to the host's when the sandbox is made.
        if self.per_runtime == 0 || config.network() != Network::None {
            return None;
        }
        let runtime = config.runtime.as_deref()?;
        if runtime.starts_with("provided") {
            // The bootstrap is exec'd with the function's variables: nothing is read early.
            return Some(CUSTOM.to_string());
        }
        let reads_at_start = if runtime.starts_with("nodejs") {
            NODE_READS_AT_START
        } else if runtime.starts_with("python") {
            PYTHON_READS_AT_START
        } else {
            return None;
        };
        if sets_any(config, reads_at_start) {
            // The interpreter must start with them: the stand-in execs it at adoption.
            let prefix = runtimes.install_prefix(runtime);
            return Some(stand_in_kind(prefix.as_deref()));
        }
        if runtime.starts_with("nodejs") {
            return Some(format!("{runtime}/{}", config.memory_size));
        }
        Some(runtime.to_string())
    }

    /// Returns a sandbox that could not be adopted for a reason of its function's.
    pub fn put_back(&self, standby: Standby) {
        let mut pools = self.lock();
        let pool = pools.entry(standby.runtime.clone()).or_default();
        pool.ready.push(standby);
    }

    /// A runtime of `runtime` started ahead, if one is there. Dead ones are handed back for
    /// teardown.
    pub fn take(&self, runtime: &str) -> (Option<Standby>, Vec<Standby>) {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(runtime) else {
            return (None, Vec::new());
        };
        let (alive, dead): (Vec<Standby>, Vec<Standby>) =
            pool.ready.drain(..).partition(Standby::is_alive);
        pool.ready = alive;
        // A ready one if there is one, else one still loading (the rest of its start is
        // shorter than a whole fresh start).
        let taken = pool
            .ready
            .iter()
            .position(Standby::is_ready)
            .or_else(|| (!pool.ready.is_empty()).then_some(0))
            .map(|i| pool.ready.remove(i));
        (taken, dead)
    }

    /// Records a cold start of `runtime`; returns how many runtimes to start to refill its
    /// pool (the caller starts them and reports each with [`Standbys::started`]).
    pub fn wanted(&self, runtime: &str) -> usize {
        let mut pools = self.lock();
        let pool = pools.entry(runtime.to_string()).or_default();
        pool.wanted = Some(Instant::now());
        let missing = self
            .per_runtime
            .saturating_sub(pool.ready.len() + pool.starting);
        pool.starting += missing;
        missing
    }

    /// A runtime started for the pool (or `None` when it could not be started).
    pub fn started(&self, runtime: &str, standby: Option<Standby>) -> Option<Standby> {
        let mut pools = self.lock();
        let pool = pools.entry(runtime.to_string()).or_default();
        pool.starting = pool.starting.saturating_sub(1);
        let standby = standby?;
        if pool.ready.len() >= self.per_runtime {
            return Some(standby);
        }
        pool.ready.push(standby);
        None
    }

    /// Runtimes nobody needed for `keep_alive`, and dead ones: for teardown.
    pub fn expired(&self, keep_alive: Duration) -> Vec<Standby> {
        let mut pools = self.lock();
        let mut out = Vec::new();
        for pool in pools.values_mut() {
            let idle = pool.wanted.is_none_or(|w| w.elapsed() > keep_alive);
            let (keep, drop): (Vec<Standby>, Vec<Standby>) =
                pool.ready.drain(..).partition(|s| s.is_alive() && !idle);
            pool.ready = keep;
            out.extend(drop);
        }
        pools.retain(|_, p| !p.ready.is_empty() || p.starting > 0);
        out
    }

    /// Any one runtime started ahead (to give its memory to a real environment).
    pub fn take_any(&self) -> Option<Standby> {
        self.lock().values_mut().find_map(|p| p.ready.pop())
    }

    /// Ready runtimes per runtime id, for status output.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .lock()
            .iter()
            .map(|(k, p)| (k.clone(), p.ready.iter().filter(|s| s.is_ready()).count()))
            .collect();
        counts.sort();
        counts
    }

    pub fn drain(&self) -> Vec<Standby> {
        self.lock()
            .values_mut()
            .flat_map(|p| p.ready.drain(..))
            .collect()
    }
}

/// A runtime started ahead of demand, in a sandbox of its own that no function has yet: its
/// interpreter and Gust's bootstrap are loaded, and it waits on the Runtime API for the
/// environment of the function it will serve. Adopted by exactly one environment, or
/// destroyed.
pub struct Standby {
    pub id: String,
    /// The runtime id it was started for.
    pub runtime: String,
    pub created: Instant,
    pub(crate) sandbox: Box<dyn Sandbox>,
    pub(crate) runtime_process: Waiting,
    _claim: MemoryClaim,
}

impl Standby {
    /// Starts `runtime` in a new sandbox whose task root is `placeholder` (an empty
    /// directory) until a function adopts it.
    pub fn start(
        platform: &Platform,
        runtime: &str,
        placeholder: &std::path::Path,
        claim: MemoryClaim,
    ) -> Result<Self, EnvironmentError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let stand_in = stand_in_prefix(runtime);
        // Node.js pools are per memory size: the heap limit is set when it starts.
        let (runtime_id, memory_mb) =
            node_kind(runtime).unwrap_or((runtime, gust_model::limits::DEFAULT_MEMORY_MB));
        let read_only_paths = match &stand_in {
            Some(prefix) => prefix.clone(),
            None => platform.runtimes.install_prefix(runtime_id),
        };
        let mut sandbox = platform.launcher.create(&SandboxSpec {
            environment_id: id.clone(),
            code_dir: placeholder.to_path_buf(),
            runtime_dir: platform.runtimes.runtime_dir().to_path_buf(),
            memory_mb: gust_model::limits::DEFAULT_MEMORY_MB,
            ephemeral_storage_mb: gust_model::limits::DEFAULT_EPHEMERAL_MB,
            read_only_paths: read_only_paths.into_iter().collect(),
            egress: false,
            zygote: false,
        })?;
        let command = if stand_in.is_some() {
            // A stand-in that execs the function's runtime command once adopted.
            gust_runtimes::standby_command(sandbox.runtime_dir())
        } else {
            let placement = Placement {
                host_task_root: placeholder,
                task_root: sandbox.task_root(),
                runtime_dir: sandbox.runtime_dir(),
            };
            platform
                .runtimes
                .command(runtime_id, placement, memory_mb)
                .map_err(EnvironmentError::Runtime)?
        };
        let env = standby_variables(sandbox.as_ref(), &command);
        sandbox.run_in_background();
        let waiting = Waiting::start(
            sandbox.as_mut(),
            &command,
            env,
            &format!("standby {runtime}"),
        )?;
        Ok(Self {
            id,
            runtime: runtime.to_string(),
            created: Instant::now(),
            sandbox,
            runtime_process: waiting,
            _claim: claim,
        })
    }

    /// Alive and waiting to be adopted.
    pub fn is_ready(&self) -> bool {
        self.runtime_process.is_alive() && self.runtime_process.link.is_standing_by()
    }

    pub fn is_alive(&self) -> bool {
        self.runtime_process.is_alive()
    }

    pub fn destroy(mut self) {
        self.runtime_process.stop();
        self.sandbox.destroy();
    }
}
