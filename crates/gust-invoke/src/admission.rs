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
    control: Arc<Control>,
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
    pub fn new(control: Arc<Control>) -> Arc<Self> {
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
            let concurrency = reserved.unwrap_or(self.control.settings().concurrent_executions);
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
