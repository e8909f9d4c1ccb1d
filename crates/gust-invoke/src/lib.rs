//! The invoke path.
//!
//! [`Invoker::invoke`] resolves the function, admits the invocation within the account's
//! concurrency limit, runs it on an idle environment of the same version and revision (or a new
//! one), and returns the result with Lambda's headers' worth of metadata. Environments of a
//! configuration that changed retire after their in-flight call; idle ones retire after the
//! keep-alive.

pub mod environment;
pub mod logs;
pub mod pool;
pub mod queue;
pub mod report;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gust_control::Control;
use gust_model::{FunctionConfig, FunctionRef, LambdaError};

pub use environment::Platform;
use environment::{Environment, EnvironmentError, Request};
use pool::{Pool, PoolKey};
pub use queue::{AsyncQueue, FunctionQueueStatus, QueueSettings};

/// Tunables of the invoke path.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle environments older than this are torn down.
    pub keep_alive: Duration,
    /// How often idle environments and unused packages are swept.
    pub sweep_interval: Duration,
}

/// A synchronous invocation as the API received it.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The function as the caller addressed it (its ARN is the invoked function ARN).
    pub function: FunctionRef,
    /// The configuration the reference resolved to.
    pub config: Arc<FunctionConfig>,
    pub request_id: String,
    pub payload: Bytes,
    /// Decoded `X-Amz-Client-Context` JSON text.
    pub client_context: Option<String>,
    pub tenant_id: Option<String>,
}

/// What the API answers.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub body: Bytes,
    pub content_type: Option<String>,
    pub function_error: bool,
    pub executed_version: String,
    pub log: Vec<u8>,
}

pub struct Invoker {
    control: Arc<Control>,
    platform: Platform,
    settings: Settings,
    pool: Pool,
    permits: Arc<tokio::sync::Semaphore>,
    /// Environments being set up at once. A burst of cold starts beyond what the machine can
    /// set up in parallel only makes every one of them slower (sandbox setup is kernel work
    /// that contends), so they take turns; waiting here does not count against a function's
    /// timeout.
    setups: Arc<tokio::sync::Semaphore>,
    /// Package digests of environments currently running an invocation.
    busy_code: Mutex<HashMap<String, usize>>,
}

/// Counts an environment's package as in use for as long as it lives.
struct BusyCode<'a> {
    invoker: &'a Invoker,
    digest: String,
}

impl Drop for BusyCode<'_> {
    fn drop(&mut self) {
        let mut busy = self
            .invoker
            .busy_code
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.digest);
            }
        }
    }
}

/// How many environments may be set up at once: a few per core.
fn parallel_setups() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

fn teardown(envs: Vec<Environment>) {
    if envs.is_empty() {
        return;
    }
    // Killing and removing directories is blocking work: keep it off the caller's path.
    tokio::task::spawn_blocking(move || {
        for env in envs {
            env.destroy();
        }
    });
}

impl Invoker {
    pub fn new(control: Arc<Control>, platform: Platform, settings: Settings) -> Arc<Self> {
        let limit = control.settings().concurrent_executions as usize;
        Arc::new(Self {
            control,
            platform,
            settings,
            pool: Pool::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            setups: Arc::new(tokio::sync::Semaphore::new(parallel_setups())),
            busy_code: Mutex::new(HashMap::new()),
        })
    }

    /// Starts the background work: retiring environments of changed functions as changes
    /// happen, and sweeping expired environments and unused packages.
    pub fn start(self: &Arc<Self>) {
        let mut changes = self.control.subscribe();
        let invoker = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let changed = match changes.recv().await {
                    Ok(name) => Some(name),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(invoker) = invoker.upgrade() else {
                    return;
                };
                let retired = invoker.pool.remove_where(|env| {
                    changed.as_ref().is_none_or(|n| n == &env.config.name)
                        && !invoker.control.is_current(&env.config)
                });
                teardown(retired);
            }
        });
        let invoker = Arc::downgrade(self);
        let interval = self.settings.sweep_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(invoker) = invoker.upgrade() else {
                    return;
                };
                invoker.sweep().await;
            }
        });
    }

    /// Retires expired environments and removes packages nothing uses any more.
    pub async fn sweep(&self) {
        teardown(self.pool.remove_expired(self.settings.keep_alive));
        let mut in_use: HashSet<String> = self.pool.code_in_use().into_iter().collect();
        in_use.extend(
            self.busy_code
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        if let Err(e) = self.control.collect_garbage(in_use).await {
            tracing::warn!(error = %e, "could not remove unused code packages");
        }
    }

    /// Tears down every idle environment (at shutdown).
    pub fn shutdown(&self) {
        for env in self.pool.drain() {
            env.destroy();
        }
    }

    pub fn idle_environments(&self) -> usize {
        self.pool.idle_count()
    }

    /// Admits a synchronous invocation, or throttles it when the account's concurrency is used
    /// up (synchronous callers are never made to wait).
    pub fn try_admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, LambdaError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| LambdaError::too_many_requests("ConcurrentInvocationLimitExceeded"))
    }

    /// Admits an asynchronous invocation, waiting for concurrency to free up: queued events are
    /// never throttled back to anyone.
    pub async fn admit(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the concurrency semaphore is never closed")
    }

    /// Runs a synchronous invocation. The invocation runs to its end even if the caller goes
    /// away, as on Lambda: the work is not lost halfway.
    pub async fn invoke(
        self: &Arc<Self>,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, LambdaError> {
        let permit = self.try_admit()?;
        let invoker = self.clone();
        tokio::spawn(async move { invoker.run(request, permit).await })
            .await
            .map_err(|e| LambdaError::service(format!("the invocation failed inside Gust: {e}")))?
    }

    /// Runs an admitted invocation on a warm environment of its configuration, or a new one.
    pub async fn run(
        &self,
        request: InvokeRequest,
        _permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<InvokeResponse, LambdaError> {
        let config = request.config;
        let invoked_function_arn = request.function.arn(self.control.arns());
        let key = PoolKey::of(&config);
        let (mut env, setup) = match self.pool.take(&key) {
            Some(env) => (env, None),
            None => {
                let setup = self.setups.clone().acquire_owned().await.ok();
                let env =
                    Environment::create(&self.platform, config.clone()).map_err(|e| match e {
                        EnvironmentError::Runtime(e) => LambdaError::new(
                            gust_model::ErrorCode::InvalidRuntime,
                            format!("Gust cannot run this function's runtime: {e}"),
                        ),
                        EnvironmentError::Sandbox(e) => LambdaError::service(format!(
                            "Gust could not create an execution environment: {e}"
                        )),
                    })?;
                (env, setup)
            }
        };
        let _busy = self.mark_busy(&config.code.digest_hex);
        let response = env
            .invoke(Request {
                request_id: request.request_id,
                payload: request.payload,
                invoked_function_arn,
                client_context: request.client_context,
                tenant_id: request.tenant_id,
                setup,
            })
            .await;
        if env.is_reusable() && self.control.is_current(&env.config) {
            self.pool.put(env);
        } else {
            teardown(vec![env]);
        }
        Ok(InvokeResponse {
            body: response.body,
            content_type: response.content_type,
            function_error: response.function_error,
            executed_version: config.version.clone(),
            log: response.log,
        })
    }

    fn mark_busy(&self, digest: &str) -> BusyCode<'_> {
        *self
            .busy_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(digest.to_string())
            .or_default() += 1;
        BusyCode {
            invoker: self,
            digest: digest.to_string(),
        }
    }
}
