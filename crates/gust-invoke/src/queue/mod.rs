//! Asynchronous invocations: accepted durably, dispatched fairly, retried with Lambda's
//! semantics, and delivered to destinations or kept as dead letters.
//!
//! An event is acknowledged (202) only once it is on disk. The dispatcher keeps an in-memory
//! index of waiting events per function and serves functions round-robin, each under a cap, so
//! that one busy or failing function cannot starve the others. A finished event is deleted; one
//! that runs while Gust dies stays in the queue and runs again after a restart: delivery is at
//! least once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use gust_control::Control;
use gust_model::timefmt::{epoch_ms, iso_millis};
use gust_model::{ErrorCode, EventInvokeConfig, FunctionRef, LATEST, LambdaError};
use gust_store::{DeadLetter, NewEvent, QueueStore, QueuedEvent, StoreError};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::{InvokeRequest, InvokeResponse, Invoker};

mod dispatch;
mod retry;

use dispatch::{DispatchState, Waiting};
use retry::RetryPolicy;

/// Tunables of the asynchronous path.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Multiplies every asynchronous delay and age limit: 1.0 is Lambda's timing; tests use a
    /// small factor so that a one-minute retry takes a fraction of a second.
    pub time_scale: f64,
    /// Most asynchronous invocations of one function running at once.
    pub per_function_limit: usize,
}

/// Queue figures of one function, for `gust status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionQueueStatus {
    pub function: String,
    /// Events waiting or running.
    pub depth: usize,
    pub in_flight: usize,
    /// Age of the oldest event waiting or running, in milliseconds.
    pub oldest_age_ms: Option<u64>,
    pub dead_lettered: u64,
    /// Events that ran successfully since Gust started.
    pub succeeded: u64,
}

pub struct AsyncQueue {
    store: QueueStore,
    control: Arc<Control>,
    invoker: Arc<Invoker>,
    settings: QueueSettings,
    state: Mutex<DispatchState>,
    wake: Notify,
    stopping: AtomicBool,
    running: AtomicUsize,
    drained: Notify,
}

fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

fn store_error(e: StoreError) -> LambdaError {
    tracing::error!(error = %e, "async queue storage failure");
    LambdaError::service(format!("Gust could not store the event: {e}"))
}

/// JSON text as a JSON value; anything else as a string.
fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

impl AsyncQueue {
    /// Opens the queue under `data_dir` and indexes the events left from a previous run.
    pub fn open(
        data_dir: &std::path::Path,
        control: Arc<Control>,
        invoker: Arc<Invoker>,
        settings: QueueSettings,
    ) -> Result<Arc<Self>, StoreError> {
        let store = QueueStore::open(&data_dir.join("queue.db"))?;
        let mut state = DispatchState::default();
        let pending = store.pending()?;
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "resuming queued asynchronous invocations"
            );
        }
        for event in pending {
            state.wait(event, 0);
        }
        Ok(Arc::new(Self {
            store,
            control,
            invoker,
            settings,
            state: Mutex::new(state),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            drained: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DispatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            time_scale: self.settings.time_scale,
        }
    }

    /// Accepts an event: returns once it is durably stored.
    pub async fn enqueue(
        &self,
        function: &FunctionRef,
        request_id: &str,
        payload: Bytes,
    ) -> Result<(), LambdaError> {
        if self.stopping.load(Ordering::Acquire) {
            return Err(LambdaError::new(
                ErrorCode::Service,
                "Gust is shutting down; send the event again.",
            ));
        }
        let received_ms = now_ms();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.store
            .insert_then(
                vec![NewEvent {
                    request_id: request_id.to_string(),
                    function: function.name.clone(),
                    qualifier: function.qualifier.clone(),
                    payload: payload.to_vec(),
                    received_ms,
                }],
                Box::new(move |result| {
                    let _ = tx.send(result);
                }),
            )
            .map_err(store_error)?;
        let ids = rx
            .await
            .map_err(|_| store_error(StoreError::Io("the queue writer has stopped".into())))?
            .map_err(|e| store_error(StoreError::Io(e)))?;
        let event = QueuedEvent {
            id: ids[0],
            request_id: request_id.to_string(),
            function: function.name.clone(),
            qualifier: function.qualifier.clone(),
            received_ms,
            attempts: 0,
            next_attempt_ms: received_ms,
        };
        self.push(event, 0);
        Ok(())
    }

    fn push(&self, event: QueuedEvent, platform_failures: u32) {
        self.lock().wait(event, platform_failures);
        self.wake.notify_one();
    }

    /// Takes the next due event, serving functions in turn. Returns the event or, when nothing
    /// is due, when to look again.
    fn next_due(&self, now: u64) -> Result<Waiting, Option<u64>> {
        let per_function = self.settings.per_function_limit;
        self.lock().next_due(now, |function| {
            // A reservation caps the function's running events too (0 still lets one
            // through, to be refused).
            match self.control.reserved(function) {
                Some(reserved) => (reserved as usize).clamp(1, per_function),
                None => per_function,
            }
        })
    }

    /// Runs the dispatcher until shutdown.
    pub fn start(self: &Arc<Self>) {
        let queue = self.clone();
        tokio::spawn(async move { queue.dispatch_loop().await });
    }

    async fn dispatch_loop(self: Arc<Self>) {
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let notified = self.wake.notified();
            match self.next_due(now_ms()) {
                Ok(waiting) => {
                    self.running.fetch_add(1, Ordering::AcqRel);
                    let queue = self.clone();
                    tokio::spawn(async move {
                        // Each event waits for a slot of its own function, so a busy function
                        // does not hold up the others.
                        let admitted = queue.invoker.admit(&waiting.event.function).await;
                        if queue.stopping.load(Ordering::Acquire) {
                            // Shutting down: the event stays queued for the next run.
                            queue.finish(&waiting.event);
                        } else {
                            match admitted {
                                Ok(permit) => queue.attempt(waiting, permit).await,
                                Err(e) => queue.refuse(waiting, e).await,
                            }
                        }
                        if queue.running.fetch_sub(1, Ordering::AcqRel) == 1 {
                            queue.drained.notify_waiters();
                        }
                        queue.wake.notify_one();
                    });
                }
                Err(earliest) => {
                    // Due times are wall-clock: look at the clock again at least every second
                    // (a monotonic sleep runs late across a host suspend or a clock step).
                    let sleep = earliest
                        .map(|due| {
                            Duration::from_millis(due.saturating_sub(now_ms()))
                                .min(Duration::from_secs(1))
                        })
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(sleep) => {}
                    }
                }
            }
        }
    }

    fn finish(&self, event: &QueuedEvent) {
        self.lock().finish(event);
    }

    fn reschedule(&self, mut event: QueuedEvent, platform_failures: u32, delay_ms: u64) {
        event.next_attempt_ms = now_ms() + delay_ms;
        if let Err(e) = self
            .store
            .reschedule(event.id, event.attempts, event.next_attempt_ms)
        {
            tracing::error!(error = %e, "could not record a retry; the event runs again after a restart");
        }
        self.finish(&event);
        self.push(event, platform_failures);
    }

    /// An event whose function takes no invocations at all (reserved concurrency 0): as on
    /// Lambda, it goes straight to the failure destination and the dead letters.
    async fn refuse(self: &Arc<Self>, waiting: Waiting, error: LambdaError) {
        let event = waiting.event;
        let config = self
            .control
            .event_invoke_config_for(&event.function, event.qualifier.as_deref());
        let store = self.store.clone();
        let id = event.id;
        let payload = tokio::task::spawn_blocking(move || store.payload(id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .map(Bytes::from);
        let response = json!({
            "errorType": "TooManyRequestsException",
            "errorMessage": format!("{} ({})", error.message, error.reason.unwrap_or_default()),
        });
        self.fail(
            event,
            config.as_deref(),
            "RetriesExhausted",
            payload.as_ref(),
            Some((response.to_string().into(), None)),
        )
        .await;
    }

    async fn attempt(self: &Arc<Self>, waiting: Waiting, permit: crate::Permit) {
        let Waiting {
            mut event,
            platform_failures,
        } = waiting;
        let config = self
            .control
            .event_invoke_config_for(&event.function, event.qualifier.as_deref());
        let retries = config
            .as_ref()
            .map_or(EventInvokeConfig::DEFAULT_RETRIES, |c| c.retries());
        let max_age = config
            .as_ref()
            .map_or(EventInvokeConfig::DEFAULT_MAX_AGE_SECONDS, |c| {
                c.max_age_seconds()
            });
        if self.policy().too_old(event.received_ms, max_age, now_ms()) {
            drop(permit);
            return self
                .fail(event, config.as_deref(), "EventAgeExceeded", None, None)
                .await;
        }
        let store = self.store.clone();
        let id = event.id;
        let payload = match tokio::task::spawn_blocking(move || store.payload(id)).await {
            Ok(Ok(Some(payload))) => Bytes::from(payload),
            Ok(Ok(None)) => {
                // Already gone (redriven or deleted elsewhere): nothing to run.
                self.finish(&event);
                return;
            }
            _ => {
                let delay = self.backoff(platform_failures);
                return self.reschedule(event, platform_failures + 1, delay);
            }
        };
        let function = FunctionRef {
            name: event.function.clone(),
            qualifier: event.qualifier.clone(),
            region: None,
            account: None,
        };
        let resolved = match self.control.resolve_for_invoke(&function) {
            Ok(config) => config,
            Err(e) if e.code == ErrorCode::ResourceNotFound => {
                drop(permit);
                let response =
                    json!({"errorType": "ResourceNotFoundException", "errorMessage": e.message});
                return self
                    .fail(
                        event,
                        config.as_deref(),
                        "FunctionNotFound",
                        Some(&payload),
                        Some((response.to_string().into(), None)),
                    )
                    .await;
            }
            Err(_) => {
                let delay = self.backoff(platform_failures);
                return self.reschedule(event, platform_failures + 1, delay);
            }
        };
        let result = self
            .invoker
            .run(
                InvokeRequest {
                    function,
                    config: resolved,
                    request_id: event.request_id.clone(),
                    payload: payload.clone(),
                    client_context: None,
                    tenant_id: None,
                },
                permit,
            )
            .await;
        match result {
            Ok(response) if !response.function_error => {
                event.attempts += 1;
                if let Some(destination) = config.as_ref().and_then(|c| c.on_success.clone()) {
                    let record = self.record(&event, "Success", &payload, Some(&response));
                    self.deliver(&destination, record).await;
                }
                if let Err(e) = self.store.complete(event.id) {
                    tracing::error!(error = %e, "could not remove a finished event; it will run again after a restart");
                }
                self.finish(&event);
                if let Some(queue) = self.lock().functions.get_mut(&event.function) {
                    queue.succeeded += 1;
                }
            }
            Ok(response) => {
                event.attempts += 1;
                let retry = self.policy().after_function_error(event.attempts, retries);
                if let Some(delay) = retry {
                    self.reschedule(event, 0, delay);
                } else {
                    self.fail(
                        event,
                        config.as_deref(),
                        "RetriesExhausted",
                        Some(&payload),
                        Some((response.body.clone(), Some(response))),
                    )
                    .await;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, function = %event.function, "platform error; backing off");
                let delay = self.backoff(platform_failures);
                self.reschedule(event, platform_failures + 1, delay);
            }
        }
    }

    fn backoff(&self, failures: u32) -> u64 {
        self.policy().platform_backoff(failures)
    }

    /// The invocation record Lambda sends to destinations.
    fn record(
        &self,
        event: &QueuedEvent,
        condition: &str,
        payload: &[u8],
        response: Option<&InvokeResponse>,
    ) -> Value {
        let qualifier = event.qualifier.as_deref().unwrap_or(LATEST);
        let mut record = json!({
            "version": "1.0",
            "timestamp": iso_millis(SystemTime::now()),
            "requestContext": {
                "requestId": event.request_id,
                "functionArn": self.control.arns().qualified(&event.function, qualifier),
                "condition": condition,
                "approximateInvokeCount": event.attempts,
            },
            "requestPayload": as_json(payload),
        });
        if let Some(response) = response {
            let mut context =
                json!({ "statusCode": 200, "executedVersion": response.executed_version });
            if response.function_error {
                context["functionError"] = json!("Unhandled");
            }
            record["responseContext"] = context;
            record["responsePayload"] = as_json(&response.body);
        }
        record
    }

    /// Sends a record to a destination function as an asynchronous invocation of its own.
    async fn deliver(&self, destination: &str, record: Value) {
        let target = match FunctionRef::parse(destination, gust_model::names::NameShape::Plain) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(%destination, error = %e, "destination is not a function ARN");
                return;
            }
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self
            .enqueue(&target, &request_id, Bytes::from(record.to_string()))
            .await
        {
            tracing::warn!(%destination, error = %e, "could not deliver to the destination");
        }
    }

    /// Final failure: the record goes to the OnFailure destination (if any) and the event to the
    /// dead letters, where it can be inspected and redriven.
    async fn fail(
        &self,
        event: QueuedEvent,
        config: Option<&EventInvokeConfig>,
        condition: &str,
        payload: Option<&Bytes>,
        response: Option<(Bytes, Option<InvokeResponse>)>,
    ) {
        tracing::info!(function = %event.function, request_id = %event.request_id, condition, "asynchronous invocation failed");
        if let Some(destination) = config.and_then(|c| c.on_failure.clone()) {
            let payload = match payload {
                Some(p) => p.clone(),
                None => {
                    let store = self.store.clone();
                    let id = event.id;
                    tokio::task::spawn_blocking(move || store.payload(id))
                        .await
                        .ok()
                        .and_then(|r| r.ok().flatten())
                        .map(Bytes::from)
                        .unwrap_or_default()
                }
            };
            let invoke_response = response.as_ref().and_then(|(_, r)| r.as_ref());
            let record = self.record(&event, condition, &payload, invoke_response);
            self.deliver(&destination, record).await;
        }
        let body = response.map(|(body, _)| String::from_utf8_lossy(&body).into_owned());
        if let Err(e) = self
            .store
            .dead_letter(event.id, now_ms(), event.attempts, condition, body)
        {
            tracing::error!(error = %e, "could not store a dead letter; the event runs again after a restart");
        }
        self.finish(&event);
    }

    /// Stops dispatching and waits (at most `grace`) for running invocations; those still
    /// running stay queued and run again after a restart.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let drained = self.drained.notified();
            let running = self.running.load(Ordering::Acquire);
            if running == 0 {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(running, "asynchronous invocations still running at shutdown stay queued");
                    break;
                }
            }
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
    }

    /// Queue depth, oldest age and dead letters per function.
    pub fn status(&self) -> Vec<FunctionQueueStatus> {
        let now = now_ms();
        let dead = self.store.dead_letter_counts().unwrap_or_default();
        let mut by_function: BTreeMap<String, FunctionQueueStatus> = BTreeMap::new();
        for (function, count) in dead {
            by_function.insert(
                function.clone(),
                FunctionQueueStatus {
                    function,
                    depth: 0,
                    in_flight: 0,
                    oldest_age_ms: None,
                    dead_lettered: count,
                    succeeded: 0,
                },
            );
        }
        let state = self.lock();
        for (name, queue) in &state.functions {
            let oldest = queue
                .waiting
                .values()
                .map(|w| w.event.received_ms)
                .chain(queue.running.values().copied())
                .min();
            let entry = by_function
                .entry(name.clone())
                .or_insert(FunctionQueueStatus {
                    function: name.clone(),
                    depth: 0,
                    in_flight: 0,
                    oldest_age_ms: None,
                    dead_lettered: 0,
                    succeeded: 0,
                });
            entry.succeeded = queue.succeeded;
            entry.depth = queue.waiting.len() + queue.running.len();
            entry.in_flight = queue.running.len();
            entry.oldest_age_ms = oldest.map(|t| now.saturating_sub(t));
        }
        by_function.into_values().collect()
    }

    pub async fn dead_letters(
        &self,
        function: Option<String>,
    ) -> Result<Vec<DeadLetter>, LambdaError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.dead_letters(function.as_deref()))
            .await
            .map_err(|e| LambdaError::service(e.to_string()))?
            .map_err(store_error)
    }

    pub async fn dead_letter(&self, id: i64) -> Result<Option<(DeadLetter, Vec<u8>)>, LambdaError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.dead_letter_with_payload(id))
            .await
            .map_err(|e| LambdaError::service(e.to_string()))?
            .map_err(store_error)
    }

    /// Puts a dead letter back in the queue with fresh attempts. Returns its request id.
    pub async fn redrive(&self, id: i64) -> Result<Option<String>, LambdaError> {
        let store = self.store.clone();
        let event = tokio::task::spawn_blocking(move || store.redrive(id, now_ms()))
            .await
            .map_err(|e| LambdaError::service(e.to_string()))?
            .map_err(store_error)?;
        Ok(event.map(|event| {
            let request_id = event.request_id.clone();
            self.push(event, 0);
            request_id
        }))
    }

    /// Deletes a dead letter for good.
    pub async fn forget(&self, id: i64) -> Result<bool, LambdaError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.forget(id))
            .await
            .map_err(|e| LambdaError::service(e.to_string()))?
            .map_err(store_error)
    }
}
