//! Runtimes started ahead of demand, per runtime id, for cold starts that skip the
//! interpreter's start-up.
//!
//! Starting Python and importing Gust's bootstrap is most of a Python cold start, and none of
//! it depends on the function. So after a cold start of a runtime, Gust keeps a few of its
//! runtimes started in sandboxes of their own, waiting; the next cold start adopts one (its
//! function's code is mounted in, its memory limit set, its variables handed over) instead of
//! starting from nothing. Each is used by one environment only, and only for functions whose
//! variables the interpreter does not read at start-up, so an adopted environment cannot be
//! told from a fresh one. Those of a runtime nobody has started for a keep-alive retire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gust_model::{FunctionConfig, Network};

use crate::environment::Standby;

/// Variables (or prefixes, ending in `*`) the interpreter or the dynamic loader reads when a
/// process starts: a function that sets one gets a fresh start.
const READ_AT_START: &[&str] = &[
    "PYTHON*",
    "LD_*",
    "LANG",
    "LC_*",
    "TZ",
    "GLIBC_TUNABLES",
    "MALLOC_*",
];

#[derive(Default)]
struct Pool {
    ready: Vec<Standby>,
    starting: usize,
    /// The last cold start of this runtime.
    wanted: Option<Instant>,
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

    /// Whether an environment of `config` may adopt a runtime started ahead.
    pub fn serves(&self, config: &FunctionConfig) -> bool {
        let python = config
            .runtime
            .as_deref()
            .is_some_and(|r| r.starts_with("python"));
        let reads_at_start = config.environment.iter().flatten().any(|(key, _)| {
            READ_AT_START.iter().any(|v| match v.strip_suffix('*') {
                Some(prefix) => key.starts_with(prefix),
                None => key == v,
            })
        });
        self.per_runtime > 0
            && python
            && config.ephemeral_storage == gust_model::limits::DEFAULT_EPHEMERAL_MB
            && config.network() == Network::None
            && !reads_at_start
    }

    /// A ready runtime of `runtime`, if one waits. Dead ones are handed back for teardown.
    pub fn take(&self, runtime: &str) -> (Option<Standby>, Vec<Standby>) {
        let mut pools = self.lock();
        let Some(pool) = pools.get_mut(runtime) else {
            return (None, Vec::new());
        };
        let (alive, dead): (Vec<Standby>, Vec<Standby>) =
            pool.ready.drain(..).partition(Standby::is_alive);
        pool.ready = alive;
        let taken = pool
            .ready
            .iter()
            .position(Standby::is_ready)
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
