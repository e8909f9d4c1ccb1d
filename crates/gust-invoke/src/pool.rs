//! Idle execution environments, per function version and configuration revision.
//!
//! An invocation takes an idle provisioned environment of its exact configuration if there is
//! one, else the most recently used idle one (the most likely to be warm in the CPU caches),
//! or the caller creates a new one. Busy environments are owned by their invocation, so the
//! pool only ever holds idle ones. Provisioned environments never retire for idleness or to
//! make room.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gust_model::FunctionConfig;

/// Environments are interchangeable only within one version at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub function: String,
    pub version: String,
    pub revision: String,
}

impl PoolKey {
    pub fn of(config: &FunctionConfig) -> Self {
        Self {
            function: config.name.clone(),
            version: config.version.clone(),
            revision: config.environment_revision.clone(),
        }
    }
}

/// What the pool needs to know of an idle environment.
pub trait Pooled {
    /// Which invocations it may serve.
    fn key(&self) -> PoolKey;
    /// Kept by a provisioned concurrency configuration: never retired for idleness or room.
    fn is_provisioned(&self) -> bool;
    /// When its last invocation ended.
    fn last_used(&self) -> Instant;
    /// The digest of the package it runs.
    fn code_digest(&self) -> &str;
}

pub struct Pool<E> {
    idle: Mutex<HashMap<PoolKey, Vec<E>>>,
}

impl<E> Default for Pool<E> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(HashMap::new()),
        }
    }
}

impl<E: Pooled> Pool<E> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<E>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle provisioned environment for `key`, else the most recently used idle one.
    pub fn take(&self, key: &PoolKey) -> Option<E> {
        let mut idle = self.lock();
        let stack = idle.get_mut(key)?;
        let env = match stack.iter().rposition(Pooled::is_provisioned) {
            Some(i) => Some(stack.remove(i)),
            None => stack.pop(),
        };
        if stack.is_empty() {
            idle.remove(key);
        }
        env
    }

    pub fn put(&self, env: E) {
        let key = env.key();
        self.lock().entry(key).or_default().push(env);
    }

    /// Removes idle environments that `retire` selects and returns them (for tearing down
    /// off the caller's path).
    pub fn remove_where(&self, mut retire: impl FnMut(&E) -> bool) -> Vec<E> {
        let mut idle = self.lock();
        let mut removed = Vec::new();
        idle.retain(|_, stack| {
            let mut kept = Vec::with_capacity(stack.len());
            for env in stack.drain(..) {
                if retire(&env) {
                    removed.push(env);
                } else {
                    kept.push(env);
                }
            }
            *stack = kept;
            !stack.is_empty()
        });
        removed
    }

    /// Visits every idle environment (to measure what it uses, for example).
    pub fn for_each_mut(&self, mut visit: impl FnMut(&mut E)) {
        for stack in self.lock().values_mut() {
            stack.iter_mut().for_each(&mut visit);
        }
    }

    /// Removes on-demand environments idle for longer than `keep_alive` at `now`.
    pub fn remove_expired(&self, keep_alive: Duration, now: Instant) -> Vec<E> {
        self.remove_where(|env| {
            !env.is_provisioned() && now.saturating_duration_since(env.last_used()) > keep_alive
        })
    }

    /// Removes the least recently used on-demand environment, across all functions.
    pub fn remove_least_recent(&self) -> Option<E> {
        let mut idle = self.lock();
        let (key, index) = idle
            .iter()
            .flat_map(|(key, stack)| {
                stack
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !e.is_provisioned())
                    .map(move |(i, e)| (e.last_used(), key, i))
            })
            .min_by_key(|(used, _, _)| *used)
            .map(|(_, key, i)| (key.clone(), i))?;
        let stack = idle.get_mut(&key)?;
        let env = stack.remove(index);
        if stack.is_empty() {
            idle.remove(&key);
        }
        Some(env)
    }

    /// Package digests that idle environments run (their code must not be collected).
    pub fn code_in_use(&self) -> Vec<String> {
        self.lock()
            .values()
            .flatten()
            .map(|env| env.code_digest().to_string())
            .collect()
    }

    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Empties the pool.
    pub fn drain(&self) -> Vec<E> {
        self.lock().drain().flat_map(|(_, stack)| stack).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle environment as the pool sees it.
    #[derive(Debug, Clone, PartialEq)]
    struct Idle {
        name: &'static str,
        function: &'static str,
        provisioned: bool,
        last_used: Instant,
    }

    impl Pooled for Idle {
        fn key(&self) -> PoolKey {
            key(self.function)
        }
        fn is_provisioned(&self) -> bool {
            self.provisioned
        }
        fn last_used(&self) -> Instant {
            self.last_used
        }
        fn code_digest(&self) -> &str {
            self.function
        }
    }

    fn key(function: &str) -> PoolKey {
        PoolKey {
            function: function.into(),
            version: "$LATEST".into(),
            revision: "r1".into(),
        }
    }

    fn idle(name: &'static str, function: &'static str, at: Instant, secs: u64) -> Idle {
        Idle {
            name,
            function,
            provisioned: false,
            last_used: at + Duration::from_secs(secs),
        }
    }

    fn names(envs: &[Idle]) -> Vec<&'static str> {
        let mut names: Vec<_> = envs.iter().map(|e| e.name).collect();
        names.sort();
        names
    }

    #[test]
    fn an_invocation_takes_the_most_recently_used_environment() {
        let t0 = Instant::now();
        let pool = Pool::default();
        pool.put(idle("older", "f", t0, 1));
        pool.put(idle("newer", "f", t0, 2));
        pool.put(idle("other", "g", t0, 3));
        assert_eq!(pool.take(&key("f")).map(|e| e.name), Some("newer"));
        assert_eq!(pool.take(&key("f")).map(|e| e.name), Some("older"));
        assert_eq!(pool.take(&key("f")), None, "never another function's");
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn a_provisioned_environment_is_taken_before_on_demand_ones() {
        let t0 = Instant::now();
        let pool = Pool::default();
        pool.put(Idle {
            provisioned: true,
            ..idle("provisioned", "f", t0, 1)
        });
        pool.put(idle("on-demand", "f", t0, 2));
        assert_eq!(pool.take(&key("f")).map(|e| e.name), Some("provisioned"));
        assert_eq!(pool.take(&key("f")).map(|e| e.name), Some("on-demand"));
    }

    #[test]
    fn keep_alive_retires_only_on_demand_environments_idle_past_it() {
        let t0 = Instant::now();
        let pool = Pool::default();
        pool.put(idle("idle 10 min", "f", t0, 0));
        pool.put(idle("idle 4 min", "f", t0, 360));
        pool.put(Idle {
            provisioned: true,
            ..idle("provisioned", "g", t0, 0)
        });
        let keep_alive = Duration::from_secs(300);
        let now = t0 + Duration::from_secs(600);
        assert_eq!(
            names(&pool.remove_expired(keep_alive, now)),
            ["idle 10 min"]
        );
        assert!(pool.remove_expired(keep_alive, now).is_empty());
        // Exactly at the keep-alive it stays; past it, it goes.
        let at = t0 + Duration::from_secs(660);
        assert!(pool.remove_expired(keep_alive, at).is_empty());
        let past = at + Duration::from_millis(1);
        assert_eq!(
            names(&pool.remove_expired(keep_alive, past)),
            ["idle 4 min"]
        );
        assert_eq!(pool.idle_count(), 1, "the provisioned one stays");
    }

    #[test]
    fn room_is_made_least_recently_used_first_across_functions() {
        let t0 = Instant::now();
        let pool = Pool::default();
        pool.put(Idle {
            provisioned: true,
            ..idle("provisioned", "f", t0, 0)
        });
        pool.put(idle("f at 3", "f", t0, 3));
        pool.put(idle("g at 1", "g", t0, 1));
        pool.put(idle("g at 2", "g", t0, 2));
        let order: Vec<_> = std::iter::from_fn(|| pool.remove_least_recent())
            .map(|e| e.name)
            .collect();
        assert_eq!(order, ["g at 1", "g at 2", "f at 3"]);
        assert_eq!(pool.idle_count(), 1, "never a provisioned one");
    }

    #[test]
    fn code_in_use_names_every_idle_environments_package() {
        let t0 = Instant::now();
        let pool = Pool::default();
        pool.put(idle("a", "f", t0, 0));
        pool.put(idle("b", "g", t0, 0));
        let mut code = pool.code_in_use();
        code.sort();
        assert_eq!(code, ["f", "g"]);
        assert_eq!(names(&pool.drain()), ["a", "b"]);
        assert_eq!(pool.idle_count(), 0);
    }
}
