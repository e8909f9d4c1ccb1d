//! Code signing configurations: create, read, update, delete and list them, and attach one
//! to a function (at creation or later).
//!
//! Gust stores and answers them as Lambda does. It does not verify signatures: Lambda checks
//! code signed through AWS Signer, which Gust has no equivalent of, so an attached
//! configuration changes nothing about deployments yet.

use std::sync::Arc;
use std::time::SystemTime;

use gust_model::code_signing::{CodeSigningConfig, UntrustedArtifactPolicy};
use gust_model::timefmt::last_modified;
use gust_model::{FunctionRef, LambdaError};

use crate::requests::{CodeSigningConfigInput, PutFunctionCodeSigningConfig};
use crate::validate::Violations;
use crate::{Control, Page, paginate};

/// What `AllowedPublishers.SigningProfileVersionArns` entries must look like.
const SIGNING_PROFILE_PATTERN: &str =
    r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:([a-z]{2}(-gov)?-[a-z]+-\d{1})?:(\d{12})?:(.*)";
const MAX_PUBLISHERS: usize = 20;

fn is_signing_profile_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && !parts[2].is_empty()
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && (parts[4].is_empty() || parts[4].len() == 12)
}

/// A new id: `csc-` and 17 lowercase hexadecimal digits, as Lambda makes them.
fn new_id() -> String {
    let hex = uuid::Uuid::new_v4().simple().to_string();
    format!("csc-{}", &hex[..17])
}

/// The id an ARN (or a bare id) names.
fn id_of(arn: &str) -> &str {
    arn.rsplit_once(":code-signing-config:")
        .map(|(_, id)| id)
        .unwrap_or(arn)
}

/// Lambda's answer for a configuration that does not exist (it carries no `Type`).
fn config_missing(arn: &str) -> LambdaError {
    LambdaError::not_found(format!(
        "The Lambda code signing configuration {arn} can not be found."
    ))
    .without_type()
}

/// Lambda's answer when a function is pointed at a configuration that does not exist.
fn attach_missing(arn: &str) -> LambdaError {
    LambdaError::new(
        gust_model::ErrorCode::CodeSigningConfigNotFound,
        format!(
            "The code signing configuration cannot be found. Check that the provided configuration is not deleted: {arn}."
        ),
    )
}

/// Checks the members a create or update sets; `create` requires the publishers.
fn check_input(input: &CodeSigningConfigInput, create: bool) -> Result<(), LambdaError> {
    let mut v = Violations::default();
    crate::validate::check_description(input.description.as_deref(), &mut v);
    match input
        .allowed_publishers
        .as_ref()
        .map(|p| p.signing_profile_version_arns.as_deref())
    {
        None if create => v.null("allowedPublishers"),
        None => {}
        Some(None) => v.null("allowedPublishers.signingProfileVersionArns"),
        Some(Some(arns)) => {
            let shown = format!("[{}]", arns.join(", "));
            if arns.is_empty() {
                v.push(
                    &shown,
                    "allowedPublishers.signingProfileVersionArns",
                    "Member must have length greater than or equal to 1",
                );
            }
            if arns.len() > MAX_PUBLISHERS {
                v.push(
                    &shown,
                    "allowedPublishers.signingProfileVersionArns",
                    &format!("Member must have length less than or equal to {MAX_PUBLISHERS}"),
                );
            }
            if arns.iter().any(|arn| !is_signing_profile_arn(arn)) {
                v.push(
                    &shown,
                    "allowedPublishers.signingProfileVersionArns",
                    &format!(
                        "Member must satisfy constraint: [Member must satisfy regular expression pattern: {SIGNING_PROFILE_PATTERN}]"
                    ),
                );
            }
        }
    }
    if let Some(policy) = input
        .code_signing_policies
        .as_ref()
        .and_then(|p| p.untrusted_artifact_on_deployment.as_deref())
        && UntrustedArtifactPolicy::parse(policy).is_none()
    {
        v.push(
            policy,
            "codeSigningPolicies.untrustedArtifactOnDeployment",
            "Member must satisfy enum value set: [Warn, Enforce]",
        );
    }
    v.into_result()
}

fn apply(config: &mut CodeSigningConfig, input: &CodeSigningConfigInput) {
    if let Some(description) = &input.description {
        config.description = description.clone();
    }
    if let Some(arns) = input
        .allowed_publishers
        .as_ref()
        .and_then(|p| p.signing_profile_version_arns.clone())
    {
        config.signing_profile_version_arns = arns;
    }
    if let Some(policy) = input
        .code_signing_policies
        .as_ref()
        .and_then(|p| p.untrusted_artifact_on_deployment.as_deref())
        .and_then(UntrustedArtifactPolicy::parse)
    {
        config.untrusted_artifact_on_deployment = policy;
    }
}

impl Control {
    /// The ARN of code signing configuration `id`.
    pub fn code_signing_config_arn(&self, id: &str) -> String {
        let arns = &self.settings.arns;
        format!(
            "arn:aws:lambda:{}:{}:code-signing-config:{id}",
            arns.region, arns.account
        )
    }

    fn code_signing(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<String, Arc<CodeSigningConfig>>>
    {
        self.code_signing.read().unwrap_or_else(|p| p.into_inner())
    }

    fn existing_code_signing(&self, arn: &str) -> Result<Arc<CodeSigningConfig>, LambdaError> {
        self.code_signing()
            .get(id_of(arn))
            .cloned()
            .ok_or_else(|| config_missing(arn))
    }

    async fn store_code_signing(&self, config: Arc<CodeSigningConfig>) -> Result<(), LambdaError> {
        let stored = config.clone();
        self.persist(move |m| m.put_code_signing_config(&stored))
            .await?;
        self.code_signing
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(config.id.clone(), config);
        Ok(())
    }

    pub async fn create_code_signing_config(
        &self,
        input: CodeSigningConfigInput,
    ) -> Result<Arc<CodeSigningConfig>, LambdaError> {
        check_input(&input, true)?;
        let _write = self.writes.lock().await;
        let mut config = CodeSigningConfig {
            id: new_id(),
            description: String::new(),
            signing_profile_version_arns: Vec::new(),
            untrusted_artifact_on_deployment: UntrustedArtifactPolicy::default(),
            last_modified: last_modified(SystemTime::now()),
        };
        apply(&mut config, &input);
        let config = Arc::new(config);
        self.store_code_signing(config.clone()).await?;
        tracing::info!(id = %config.id, "code signing configuration created");
        Ok(config)
    }

    pub fn get_code_signing_config(
        &self,
        arn: &str,
    ) -> Result<Arc<CodeSigningConfig>, LambdaError> {
        self.existing_code_signing(arn)
    }

    pub async fn update_code_signing_config(
        &self,
        arn: &str,
        input: CodeSigningConfigInput,
    ) -> Result<Arc<CodeSigningConfig>, LambdaError> {
        check_input(&input, false)?;
        let _write = self.writes.lock().await;
        let mut config = (*self.existing_code_signing(arn)?).clone();
        let before = config.clone();
        apply(&mut config, &input);
        if config == before {
            return Ok(Arc::new(config));
        }
        config.last_modified = last_modified(SystemTime::now());
        let config = Arc::new(config);
        self.store_code_signing(config.clone()).await?;
        Ok(config)
    }

    /// Deletes a configuration no function uses (Lambda refuses the others).
    pub async fn delete_code_signing_config(&self, arn: &str) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let config = self.existing_code_signing(arn)?;
        let users = self.functions_using(&config.id);
        if !users.is_empty() {
            return Err(LambdaError::conflict(format!(
                "The code signing configuration {arn} cannot be deleted because it is used by {} function(s).",
                users.len()
            )));
        }
        let id = config.id.clone();
        self.persist(move |m| m.delete_code_signing_config(&id))
            .await?;
        self.code_signing
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&config.id);
        Ok(())
    }

    pub fn list_code_signing_configs(
        &self,
        marker: Option<&str>,
        max_items: usize,
    ) -> Page<Arc<CodeSigningConfig>> {
        let all: Vec<_> = self.code_signing().values().cloned().collect();
        paginate(
            all,
            marker.map(str::to_string),
            max_items,
            |c| c.id.clone(),
            |c| c.id.clone(),
        )
    }

    /// Names of the functions configuration `id` is attached to.
    fn functions_using(&self, id: &str) -> Vec<String> {
        self.read()
            .iter()
            .filter(|(_, state)| state.code_signing_config.as_deref() == Some(id))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// ListFunctionsByCodeSigningConfig: the unqualified ARNs of the functions using it.
    pub fn list_functions_by_code_signing_config(
        &self,
        arn: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<String>, LambdaError> {
        let config = self.existing_code_signing(arn)?;
        let arns: Vec<String> = self
            .functions_using(&config.id)
            .iter()
            .map(|name| self.settings.arns.function(name))
            .collect();
        Ok(paginate(
            arns,
            marker.map(str::to_string),
            max_items,
            Clone::clone,
            Clone::clone,
        ))
    }

    /// The configuration a CreateFunction names, which must exist (its id).
    pub(crate) fn code_signing_to_attach(&self, arn: &str) -> Result<String, LambdaError> {
        self.code_signing()
            .get(id_of(arn))
            .map(|c| c.id.clone())
            .ok_or_else(|| attach_missing(arn))
    }

    /// PutFunctionCodeSigningConfig. Returns the configuration's ARN.
    pub async fn put_function_code_signing_config(
        &self,
        r: &FunctionRef,
        input: PutFunctionCodeSigningConfig,
    ) -> Result<String, LambdaError> {
        let Some(arn) = input.code_signing_config_arn else {
            return Err(LambdaError::validation(&[
                "Value null at 'codeSigningConfigArn' failed to satisfy constraint: Member must not be null"
                    .into(),
            ]));
        };
        // Lambda looks for the configuration before the function.
        let id = self.code_signing_to_attach(&arn)?;
        let _write = self.writes.lock().await;
        self.function_state(r)?;
        {
            let (name, id) = (r.name.clone(), id.clone());
            self.persist(move |m| m.put_function_code_signing(&name, Some(&id)))
                .await?;
        }
        if let Some(state) = self.write().get_mut(&r.name) {
            state.code_signing_config = Some(id.clone());
        }
        Ok(self.code_signing_config_arn(&id))
    }

    /// GetFunctionCodeSigningConfig: the attached configuration's ARN, if any.
    pub fn get_function_code_signing_config(
        &self,
        r: &FunctionRef,
    ) -> Result<Option<String>, LambdaError> {
        let state = self.function_state(r)?;
        Ok(state
            .code_signing_config
            .map(|id| self.code_signing_config_arn(&id)))
    }

    /// DeleteFunctionCodeSigningConfig (a no-op when none is attached).
    pub async fn delete_function_code_signing_config(
        &self,
        r: &FunctionRef,
    ) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        if self.function_state(r)?.code_signing_config.is_none() {
            return Ok(());
        }
        let name = r.name.clone();
        self.persist(move |m| m.put_function_code_signing(&name, None))
            .await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.code_signing_config = None;
        }
        Ok(())
    }
}
