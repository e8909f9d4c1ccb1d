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

use crate::environment::Environment;

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
            revision: config.revision_id.clone(),
        }
    }
}

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Environment>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Environment>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle provisioned environment for `key`, else the most recently used idle one.
    pub fn take(&self, key: &PoolKey) -> Option<Environment> {
        let mut idle = self.lock();
        let stack = idle.get_mut(key)?;
        let env = match stack.iter().rposition(|e| e.provision.is_some()) {
            Some(i) => Some(stack.remove(i)),
            None => stack.pop(),
        };
        if stack.is_empty() {
            idle.remove(key);
        }
        env
    }

    pub fn put(&self, env: Environment) {
        let key = PoolKey::of(&env.config);
        self.lock().entry(key).or_default().push(env);
    }

    /// Removes idle environments that `retire` selects and returns them (for tearing down
    /// off the caller's path).
    pub fn remove_where(&self, mut retire: impl FnMut(&Environment) -> bool) -> Vec<Environment> {
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

    /// Removes on-demand environments idle for longer than `keep_alive`.
    pub fn remove_expired(&self, keep_alive: Duration) -> Vec<Environment> {
        let now = Instant::now();
        self.remove_where(|env| {
            env.provision.is_none() && now.duration_since(env.last_used) > keep_alive
        })
    }

    /// Removes the least recently used on-demand environment, across all functions.
    pub fn remove_least_recent(&self) -> Option<Environment> {
        let mut idle = self.lock();
        let (key, index) = idle
            .iter()
            .flat_map(|(key, stack)| {
                stack
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.provision.is_none())
                    .map(move |(i, e)| (e.last_used, key, i))
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
            .map(|env| env.config.code.digest_hex.clone())
            .collect()
    }

    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Empties the pool.
    pub fn drain(&self) -> Vec<Environment> {
        self.lock().drain().flat_map(|(_, stack)| stack).collect()
    }
}
