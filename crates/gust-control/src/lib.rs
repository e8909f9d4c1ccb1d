//! The function model and its rules.
//!
//! [`Control`] owns every function's configuration: it validates requests with Lambda's rules,
//! writes through to the metadata store before answering, and keeps an in-memory copy that the
//! invoke path reads without touching the database. Mutations are serialised; readers never
//! wait for a writer longer than a map update.

pub mod requests;
pub mod validate;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use base64::Engine;
use gust_model::function::{CodeRef, LoggingConfig, VpcConfig};
use gust_model::limits::*;
use gust_model::names::{NameShape, is_valid_plain_name};
use gust_model::timefmt::last_modified;
use gust_model::{Arns, FunctionConfig, FunctionRef, LATEST, LambdaError};
use gust_store::{CodeError, CodeStore, MetaStore, StoreError};
use tokio::sync::broadcast;

use crate::requests::{
    ConfigurationInput, CreateFunction, PublishVersion, UpdateFunctionCode,
    UpdateFunctionConfiguration,
};
use crate::validate::Violations;

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
    tags: BTreeMap<String, String>,
    next_version: u64,
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
pub struct Page {
    pub items: Vec<Arc<FunctionConfig>>,
    pub next_marker: Option<String>,
}

pub struct Control {
    settings: Settings,
    meta: Arc<Mutex<MetaStore>>,
    code: CodeStore,
    registry: RwLock<BTreeMap<String, FunctionState>>,
    writes: tokio::sync::Mutex<()>,
    changes: broadcast::Sender<String>,
}

fn internal(e: impl std::fmt::Display) -> LambdaError {
    tracing::error!(error = %e, "control-plane storage failure");
    LambdaError::service(format!("Gust could not complete the request: {e}"))
}

fn code_error(e: CodeError) -> LambdaError {
    match e {
        CodeError::TooLargeZipped { .. } => LambdaError::too_large(format!(
            "Zipped size must be smaller than {ZIPPED_CODE_MAX} bytes"
        )),
        CodeError::Intake(gust_store::IntakeError::TooLargeUnzipped) => {
            LambdaError::invalid_parameter(format!(
                "Unzipped size must be smaller than {UNZIPPED_CODE_MAX} bytes"
            ))
        }
        CodeError::Intake(gust_store::IntakeError::Corrupt(_)) => LambdaError::invalid_parameter(
            "Could not unzip uploaded file. Please check your file, then try to upload again.",
        ),
        CodeError::Intake(gust_store::IntakeError::UnsafeEntry { entry, reason }) => {
            LambdaError::invalid_parameter(format!(
                "Could not unzip uploaded file. Please check your file, then try to upload again. Entry '{entry}' {reason}."
            ))
        }
        CodeError::Intake(gust_store::IntakeError::Io(e)) | CodeError::Io(e) => internal(e),
    }
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn decode_zip(zip_file: &str) -> Result<Vec<u8>, LambdaError> {
    base64::engine::general_purpose::STANDARD
        .decode(zip_file.trim())
        .map_err(|_| {
            LambdaError::invalid_parameter(
                "Could not unzip uploaded file. Please check your file, then try to upload again. (Code.ZipFile is not valid base64.)",
            )
        })
}

/// Where code comes from: Gust takes uploads only.
fn zip_source(
    zip_file: Option<&String>,
    s3_bucket: Option<&String>,
    image_uri: Option<&String>,
) -> Result<Vec<u8>, LambdaError> {
    if image_uri.is_some() {
        return Err(LambdaError::invalid_parameter(
            "Please don't provide ImageUri when creating or updating a function with packageType Zip. Gust runs .zip packages only.",
        ));
    }
    if s3_bucket.is_some() {
        return Err(LambdaError::invalid_parameter(
            "Gust does not fetch code from S3: upload the .zip package in Code.ZipFile (aws lambda ... --zip-file fileb://function.zip).",
        ));
    }
    match zip_file {
        Some(zip) => decode_zip(zip),
        None => Err(LambdaError::invalid_parameter(
            "Please provide a source for function code: Code.ZipFile is required.",
        )),
    }
}

/// Applies the configuration members present in `input` to `config`.
fn apply_configuration(config: &mut FunctionConfig, input: &ConfigurationInput) {
    if let Some(v) = &input.runtime {
        config.runtime = Some(v.clone());
    }
    if let Some(v) = &input.role {
        config.role = v.clone();
    }
    if let Some(v) = &input.handler {
        config.handler = Some(v.clone());
    }
    if let Some(v) = &input.description {
        config.description = v.clone();
    }
    if let Some(v) = input.timeout {
        config.timeout = v as u32;
    }
    if let Some(v) = input.memory_size {
        config.memory_size = v as u32;
    }
    if let Some(env) = &input.environment {
        config.environment = env.variables.clone().filter(|vars| !vars.is_empty());
    }
    if let Some(vpc) = &input.vpc_config {
        let subnet_ids = vpc.subnet_ids.clone().unwrap_or_default();
        let security_group_ids = vpc.security_group_ids.clone().unwrap_or_default();
        config.vpc_config =
            (!subnet_ids.is_empty() || !security_group_ids.is_empty()).then_some(VpcConfig {
                subnet_ids,
                security_group_ids,
                ipv6_allowed_for_dual_stack: vpc.ipv6_allowed_for_dual_stack,
            });
    }
    if let Some(dlq) = &input.dead_letter_config {
        config.dead_letter_target = dlq.target_arn.clone().filter(|t| !t.is_empty());
    }
    if let Some(kms) = &input.kms_key_arn {
        config.kms_key_arn = Some(kms.clone()).filter(|k| !k.is_empty());
    }
    if let Some(mode) = input.tracing_config.as_ref().and_then(|t| t.mode.clone()) {
        config.tracing_mode = mode;
    }
    if let Some(fs) = &input.file_system_configs {
        config.file_system_configs =
            Some(fs.clone()).filter(|v| !v.as_array().is_some_and(|a| a.is_empty()));
    }
    if let Some(size) = input.ephemeral_storage.as_ref().and_then(|e| e.size) {
        config.ephemeral_storage = size as u32;
    }
    if let Some(apply_on) = input.snap_start.as_ref().and_then(|s| s.apply_on.clone()) {
        config.snap_start_apply_on = apply_on;
    }
    if let Some(logging) = &input.logging_config {
        if let Some(format) = &logging.log_format {
            config.logging.log_format = format.clone();
        }
        if logging.application_log_level.is_some() {
            config.logging.application_log_level = logging.application_log_level.clone();
        }
        if logging.system_log_level.is_some() {
            config.logging.system_log_level = logging.system_log_level.clone();
        }
        if let Some(group) = &logging.log_group {
            config.logging.log_group = group.clone();
        }
    }
}

/// Semantic checks of a configuration once the request is applied.
fn check_semantics(config: &FunctionConfig, input: &ConfigurationInput) -> Result<(), LambdaError> {
    validate::check_runtime_and_handler(config.runtime.as_deref(), config.handler.as_deref())?;
    if let Some(runtime) = &input.runtime {
        validate::check_runtime(runtime)?;
    }
    if let Some(vars) = input
        .environment
        .as_ref()
        .and_then(|e| e.variables.as_ref())
    {
        validate::check_environment(vars)?;
    }
    if let Some(layers) = &input.layers {
        validate::check_layers(layers)?;
    }
    if input.image_config.is_some() {
        return Err(LambdaError::invalid_parameter(
            "ImageConfig is only supported for functions with packageType Image; Gust runs .zip packages only.",
        ));
    }
    validate::check_logging(
        &config.logging.log_format,
        config.logging.application_log_level.as_deref(),
        config.logging.system_log_level.as_deref(),
    )
}

/// Two versions that would behave identically (PublishVersion returns the existing one).
fn same_behaviour(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    let normalise = |c: &FunctionConfig| {
        let mut c = c.clone();
        c.version = String::new();
        c.revision_id = String::new();
        c.last_modified = String::new();
        c.description = String::new();
        c
    };
    normalise(a) == normalise(b)
}

/// Sort key of a version within its function: `$LATEST` first, then by number.
fn version_order(version: &str) -> u64 {
    version.parse().unwrap_or(0)
}

fn marker_of(config: &FunctionConfig) -> String {
    format!("{}:{}", config.name, config.version)
}

fn parse_marker(marker: &str) -> (String, u64) {
    match marker.rsplit_once(':') {
        Some((name, version)) => (name.to_string(), version_order(version)),
        None => (marker.to_string(), 0),
    }
}

fn paginate(all: Vec<Arc<FunctionConfig>>, marker: Option<&str>, max_items: usize) -> Page {
    let start = match marker {
        Some(marker) => {
            let key = parse_marker(marker);
            all.iter()
                .position(|c| (c.name.clone(), version_order(&c.version)) > key)
                .unwrap_or(all.len())
        }
        None => 0,
    };
    let end = (start + max_items).min(all.len());
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
                    tags: stored.tags,
                    next_version: stored.next_version,
                },
            );
        }
        let (changes, _) = broadcast::channel(256);
        Ok(Self {
            settings,
            meta: Arc::new(Mutex::new(meta)),
            code,
            registry: RwLock::new(registry),
            writes: tokio::sync::Mutex::new(()),
            changes,
        })
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

    async fn store_code(&self, zip: Vec<u8>, dry_run: bool) -> Result<CodeRef, LambdaError> {
        let code = self.code.clone();
        tokio::task::spawn_blocking(move || {
            if dry_run {
                code.validate(&zip)
            } else {
                code.store(&zip)
            }
        })
        .await
        .map_err(internal)?
        .map_err(code_error)
    }

    fn not_found(&self, r: &FunctionRef) -> LambdaError {
        LambdaError::function_not_found(&r.arn(&self.settings.arns))
    }

    /// The configuration a reference selects: `$LATEST`, a published version.
    pub fn resolve(&self, r: &FunctionRef) -> Result<Arc<FunctionConfig>, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry.get(&r.name).ok_or_else(|| self.not_found(r))?;
        match r.qualifier.as_deref() {
            None | Some(LATEST) => Ok(state.latest.clone()),
            Some(q) => q
                .parse::<u64>()
                .ok()
                .and_then(|n| state.versions.get(&n).cloned())
                .ok_or_else(|| self.not_found(r)),
        }
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
        let registry = self.read();
        let Some(state) = registry.get(&config.name) else {
            return false;
        };
        let stored = if config.version == LATEST {
            Some(&state.latest)
        } else {
            config
                .version
                .parse::<u64>()
                .ok()
                .and_then(|n| state.versions.get(&n))
        };
        stored.is_some_and(|s| s.revision_id == config.revision_id)
    }

    pub async fn create(&self, req: CreateFunction) -> Result<Created, LambdaError> {
        // Front-end constraints, all reported together.
        let mut v = Violations::default();
        let name_input = req.function_name.clone();
        let parsed = match &name_input {
            None => {
                v.null("functionName");
                None
            }
            Some(name) => {
                match FunctionRef::parse(name, NameShape::Plain) {
                    Ok(r) => {
                        if !is_valid_plain_name(&r.name) {
                            v.push(
                            name,
                            "functionName",
                            &format!("Member must have length less than or equal to {FUNCTION_NAME_MAX}"),
                        );
                        }
                        Some(r)
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        if req.config.role.is_none() {
            v.null("role");
        }
        if req.code.is_none() {
            v.null("code");
        }
        validate::check_configuration(&req.config, &mut v);
        if let Some(architectures) = &req.architectures {
            validate::check_architectures(architectures, &mut v);
        }
        let package_type = req.package_type.clone().unwrap_or_else(|| "Zip".into());
        if !["Zip", "Image"].contains(&package_type.as_str()) {
            v.push(
                &package_type,
                "packageType",
                "Member must satisfy enum value set: [Zip, Image]",
            );
        }
        v.into_result()?;
        let r = parsed.expect("validated above");
        r.check_scope(&self.settings.arns)?;
        if r.qualifier.is_some() {
            return Err(LambdaError::invalid_parameter(
                "CreateFunction takes an unqualified function name: remove the version or alias suffix.",
            ));
        }
        if package_type == "Image" {
            return Err(LambdaError::invalid_parameter(
                "Gust runs .zip deployment packages only; PackageType Image is not supported.",
            ));
        }

        let now = SystemTime::now();
        let name = r.name.clone();
        let mut config = FunctionConfig {
            name: name.clone(),
            version: LATEST.into(),
            runtime: None,
            role: String::new(),
            handler: None,
            description: String::new(),
            timeout: DEFAULT_TIMEOUT_S,
            memory_size: DEFAULT_MEMORY_MB,
            environment: None,
            architecture: req
                .architectures
                .as_ref()
                .and_then(|a| a.first().cloned())
                .unwrap_or_else(|| "x86_64".into()),
            ephemeral_storage: DEFAULT_EPHEMERAL_MB,
            tracing_mode: "PassThrough".into(),
            code: CodeRef {
                sha256: String::new(),
                digest_hex: String::new(),
                size: 0,
                unzipped_size: 0,
            },
            last_modified: last_modified(now),
            revision_id: new_revision(),
            dead_letter_target: None,
            kms_key_arn: None,
            vpc_config: None,
            file_system_configs: None,
            snap_start_apply_on: "None".into(),
            logging: LoggingConfig {
                log_format: "Text".into(),
                application_log_level: None,
                system_log_level: None,
                log_group: FunctionConfig::default_log_group(&name),
            },
        };
        apply_configuration(&mut config, &req.config);
        check_semantics(&config, &req.config)?;
        let code = req.code.as_ref().expect("validated above");
        let zip = zip_source(
            code.zip_file.as_ref(),
            code.s3_bucket.as_ref(),
            code.image_uri.as_ref(),
        )?;
        if zip.len() as u64 > ZIPPED_CODE_MAX {
            return Err(code_error(CodeError::TooLargeZipped {
                size: zip.len() as u64,
            }));
        }

        let _write = self.writes.lock().await;
        if self.read().contains_key(&name) {
            return Err(LambdaError::conflict(format!(
                "Function already exist: {name}"
            )));
        }
        config.code = self.store_code(zip, false).await?;
        let latest = Arc::new(config);
        let tags = req.tags.clone().unwrap_or_default();
        {
            let latest = latest.clone();
            let tags = tags.clone();
            self.persist(move |m| m.create(&latest, &tags)).await?;
        }
        self.write().insert(
            name.clone(),
            FunctionState {
                latest: latest.clone(),
                versions: BTreeMap::new(),
                tags,
                next_version: 1,
            },
        );
        let published = if req.publish.unwrap_or(false) {
            Some(self.publish_locked(&name, None).await?)
        } else {
            None
        };
        tracing::info!(function = %name, runtime = ?latest.runtime, "function created");
        Ok(Created { latest, published })
    }

    /// The current state of a function for a mutation on `$LATEST`.
    fn latest_for_update(
        &self,
        r: &FunctionRef,
        operation: &str,
    ) -> Result<FunctionState, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        if r.qualifier.as_deref().is_some_and(|q| q != LATEST) {
            return Err(LambdaError::invalid_parameter(format!(
                "{operation} applies to $LATEST only: remove the version or alias qualifier."
            )));
        }
        self.read()
            .get(&r.name)
            .cloned()
            .ok_or_else(|| LambdaError::function_not_found(&self.settings.arns.function(&r.name)))
    }

    fn check_revision(expected: Option<&str>, current: &FunctionConfig) -> Result<(), LambdaError> {
        match expected {
            Some(expected) if expected != current.revision_id => {
                Err(LambdaError::precondition_failed("GetFunction/GetAlias"))
            }
            _ => Ok(()),
        }
    }

    async fn replace_latest(
        &self,
        config: FunctionConfig,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        let config = Arc::new(config);
        {
            let config = config.clone();
            self.persist(move |m| m.put_version(&config)).await?;
        }
        if let Some(state) = self.write().get_mut(&config.name) {
            state.latest = config.clone();
        }
        let _ = self.changes.send(config.name.clone());
        Ok(config)
    }

    pub async fn update_configuration(
        &self,
        r: &FunctionRef,
        req: UpdateFunctionConfiguration,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        let mut v = Violations::default();
        validate::check_configuration(&req.config, &mut v);
        v.into_result()?;
        let _write = self.writes.lock().await;
        let state = self.latest_for_update(r, "UpdateFunctionConfiguration")?;
        Self::check_revision(req.revision_id.as_deref(), &state.latest)?;
        let mut config = (*state.latest).clone();
        apply_configuration(&mut config, &req.config);
        check_semantics(&config, &req.config)?;
        config.revision_id = new_revision();
        config.last_modified = last_modified(SystemTime::now());
        let updated = self.replace_latest(config).await?;
        tracing::info!(function = %updated.name, "function configuration updated");
        Ok(updated)
    }

    /// Returns the new `$LATEST`, or the new version when `Publish` was set.
    pub async fn update_code(
        &self,
        r: &FunctionRef,
        req: UpdateFunctionCode,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        let mut v = Violations::default();
        if let Some(architectures) = &req.architectures {
            validate::check_architectures(architectures, &mut v);
        }
        v.into_result()?;
        let zip = zip_source(
            req.zip_file.as_ref(),
            req.s3_bucket.as_ref(),
            req.image_uri.as_ref(),
        )?;
        let dry_run = req.dry_run.unwrap_or(false);
        let _write = self.writes.lock().await;
        let state = self.latest_for_update(r, "UpdateFunctionCode")?;
        Self::check_revision(req.revision_id.as_deref(), &state.latest)?;
        let code = self.store_code(zip, dry_run).await?;
        let mut config = (*state.latest).clone();
        config.code = code;
        if let Some(architecture) = req.architectures.as_ref().and_then(|a| a.first()) {
            config.architecture = architecture.clone();
        }
        if dry_run {
            return Ok(Arc::new(config));
        }
        config.revision_id = new_revision();
        config.last_modified = last_modified(SystemTime::now());
        let updated = self.replace_latest(config).await?;
        tracing::info!(function = %updated.name, sha256 = %updated.code.sha256, "function code updated");
        if req.publish.unwrap_or(false) {
            return self.publish_locked(&updated.name, None).await;
        }
        Ok(updated)
    }

    pub async fn publish_version(
        &self,
        r: &FunctionRef,
        req: PublishVersion,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        let _write = self.writes.lock().await;
        let state = self.latest_for_update(r, "PublishVersion")?;
        Self::check_revision(req.revision_id.as_deref(), &state.latest)?;
        if let Some(sha) = &req.code_sha256
            && sha != &state.latest.code.sha256
        {
            return Err(LambdaError::invalid_parameter(format!(
                "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                state.latest.code.sha256
            )));
        }
        self.publish_locked(&r.name, req.description).await
    }

    /// Publishes `$LATEST` (the caller holds the write lock).
    async fn publish_locked(
        &self,
        name: &str,
        description: Option<String>,
    ) -> Result<Arc<FunctionConfig>, LambdaError> {
        let state =
            self.read().get(name).cloned().ok_or_else(|| {
                LambdaError::function_not_found(&self.settings.arns.function(name))
            })?;
        if let Some((_, newest)) = state.versions.iter().next_back()
            && same_behaviour(newest, &state.latest)
        {
            return Ok(newest.clone());
        }
        let number = state.next_version;
        let mut version = (*state.latest).clone();
        version.version = number.to_string();
        version.revision_id = new_revision();
        version.last_modified = last_modified(SystemTime::now());
        if let Some(description) = description {
            version.description = description;
        }
        let version = Arc::new(version);
        {
            let version = version.clone();
            self.persist(move |m| m.publish(&version, number + 1))
                .await?;
        }
        if let Some(state) = self.write().get_mut(name) {
            state.versions.insert(number, version.clone());
            state.next_version = number + 1;
        }
        tracing::info!(function = %name, version = number, "version published");
        Ok(version)
    }

    pub async fn delete(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let _write = self.writes.lock().await;
        let exists = self.read().contains_key(&r.name);
        if !exists {
            return Err(LambdaError::function_not_found(
                &self.settings.arns.function(&r.name),
            ));
        }
        match r.qualifier.as_deref() {
            None => {
                let name = r.name.clone();
                self.persist(move |m| m.delete(&name)).await?;
                self.write().remove(&r.name);
                tracing::info!(function = %r.name, "function deleted");
            }
            Some(LATEST) => {
                return Err(LambdaError::invalid_parameter(
                    "$LATEST version cannot be deleted without deleting the function.",
                ));
            }
            Some(q) => {
                let number = q
                    .parse::<u64>()
                    .ok()
                    .filter(|n| {
                        self.read()
                            .get(&r.name)
                            .is_some_and(|s| s.versions.contains_key(n))
                    })
                    .ok_or_else(|| self.not_found(r))?;
                let (name, version) = (r.name.clone(), number.to_string());
                self.persist(move |m| m.delete_version(&name, &version))
                    .await?;
                if let Some(state) = self.write().get_mut(&r.name) {
                    state.versions.remove(&number);
                }
                tracing::info!(function = %r.name, version = number, "version deleted");
            }
        }
        let _ = self.changes.send(r.name.clone());
        Ok(())
    }

    /// ListFunctions: `$LATEST` of each function, or every version with `all_versions`.
    pub fn list(&self, marker: Option<&str>, max_items: usize, all_versions: bool) -> Page {
        let registry = self.read();
        let mut all = Vec::new();
        for state in registry.values() {
            all.push(state.latest.clone());
            if all_versions {
                all.extend(state.versions.values().cloned());
            }
        }
        drop(registry);
        paginate(all, marker, max_items.min(LIST_FUNCTIONS_PAGE_MAX))
    }

    /// ListVersionsByFunction: `$LATEST` and every published version.
    pub fn list_versions(
        &self,
        r: &FunctionRef,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry.get(&r.name).ok_or_else(|| {
            LambdaError::function_not_found(&self.settings.arns.function(&r.name))
        })?;
        let mut all = vec![state.latest.clone()];
        all.extend(state.versions.values().cloned());
        drop(registry);
        Ok(paginate(
            all,
            marker,
            max_items.min(LIST_FUNCTIONS_PAGE_MAX),
        ))
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
