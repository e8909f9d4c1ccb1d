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

use std::path::PathBuf;

use gust_model::{FunctionConfig, Network};
use gust_runtimes::RuntimeTable;

use gust_sandbox::{Sandbox, SandboxSpec};

use crate::budget::MemoryClaim;
use crate::platform::{EnvironmentError, Platform, placeholder_command};
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

/// Which sandboxes started ahead an environment may adopt: one pool per kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StandbyKind {
    /// A Python runtime, its interpreter and Gust's bootstrap loaded.
    Python { runtime: String },
    /// A Node.js runtime: Node.js sizes its heap from the memory at start-up, so its pools
    /// are per memory size.
    Node { runtime: String, memory_mb: u32 },
    /// A stand-in that execs the function's runtime command when adopted; `prefix` is the
    /// interpreter's installation its sandbox shows, as a fresh sandbox for that runtime
    /// would (none for custom runtimes, whose `bootstrap` is in the function's code).
    StandIn { prefix: Option<PathBuf> },
}

impl StandbyKind {
    /// The runtime id whose command starts it (none for a stand-in) and the memory it starts
    /// with.
    fn runtime(&self) -> Option<(&str, u32)> {
        match self {
            Self::Python { runtime } => Some((runtime, gust_model::limits::DEFAULT_MEMORY_MB)),
            Self::Node { runtime, memory_mb } => Some((runtime, *memory_mb)),
            Self::StandIn { .. } => None,
        }
    }
}

/// As `gust status` shows it: `python3.12`, `nodejs20.x/512`, `provided`, `provided:/opt/py`.
impl std::fmt::Display for StandbyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Python { runtime } => f.write_str(runtime),
            Self::Node { runtime, memory_mb } => write!(f, "{runtime}/{memory_mb}"),
            Self::StandIn { prefix: None } => f.write_str("provided"),
            Self::StandIn {
                prefix: Some(prefix),
            } => write!(f, "provided:{}", prefix.display()),
        }
    }
}

/// Which kind of runtime started ahead an environment of `config` could adopt, if any (so
/// too whether its runtime's template can fork it).
pub fn kind_of(config: &FunctionConfig, runtimes: &RuntimeTable) -> Option<StandbyKind> {
    // Egress attaches the network namespace to the host's when the sandbox is made.
    if config.network() != Network::None {
        return None;
    }
    let runtime = config.runtime.as_deref()?;
    if runtime.starts_with("provided") {
        // The bootstrap is exec'd with the function's variables: nothing is read early.
        return Some(StandbyKind::StandIn { prefix: None });
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
        return Some(StandbyKind::StandIn {
            prefix: runtimes.install_prefix(runtime),
        });
    }
    let runtime = runtime.to_string();
    if runtime.starts_with("nodejs") {
        return Some(StandbyKind::Node {
            runtime,
            memory_mb: config.memory_size,
        });
    }
    Some(StandbyKind::Python { runtime })
}

/// Cold starts counted to size a pool: those of the last this long.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A pool holds about this long's worth of its kind's recent cold starts.
const LEAD: Duration = Duration::from_secs(1);

/// A pool grows to at most this many times `--standby-runtimes`.
const MAX_GROWTH: usize = 8;

#[derive(Default)]
struct Pool {
    ready: Vec<Standby>,
    starting: usize,
    /// The last cold start of this runtime.
    wanted: Option<Instant>,
    /// Cold starts of the last [`RATE_WINDOW`].
    recent: std::collections::VecDeque<Instant>,
    /// How many it holds now (at least `--standby-runtimes`), and since when: it grows with
    /// the rate of cold starts at once, and shrinks back only after a keep-alive.
    size: usize,
    sized_at: Option<Instant>,
}

impl Pool {
    /// Records a cold start at `now` and sizes the pool on the rate of recent ones.
    fn record(&mut self, now: Instant, base: usize, keep_alive: Duration) {
        self.wanted = Some(now);
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        let per_second = self.recent.len() as f64 / RATE_WINDOW.as_secs_f64();
        let wanted =
            ((per_second * LEAD.as_secs_f64()).ceil() as usize).clamp(base, base * MAX_GROWTH);
        let stale = self
            .sized_at
            .is_none_or(|t| now.duration_since(t) > keep_alive);
        if wanted >= self.size || stale {
            self.size = wanted;
            self.sized_at = Some(now);
        }
    }
}

/// The pools of runtimes started ahead, one per kind. Each holds `--standby-runtimes`, and
/// more while its kind's cold starts come fast: about a second's worth of them (at most
/// [`MAX_GROWTH`] times as many), shrinking back a keep-alive after the rate fell.
#[derive(Default)]
pub struct Standbys {
    per_runtime: usize,
    keep_alive: Duration,
    pools: Mutex<HashMap<StandbyKind, Pool>>,
}

impl Standbys {
    pub fn new(per_runtime: usize, keep_alive: Duration) -> Self {
        Self {
            per_runtime,
            keep_alive,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StandbyKind, Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pool whose sandboxes an environment of `config` may adopt, if any.
    pub fn kind(&self, config: &FunctionConfig, runtimes: &RuntimeTable) -> Option<StandbyKind> {
        if self.per_runtime == 0 {
            return None;
        }
        kind_of(config, runtimes)
    }

    /// Returns a sandbox that could not be adopted for a reason of its function's.
    pub fn put_back(&self, standby: Standby) {
        let mut pools = self.lock();
        let pool = pools.entry(standby.kind.clone()).or_default();
        pool.ready.push(standby);
    }

    /// A runtime of `runtime` started ahead, if one is there. Dead ones are handed back for
    /// teardown.
    pub fn take(&self, kind: &StandbyKind) -> (Option<Standby>, Vec<Standby>) {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(kind) else {
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

    /// Records a cold start of `kind`; returns how many runtimes to start to refill its
    /// pool (the caller starts them and reports each with [`Standbys::started`]).
    pub fn wanted(&self, kind: &StandbyKind) -> usize {
        let mut pools = self.lock();
        let pool = pools.entry(kind.clone()).or_default();
        pool.record(Instant::now(), self.per_runtime, self.keep_alive);
        let missing = pool.size.saturating_sub(pool.ready.len() + pool.starting);
        pool.starting += missing;
        missing
    }

    /// A runtime started for the pool (or `None` when it could not be started).
    pub fn started(&self, kind: &StandbyKind, standby: Option<Standby>) -> Option<Standby> {
        let mut pools = self.lock();
        let pool = pools.entry(kind.clone()).or_default();
        pool.starting = pool.starting.saturating_sub(1);
        let standby = standby?;
        if pool.ready.len() >= pool.size.max(self.per_runtime) {
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
            if pool.sized_at.is_some_and(|t| t.elapsed() > keep_alive) {
                // The rate that grew it is a keep-alive old: back to the base size.
                pool.size = self.per_runtime;
                pool.sized_at = None;
                let extra = pool.ready.len().saturating_sub(pool.size);
                out.extend(pool.ready.drain(..extra));
            }
        }
        pools.retain(|_, p| !p.ready.is_empty() || p.starting > 0);
        out
    }

    /// Any one runtime started ahead (to give its memory to a real environment).
    pub fn take_any(&self) -> Option<Standby> {
        self.lock().values_mut().find_map(|p| p.ready.pop())
    }

    /// Ready runtimes per kind, for status output.
    pub fn counts(&self) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> = self
            .lock()
            .iter()
            .map(|(k, p)| {
                (
                    k.to_string(),
                    p.ready.iter().filter(|s| s.is_ready()).count(),
                )
            })
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
    /// The pool it was started for.
    pub kind: StandbyKind,
    pub created: Instant,
    pub(crate) sandbox: Box<dyn Sandbox>,
    pub(crate) runtime_process: Waiting,
    claim: MemoryClaim,
}

impl Standby {
    /// Starts a runtime of `kind` in a new sandbox whose task root is `placeholder` (an
    /// empty directory) until a function adopts it.
    pub fn start(
        platform: &Platform,
        kind: &StandbyKind,
        placeholder: &std::path::Path,
        claim: MemoryClaim,
    ) -> Result<Self, EnvironmentError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let read_only_paths = match (kind, kind.runtime()) {
            (StandbyKind::StandIn { prefix }, _) => prefix.clone(),
            (_, Some((runtime_id, _))) => platform.runtimes.install_prefix(runtime_id),
            (_, None) => None,
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
        let command = if let Some((runtime_id, memory_mb)) = kind.runtime() {
            placeholder_command(
                platform,
                runtime_id,
                memory_mb,
                placeholder,
                sandbox.as_ref(),
            )?
        } else {
            // A stand-in that execs the function's runtime command once adopted.
            gust_runtimes::standby_command(sandbox.runtime_dir())
        };
        let env = standby_variables(sandbox.as_ref(), &command);
        sandbox.run_in_background();
        let waiting = Waiting::start(sandbox.as_mut(), &command, env, &format!("standby {kind}"))?;
        Ok(Self {
            id,
            kind: kind.clone(),
            created: Instant::now(),
            sandbox,
            runtime_process: waiting,
            claim,
        })
    }

    /// Alive and waiting to be adopted.
    pub fn is_ready(&self) -> bool {
        self.runtime_process.is_alive() && self.runtime_process.link.is_standing_by()
    }

    pub fn is_alive(&self) -> bool {
        self.runtime_process.is_alive()
    }

    /// What it counts for against the memory budget (MB).
    pub(crate) fn claimed_mb(&self) -> u64 {
        self.claim.mb()
    }

    /// Returns its share of the memory and `/tmp` budgets (it is being torn down).
    pub(crate) fn release_claim(&mut self) {
        self.claim.resize(0);
        self.sandbox.count_tmp(gust_sandbox::TmpCount::Nothing);
    }

    pub fn destroy(mut self) {
        self.runtime_process.stop();
        self.sandbox.destroy();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(runtime: &str, memory_mb: u32, variables: &[(&str, &str)]) -> FunctionConfig {
        let mut config = FunctionConfig::sample("f");
        config.runtime = Some(runtime.into());
        config.memory_size = memory_mb;
        config.environment = (!variables.is_empty()).then(|| {
            variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        config
    }

    fn runtimes() -> RuntimeTable {
        RuntimeTable::discover(std::path::Path::new("/nonexistent"), &BTreeMap::new())
    }

    #[test]
    fn each_runtime_adopts_from_its_own_kind_of_pool() {
        let standbys = Standbys::new(2, Duration::from_secs(300));
        let runtimes = runtimes();
        let kind = |c: &FunctionConfig| standbys.kind(c, &runtimes);
        assert_eq!(
            kind(&config("python3.12", 1024, &[])),
            Some(StandbyKind::Python {
                runtime: "python3.12".into()
            }),
            "Python's pool does not depend on memory"
        );
        assert_eq!(
            kind(&config("nodejs20.x", 512, &[])),
            Some(StandbyKind::Node {
                runtime: "nodejs20.x".into(),
                memory_mb: 512
            })
        );
        assert_eq!(
            kind(&config("provided.al2023", 128, &[("LANG", "C")])),
            Some(StandbyKind::StandIn { prefix: None }),
            "a custom runtime's bootstrap is exec'd with its variables"
        );
    }

    #[test]
    fn a_variable_read_at_start_needs_a_stand_in_or_a_fresh_start() {
        let standbys = Standbys::new(2, Duration::from_secs(300));
        let runtimes = runtimes();
        for (runtime, variable) in [
            ("python3.12", "PYTHONPATH"),
            ("python3.12", "LD_PRELOAD"),
            ("nodejs20.x", "NODE_OPTIONS"),
            ("nodejs20.x", "TZ"),
        ] {
            assert_eq!(
                standbys.kind(&config(runtime, 128, &[(variable, "x")]), &runtimes),
                Some(StandbyKind::StandIn {
                    prefix: runtimes.install_prefix(runtime)
                }),
                "{runtime} with {variable}"
            );
        }
        assert_eq!(
            standbys.kind(&config("java21", 128, &[]), &runtimes),
            None,
            "no pool for runtimes Gust does not start ahead"
        );
        let egress = config("python3.12", 128, &[("GUST_NETWORK", "egress")]);
        assert_eq!(standbys.kind(&egress, &runtimes), None);
        let none = Standbys::new(0, Duration::from_secs(300));
        assert_eq!(none.kind(&config("python3.12", 128, &[]), &runtimes), None);
    }

    #[test]
    fn a_cold_start_asks_for_what_the_pool_lacks_once() {
        let standbys = Standbys::new(2, Duration::from_secs(300));
        let kind = StandbyKind::Python {
            runtime: "python3.12".into(),
        };
        assert_eq!(standbys.wanted(&kind), 2);
        assert_eq!(standbys.wanted(&kind), 0, "two are starting");
        assert!(standbys.started(&kind, None).is_none());
        assert_eq!(standbys.wanted(&kind), 1, "one could not start");
        let (taken, dead) = standbys.take(&kind);
        assert!(taken.is_none() && dead.is_empty());
    }

    #[test]
    fn a_pool_grows_with_the_rate_of_cold_starts_and_shrinks_back_a_keep_alive_later() {
        let keep_alive = Duration::from_secs(300);
        let mut pool = Pool::default();
        let start = Instant::now();
        pool.record(start, 2, keep_alive);
        assert_eq!(pool.size, 2, "one cold start: the base size");
        // 100 cold starts in 5 s: 10/s over the window, a second's worth is 10.
        for i in 0..100 {
            pool.record(start + Duration::from_millis(50 * i), 2, keep_alive);
        }
        assert_eq!(pool.size, 11);
        // 400 more in the next 5 s: capped at 8 times the base.
        for i in 0..400 {
            pool.record(start + Duration::from_millis(5_000 + 12 * i), 2, keep_alive);
        }
        assert_eq!(pool.size, 16);
        // A slow trickle does not shrink it within a keep-alive...
        pool.record(start + Duration::from_secs(60), 2, keep_alive);
        assert_eq!(pool.size, 16);
        // ...after one, it follows the rate again.
        pool.record(start + Duration::from_secs(400), 2, keep_alive);
        assert_eq!(pool.size, 2);
    }

    #[test]
    fn a_cold_start_asks_for_what_a_grown_pool_lacks() {
        let standbys = Standbys::new(1, Duration::from_secs(300));
        let kind = StandbyKind::Node {
            runtime: "nodejs20.x".into(),
            memory_mb: 128,
        };
        let asked: usize = (0..30).map(|_| standbys.wanted(&kind)).sum();
        assert_eq!(
            asked, 3,
            "30 cold starts at once: 3 a second over the window"
        );
        let retired = standbys.expired(Duration::from_secs(300));
        assert!(retired.is_empty());
    }

    #[test]
    fn kinds_show_as_gust_status_names_them() {
        let kinds = [
            StandbyKind::Python {
                runtime: "python3.12".into(),
            },
            StandbyKind::Node {
                runtime: "nodejs20.x".into(),
                memory_mb: 512,
            },
            StandbyKind::StandIn { prefix: None },
            StandbyKind::StandIn {
                prefix: Some("/opt/python".into()),
            },
        ];
        let shown: Vec<String> = kinds.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "python3.12",
                "nodejs20.x/512",
                "provided",
                "provided:/opt/python"
            ]
        );
    }
}
