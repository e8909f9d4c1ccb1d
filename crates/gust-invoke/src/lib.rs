//! The invoke path.
//!
//! [`Invoker::invoke`] resolves the function, admits the invocation within the account's and
//! the function's concurrency limits, runs it on an idle environment of the same version and
//! revision (or a new one), and returns the result with Lambda's headers' worth of metadata.
//! Environments of a configuration that changed retire after their in-flight call; idle ones
//! retire after the keep-alive, or earlier, least recently used first, when the host's memory
//! budget is needed. Provisioned concurrency keeps initialised environments ready.

pub mod admission;
pub mod budget;
pub mod control_plane;
pub mod engine;
pub mod environment;
mod forking;
pub mod logs;
pub mod platform;
pub mod pool;
pub mod provisioned;
pub mod queue;
pub mod report;
mod runtime_process;
pub mod snapshot;
mod snapshots;
pub mod standbys;
pub mod templates;
mod variables;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
pub use control_plane::ControlPlane;
use gust_model::{FunctionConfig, FunctionRef, LambdaError};
use gust_sandbox::TmpCount;

pub use admission::{Admission, Permit};
pub use budget::MemoryPolicy;
use budget::{MemoryBudget, MemoryClaim};
pub use engine::{Invoke, InvokeFuture};
use environment::{Environment, InitializationType, Request};
use platform::EnvironmentError;
pub use platform::Platform;
use pool::{Pool, PoolKey};
use provisioned::{Provisioned, Target, Wanted};
pub use provisioned::{ProvisionedState, ProvisionedStatus};
pub use queue::{AsyncQueue, FunctionQueueStatus, QueueSettings};
use snapshot::Snapshot;
use snapshots::Snapshots;
use standbys::Standbys;
use standbys::{Standby, StandbyKind};
use templates::{Template, Templates};

/// Tunables of the invoke path.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Idle environments older than this are torn down.
    pub keep_alive: Duration,
    /// How often idle environments and unused packages are swept.
    pub sweep_interval: Duration,
    /// Total `MemorySize` (MB) of all environments beyond which idle ones retire to make room
    /// for new ones, least recently used first.
    pub memory_budget_mb: u64,
    /// What an idle environment counts for against the budget.
    pub memory_policy: MemoryPolicy,
    /// Runtimes kept started ahead of demand per runtime id (0: none).
    pub standbys_per_runtime: usize,
    /// An empty directory: the task root of runtimes started before their function is known.
    pub standby_task_root: std::path::PathBuf,
    /// Python environments are forked from a template of their runtime (where the launcher
    /// can fork into sandboxes), rather than started ahead one by one.
    pub runtime_templates: bool,
}

/// Provisioned environments may take this long to initialise (Lambda does not hold them to
/// the 10-second on-demand limit).
const PROVISIONED_INIT_LIMIT: Duration = Duration::from_secs(900);

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
    control: Arc<dyn ControlPlane>,
    platform: Platform,
    settings: Settings,
    pool: Pool<Environment>,
    admission: Arc<Admission>,
    /// Environments being set up at once. A burst of cold starts beyond what the machine can
    /// set up in parallel only makes every one of them slower (sandbox setup is kernel work
    /// that contends), so they take turns; waiting here does not count against a function's
    /// timeout.
    setups: Arc<tokio::sync::Semaphore>,
    /// Package digests of environments currently running an invocation.
    busy_code: Mutex<HashMap<String, usize>>,
    /// The host's memory budget and what live environments hold of it.
    budget: MemoryBudget,
    /// Provisioned concurrency: live environments per configuration, starts under way.
    provisioned: Provisioned,
    standbys: Standbys,
    /// SnapStart snapshot processes per `(function, version)`, started on the version's
    /// first cold start (`None`: its init failed; retried after the next sweep).
    snapshots: Snapshots,
    /// Whether the launcher forks SnapStart environments (and their confinement is
    /// published for the runtime).
    snap_start: bool,
    /// Each Python runtime's template, where environments are forked from templates.
    templates: Templates,
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

fn retire_standbys(mut standbys: Vec<Standby>) {
    if standbys.is_empty() {
        return;
    }
    standbys.iter_mut().for_each(Standby::release_claim);
    tokio::task::spawn_blocking(move || {
        for standby in standbys {
            standby.destroy();
        }
    });
}

/// Drops templates that retired (each ends with the last environment forked from it).
fn retire_templates(templates: Vec<Arc<Template>>) {
    if !templates.is_empty() {
        // Killing a template's sandbox waits for its processes to go.
        tokio::task::spawn_blocking(move || drop(templates));
    }
}

/// Something retired to make room for a new environment.
enum Retiree {
    Standby(Standby),
    Environment(Environment),
}

impl Retiree {
    /// Gives back its share of the memory and `/tmp` budgets (it is being torn down).
    fn release(&mut self) {
        match self {
            Self::Standby(standby) => standby.release_claim(),
            Self::Environment(env) => env.release_claim(),
        }
    }

    /// What it counted for against the memory budget.
    fn claimed_mb(&self) -> u64 {
        match self {
            Self::Standby(standby) => standby.claimed_mb(),
            Self::Environment(env) => env.claimed_mb(),
        }
    }
}

fn teardown(mut envs: Vec<Environment>) {
    if envs.is_empty() {
        return;
    }
    // Their memory is the budget's again at once: a cold start making room at the same time
    // must not retire more because these are still being killed.
    envs.iter_mut().for_each(Environment::release_claim);
    // Killing and removing directories is blocking work: keep it off the caller's path.
    tokio::task::spawn_blocking(move || {
        for env in envs {
            env.destroy();
        }
    });
}

impl Invoker {
    pub fn new(
        control: Arc<dyn ControlPlane>,
        platform: Platform,
        settings: Settings,
    ) -> Arc<Self> {
        let snap_start = snapshot::publish_confinement(&platform).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not publish the sandbox confinement; SnapStart versions initialise on demand");
            false
        });
        let keep_alive = settings.keep_alive;
        let settings_standbys = if platform.launcher.starts_ahead() {
            settings.standbys_per_runtime
        } else {
            0
        };
        Arc::new(Self {
            admission: Admission::new(control.clone()),
            budget: MemoryBudget::new(settings.memory_budget_mb),
            control,
            platform,
            settings,
            pool: Pool::default(),
            setups: Arc::new(tokio::sync::Semaphore::new(parallel_setups())),
            busy_code: Mutex::new(HashMap::new()),
            provisioned: Provisioned::default(),
            standbys: Standbys::new(settings_standbys, keep_alive),
            snapshots: Snapshots::default(),
            snap_start,
            templates: Templates::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            ),
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
                invoker.reconcile_provisioned();
                if let Some(function) = &changed {
                    invoker.snapshot_newest_version(function);
                }
            }
        });
        self.reconcile_provisioned();
        let invoker = Arc::downgrade(self);
        let interval = self.settings.sweep_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            // A slow sweep delays the next one rather than bunching them up.
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
    pub async fn sweep(self: &Arc<Self>) {
        teardown(
            self.pool
                .remove_expired(self.settings.keep_alive, std::time::Instant::now()),
        );
        retire_standbys(self.standbys.expired(self.settings.keep_alive));
        retire_templates(self.templates.expired(self.settings.keep_alive));
        self.relieve_pressure();
        self.retire_snapshots();
        self.reconcile_provisioned();
        let mut in_use: HashSet<String> = self.pool.code_in_use().into_iter().collect();
        in_use.extend(self.snapshots.code());
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
        for standby in self.standbys.drain() {
            standby.destroy();
        }
        // Templates go with the last environment forked from them.
        drop(self.templates.drain());
        // Snapshots go with the last environment restored from them.
        self.snapshots.clear();
    }

    /// Runtimes started ahead and ready, per runtime id.
    pub fn standby_counts(&self) -> Vec<(String, usize)> {
        self.standbys.counts()
    }

    /// Whether environments of `config` are restored from a SnapStart snapshot.
    fn restores_snapshots(&self, config: &FunctionConfig) -> bool {
        self.snap_start && snapshot::applies(config)
    }

    /// An environment for `config` restored from its version's SnapStart snapshot (started
    /// now if it has none yet), where SnapStart applies.
    async fn restore_snapshot(&self, config: &Arc<FunctionConfig>) -> Option<Environment> {
        if !self.restores_snapshots(config) {
            return None;
        }
        let snapshot = self.snapshot(config).await?;
        let claim = self.room_for(u64::from(config.memory_size));
        let origin = environment::Origin::Snapshot(snapshot);
        match Environment::fork(&self.platform, config.clone(), origin, claim).await {
            Ok(env) => {
                tracing::info!(function = %config.name, environment = %env.id, "environment restored from a SnapStart snapshot");
                Some(env)
            }
            Err(e) => {
                tracing::warn!(function = %config.name, error = %e, "could not restore from the SnapStart snapshot; starting on demand");
                None
            }
        }
    }

    /// `(function, version)` of each live SnapStart snapshot, for status output.
    pub fn snapshots(&self) -> Vec<(String, String)> {
        self.snapshots.live()
    }

    /// The snapshot of `config`'s version, made now (its init runs) if it has none yet.
    async fn snapshot(&self, config: &Arc<FunctionConfig>) -> Option<Arc<Snapshot>> {
        let cell = self.snapshots.cell(config);
        cell.get_or_init(|| async {
            let claim = self.room_for(u64::from(config.memory_size));
            match Snapshot::start(&self.platform, config.clone(), claim).await {
                Ok(snapshot) => {
                    tracing::info!(function = %config.name, version = %config.version, "SnapStart snapshot initialised");
                    let snapshot = Arc::new(snapshot);
                    Snapshot::prepare_spare(snapshot.clone(), self.platform.clone(), config.clone());
                    Some(snapshot)
                }
                Err(e) => {
                    tracing::warn!(function = %config.name, version = %config.version, error = %e, "could not make the SnapStart snapshot; starting environments on demand");
                    None
                }
            }
        })
        .await
        .clone()
    }

    /// As Lambda does when a version is published, makes the snapshot of `function`'s newest
    /// version ahead of its first invocation, if it uses SnapStart.
    fn snapshot_newest_version(self: &Arc<Self>, function: &str) {
        let Some(config) = self.control.newest_version(function) else {
            return;
        };
        if !self.restores_snapshots(&config) {
            return;
        }
        let invoker = self.clone();
        tokio::spawn(async move {
            invoker.snapshot(&config).await;
        });
    }

    /// Drops snapshots of versions that are gone, that failed or died, or that no cold start
    /// has needed for a keep-alive (a snapshot process ends when the last environment
    /// restored from it does, as they live in its PID namespace).
    fn retire_snapshots(&self) {
        let retired = self.snapshots.retire(self.settings.keep_alive, |config| {
            self.control.is_current(config)
        });
        if !retired.is_empty() {
            // Killing a snapshot's sandbox waits for its processes to go.
            tokio::task::spawn_blocking(move || drop(retired));
        }
    }

    /// The Python runtime whose template forks environments of `config`, if one does: where
    /// the launcher forks into sandboxes, for functions that could adopt a runtime started
    /// ahead (nothing in their variables is read as the interpreter starts).
    fn template_runtime(&self, config: &FunctionConfig) -> Option<String> {
        if !(self.snap_start && self.settings.runtime_templates) {
            return None;
        }
        match standbys::kind_of(config, &self.platform.runtimes)? {
            StandbyKind::Python { runtime } => Some(runtime),
            _ => None,
        }
    }

    /// An environment for `config` forked from its runtime's template, if it has one ready
    /// (starting one, for the next cold starts, if it has none or it is worn).
    async fn fork_template(self: &Arc<Self>, config: &Arc<FunctionConfig>) -> Option<Environment> {
        let runtime = self.template_runtime(config)?;
        let (template, start) = self.templates.current(&runtime);
        if start {
            self.start_template(runtime);
        }
        let template = template?;
        let claim = self.room_for(u64::from(config.memory_size));
        let origin = environment::Origin::Template(template.clone());
        let under_way = template.fork_under_way();
        let forked = Environment::fork(&self.platform, config.clone(), origin, claim).await;
        drop(under_way);
        match forked {
            Ok(env) => {
                tracing::info!(function = %config.name, environment = %env.id, "environment forked from its runtime's template");
                Some(env)
            }
            Err(e) => {
                tracing::warn!(function = %config.name, error = %e, "could not fork from the runtime's template; starting another way");
                None
            }
        }
    }

    /// Starts a template of `runtime` in the background; it takes over once loaded.
    fn start_template(self: &Arc<Self>, runtime: String) {
        let invoker = self.clone();
        tokio::spawn(async move {
            let mb = templates::LOADING_CLAIM_MB;
            // Never make room for a speculation: only start one in memory to spare.
            if !invoker.budget.has_room(mb) {
                invoker.templates.started(&runtime, None);
                return;
            }
            let claim = invoker.budget.claim(mb);
            let limit_mb = u32::try_from(invoker.budget.limit_mb()).unwrap_or(u32::MAX);
            let started = Template::start(
                &invoker.platform,
                &runtime,
                &invoker.settings.standby_task_root,
                limit_mb,
                claim,
            )
            .await;
            let template = match started {
                Ok(template) => {
                    tracing::info!(%runtime, "runtime template loaded");
                    Some(template)
                }
                Err(e) => {
                    tracing::warn!(%runtime, error = %e, "could not start the runtime's template");
                    None
                }
            };
            invoker.templates.started(&runtime, template);
        });
    }

    /// Runtimes whose template is ready, for status output.
    pub fn templates(&self) -> Vec<String> {
        self.templates.ready()
    }

    /// An environment for `config` made from a runtime started ahead, if one is ready.
    fn adopt_standby(&self, config: &Arc<FunctionConfig>) -> Option<Environment> {
        let kind = self.standbys.kind(config, &self.platform.runtimes)?;
        let (standby, dead) = self.standbys.take(&kind);
        retire_standbys(dead);
        let standby = standby?;
        let claim = self.room_for(u64::from(config.memory_size));
        match Environment::adopt(&self.platform, config.clone(), standby, claim) {
            Ok(env) => {
                tracing::info!(function = %config.name, environment = %env.id, "environment adopted a runtime started ahead");
                Some(env)
            }
            Err(failed) => {
                let (standby, e) = *failed;
                if let EnvironmentError::Runtime(_) = e {
                    // The function's problem (no bootstrap): the fresh start reports it.
                    self.standbys.put_back(standby);
                } else {
                    tracing::warn!(function = %config.name, error = %e, "could not adopt a runtime started ahead; starting a fresh one");
                    retire_standbys(vec![standby]);
                }
                None
            }
        }
    }

    /// After a cold start of `config`'s runtime: starts runtimes ahead for the next ones.
    fn refill_standbys(self: &Arc<Self>, config: &FunctionConfig) {
        let Some(runtime) = self.standbys.kind(config, &self.platform.runtimes) else {
            return;
        };
        for _ in 0..self.standbys.wanted(&runtime) {
            let invoker = self.clone();
            let runtime = runtime.clone();
            tokio::spawn(async move {
                // Only on setup slots nobody waits for: a burst's cold starts come first.
                let Ok(setup) = invoker.setups.clone().try_acquire_owned() else {
                    invoker.standbys.started(&runtime, None);
                    return;
                };
                let mb = u64::from(gust_model::limits::DEFAULT_MEMORY_MB);
                // Never make room for a speculation: only start ahead in memory to spare.
                if !invoker.budget.has_room(mb) {
                    invoker.standbys.started(&runtime, None);
                    return;
                }
                let claim = invoker.budget.claim(mb);
                let started = Standby::start(
                    &invoker.platform,
                    &runtime,
                    &invoker.settings.standby_task_root,
                    claim,
                );
                // In the pool as soon as it is spawned: a cold start that comes while its
                // interpreter is still loading adopts it and waits for the rest, which is
                // never longer than starting afresh.
                drop(setup);
                let standby = match started {
                    Ok(mut standby) => {
                        // Its /tmp is empty until a function adopts it.
                        standby.sandbox.count_tmp(TmpCount::Used);
                        Some(standby)
                    }
                    Err(e) => {
                        tracing::warn!(%runtime, error = %e, "could not start a runtime ahead");
                        None
                    }
                };
                if let Some(extra) = invoker.standbys.started(&runtime, standby) {
                    retire_standbys(vec![extra]);
                }
            });
        }
    }

    pub fn idle_environments(&self) -> usize {
        self.pool.idle_count()
    }

    /// Admits a synchronous invocation, or throttles it (synchronous callers are never made
    /// to wait).
    pub fn try_admit(&self, function: &str) -> Result<Permit, LambdaError> {
        self.admission.try_admit(function)
    }

    /// Admits an asynchronous invocation once its function has a free slot: queued events are
    /// never throttled back to anyone. Fails only for a function reserved to 0.
    pub async fn admit(&self, function: &str) -> Result<Permit, LambdaError> {
        self.admission.admit(function).await
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn memory_budget_mb(&self) -> u64 {
        self.budget.limit_mb()
    }

    /// What environments' `/tmp` counts for (MB), and the host's budget for it, where `/tmp`
    /// is storage of its own. Idle ones are measured first, as for
    /// [`Invoker::committed_memory_mb`].
    pub fn tmp_usage(&self) -> Option<(u64, u64)> {
        self.measure_idle();
        self.platform.launcher.tmp_usage()
    }

    /// What live environments count for against the memory budget (MB). Idle ones are
    /// measured first (they are otherwise measured in the sweep, off the invoke path).
    pub fn committed_memory_mb(&self) -> u64 {
        self.measure_idle();
        self.budget.committed_mb()
    }

    /// The next of what may retire to make room for a new environment: sandboxes started
    /// ahead first, then idle environments, least recently used first.
    fn next_to_retire(&self) -> Option<Retiree> {
        if let Some(standby) = self.standbys.take_any() {
            return Some(Retiree::Standby(standby));
        }
        let env = self.pool.remove_least_recent()?;
        tracing::debug!(function = %env.config.name, environment = %env.id, "idle environment retired to make room");
        Some(Retiree::Environment(env))
    }

    /// Makes `mb` more fit in the memory budget (see [`Invoker::next_to_retire`] for the
    /// order) and claims it.
    fn room_for(&self, mb: u64) -> MemoryClaim {
        if !self.budget.has_room(mb) {
            // Idle environments released since the last sweep still count in full.
            self.measure_idle();
        }
        self.retire(
            self.budget
                .make_room(mb, || self.next_to_retire(), Retiree::claimed_mb),
        );
        self.budget.claim(mb)
    }

    /// Under the measured policy, counts each idle environment at what it really uses (its
    /// memory, and its `/tmp` on the disk). Templates count what they hold under either
    /// policy: it is memory their forks took.
    fn measure_idle(&self) {
        if self.settings.memory_policy == MemoryPolicy::Measured {
            self.pool.for_each_mut(Environment::measure_claim);
        }
        for template in self.templates.live() {
            template.measure_claim();
        }
    }

    /// Retires what may retire, in [`Invoker::next_to_retire`]'s order, while the total is
    /// over the budget (after many idle ones woke at once, under the measured policy).
    fn relieve_pressure(&self) {
        self.measure_idle();
        self.retire(
            self.budget
                .make_room(0, || self.next_to_retire(), Retiree::claimed_mb),
        );
        // The same for `/tmp`: environments that woke at once and wrote to it may together
        // hold more than its budget once idle again.
        self.retire_for_tmp(0);
    }

    /// Makes room for a new environment's `/tmp` of `size_mb` before any start path takes
    /// one: idle environments are measured, then retire (in [`Invoker::next_to_retire`]'s
    /// order, each giving its `/tmp` back at once, before its teardown) until it fits.
    fn tmp_room_for(&self, size_mb: u32) {
        let mb = u64::from(size_mb);
        let more_than_all = self
            .platform
            .launcher
            .tmp_usage()
            .is_some_and(|(_, budget)| mb > budget);
        // Nothing that could retire would make room for more than the whole budget: the
        // start refuses it, and nothing retires for it.
        if !more_than_all && !self.tmp_fits(mb) {
            self.measure_idle();
            self.retire_for_tmp(mb);
        }
    }

    /// Whether `mb` more fits in the `/tmp` budget (always, where `/tmp` is no storage of
    /// its own).
    fn tmp_fits(&self, mb: u64) -> bool {
        self.platform
            .launcher
            .tmp_usage()
            .is_none_or(|(committed, budget)| committed + mb <= budget)
    }

    /// Retires what may retire until `mb` more fits in the `/tmp` budget (or nothing is
    /// left to retire). Each gives its `/tmp` back at once, before its teardown.
    fn retire_for_tmp(&self, mb: u64) {
        let mut retired = Vec::new();
        while !self.tmp_fits(mb) {
            let Some(mut retiree) = self.next_to_retire() else {
                break;
            };
            retiree.release();
            retired.push(retiree);
        }
        self.retire(retired);
    }

    /// Tears down what retired, off the caller's path.
    fn retire(&self, retired: Vec<Retiree>) {
        let (mut standbys, mut envs) = (Vec::new(), Vec::new());
        for retiree in retired {
            match retiree {
                Retiree::Standby(standby) => standbys.push(standby),
                Retiree::Environment(env) => envs.push(env),
            }
        }
        retire_standbys(standbys);
        teardown(envs);
    }

    fn new_environment(
        &self,
        config: Arc<FunctionConfig>,
        initialization: InitializationType,
    ) -> Result<Environment, LambdaError> {
        let mb = u64::from(config.memory_size);
        if let Some((_, budget)) = self.platform.launcher.tmp_usage()
            && u64::from(config.ephemeral_storage) > budget
        {
            // Nothing that could retire would make room: refuse without retiring anything.
            return Err(LambdaError::service(format!(
                "Gust could not create an execution environment: a {} MB /tmp is more than the {budget} MB the host allows for all environments (gust serve --tmp-budget)",
                config.ephemeral_storage
            )));
        }
        let mut room = Some(self.room_for(mb));
        let created = loop {
            // A retry after a full /tmp claims its memory again (the failed start returned it).
            let claim = room.take().unwrap_or_else(|| self.budget.claim(mb));
            match Environment::create(&self.platform, config.clone(), initialization, claim) {
                Err(EnvironmentError::Sandbox(e)) if e.is_storage_full() => {
                    // The room made before the start was taken meanwhile, or the disk is
                    // short of its reserve: what may retire gives its disk back (at once:
                    // the next try needs it).
                    match self.next_to_retire() {
                        Some(Retiree::Standby(standby)) => platform::blocking(|| standby.destroy()),
                        Some(Retiree::Environment(env)) => platform::blocking(|| env.destroy()),
                        None => break Err(EnvironmentError::Sandbox(e)),
                    }
                }
                other => break other,
            }
        };
        created.map_err(|e| match e {
            EnvironmentError::Runtime(e) => LambdaError::new(
                gust_model::ErrorCode::InvalidRuntime,
                format!("Gust cannot run this function's runtime: {e}"),
            ),
            EnvironmentError::Sandbox(e) => LambdaError::service(format!(
                "Gust could not create an execution environment: {e}"
            )),
            e @ EnvironmentError::Control(_) => LambdaError::service(format!(
                "Gust could not create an execution environment: {e}"
            )),
        })
    }

    /// What the provisioned concurrency configuration `(function, qualifier)` has reached.
    pub fn provisioned_status(
        &self,
        function: &str,
        qualifier: &str,
        requested: u32,
    ) -> ProvisionedStatus {
        self.provisioned
            .status(&(function.to_string(), qualifier.to_string()), requested)
    }

    /// Brings provisioned environments in line with the configurations: creates missing ones
    /// in the background, retires idle ones nobody asked for (busy ones turn on-demand when
    /// they finish).
    pub fn reconcile_provisioned(self: &Arc<Self>) {
        let wanted: HashMap<Target, Wanted<Arc<FunctionConfig>>> = self
            .control
            .provisioned_targets()
            .into_iter()
            .map(|(p, config)| {
                let wanted = Wanted {
                    key: PoolKey::of(&config),
                    requested: p.requested as usize,
                    config,
                };
                ((p.function.clone(), p.qualifier.clone()), wanted)
            })
            .collect();
        let mut retiring = self.provisioned.retiring(&wanted);
        let retired = self.pool.remove_where(|env| {
            env.provision
                .as_ref()
                .is_some_and(|tag| retiring(&tag.target, &PoolKey::of(&env.config)))
        });
        teardown(retired);
        for (target, config) in self.provisioned.starts(&wanted) {
            let invoker = self.clone();
            tokio::spawn(async move { invoker.provision_one(target, config).await });
        }
    }

    async fn provision_one(self: Arc<Self>, target: Target, config: Arc<FunctionConfig>) {
        let setup = self.setups.clone().acquire_owned().await;
        self.tmp_room_for(config.ephemeral_storage);
        let result = match self.new_environment(config.clone(), InitializationType::Provisioned) {
            Ok(mut env) => {
                let warmed = env.prewarm(PROVISIONED_INIT_LIMIT).await;
                drop(setup);
                match warmed {
                    Ok(()) => {
                        env.provision = Some(self.provisioned.tag(target.clone()));
                        self.pool.put(env);
                        Ok(())
                    }
                    Err(reason) => {
                        teardown(vec![env]);
                        Err(reason)
                    }
                }
            }
            Err(e) => Err(e.message),
        };
        match &result {
            Ok(()) => {
                tracing::debug!(function = %target.0, qualifier = %target.1, "provisioned environment ready")
            }
            Err(reason) => {
                tracing::warn!(function = %target.0, qualifier = %target.1, %reason, "provisioned environment failed to initialise")
            }
        }
        self.provisioned
            .finished(&target, PoolKey::of(&config), result);
    }

    /// Whether a provisioned environment is still wanted by its configuration.
    fn still_provisioned(&self, env: &Environment) -> bool {
        let Some(tag) = &env.provision else {
            return false;
        };
        self.control
            .provisioned_version(&tag.target.0, &tag.target.1)
            .is_some_and(|config| PoolKey::of(&config) == PoolKey::of(&env.config))
    }

    /// Returns an environment to the pool after an invocation.
    fn release(self: &Arc<Self>, mut env: Environment) {
        if !(env.is_reusable() && self.control.is_current(&env.config)) {
            tracing::debug!(environment = %env.id, reusable = env.is_reusable(), warm = env.is_warm(), "environment retires after its invocation");
            teardown(vec![env]);
            return;
        }
        if env.provision.is_some() && !self.still_provisioned(&env) {
            // Its configuration went away while it ran: it carries on as an on-demand one.
            env.provision = None;
        }
        if env.provision.is_some() && !env.is_warm() {
            // A provisioned environment whose runtime was reset initialises again before
            // it serves anyone.
            let invoker = self.clone();
            tokio::spawn(async move {
                if env.prewarm(PROVISIONED_INIT_LIMIT).await.is_ok() {
                    invoker.pool.put(env);
                } else {
                    teardown(vec![env]);
                }
            });
            return;
        }
        self.pool.put(env);
    }

    /// Runs a synchronous invocation. The invocation runs to its end even if the caller goes
    /// away, as on Lambda: the work is not lost halfway.
    pub async fn invoke(
        self: &Arc<Self>,
        request: InvokeRequest,
    ) -> Result<InvokeResponse, LambdaError> {
        let permit = self.try_admit(&request.function.name)?;
        let invoker = self.clone();
        tokio::spawn(async move { invoker.run(request, permit).await })
            .await
            .map_err(|e| LambdaError::service(format!("the invocation failed inside Gust: {e}")))?
    }

    /// Runs an admitted invocation on a warm environment of its configuration, or a new one.
    pub async fn run(
        self: &Arc<Self>,
        request: InvokeRequest,
        _permit: Permit,
    ) -> Result<InvokeResponse, LambdaError> {
        let config = request.config;
        let invoked_function_arn = request.function.arn(self.control.arns());
        let key = PoolKey::of(&config);
        let warm = loop {
            match self.pool.take(&key) {
                Some(env) if env.provision.is_some() && !self.still_provisioned(&env) => {
                    // Its provisioned configuration is gone and reconciliation has not
                    // retired it yet: it retires now, and the invocation runs on demand.
                    teardown(vec![env]);
                }
                other => break other,
            }
        };
        let (mut env, setup) = match warm {
            Some(mut env) => {
                env.claim_in_full();
                (env, None)
            }
            None => {
                let setup = self.setups.clone().acquire_owned().await.ok();
                self.tmp_room_for(config.ephemeral_storage);
                // A runtime started ahead is the quickest start (it waits in its sandbox); a
                // fork of the runtime's template the cheapest when none is left, in a burst.
                let mut env = self.restore_snapshot(&config).await;
                if env.is_none() {
                    env = self.adopt_standby(&config);
                }
                if env.is_none() {
                    env = self.fork_template(&config).await;
                }
                let env = match env {
                    Some(env) => env,
                    None => self.new_environment(config.clone(), InitializationType::OnDemand)?,
                };
                (env, setup)
            }
        };
        let cold_start = setup.is_some();
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
        self.release(env);
        if cold_start && !self.restores_snapshots(&config) {
            // After the invocation, not during its init: starting ahead competes for the CPU.
            self.refill_standbys(&config);
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
