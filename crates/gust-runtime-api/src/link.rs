//! The hand-off between the invoke path and one environment's Runtime API.
//!
//! The invoke path [`Link::dispatch`]es an invocation; the runtime collects it with `next`, and
//! its `response`, `error` or `init/error` resolves the invocation's [`Pending`]. One
//! invocation is in flight at a time: the pool never hands a busy environment to a second
//! caller.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use gust_model::timefmt::epoch_ms;
use tokio::sync::{Notify, oneshot};

use crate::control::{Claim, ExitReport, ForkAnswer, ForkReport};

/// One event for the runtime.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub invoked_function_arn: String,
    /// The function's timeout; the deadline is fixed when the runtime receives the event.
    pub timeout: Duration,
    pub trace_id: String,
    /// Decoded `X-Amz-Client-Context` JSON text.
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub tenant_id: Option<String>,
}

/// When the runtime received the event.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub at: Instant,
    pub deadline: Instant,
    pub deadline_epoch_ms: u64,
}

/// How the runtime ended an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response {
        body: Bytes,
        content_type: Option<String>,
    },
    Error {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The runtime tried to post more than Lambda's response limit.
    ResponseTooLarge,
    /// The runtime could not initialise (it posted `/runtime/init/error`).
    InitError {
        body: Bytes,
        error_type: Option<String>,
    },
}

/// Receivers for one dispatched invocation.
pub struct Pending {
    pub delivered: oneshot::Receiver<Delivery>,
    pub outcome: oneshot::Receiver<Outcome>,
}

struct Queued {
    invocation: Invocation,
    delivered: oneshot::Sender<Delivery>,
    outcome: oneshot::Sender<Outcome>,
}

struct Current {
    request_id: String,
    outcome: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct State {
    queued: Option<Queued>,
    current: Option<Current>,
    /// An init error posted while no invocation was waiting.
    init_error: Option<Outcome>,
    /// When the runtime first asked for an event (the end of its init phase).
    ready_at: Option<Instant>,
    /// The runtime is blocked in `next` with nothing to hand it: it finished its last
    /// invocation and is ready for another.
    waiting: bool,
    closed: bool,
    /// A pre-started runtime waits for its function's environment: set when it asks, taken
    /// when the environment is handed over.
    standby_waiting: bool,
    standby_claim: Option<Claim>,
    /// A snapshot process reported the process it forked; the invoke path answers it.
    fork_report: Option<ForkReport>,
    fork_answer: Option<ForkAnswer>,
    /// How the runtime of an environment forked from a snapshot process ended (a wait
    /// status), as its sandbox's first process reports it.
    exit_status: Option<i32>,
    /// Counts resets: a connection of a runtime from before the last reset (one killed
    /// while it waited in `next`) must not take the next runtime's event.
    generation: u64,
}

/// Shared state of one environment's Runtime API.
#[derive(Default)]
pub struct Link {
    state: Mutex<State>,
    wake_next: Notify,
    wake_ready: Notify,
    wake_idle: Notify,
    wake_standby: Notify,
    standby_ready: Notify,
    wake_fork: Notify,
}

/// What `next` hands the runtime.
pub struct NextEvent {
    pub invocation: Invocation,
    pub deadline_epoch_ms: u64,
}

/// Why a runtime's call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request id is not the invocation in flight.
    UnknownRequestId,
    /// `next` while the current invocation has no result yet.
    StillInvoking,
    /// The environment is shutting down: the runtime must exit.
    Closed,
}

impl Link {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an invocation for the runtime's next `next`.
    pub fn dispatch(&self, invocation: Invocation) -> Pending {
        let (delivered_tx, delivered) = oneshot::channel();
        let (outcome_tx, outcome) = oneshot::channel();
        {
            let mut st = self.lock();
            if let Some(init_error) = st.init_error.take() {
                let _ = outcome_tx.send(init_error);
            } else {
                st.queued = Some(Queued {
                    invocation,
                    delivered: delivered_tx,
                    outcome: outcome_tx,
                });
            }
        }
        // Every waiting `next` looks: one left over from a killed runtime refuses itself.
        self.wake_next.notify_waiters();
        Pending { delivered, outcome }
    }

    /// Forgets any invocation in flight (after a timeout or a crash) so that a restarted runtime
    /// starts clean.
    pub fn reset(&self) {
        {
            let mut st = self.lock();
            st.queued = None;
            st.current = None;
            st.init_error = None;
            st.ready_at = None;
            st.waiting = false;
            st.generation += 1;
        }
        self.wake_next.notify_waiters();
    }

    /// The current generation: connections accepted now belong to the runtime started
    /// after the last reset.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// A pre-started runtime asks for the environment of the function it will serve (or a
    /// snapshot process for its next fork); resolves when the invoke path claims it (once).
    pub async fn standby(&self) -> Result<Claim, Refusal> {
        loop {
            let notified = self.wake_standby.notified();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(Refusal::Closed);
                }
                if let Some(claim) = st.standby_claim.take() {
                    st.standby_waiting = false;
                    return Ok(claim);
                }
                if !st.standby_waiting {
                    st.standby_waiting = true;
                    self.standby_ready.notify_waiters();
                }
            }
            notified.await;
        }
    }

    /// Whether a pre-started runtime has finished starting and waits to be claimed.
    pub fn is_standing_by(&self) -> bool {
        self.lock().standby_waiting
    }

    /// Waits until the pre-started runtime asks for its environment.
    pub async fn standing_by(&self) {
        loop {
            let notified = self.standby_ready.notified();
            {
                let st = self.lock();
                if st.standby_waiting || st.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Hands a pre-started runtime its function's environment, or asks a snapshot process
    /// to fork.
    pub fn claim_standby(&self, claim: Claim) {
        self.lock().standby_claim = Some(claim);
        self.wake_standby.notify_waiters();
    }

    /// A snapshot process reports the process it forked for the environment it was asked
    /// for (see [`Link::claim_standby`]); resolves with the invoke path's answer, once it has
    /// made that process's sandbox.
    pub async fn report_fork(&self, report: ForkReport) -> Result<ForkAnswer, Refusal> {
        {
            let mut st = self.lock();
            st.fork_answer = None;
            st.fork_report = Some(report);
        }
        self.wake_fork.notify_waiters();
        loop {
            let notified = self.wake_fork.notified();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(Refusal::Closed);
                }
                if let Some(answer) = st.fork_answer.take() {
                    return Ok(answer);
                }
            }
            notified.await;
        }
    }

    /// Waits for a snapshot process's report of its fork.
    pub async fn fork_reported(&self) -> Result<ForkReport, Refusal> {
        loop {
            let notified = self.wake_fork.notified();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(Refusal::Closed);
                }
                if let Some(report) = st.fork_report.take() {
                    return Ok(report);
                }
            }
            notified.await;
        }
    }

    /// Answers a snapshot process's report of its fork (which it hands to the fork).
    pub fn answer_fork(&self, answer: ForkAnswer) {
        self.lock().fork_answer = Some(answer);
        self.wake_fork.notify_waiters();
    }

    /// Records how the runtime ended.
    pub fn report_exit(&self, report: ExitReport) {
        self.lock().exit_status = Some(report.status);
    }

    /// How the runtime ended, if it was reported.
    pub fn reported_exit(&self) -> Option<i32> {
        self.lock().exit_status
    }

    /// Makes every pending and future `next` fail: the environment is going away.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake_fork.notify_waiters();
        self.wake_standby.notify_waiters();
        self.standby_ready.notify_waiters();
        self.wake_next.notify_waiters();
        self.wake_ready.notify_waiters();
        self.wake_idle.notify_waiters();
    }

    /// When the runtime first called `next` since the last reset.
    pub fn ready_at(&self) -> Option<Instant> {
        self.lock().ready_at
    }

    /// Waits until the runtime has called `next` (its init is done).
    pub async fn ready(&self) {
        loop {
            let notified = self.wake_ready.notified();
            {
                let st = self.lock();
                if st.ready_at.is_some() || st.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Waits until the runtime is back in `next` after its last invocation: on Lambda an
    /// invocation ends only when the runtime asks for the next event, and an environment whose
    /// runtime exits instead must not be handed a new event.
    pub async fn idle(&self) {
        loop {
            let notified = self.wake_idle.notified();
            {
                let st = self.lock();
                if st.waiting || st.queued.is_some() || st.closed {
                    return;
                }
            }
            notified.await;
        }
    }

    /// The runtime asks for its next event; resolves when one is dispatched.
    pub async fn next(&self) -> Result<NextEvent, Refusal> {
        let generation = self.generation();
        self.next_in(generation).await
    }

    /// `next` on a connection accepted in `generation`: refused once the environment has
    /// been reset since (its runtime was killed).
    pub async fn next_in(&self, generation: u64) -> Result<NextEvent, Refusal> {
        loop {
            let notified = self.wake_next.notified();
            {
                let mut st = self.lock();
                if st.closed || st.generation != generation {
                    return Err(Refusal::Closed);
                }
                if st.current.is_some() {
                    return Err(Refusal::StillInvoking);
                }
                if st.ready_at.is_none() {
                    st.ready_at = Some(Instant::now());
                    self.wake_ready.notify_waiters();
                }
                if let Some(queued) = st.queued.take() {
                    st.waiting = false;
                    let at = Instant::now();
                    let deadline = at + queued.invocation.timeout;
                    let deadline_epoch_ms =
                        epoch_ms(SystemTime::now()) + queued.invocation.timeout.as_millis() as u64;
                    st.current = Some(Current {
                        request_id: queued.invocation.request_id.clone(),
                        outcome: queued.outcome,
                    });
                    let _ = queued.delivered.send(Delivery {
                        at,
                        deadline,
                        deadline_epoch_ms,
                    });
                    return Ok(NextEvent {
                        invocation: queued.invocation,
                        deadline_epoch_ms,
                    });
                }
                if !st.waiting {
                    st.waiting = true;
                    self.wake_idle.notify_waiters();
                }
            }
            notified.await;
        }
    }

    /// Whether `request_id` is the invocation in flight (checked before reading a body).
    pub fn is_current(&self, request_id: &str) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_some_and(|c| c.request_id == request_id)
    }

    /// Completes the invocation in flight with a response or an error.
    pub fn complete(&self, request_id: &str, outcome: Outcome) -> Result<(), Refusal> {
        let mut st = self.lock();
        match st.current.take() {
            Some(current) if current.request_id == request_id => {
                let _ = current.outcome.send(outcome);
                Ok(())
            }
            other => {
                st.current = other;
                Err(Refusal::UnknownRequestId)
            }
        }
    }

    /// The runtime failed to initialise: the waiting invocation (if any) gets its error.
    pub fn init_error(&self, outcome: Outcome) {
        let mut st = self.lock();
        if let Some(current) = st.current.take() {
            let _ = current.outcome.send(outcome);
        } else if let Some(queued) = st.queued.take() {
            let _ = queued.outcome.send(outcome);
        } else {
            st.init_error = Some(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(id: &str) -> Invocation {
        Invocation {
            request_id: id.into(),
            payload: Bytes::from_static(b"{}"),
            invoked_function_arn: "arn".into(),
            timeout: Duration::from_secs(3),
            trace_id: "t".into(),
            client_context: None,
            cognito_identity: None,
            tenant_id: None,
        }
    }

    #[tokio::test]
    async fn an_invocation_round_trips() {
        let link = Link::new();
        let pending = link.dispatch(invocation("a"));
        let next = link.next().await.unwrap();
        assert_eq!(next.invocation.request_id, "a");
        assert!(link.ready_at().is_some());
        assert!(pending.delivered.await.is_ok());
        assert_eq!(link.next().await.err(), Some(Refusal::StillInvoking));
        assert_eq!(
            link.complete("b", Outcome::ResponseTooLarge),
            Err(Refusal::UnknownRequestId)
        );
        let response = Outcome::Response {
            body: Bytes::from_static(b"1"),
            content_type: None,
        };
        link.complete("a", response.clone()).unwrap();
        assert_eq!(pending.outcome.await.unwrap(), response);
        assert_eq!(
            link.complete("a", Outcome::ResponseTooLarge),
            Err(Refusal::UnknownRequestId)
        );
    }

    #[tokio::test]
    async fn idle_means_back_in_next() {
        let link = std::sync::Arc::new(Link::new());
        let pending = link.dispatch(invocation("a"));
        let next = link.next().await.unwrap();
        link.complete(&next.invocation.request_id, Outcome::ResponseTooLarge)
            .unwrap();
        pending.outcome.await.unwrap();
        let idle = {
            let link = link.clone();
            tokio::spawn(async move { link.idle().await })
        };
        tokio::task::yield_now().await;
        assert!(
            !idle.is_finished(),
            "not idle before the runtime calls next again"
        );
        let runtime = {
            let link = link.clone();
            tokio::spawn(async move { link.next().await.map(|e| e.invocation.request_id) })
        };
        idle.await.unwrap();
        link.dispatch(invocation("b"));
        assert_eq!(runtime.await.unwrap().unwrap(), "b");
    }

    #[tokio::test]
    async fn init_errors_reach_the_waiting_invocation() {
        let link = Link::new();
        let pending = link.dispatch(invocation("a"));
        let error = Outcome::InitError {
            body: Bytes::from_static(b"{}"),
            error_type: Some("Runtime.ImportModuleError".into()),
        };
        link.init_error(error.clone());
        assert_eq!(pending.outcome.await.unwrap(), error);

        // Posted before anything was dispatched: the next dispatch gets it at once.
        link.init_error(error.clone());
        let pending = link.dispatch(invocation("b"));
        assert_eq!(pending.outcome.await.unwrap(), error);
    }

    #[tokio::test]
    async fn a_killed_runtimes_waiting_next_does_not_take_the_next_event() {
        let link = std::sync::Arc::new(Link::new());
        let stale = {
            let link = link.clone();
            let generation = link.generation();
            tokio::spawn(async move { link.next_in(generation).await.err() })
        };
        tokio::task::yield_now().await;
        link.reset();
        let fresh = {
            let link = link.clone();
            let generation = link.generation();
            tokio::spawn(async move {
                link.next_in(generation)
                    .await
                    .map(|e| e.invocation.request_id)
            })
        };
        tokio::task::yield_now().await;
        link.dispatch(invocation("a"));
        assert_eq!(stale.await.unwrap(), Some(Refusal::Closed));
        assert_eq!(fresh.await.unwrap().unwrap(), "a");
    }

    #[tokio::test]
    async fn closing_releases_a_waiting_runtime() {
        let link = std::sync::Arc::new(Link::new());
        let waiter = {
            let link = link.clone();
            tokio::spawn(async move { link.next().await.err() })
        };
        tokio::task::yield_now().await;
        link.close();
        assert_eq!(waiter.await.unwrap(), Some(Refusal::Closed));
    }
}
