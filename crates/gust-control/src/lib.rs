//! The function model and its rules.
//!
//! [`Control`] owns every function's configuration: it validates requests with Lambda's rules,
//! writes through to the metadata store before answering, and keeps an in-memory copy that the
//! invoke path reads without touching the database. Mutations are serialised; readers never
//! wait for a writer longer than a map update.

mod aliases;
mod code_signing;
mod concurrency;
mod functions;
mod invoke_configs;
mod policies;
pub mod requests;
mod tags;
mod urls;
pub mod validate;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use gust_model::{
    Alias, Arns, EventInvokeConfig, FunctionConfig, FunctionRef, FunctionUrlConfig, LATEST,
    LambdaError, Policy, ProvisionedConfig,
};
use gust_store::{CodeStore, MetaStore, StoreError};
use tokio::sync::broadcast;

pub use policies::PolicyView;

/// Server-wide facts the rules depend on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub arns: Arns,
    /// Account concurrency limit (`ConcurrentExecutions`).
    pub concurrent_executions: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the code store: {0}")]
    Code(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
struct FunctionState {
    latest: Arc<FunctionConfig>,
    versions: BTreeMap<u64, Arc<FunctionConfig>>,
    aliases: BTreeMap<String, Arc<Alias>>,
    /// Resource policies by qualifier (`""` for the function itself).
    policies: BTreeMap<String, Policy>,
    /// Asynchronous invocation settings by qualifier (`$LATEST`, a version or an alias).
    event_invoke_configs: BTreeMap<String, Arc<EventInvokeConfig>>,
    /// Function URLs by alias (`""` for the function itself).
    url_configs: BTreeMap<String, Arc<FunctionUrlConfig>>,
    reserved: Option<u32>,
    /// `RecursiveLoop` (PutFunctionRecursionConfig), when set.
    recursive_loop: Option<String>,
    /// The id of its code signing configuration, if one is attached.
    code_signing_config: Option<String>,
    /// Provisioned concurrency by version or alias.
    provisioned: BTreeMap<String, Arc<ProvisionedConfig>>,
    tags: BTreeMap<String, String>,
    next_version: u64,
}

impl FunctionState {
    fn version(&self, version: &str) -> Option<&Arc<FunctionConfig>> {
        if version == LATEST {
            Some(&self.latest)
        } else {
            version
                .parse::<u64>()
                .ok()
                .and_then(|n| self.versions.get(&n))
        }
    }
}

/// A function as GetFunction shows it.
#[derive(Debug, Clone)]
pub struct FunctionView {
    pub config: Arc<FunctionConfig>,
    pub tags: BTreeMap<String, String>,
}

/// What CreateFunction produced.
#[derive(Debug, Clone)]
pub struct Created {
    pub latest: Arc<FunctionConfig>,
    /// Version 1, when the request asked to publish.
    pub published: Option<Arc<FunctionConfig>>,
}

/// Totals for GetAccountSettings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountUsage {
    pub function_count: u64,
    pub total_code_size: u64,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T = Arc<FunctionConfig>> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// Page size cap of every list operation.
const LIST_PAGE: usize = gust_model::limits::LIST_FUNCTIONS_PAGE_MAX;

pub struct Control {
    settings: Settings,
    meta: Arc<Mutex<MetaStore>>,
    code: CodeStore,
    registry: RwLock<BTreeMap<String, FunctionState>>,
    writes: tokio::sync::Mutex<()>,
    changes: broadcast::Sender<String>,
    /// Sum of all functions' reserved concurrency.
    reserved_total: std::sync::atomic::AtomicU32,
    /// Code signing configurations by id.
    code_signing: RwLock<BTreeMap<String, Arc<gust_model::code_signing::CodeSigningConfig>>>,
}

fn internal(e: impl std::fmt::Display) -> LambdaError {
    tracing::error!(error = %e, "control-plane storage failure");
    LambdaError::service(format!("Gust could not complete the request: {e}"))
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Sort key of a version within its function: `$LATEST` first, then by number.
fn version_order(version: &str) -> u64 {
    version.parse().unwrap_or(0)
}

/// Function versions in list order, keyed by (name, version order).
fn version_key(config: &Arc<FunctionConfig>) -> (String, u64) {
    (config.name.clone(), version_order(&config.version))
}

fn version_marker(config: &Arc<FunctionConfig>) -> String {
    format!("{}:{}", config.name, config.version)
}

fn parse_version_marker(marker: &str) -> (String, u64) {
    match marker.rsplit_once(':') {
        Some((name, version)) => (name.to_string(), version_order(version)),
        None => (marker.to_string(), 0),
    }
}

/// Cuts one page out of `all` (sorted by `key`): the items after `marker`, at most
/// `max_items` of them. The marker is the key of the last item returned, so pages stay correct
/// while items are added or removed between calls.
fn paginate<T: Clone, K: Ord>(
    mut all: Vec<T>,
    marker: Option<K>,
    max_items: usize,
    key: impl Fn(&T) -> K,
    marker_of: impl Fn(&T) -> String,
) -> Page<T> {
    // The marker names a position in key order: the items must be in that order.
    all.sort_by_key(&key);
    let start = match marker {
        Some(marker) => all
            .iter()
            .position(|item| key(item) > marker)
            .unwrap_or(all.len()),
        None => 0,
    };
    let end = start
        .saturating_add(max_items.min(LIST_PAGE))
        .min(all.len());
    let items = all[start..end].to_vec();
    let next_marker = (end < all.len()).then(|| marker_of(&items[items.len() - 1]));
    Page { items, next_marker }
}

impl Control {
    /// Opens the stores under `data_dir` and loads every function.
    pub fn open(data_dir: &Path, settings: Settings) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir)?;
        let meta = MetaStore::open(&data_dir.join("gust.db"))?;
        let code = CodeStore::open(data_dir.join("code"))?;
        let mut registry = BTreeMap::new();
        for stored in meta.load()? {
            let mut latest = None;
            let mut versions = BTreeMap::new();
            for config in stored.versions {
                if config.version == LATEST {
                    latest = Some(Arc::new(config));
                } else if let Ok(n) = config.version.parse::<u64>() {
                    versions.insert(n, Arc::new(config));
                }
            }
            let Some(latest) = latest else {
                tracing::warn!(function = %stored.name, "stored function has no $LATEST version; skipping it");
                continue;
            };
            registry.insert(
                stored.name,
                FunctionState {
                    latest,
                    versions,
                    aliases: stored
                        .aliases
                        .into_iter()
                        .map(|a| (a.name.clone(), Arc::new(a)))
                        .collect(),
                    policies: stored.policies.into_iter().collect(),
                    event_invoke_configs: stored
                        .event_invoke_configs
                        .into_iter()
                        .map(|c| (c.qualifier.clone(), Arc::new(c)))
                        .collect(),
                    url_configs: stored
                        .url_configs
                        .into_iter()
                        .map(|c| (c.qualifier.clone().unwrap_or_default(), Arc::new(c)))
                        .collect(),
                    reserved: stored.reserved_concurrency,
                    recursive_loop: stored.recursive_loop,
                    code_signing_config: stored.code_signing_config,
                    provisioned: stored
                        .provisioned
                        .into_iter()
                        .map(|p| (p.qualifier.clone(), Arc::new(p)))
                        .collect(),
                    tags: stored.tags,
                    next_version: stored.next_version,
                },
            );
        }
        let code_signing = meta
            .load_code_signing_configs()?
            .into_iter()
            .map(|c| (c.id.clone(), Arc::new(c)))
            .collect();
        let (changes, _) = broadcast::channel(256);
        let control = Self {
            settings,
            meta: Arc::new(Mutex::new(meta)),
            code,
            registry: RwLock::new(registry),
            writes: tokio::sync::Mutex::new(()),
            changes,
            reserved_total: std::sync::atomic::AtomicU32::new(0),
            code_signing: RwLock::new(code_signing),
        };
        control.refresh_reserved_total();
        Ok(control)
    }

    pub fn arns(&self) -> &Arns {
        &self.settings.arns
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn code_store(&self) -> &CodeStore {
        &self.code
    }

    /// Names of functions whose configuration or code changed or that were deleted.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, FunctionState>> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, FunctionState>> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut MetaStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, LambdaError> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || {
            let mut meta = meta.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut meta)
        })
        .await
        .map_err(internal)?
        .map_err(internal)
    }

    fn not_found(&self, r: &FunctionRef) -> LambdaError {
        LambdaError::function_not_found(&r.arn(&self.settings.arns))
    }

    /// The configuration a reference selects: `$LATEST`, a published version, or the primary
    /// version of an alias.
    pub fn resolve(&self, r: &FunctionRef) -> Result<Arc<FunctionConfig>, LambdaError> {
        self.resolve_with(r, |alias| alias.function_version.clone())
    }

    /// The configuration that serves one invocation: for a weighted alias, the version is
    /// drawn per request.
    pub fn resolve_for_invoke(&self, r: &FunctionRef) -> Result<Arc<FunctionConfig>, LambdaError> {
        self.resolve_with(r, |alias| alias.pick(fastrand::f64()).to_string())
    }

    fn resolve_with(
        &self,
        r: &FunctionRef,
        choose: impl Fn(&Alias) -> String,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry.get(&r.name).ok_or_else(|| self.not_found(r))?;
        let version = match r.qualifier.as_deref() {
            None => LATEST.to_string(),
            Some(q) if q == LATEST || q.bytes().all(|b| b.is_ascii_digit()) => q.to_string(),
            Some(alias) => choose(state.aliases.get(alias).ok_or_else(|| self.not_found(r))?),
        };
        state
            .version(&version)
            .cloned()
            .ok_or_else(|| self.not_found(r))
    }

    /// GetFunction's view: the configuration and the function's tags.
    pub fn get(&self, r: &FunctionRef) -> Result<FunctionView, LambdaError> {
        let config = self.resolve(r)?;
        let tags = self
            .read()
            .get(&r.name)
            .map(|s| s.tags.clone())
            .unwrap_or_default();
        Ok(FunctionView { config, tags })
    }

    /// Whether `config` is still what its version is (false after an update or a delete):
    /// environments built from a stale configuration retire.
    pub fn is_current(&self, config: &FunctionConfig) -> bool {
        self.read()
            .get(&config.name)
            .and_then(|state| state.version(&config.version))
            .is_some_and(|stored| stored.environment_revision == config.environment_revision)
    }

    pub fn account_usage(&self) -> AccountUsage {
        let registry = self.read();
        let total_code_size = registry
            .values()
            .flat_map(|s| std::iter::once(&s.latest).chain(s.versions.values()))
            .map(|c| c.code.size)
            .sum();
        AccountUsage {
            function_count: registry.len() as u64,
            total_code_size,
        }
    }

    /// Removes stored packages that no version references and that are not in `in_use`
    /// (packages running environments still need). Serialised with mutations, so a package
    /// being stored is never collected before its function is registered.
    pub async fn collect_garbage(&self, in_use: HashSet<String>) -> Result<usize, LambdaError> {
        let _write = self.writes.lock().await;
        let mut keep = self.referenced_code();
        keep.extend(in_use);
        let code = self.code.clone();
        let removed = tokio::task::spawn_blocking(move || code.collect_garbage(&keep))
            .await
            .map_err(internal)?
            .map_err(internal)?;
        if removed > 0 {
            tracing::info!(removed, "removed unused code packages");
        }
        Ok(removed)
    }

    /// Digests of every package some version still uses.
    pub fn referenced_code(&self) -> HashSet<String> {
        self.read()
            .values()
            .flat_map(|s| std::iter::once(&s.latest).chain(s.versions.values()))
            .map(|c| c.code.digest_hex.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
