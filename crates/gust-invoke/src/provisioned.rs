//! Provisioned concurrency: how many initialised environments each configuration holds, which
//! ones are still wanted, and how many more to start.
//!
//! A configuration `(function, qualifier)` asks for a number of environments of the version
//! its qualifier names. Each environment made for it carries a [`ProvisionTag`] that counts it
//! while it lives (idle or busy). Reconciling retires idle ones of a configuration that is gone,
//! that points at another version or revision, or that holds more than it asks for; and starts
//! the missing ones, unless initialisation already failed for this very configuration (then it
//! waits for a change, as Lambda's `FAILED` status does).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::pool::PoolKey;

/// A provisioned concurrency configuration: `(function, qualifier)`.
pub type Target = (String, String);

/// What GetProvisionedConcurrencyConfig shows of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedStatus {
    pub allocated: u32,
    pub state: ProvisionedState,
    pub reason: Option<String>,
}

/// Lambda's `Status` of a provisioned concurrency configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionedState {
    InProgress,
    Ready,
    Failed,
}

impl ProvisionedState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }
}

/// What one configuration asks for now.
#[derive(Debug, Clone)]
pub struct Wanted<C> {
    /// The version and revision its environments must run.
    pub key: PoolKey,
    pub requested: usize,
    /// What a start needs (the configuration to start environments of).
    pub config: C,
}

/// Progress of one configuration.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Environments being created.
    in_progress: usize,
    /// Why the last environment could not be initialised, for the configuration it was.
    failure: Option<(PoolKey, String)>,
}

type Counts = Arc<Mutex<HashMap<Target, usize>>>;

/// Live provisioned environments per configuration, and the starts under way.
#[derive(Default)]
pub struct Provisioned {
    allocated: Counts,
    progress: Mutex<HashMap<Target, Progress>>,
}

impl Provisioned {
    fn allocated(&self) -> HashMap<Target, usize> {
        self.allocated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Progress>> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the configuration `target`, asking for `requested`, has reached.
    pub fn status(&self, target: &Target, requested: u32) -> ProvisionedStatus {
        let allocated = self.allocated().get(target).copied().unwrap_or(0) as u32;
        let failure = self
            .progress()
            .get(target)
            .and_then(|p| p.failure.as_ref().map(|(_, reason)| reason.clone()));
        let (state, reason) = if allocated >= requested {
            (ProvisionedState::Ready, None)
        } else if let Some(reason) = failure {
            (ProvisionedState::Failed, Some(reason))
        } else {
            (ProvisionedState::InProgress, None)
        };
        ProvisionedStatus {
            allocated: allocated.min(requested),
            state,
            reason,
        }
    }

    /// Decides, idle environment by idle environment (its configuration and key), whether it
    /// retires: returns a predicate for the pool to apply under its lock. An environment of
    /// a configuration holding more than it asks for retires until the count is right.
    pub fn retiring<C>(
        &self,
        wanted: &HashMap<Target, Wanted<C>>,
    ) -> impl FnMut(&Target, &PoolKey) -> bool {
        let mut allocated = self.allocated();
        let wanted: HashMap<Target, (PoolKey, usize)> = wanted
            .iter()
            .map(|(target, w)| (target.clone(), (w.key.clone(), w.requested)))
            .collect();
        move |target, key| {
            let keep = wanted.get(target).is_some_and(|(want, requested)| {
                want == key && allocated.get(target).copied().unwrap_or(0) <= *requested
            });
            if !keep && let Some(n) = allocated.get_mut(target) {
                *n = n.saturating_sub(1);
            }
            !keep
        }
    }

    /// The environments to start now, one entry per start, each counted as in progress until
    /// [`Provisioned::finished`]. Forgets configurations that are gone.
    pub fn starts<C: Clone>(&self, wanted: &HashMap<Target, Wanted<C>>) -> Vec<(Target, C)> {
        let allocated = self.allocated();
        let mut progress = self.progress();
        progress.retain(|target, p| wanted.contains_key(target) || p.in_progress > 0);
        let mut starts = Vec::new();
        for (target, want) in wanted {
            let progress = progress.entry(target.clone()).or_default();
            if progress
                .failure
                .as_ref()
                .is_some_and(|(key, _)| *key == want.key)
            {
                // Init failed for this very configuration: wait for a change.
                continue;
            }
            progress.failure = None;
            let have = allocated.get(target).copied().unwrap_or(0) + progress.in_progress;
            for _ in have..want.requested {
                progress.in_progress += 1;
                starts.push((target.clone(), want.config.clone()));
            }
        }
        starts
    }

    /// A start of [`Provisioned::starts`] ended: its environment is tagged (`Ok`), or its
    /// initialisation failed for the configuration `key`.
    pub fn finished(&self, target: &Target, key: PoolKey, result: Result<(), String>) {
        let mut progress = self.progress();
        let progress = progress.entry(target.clone()).or_default();
        progress.in_progress = progress.in_progress.saturating_sub(1);
        if let Err(reason) = result {
            progress.failure = Some((key, reason));
        }
    }

    /// The tag that counts a new environment toward `target`.
    pub fn tag(&self, target: Target) -> ProvisionTag {
        *self
            .allocated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target.clone())
            .or_default() += 1;
        ProvisionTag {
            target,
            allocated: self.allocated.clone(),
        }
    }
}

/// Counts an environment toward its provisioned concurrency configuration while it lives.
pub struct ProvisionTag {
    /// `(function, qualifier)` of the configuration.
    pub target: Target,
    allocated: Counts,
}

impl Drop for ProvisionTag {
    fn drop(&mut self) {
        let mut allocated = self.allocated.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = allocated.get_mut(&self.target) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                allocated.remove(&self.target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(function: &str) -> Target {
        (function.into(), "live".into())
    }

    fn key(function: &str, revision: &str) -> PoolKey {
        PoolKey {
            function: function.into(),
            version: "1".into(),
            revision: revision.into(),
        }
    }

    fn wanted(entries: &[(&str, &str, usize)]) -> HashMap<Target, Wanted<&'static str>> {
        entries
            .iter()
            .map(|(function, revision, requested)| {
                (
                    target(function),
                    Wanted {
                        key: key(function, revision),
                        requested: *requested,
                        config: "config",
                    },
                )
            })
            .collect()
    }

    #[test]
    fn missing_environments_are_started_once() {
        let provisioned = Provisioned::default();
        let want = wanted(&[("f", "r1", 3)]);
        let _live = provisioned.tag(target("f"));
        assert_eq!(provisioned.starts(&want).len(), 2, "3 asked, 1 live");
        assert!(
            provisioned.starts(&want).is_empty(),
            "the two under way count"
        );
        provisioned.finished(&target("f"), key("f", "r1"), Ok(()));
        let _second = provisioned.tag(target("f"));
        assert!(provisioned.starts(&want).is_empty());
    }

    #[test]
    fn a_failed_initialisation_waits_for_a_change_of_configuration() {
        let provisioned = Provisioned::default();
        let want = wanted(&[("f", "r1", 1)]);
        assert_eq!(provisioned.starts(&want).len(), 1);
        provisioned.finished(&target("f"), key("f", "r1"), Err("init failed".into()));
        let status = provisioned.status(&target("f"), 1);
        assert_eq!(status.state, ProvisionedState::Failed);
        assert_eq!(status.reason.as_deref(), Some("init failed"));
        assert!(provisioned.starts(&want).is_empty(), "same configuration");

        let changed = wanted(&[("f", "r2", 1)]);
        assert_eq!(provisioned.starts(&changed).len(), 1, "a new revision");
        assert_eq!(
            provisioned.status(&target("f"), 1).state,
            ProvisionedState::InProgress
        );
    }

    #[test]
    fn status_counts_live_environments_up_to_the_request() {
        let provisioned = Provisioned::default();
        assert_eq!(
            provisioned.status(&target("f"), 2),
            ProvisionedStatus {
                allocated: 0,
                state: ProvisionedState::InProgress,
                reason: None
            }
        );
        let tags: Vec<_> = (0..3).map(|_| provisioned.tag(target("f"))).collect();
        let status = provisioned.status(&target("f"), 2);
        assert_eq!(
            (status.allocated, status.state),
            (2, ProvisionedState::Ready)
        );
        drop(tags);
        assert_eq!(provisioned.status(&target("f"), 2).allocated, 0);
    }

    #[test]
    fn idle_environments_retire_when_unwanted_or_surplus() {
        let provisioned = Provisioned::default();
        let _tags: Vec<_> = (0..3)
            .map(|_| provisioned.tag(target("f")))
            .chain([provisioned.tag(target("gone"))])
            .collect();
        let want = wanted(&[("f", "r1", 2)]);
        let mut retires = provisioned.retiring(&want);
        // Three live for two asked: the first idle one looked at retires, the rest stay.
        assert!(retires(&target("f"), &key("f", "r1")));
        assert!(!retires(&target("f"), &key("f", "r1")));
        assert!(!retires(&target("f"), &key("f", "r1")));
        assert!(
            retires(&target("gone"), &key("gone", "r1")),
            "no configuration"
        );

        let want = wanted(&[("f", "r2", 5)]);
        let mut retires = provisioned.retiring(&want);
        assert!(
            retires(&target("f"), &key("f", "r1")),
            "the configuration moved to another revision"
        );
    }

    #[test]
    fn configurations_that_are_gone_are_forgotten_once_idle() {
        let provisioned = Provisioned::default();
        assert_eq!(provisioned.starts(&wanted(&[("f", "r1", 1)])).len(), 1);
        provisioned.finished(&target("f"), key("f", "r1"), Err("failed".into()));
        assert!(provisioned.starts(&wanted(&[])).is_empty());
        // Asked for again: the old failure is gone with the old configuration.
        assert_eq!(provisioned.starts(&wanted(&[("f", "r1", 1)])).len(), 1);
    }
}
