//! Function lifecycle: create, update configuration and code, publish, list, delete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use gust_model::function::{CodeRef, LoggingConfig, VpcConfig};
use gust_model::limits::*;
use gust_model::names::{NameShape, is_valid_plain_name};
use gust_model::timefmt::last_modified;
use gust_model::{FunctionConfig, FunctionRef, LATEST, LambdaError};
use gust_store::CodeError;

use crate::requests::{
    ConfigurationInput, CreateFunction, PublishVersion, UpdateFunctionCode,
    UpdateFunctionConfiguration,
};
use crate::validate::{self, Violations};
use crate::{
    Control, Created, FunctionState, Page, internal, new_revision, paginate, parse_version_marker,
    version_key, version_marker,
};

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
        // An empty set of variables is kept (and shown as `{"Variables": {}}`), as on Lambda.
        config.environment = Some(
            env.variables
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
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
        // As on Lambda: JSON logs have levels, INFO unless set; text logs have none (a level
        // the request itself gives with Text is refused by the semantic checks).
        let levels = [
            (
                &mut config.logging.application_log_level,
                &logging.application_log_level,
            ),
            (
                &mut config.logging.system_log_level,
                &logging.system_log_level,
            ),
        ];
        for (level, asked) in levels {
            if config.logging.log_format == "JSON" {
                level.get_or_insert_with(|| "INFO".into());
            } else if asked.is_none() {
                *level = None;
            }
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

/// The answer to a change of `$LATEST` (a create or an update): the function as it was while
/// the change was being made. On Lambda becoming `Active` / `Successful` is a transition of
/// its own with a new `RevisionId`; Gust completes it before it answers, so what it stores
/// (and every later read shows) is the settled function, and the answer carries the
/// revision it was accepted under, which nothing else holds.
fn accepted(config: &Arc<FunctionConfig>) -> Arc<FunctionConfig> {
    let mut accepted = (**config).clone();
    accepted.revision_id = new_revision();
    Arc::new(accepted)
}

/// Two versions that would behave identically (PublishVersion returns the existing one).
fn same_behaviour(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    let normalise = |c: &FunctionConfig| {
        let mut c = c.clone();
        c.version = String::new();
        c.revision_id = String::new();
        c.environment_revision = String::new();
        c.last_modified = String::new();
        c.description = String::new();
        c.published_description = None;
        c
    };
    normalise(a) == normalise(b)
}

impl Control {
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

    pub async fn create(&self, req: CreateFunction) -> Result<Created, LambdaError> {
        // Front-end constraints, all reported together.
        let mut v = Violations::default();
        let mut name_too_long = false;
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
                            name_too_long = true;
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
        if name_too_long && v.is_single() {
            // Lambda reports a name that is too long alone as an invalid parameter (with the
            // validation message), not as a validation error.
            let message = v.into_result().err().map(|e| e.message).unwrap_or_default();
            return Err(LambdaError::invalid_parameter(message));
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
        let revision = new_revision();
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
            revision_id: revision.clone(),
            environment_revision: revision,
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
            published_description: None,
        };
        apply_configuration(&mut config, &req.config);
        check_semantics(&config, &req.config)?;
        crate::tags::check_tags(req.tags.as_ref().unwrap_or(&BTreeMap::new()))?;
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
        let code_signing = req
            .code_signing_config_arn
            .as_deref()
            .map(|arn| self.code_signing_to_attach(arn))
            .transpose()?;
        config.code = self.store_code(zip, false).await?;
        let latest = Arc::new(config);
        let tags = req.tags.clone().unwrap_or_default();
        {
            let latest = latest.clone();
            let tags = tags.clone();
            let code_signing = code_signing.clone();
            self.persist(move |m| {
                m.create(&latest, &tags)?;
                match code_signing {
                    Some(id) => m.put_function_code_signing(&latest.name, Some(&id)),
                    None => Ok(()),
                }
            })
            .await?;
        }
        self.write().insert(
            name.clone(),
            FunctionState {
                latest: latest.clone(),
                versions: BTreeMap::new(),
                aliases: BTreeMap::new(),
                policies: BTreeMap::new(),
                event_invoke_configs: BTreeMap::new(),
                url_configs: BTreeMap::new(),
                reserved: None,
                recursive_loop: None,
                code_signing_config: code_signing,
                provisioned: BTreeMap::new(),
                tags,
                next_version: 1,
            },
        );
        // The answer shows the new version while it is being created, under a revision of
        // its own; the settled version gets the one every later read shows.
        let published = if req.publish.unwrap_or(false) {
            Some(accepted(&self.publish_locked(&name, None).await?))
        } else {
            None
        };
        tracing::info!(function = %name, runtime = ?latest.runtime, "function created");
        Ok(Created {
            latest: accepted(&latest),
            published,
        })
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

    /// Gives `$LATEST` a new `RevisionId` after a change that is not to its configuration (a
    /// version published from it, its tags), as Lambda does. The caller holds the write lock.
    pub(crate) async fn renew_latest_revision(&self, name: &str) -> Result<(), LambdaError> {
        let Some(latest) = self.read().get(name).map(|s| s.latest.clone()) else {
            return Ok(());
        };
        let mut config = (*latest).clone();
        config.revision_id = new_revision();
        self.replace_latest(config).await.map(|_| ())
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
        config.environment_revision = config.revision_id.clone();
        config.last_modified = last_modified(SystemTime::now());
        let updated = self.replace_latest(config).await?;
        tracing::info!(function = %updated.name, "function configuration updated");
        Ok(accepted(&updated))
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
        config.environment_revision = config.revision_id.clone();
        config.last_modified = last_modified(SystemTime::now());
        let updated = self.replace_latest(config).await?;
        tracing::info!(function = %updated.name, sha256 = %updated.code.sha256, "function code updated");
        if req.publish.unwrap_or(false) {
            return Ok(accepted(&self.publish_locked(&updated.name, None).await?));
        }
        Ok(accepted(&updated))
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
        // Lambda publishes a new version when $LATEST's code or configuration (its
        // description included) changed since the newest version.
        if let Some((_, newest)) = state.versions.iter().next_back()
            && same_behaviour(newest, &state.latest)
            && newest
                .published_description
                .as_ref()
                .unwrap_or(&newest.description)
                == &state.latest.description
        {
            return Ok(newest.clone());
        }
        let number = state.next_version;
        let mut version = (*state.latest).clone();
        version.version = number.to_string();
        version.revision_id = new_revision();
        version.environment_revision = version.revision_id.clone();
        version.last_modified = last_modified(SystemTime::now());
        version.published_description = Some(state.latest.description.clone());
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
        self.renew_latest_revision(name).await?;
        tracing::info!(function = %name, version = number, "version published");
        let _ = self.changes.send(name.to_string());
        Ok(version)
    }

    /// The function's newest published version, if it has one.
    pub fn newest_version(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        let registry = self.read();
        let state = registry.get(name)?;
        state.versions.values().next_back().cloned()
    }

    pub async fn delete(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        r.check_scope(&self.settings.arns)?;
        // Refused whether or not the function exists, as Lambda refuses it.
        if r.qualifier.as_deref() == Some(LATEST) {
            return Err(LambdaError::invalid_parameter(
                "$LATEST version cannot be deleted without deleting the function.",
            ));
        }
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
                self.refresh_reserved_total();
                tracing::info!(function = %r.name, "function deleted");
            }
            Some(q) => {
                let Ok(number) = q.parse::<u64>() else {
                    return Err(LambdaError::invalid_parameter(
                        "Deletion of aliases is not currently supported.",
                    ));
                };
                let referencing: Vec<String> = {
                    let registry = self.read();
                    let Some(state) = registry.get(&r.name) else {
                        return Err(self.not_found(r));
                    };
                    if !state.versions.contains_key(&number) {
                        // As on Lambda: deleting a version that does not exist is a no-op.
                        return Ok(());
                    }
                    state
                        .aliases
                        .values()
                        .filter(|a| a.versions().any(|v| v == q))
                        .map(|a| a.name.clone())
                        .collect()
                };
                if !referencing.is_empty() {
                    return Err(LambdaError::conflict(format!(
                        "Unable to delete version because the following aliases reference it: [{}]",
                        referencing.join(", ")
                    )));
                }
                let (name, version) = (r.name.clone(), number.to_string());
                self.persist(move |m| m.delete_version(&name, &version))
                    .await?;
                if let Some(state) = self.write().get_mut(&r.name) {
                    state.versions.remove(&number);
                    state.policies.remove(q);
                    state.event_invoke_configs.remove(q);
                    state.provisioned.remove(q);
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
        paginate(
            all,
            marker.map(parse_version_marker),
            max_items,
            version_key,
            version_marker,
        )
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
            marker.map(parse_version_marker),
            max_items,
            version_key,
            version_marker,
        ))
    }
}
