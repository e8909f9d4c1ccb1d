//! Admission: whether an invocation may run now, with Lambda's concurrency rules.
//!
//! A function with reserved concurrency runs at most that many invocations at once and does
//! not use the shared pool; the others share what the reservations leave of the account
//! limit. Synchronous invocations are also held to Lambda's request rate (ten per second per
//! unit of concurrency). Nothing waits here without bound: a synchronous call is admitted or
//! throttled at once; queued events wait for a slot of their own function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use gust_control::Control;
use gust_model::LambdaError;
use tokio::sync::Notify;

/// What admission needs to know of the control plane: the account's and each function's
/// concurrency limits. A seam of its own, so that the rules below are tested without a store.
pub trait ConcurrencyLimits: Send + Sync {
    /// The function's reserved concurrency, if it has one.
    fn reserved(&self, function: &str) -> Option<u32>;
    /// What functions without a reservation share (`UnreservedConcurrentExecutions`).
    fn unreserved_limit(&self) -> u32;
    /// The account's `ConcurrentExecutions`.
    fn concurrent_executions(&self) -> u32;
}

impl ConcurrencyLimits for Control {
    fn reserved(&self, function: &str) -> Option<u32> {
        Control::reserved(self, function)
    }

    fn unreserved_limit(&self) -> u32 {
        Control::unreserved_limit(self)
    }

    fn concurrent_executions(&self) -> u32 {
        self.settings().concurrent_executions
    }
}

/// Invocations per second allowed per unit of concurrency.
const RATE_PER_CONCURRENCY: u64 = 10;

#[derive(Default)]
struct Counts {
    /// Invocations running per function.
    running: HashMap<String, u32>,
    /// Running invocations of functions without a reservation.
    unreserved_running: u32,
    /// Per function: the current second and the invocations admitted in it.
    rate: HashMap<String, (u64, u64)>,
}

pub struct Admission {
    control: Arc<dyn ConcurrencyLimits>,
    counts: Mutex<Counts>,
    freed: Notify,
}

/// A running invocation's slot; dropping it frees the slot.
pub struct Permit {
    admission: Arc<Admission>,
    function: String,
    reserved: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut counts = self.admission.lock();
            if let Some(n) = counts.running.get_mut(&self.function) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.running.remove(&self.function);
                }
            }
            if !self.reserved {
                counts.unreserved_running = counts.unreserved_running.saturating_sub(1);
            }
        }
        self.admission.freed.notify_waiters();
    }
}

fn current_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Admission {
    pub fn new(control: Arc<dyn ConcurrencyLimits>) -> Arc<Self> {
        Arc::new(Self {
            control,
            counts: Mutex::new(Counts::default()),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a concurrency slot for `function`, or says which limit is in the way.
    fn take_slot(
        self: &Arc<Self>,
        function: &str,
        check_rate: bool,
    ) -> Result<Permit, LambdaError> {
        let reserved = self.control.reserved(function);
        let unreserved_limit = self.control.unreserved_limit();
        let mut counts = self.lock();
        let running = counts.running.get(function).copied().unwrap_or(0);
        match reserved {
            Some(limit) if running >= limit => {
                return Err(LambdaError::too_many_requests(
                    "ReservedFunctionConcurrentInvocationLimitExceeded",
                ));
            }
            None if counts.unreserved_running >= unreserved_limit => {
                return Err(LambdaError::too_many_requests(
                    "ConcurrentInvocationLimitExceeded",
                ));
            }
            _ => {}
        }
        if check_rate {
            let concurrency = reserved.unwrap_or(self.control.concurrent_executions());
            let limit = RATE_PER_CONCURRENCY * u64::from(concurrency);
            let second = current_second();
            let window = counts
                .rate
                .entry(function.to_string())
                .or_insert((second, 0));
            if window.0 != second {
                *window = (second, 0);
            }
            if window.1 >= limit {
                return Err(LambdaError::too_many_requests(if reserved.is_some() {
                    "ReservedFunctionInvocationRateLimitExceeded"
                } else {
                    "FunctionInvocationRateLimitExceeded"
                }));
            }
            window.1 += 1;
        }
        *counts.running.entry(function.to_string()).or_default() += 1;
        if reserved.is_none() {
            counts.unreserved_running += 1;
        }
        Ok(Permit {
            admission: self.clone(),
            function: function.to_string(),
            reserved: reserved.is_some(),
        })
    }

    /// Admits a synchronous invocation now, or throttles it with the limit's `Reason`.
    pub fn try_admit(self: &Arc<Self>, function: &str) -> Result<Permit, LambdaError> {
        self.take_slot(function, true)
    }

    /// Admits a queued event as soon as its function has a free slot. A function whose
    /// reserved concurrency is 0 never will: that is answered at once.
    pub async fn admit(self: &Arc<Self>, function: &str) -> Result<Permit, LambdaError> {
        loop {
            let freed = self.freed.notified();
            match self.take_slot(function, false) {
                Ok(permit) => return Ok(permit),
                Err(e) if self.control.reserved(function) == Some(0) => return Err(e),
                Err(_) => {
                    // Reservations can change while waiting; look again now and then.
                    tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    /// Invocations running now (all functions).
    pub fn running(&self) -> u32 {
        self.lock().running.values().sum()
    }

    /// Invocations of `function` running now.
    pub fn running_of(&self, function: &str) -> u32 {
        self.lock().running.get(function).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits set by hand: the account's, and reservations per function.
    struct Limits {
        account: u32,
        reserved: HashMap<&'static str, u32>,
    }

    impl ConcurrencyLimits for Limits {
        fn reserved(&self, function: &str) -> Option<u32> {
            self.reserved.get(function).copied()
        }

        fn unreserved_limit(&self) -> u32 {
            self.account - self.reserved.values().sum::<u32>()
        }

        fn concurrent_executions(&self) -> u32 {
            self.account
        }
    }

    fn admission(account: u32, reserved: &[(&'static str, u32)]) -> Arc<Admission> {
        Admission::new(Arc::new(Limits {
            account,
            reserved: reserved.iter().copied().collect(),
        }))
    }

    fn reason(result: Result<Permit, LambdaError>) -> &'static str {
        match result {
            Ok(_) => "admitted",
            Err(e) => e.reason.unwrap_or("no reason"),
        }
    }

    #[test]
    fn a_reservation_bounds_its_function_and_is_not_shared() {
        let admission = admission(5, &[("reserved", 2)]);
        let first = admission.try_admit("reserved").unwrap();
        let _second = admission.try_admit("reserved").unwrap();
        assert_eq!(
            reason(admission.try_admit("reserved")),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        // The others share what is left: 3.
        let shared: Vec<_> = (0..3)
            .map(|_| admission.try_admit("other").unwrap())
            .collect();
        assert_eq!(
            reason(admission.try_admit("another")),
            "ConcurrentInvocationLimitExceeded"
        );
        assert_eq!(admission.running(), 5);
        assert_eq!(admission.running_of("reserved"), 2);
        // Dropping a permit frees its slot, and only its kind of slot.
        drop(first);
        assert_eq!(
            reason(admission.try_admit("another")),
            "ConcurrentInvocationLimitExceeded"
        );
        assert!(admission.try_admit("reserved").is_ok());
        drop(shared);
        assert!(admission.try_admit("another").is_ok());
    }

    #[test]
    fn synchronous_calls_are_held_to_ten_per_second_per_unit_of_concurrency() {
        let admission = admission(1, &[]);
        let mut refused = None;
        // Within one second (the loop is far shorter), the eleventh call of a function with
        // one unit of concurrency is throttled for its rate, whatever finished before it.
        let second = current_second();
        for n in 0..11 {
            match admission.try_admit("f") {
                Ok(permit) => drop(permit),
                Err(e) => {
                    refused = Some((n, e.reason));
                    break;
                }
            }
        }
        if current_second() == second {
            assert_eq!(
                refused,
                Some((10, Some("FunctionInvocationRateLimitExceeded")))
            );
        }
    }

    #[tokio::test]
    async fn queued_events_wait_for_a_slot_and_a_reservation_of_zero_refuses_them() {
        let admission = admission(2, &[("off", 0), ("one", 1)]);
        assert_eq!(
            reason(admission.admit("off").await),
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        let held = admission.admit("one").await.unwrap();
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit("one").await.is_ok() })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the event waits for its function's slot"
        );
        drop(held);
        assert!(waiting.await.unwrap(), "admitted once the slot is free");
    }
}
