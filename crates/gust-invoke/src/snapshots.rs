//! The SnapStart snapshots the engine holds: one per `(function, version)`, made on the
//! version's first cold start (or when it is published) and dropped when its version is gone
//! or changed, when it died, or when no cold start has needed it for a keep-alive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gust_model::FunctionConfig;

use crate::snapshot::Snapshot;

/// A version's snapshot once its init has run (`None`: its init failed; retried after the
/// next sweep).
pub(crate) type SnapshotCell = Arc<tokio::sync::OnceCell<Option<Arc<Snapshot>>>>;

#[derive(Default)]
pub(crate) struct Snapshots {
    cells: Mutex<HashMap<(String, String), SnapshotCell>>,
}

impl Snapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), SnapshotCell>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cell of `config`'s version (made empty if it has none): the caller initialises it
    /// once.
    pub(crate) fn cell(&self, config: &FunctionConfig) -> SnapshotCell {
        self.lock()
            .entry((config.name.clone(), config.version.clone()))
            .or_default()
            .clone()
    }

    /// `(function, version)` of each live snapshot, sorted.
    pub(crate) fn live(&self) -> Vec<(String, String)> {
        let mut live: Vec<(String, String)> = self
            .lock()
            .iter()
            .filter(|(_, cell)| {
                cell.get()
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.is_alive())
            })
            .map(|(key, _)| key.clone())
            .collect();
        live.sort();
        live
    }

    /// Takes out the snapshots to drop: of versions `is_current` says changed, that failed or
    /// died, or unused for `keep_alive`. A snapshot process ends when the last environment
    /// restored from it does, as they live in its PID namespace.
    pub(crate) fn retire(
        &self,
        keep_alive: Duration,
        is_current: impl Fn(&FunctionConfig) -> bool,
    ) -> Vec<SnapshotCell> {
        let mut retired = Vec::new();
        self.lock().retain(|_, cell| {
            let keep = match cell.get() {
                None => true,
                Some(None) => false,
                Some(Some(snapshot)) => {
                    snapshot.is_alive()
                        && snapshot.forker.last_used().elapsed() <= keep_alive
                        && is_current(&snapshot.config)
                }
            };
            if !keep {
                retired.push(cell.clone());
            }
            keep
        });
        retired
    }

    /// Packages snapshot processes run (their code must not be collected).
    pub(crate) fn code(&self) -> Vec<String> {
        self.lock()
            .values()
            .filter_map(|cell| cell.get().cloned().flatten())
            .map(|snapshot| snapshot.config.code.digest_hex.clone())
            .collect()
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_init_is_retired_and_one_under_way_is_kept() {
        let snapshots = Snapshots::default();
        let mut failed = FunctionConfig::sample("failed");
        failed.version = "1".into();
        let mut starting = FunctionConfig::sample("starting");
        starting.version = "1".into();
        assert!(snapshots.cell(&failed).set(None).is_ok());
        let _ = snapshots.cell(&starting);
        let retired = snapshots.retire(Duration::from_secs(600), |_| true);
        assert_eq!(retired.len(), 1);
        assert!(retired[0].get().is_some_and(Option::is_none));
        assert!(snapshots.live().is_empty());
        assert!(snapshots.code().is_empty());
        // The failed one is tried again: its cell is new and empty.
        assert!(snapshots.cell(&failed).get().is_none());
    }
}
