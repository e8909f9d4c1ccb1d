//! Which waiting asynchronous event runs next.
//!
//! Events wait per function, ordered by when they may next run. Functions are served in
//! turn, starting after the one served last, each under a cap of running events, so that one
//! busy or failing function cannot starve the others.

use std::collections::{BTreeMap, HashMap};

use gust_store::QueuedEvent;

#[derive(Default)]
pub(super) struct FunctionQueue {
    /// Waiting events by (due time, id).
    pub(super) waiting: BTreeMap<(u64, i64), Waiting>,
    /// Received time of each running event.
    pub(super) running: HashMap<i64, u64>,
    pub(super) succeeded: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Waiting {
    pub(super) event: QueuedEvent,
    /// Platform failures in a row (they back off without using up retries).
    pub(super) platform_failures: u32,
}

#[derive(Default)]
pub(super) struct DispatchState {
    pub(super) functions: BTreeMap<String, FunctionQueue>,
    /// The function served last: the next pick starts after it.
    cursor: Option<String>,
}

impl DispatchState {
    /// Puts an event in its function's line, ordered by when it may next run.
    pub(super) fn wait(&mut self, event: QueuedEvent, platform_failures: u32) {
        self.functions
            .entry(event.function.clone())
            .or_default()
            .waiting
            .insert(
                (event.next_attempt_ms, event.id),
                Waiting {
                    event,
                    platform_failures,
                },
            );
    }

    /// Takes the next event due at `now`, serving functions in turn, each with at most
    /// `limit(function)` running, and counts it as running. When nothing is due, returns the
    /// earliest due time of a function with room (`None`: nothing waits that could run).
    pub(super) fn next_due(
        &mut self,
        now: u64,
        limit: impl Fn(&str) -> usize,
    ) -> Result<Waiting, Option<u64>> {
        let names: Vec<String> = self.functions.keys().cloned().collect();
        if names.is_empty() {
            return Err(None);
        }
        let start = match &self.cursor {
            Some(cursor) => names.iter().position(|n| n > cursor).unwrap_or(0),
            None => 0,
        };
        let mut earliest: Option<u64> = None;
        for i in 0..names.len() {
            let name = &names[(start + i) % names.len()];
            let Some(queue) = self.functions.get_mut(name) else {
                continue;
            };
            let Some((&(due, id), _)) = queue.waiting.iter().next() else {
                continue;
            };
            if queue.running.len() >= limit(name) {
                continue;
            }
            if due > now {
                earliest = Some(earliest.map_or(due, |e| e.min(due)));
                continue;
            }
            let Some(waiting) = queue.waiting.remove(&(due, id)) else {
                continue;
            };
            queue.running.insert(id, waiting.event.received_ms);
            self.cursor = Some(name.clone());
            return Ok(waiting);
        }
        Err(earliest)
    }

    /// The event is no longer running (finished, or back to waiting).
    pub(super) fn finish(&mut self, event: &QueuedEvent) {
        if let Some(queue) = self.functions.get_mut(&event.function) {
            queue.running.remove(&event.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: i64, function: &str, due: u64) -> QueuedEvent {
        QueuedEvent {
            id,
            request_id: format!("r{id}"),
            function: function.into(),
            qualifier: None,
            received_ms: 0,
            attempts: 0,
            next_attempt_ms: due,
        }
    }

    fn ids(state: &mut DispatchState, now: u64, limit: usize) -> Vec<i64> {
        std::iter::from_fn(|| state.next_due(now, |_| limit).ok())
            .map(|w| w.event.id)
            .collect()
    }

    #[test]
    fn functions_are_served_in_turn() {
        let mut state = DispatchState::default();
        for id in 1..=3 {
            state.wait(event(id, "busy", 0), 0);
        }
        state.wait(event(10, "quiet", 0), 0);
        state.wait(event(20, "third", 0), 0);
        assert_eq!(ids(&mut state, 0, 10), [1, 10, 20, 2, 3]);
    }

    #[test]
    fn each_function_runs_at_most_its_limit() {
        let mut state = DispatchState::default();
        for id in 1..=3 {
            state.wait(event(id, "f", 0), 0);
        }
        assert_eq!(ids(&mut state, 0, 2), [1, 2]);
        assert!(state.next_due(0, |_| 2).is_err(), "two running");
        state.finish(&event(1, "f", 0));
        assert_eq!(ids(&mut state, 0, 2), [3]);
    }

    #[test]
    fn an_event_waits_until_it_is_due() {
        let mut state = DispatchState::default();
        state.wait(event(1, "f", 5_000), 0);
        state.wait(event(2, "g", 3_000), 0);
        assert_eq!(state.next_due(1_000, |_| 1).err(), Some(Some(3_000)));
        assert_eq!(ids(&mut state, 3_000, 1), [2]);
        assert_eq!(ids(&mut state, 5_000, 1), [1]);
        assert_eq!(state.next_due(9_000, |_| 1).err(), Some(None));
    }

    #[test]
    fn a_function_at_its_limit_does_not_set_the_next_wake_up() {
        let mut state = DispatchState::default();
        state.wait(event(1, "f", 0), 0);
        state.wait(event(2, "f", 2_000), 0);
        assert_eq!(ids(&mut state, 0, 1), [1]);
        // Event 2 cannot run until event 1 ends, whatever the clock says.
        assert_eq!(state.next_due(0, |_| 1).err(), Some(None));
    }

    #[test]
    fn earlier_events_of_a_function_run_first() {
        let mut state = DispatchState::default();
        state.wait(event(1, "f", 2_000), 0);
        state.wait(event(2, "f", 1_000), 3);
        let first = state.next_due(2_000, |_| 1).ok();
        assert_eq!(
            first.map(|w| (w.event.id, w.platform_failures)),
            Some((2, 3))
        );
    }
}
