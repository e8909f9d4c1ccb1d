//! Reserved concurrency (Put/Get/DeleteFunctionConcurrency) and provisioned concurrency
//! configurations (Put/Get/Delete/ListProvisionedConcurrencyConfigs), with Lambda's rules on
//! how they share the account's limit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use gust_model::error::violation;
use gust_model::limits::UNRESERVED_CONCURRENCY_MIN;
use gust_model::timefmt::last_modified;
use gust_model::{ErrorCode, FunctionRef, LATEST, LambdaError, ProvisionedConfig};

use crate::requests::{PutFunctionConcurrency, PutProvisionedConcurrency};
use crate::{Control, FunctionState, Page, paginate};

fn provisioned_missing() -> LambdaError {
    LambdaError::new(
        ErrorCode::ProvisionedConcurrencyConfigNotFound,
        "No Provisioned Concurrency Config found for this function",
    )
}

/// The values of `RecursiveLoop`, and Lambda's default (stop a loop of the same request
/// chain). Stored and answered; functions cannot call the platform yet, so no loop can form.
const RECURSION_VALUES: &[&str] = &["Terminate", "Allow"];
const RECURSION_DEFAULT: &str = "Terminate";

/// Lambda's answers for a provisioned configuration of `$LATEST`: Put's, and Get's and Delete's.
const PUT_LATEST: &str =
    "Provisioned Concurrency Configs cannot be applied to unpublished function versions.";
const READ_LATEST: &str = "The function resource provided must be an alias or a published version.";

impl Control {
    /// The least unreserved concurrency Lambda leaves: 100, or the whole limit when the
    /// account has less.
    fn unreserved_minimum(&self) -> u32 {
        UNRESERVED_CONCURRENCY_MIN.min(self.settings.concurrent_executions)
    }

    /// Recomputes the account's total reservation after a change.
    pub(crate) fn refresh_reserved_total(&self) {
        let total: u64 = self
            .read()
            .values()
            .filter_map(|s| s.reserved)
            .map(u64::from)
            .sum();
        self.reserved_total
            .store(total.min(u32::MAX as u64) as u32, Ordering::Relaxed);
    }

    /// A function's reserved concurrency, if set.
    pub fn reserved(&self, function: &str) -> Option<u32> {
        self.read().get(function).and_then(|s| s.reserved)
    }

    /// `UnreservedConcurrentExecutions`: what functions without a reservation share.
    pub fn unreserved_limit(&self) -> u32 {
        self.settings
            .concurrent_executions
            .saturating_sub(self.reserved_total.load(Ordering::Relaxed))
    }

    fn unqualified_only(r: &FunctionRef) -> Result<(), LambdaError> {
        if r.qualifier.is_some() {
            return Err(LambdaError::invalid_parameter(
                "This operation is permitted on Lambda functions only. Aliases and versions do not support this operation. Please specify either a function name or an unqualified function ARN.",
            ));
        }
        Ok(())
    }

    pub async fn put_function_concurrency(
        &self,
        r: &FunctionRef,
        input: PutFunctionConcurrency,
    ) -> Result<u32, LambdaError> {
        Self::unqualified_only(r)?;
        let Some(requested) = input.reserved_concurrent_executions else {
            return Err(LambdaError::validation(&[
                "Value null at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must not be null".into(),
            ]));
        };
        if requested < 0 {
            return Err(LambdaError::validation(&[violation(
                &requested.to_string(),
                "reservedConcurrentExecutions",
                "Member must have value greater than or equal to 0",
            )]));
        }
        let _write = self.writes.lock().await;
        // Lambda names the missing function's `$LATEST` here.
        let state = self.function_state(r).map_err(|e| match e.code {
            ErrorCode::ResourceNotFound => {
                LambdaError::function_not_found(&self.settings.arns.qualified(&r.name, LATEST))
            }
            _ => e,
        })?;
        let others: u64 = self
            .read()
            .iter()
            .filter(|(name, _)| **name != r.name)
            .filter_map(|(_, s)| s.reserved)
            .map(u64::from)
            .sum();
        let limit = u64::from(self.settings.concurrent_executions);
        let minimum = u64::from(self.unreserved_minimum());
        if others + requested as u64 > limit.saturating_sub(minimum) {
            return Err(LambdaError::invalid_parameter(format!(
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{minimum}]."
            ))
            .without_type());
        }
        let requested = requested as u32;
        let provisioned: u32 = state.provisioned.values().map(|p| p.requested).sum();
        if provisioned > requested {
            return Err(LambdaError::invalid_parameter(format!(
                "Specified ReservedConcurrentExecutions for function is less than the function's total Provisioned Concurrency ({provisioned})."
            )));
        }
        let name = r.name.clone();
        self.persist(move |m| m.put_reserved_concurrency(&name, Some(requested)))
            .await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.reserved = Some(requested);
        }
        self.refresh_reserved_total();
        let _ = self.changes.send(r.name.clone());
        tracing::info!(function = %r.name, reserved = requested, "reserved concurrency set");
        Ok(requested)
    }

    pub fn get_function_concurrency(&self, r: &FunctionRef) -> Result<Option<u32>, LambdaError> {
        Self::unqualified_only(r)?;
        Ok(self.function_state(r)?.reserved)
    }

    /// GetFunctionRecursionConfig: `Terminate` unless set (Lambda's default).
    pub fn get_recursion_config(&self, r: &FunctionRef) -> Result<String, LambdaError> {
        Self::unqualified_only(r)?;
        Ok(self
            .function_state(r)?
            .recursive_loop
            .unwrap_or_else(|| RECURSION_DEFAULT.into()))
    }

    /// PutFunctionRecursionConfig.
    pub async fn put_recursion_config(
        &self,
        r: &FunctionRef,
        input: crate::requests::PutFunctionRecursionConfig,
    ) -> Result<String, LambdaError> {
        let value = match input.recursive_loop.as_deref() {
            None => {
                return Err(LambdaError::validation(&[
                    "Value null at 'recursiveLoop' failed to satisfy constraint: Member must not be null"
                        .into(),
                ]));
            }
            Some(v) if RECURSION_VALUES.contains(&v) => v.to_string(),
            Some(v) => {
                return Err(LambdaError::validation(&[gust_model::error::violation(
                    v,
                    "recursiveLoop",
                    &format!(
                        "Member must satisfy enum value set: [{}]",
                        RECURSION_VALUES.join(", ")
                    ),
                )]));
            }
        };
        Self::unqualified_only(r)?;
        let _write = self.writes.lock().await;
        self.function_state(r)?;
        {
            let (name, value) = (r.name.clone(), value.clone());
            self.persist(move |m| m.put_recursive_loop(&name, &value))
                .await?;
        }
        if let Some(state) = self.write().get_mut(&r.name) {
            state.recursive_loop = Some(value.clone());
        }
        tracing::info!(function = %r.name, recursive_loop = %value, "recursion config set");
        Ok(value)
    }

    pub async fn delete_function_concurrency(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        Self::unqualified_only(r)?;
        let _write = self.writes.lock().await;
        self.function_state(r)?;
        let name = r.name.clone();
        self.persist(move |m| m.put_reserved_concurrency(&name, None))
            .await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.reserved = None;
        }
        self.refresh_reserved_total();
        let _ = self.changes.send(r.name.clone());
        Ok(())
    }

    /// The qualifier a provisioned configuration applies to: a published version or an alias
    /// (without weights) that exists. `latest` is Lambda's answer for `$LATEST`, which Put
    /// words differently from Get and Delete. A missing version or alias is named as Lambda
    /// names it, whether or not the function itself exists.
    fn provisioned_target(&self, r: &FunctionRef, latest: &str) -> Result<String, LambdaError> {
        let Some(q) = r.qualifier.clone() else {
            return Err(LambdaError::validation(&[
                "Value null at 'qualifier' failed to satisfy constraint: Member must not be null"
                    .into(),
            ]));
        };
        if q == LATEST {
            return Err(LambdaError::invalid_parameter(latest));
        }
        r.check_scope(&self.settings.arns)?;
        let state = self.read().get(&r.name).cloned();
        let arn = r.arn(&self.settings.arns);
        match q.parse::<u64>() {
            Ok(n) if state.as_ref().is_some_and(|s| s.versions.contains_key(&n)) => Ok(q),
            Ok(_) => Err(LambdaError::function_not_found(&arn)),
            Err(_) => match state.as_ref().and_then(|s| s.aliases.get(&q)) {
                Some(alias) if !alias.additional_version_weights.is_empty() => {
                    Err(LambdaError::invalid_parameter(
                        "Alias with weights can not be used with Provisioned Concurrency",
                    ))
                }
                Some(_) => Ok(q),
                None => Err(LambdaError::not_found(format!(
                    "Cannot find alias arn: {arn}"
                ))),
            },
        }
    }

    /// A version and an alias pointing to it cannot both have a provisioned configuration.
    fn check_provisioned_overlap(
        state: &FunctionState,
        qualifier: &str,
    ) -> Result<(), LambdaError> {
        match state.aliases.get(qualifier) {
            Some(alias) => {
                if state.provisioned.contains_key(&alias.function_version) {
                    return Err(LambdaError::conflict(
                        "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version",
                    ));
                }
            }
            None => {
                let pointed = state.aliases.values().any(|alias| {
                    alias.function_version == qualifier
                        && state.provisioned.contains_key(&alias.name)
                });
                if pointed {
                    return Err(LambdaError::conflict(
                        "Version is pointed by a Provisioned Concurrency alias",
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn put_provisioned(
        &self,
        r: &FunctionRef,
        input: PutProvisionedConcurrency,
    ) -> Result<Arc<ProvisionedConfig>, LambdaError> {
        let Some(requested) = input.provisioned_concurrent_executions else {
            return Err(LambdaError::validation(&[
                "Value null at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must not be null".into(),
            ]));
        };
        if requested < 1 {
            return Err(LambdaError::validation(&[violation(
                &requested.to_string(),
                "provisionedConcurrentExecutions",
                "Member must have value greater than or equal to 1",
            )]));
        }
        let _write = self.writes.lock().await;
        let qualifier = self.provisioned_target(r, PUT_LATEST)?;
        let state = self.function_state(r)?;
        Self::check_provisioned_overlap(&state, &qualifier)?;
        let requested = requested.min(u32::MAX as i64) as u32;
        let function_total: u64 = state
            .provisioned
            .values()
            .filter(|p| p.qualifier != qualifier)
            .map(|p| u64::from(p.requested))
            .sum::<u64>()
            + u64::from(requested);
        match state.reserved {
            Some(reserved) if function_total > u64::from(reserved) => {
                return Err(LambdaError::invalid_parameter(format!(
                    "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function ({reserved})."
                )));
            }
            None if function_total
                > u64::from(
                    self.unreserved_limit()
                        .saturating_sub(self.unreserved_minimum()),
                ) =>
            {
                // Lambda's words: more than the account allows at all, or more than would
                // leave the unreserved minimum.
                let limit = self.unreserved_limit();
                let message = if function_total > u64::from(limit) {
                    format!(
                        "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{limit}]."
                    )
                } else {
                    format!(
                        "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{}].",
                        self.unreserved_minimum()
                    )
                };
                return Err(LambdaError::invalid_parameter(message).without_type());
            }
            _ => {}
        }
        let config = Arc::new(ProvisionedConfig {
            function: r.name.clone(),
            qualifier: qualifier.clone(),
            requested,
            last_modified: last_modified(SystemTime::now()),
        });
        let stored = config.clone();
        self.persist(move |m| m.put_provisioned(&stored)).await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.provisioned.insert(qualifier, config.clone());
        }
        let _ = self.changes.send(r.name.clone());
        tracing::info!(function = %r.name, qualifier = %config.qualifier, requested, "provisioned concurrency set");
        Ok(config)
    }

    pub fn get_provisioned(&self, r: &FunctionRef) -> Result<Arc<ProvisionedConfig>, LambdaError> {
        let qualifier = self.provisioned_target(r, READ_LATEST)?;
        self.function_state(r)?
            .provisioned
            .get(&qualifier)
            .cloned()
            .ok_or_else(provisioned_missing)
    }

    pub async fn delete_provisioned(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let qualifier = self.provisioned_target(r, READ_LATEST)?;
        if !self.function_state(r)?.provisioned.contains_key(&qualifier) {
            // Nothing to delete: a no-op, as on Lambda.
            return Ok(());
        }
        let (name, stored) = (r.name.clone(), qualifier.clone());
        self.persist(move |m| m.delete_provisioned(&name, &stored))
            .await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.provisioned.remove(&qualifier);
        }
        let _ = self.changes.send(r.name.clone());
        Ok(())
    }

    pub fn list_provisioned(
        &self,
        r: &FunctionRef,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Arc<ProvisionedConfig>>, LambdaError> {
        let all: Vec<_> = self
            .function_state(r)?
            .provisioned
            .values()
            .cloned()
            .collect();
        Ok(paginate(
            all,
            marker.map(str::to_string),
            max_items,
            |p| p.qualifier.clone(),
            |p| p.qualifier.clone(),
        ))
    }

    /// Every provisioned configuration with the version it currently serves.
    pub fn provisioned_targets(
        &self,
    ) -> Vec<(Arc<ProvisionedConfig>, Arc<gust_model::FunctionConfig>)> {
        let registry = self.read();
        registry
            .values()
            .flat_map(|state| {
                state
                    .provisioned
                    .values()
                    .filter_map(|p| provisioned_version(state, p).map(|config| (p.clone(), config)))
            })
            .collect()
    }

    /// The version `function:qualifier`'s provisioned configuration serves now, if it has one.
    pub fn provisioned_version(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Option<Arc<gust_model::FunctionConfig>> {
        let registry = self.read();
        let state = registry.get(function)?;
        provisioned_version(state, state.provisioned.get(qualifier)?)
    }
}

/// The version a provisioned configuration serves: its own, or its alias's.
fn provisioned_version(
    state: &FunctionState,
    p: &ProvisionedConfig,
) -> Option<Arc<gust_model::FunctionConfig>> {
    let version = match state.aliases.get(&p.qualifier) {
        Some(alias) => alias.function_version.as_str(),
        None => p.qualifier.as_str(),
    };
    state.version(version).cloned()
}
