//! Asynchronous invocation settings: retries, event age and destinations, per function,
//! version or alias (the Put/Update/Get/Delete/ListFunctionEventInvokeConfig operations).

use std::sync::Arc;
use std::time::SystemTime;

use gust_model::names::{is_account, is_region};
use gust_model::timefmt::epoch_ms;
use gust_model::{EventInvokeConfig, FunctionRef, LATEST, LambdaError};

use crate::requests::{DestinationConfig, EventInvokeConfigInput};
use crate::validate::Violations;
use crate::{Control, FunctionState, Page, paginate};

const DESTINATION_PATTERN: &str = r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)";

fn check_input(input: &EventInvokeConfigInput, v: &mut Violations) {
    if let Some(n) = input.maximum_retry_attempts {
        if n < 0 {
            v.push(
                &n.to_string(),
                "maximumRetryAttempts",
                "Member must have value greater than or equal to 0",
            );
        } else if n > 2 {
            v.push(
                &n.to_string(),
                "maximumRetryAttempts",
                "Member must have value less than or equal to 2",
            );
        }
    }
    if let Some(n) = input.maximum_event_age_in_seconds {
        if n < 60 {
            v.push(
                &n.to_string(),
                "maximumEventAgeInSeconds",
                "Member must have value greater than or equal to 60",
            );
        } else if n > 21_600 {
            v.push(
                &n.to_string(),
                "maximumEventAgeInSeconds",
                "Member must have value less than or equal to 21600",
            );
        }
    }
    let destinations = input.destination_config.as_ref();
    for (field, target) in [
        (
            "destinationConfig.onSuccess.destination",
            destinations.and_then(|d| d.on_success.as_ref()),
        ),
        (
            "destinationConfig.onFailure.destination",
            destinations.and_then(|d| d.on_failure.as_ref()),
        ),
    ] {
        if let Some(arn) = target.and_then(|t| t.destination.as_deref())
            && !destination_matches(arn)
        {
            v.push(
                arn,
                field,
                &format!("Member must satisfy regular expression pattern: {DESTINATION_PATTERN}"),
            );
        }
    }
}

/// Whether a destination matches `DESTINATION_PATTERN`: empty, a Kafka URI, or an ARN whose
/// service, region and account are well formed (the resource may be anything).
fn destination_matches(arn: &str) -> bool {
    if arn.is_empty() {
        return true;
    }
    if let Some(host) = arn.strip_prefix("kafka://") {
        return host.len() <= 249
            && !host.starts_with('.')
            && host.chars().next().is_some()
            && host
                .chars()
                .skip(1)
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, _resource] = parts.as_slice() else {
        return false;
    };
    *prefix == "arn"
        && partition
            .strip_prefix("aws")
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && (region.is_empty() || is_region(region))
        && (account.is_empty() || is_account(account))
}

/// How Lambda quotes a whole destination configuration it refuses.
fn render_destinations(config: &EventInvokeConfig) -> String {
    let side = |kind: &str, arn: &Option<String>| match arn {
        Some(arn) => format!("{kind}(destination={arn})"),
        None => "null".to_string(),
    };
    format!(
        "DestinationConfig(onSuccess={}, onFailure={})",
        side("OnSuccess", &config.on_success),
        side("OnFailure", &config.on_failure)
    )
}

/// Lambda's answer when Put, Update or List names a function (or version or alias) that does
/// not exist; Get and Delete answer that it has no configuration instead.
fn function_missing() -> LambdaError {
    LambdaError::not_found("The function doesn't exist.")
}

impl Control {
    /// The qualifier key of an event invoke configuration, after checking what it names exists.
    fn invoke_config_target(
        &self,
        state: &FunctionState,
        r: &FunctionRef,
    ) -> Result<String, LambdaError> {
        let qualifier = r.qualifier_or_latest();
        let exists = state.version(qualifier).is_some() || state.aliases.contains_key(qualifier);
        if exists {
            Ok(qualifier.to_string())
        } else {
            Err(function_missing())
        }
    }

    /// A destination Gust can deliver to: another function of this server.
    fn check_destination(
        &self,
        function: &str,
        arn: &str,
        config: &EventInvokeConfig,
    ) -> Result<(), LambdaError> {
        let service = arn.split(':').nth(2).unwrap_or_default();
        if service != "lambda" {
            let kind = match service {
                "sqs" => "Amazon SQS queue",
                "sns" => "Amazon SNS topic",
                "events" => "EventBridge event bus",
                "s3" => "Amazon S3 bucket",
                _ => {
                    // No service Lambda delivers to: Lambda quotes the whole configuration.
                    return Err(LambdaError::invalid_parameter(format!(
                        "The provided destination config {} is invalid.",
                        render_destinations(config)
                    )));
                }
            };
            return Err(LambdaError::invalid_parameter(format!(
                "Gust cannot deliver to an {kind} yet ({arn}): use a Lambda function ARN as the destination."
            )));
        }
        let invalid =
            || LambdaError::invalid_parameter(format!("The destination ARN {arn} is invalid."));
        let target =
            FunctionRef::parse(arn, gust_model::names::NameShape::Plain).map_err(|_| invalid())?;
        if target.name == function {
            return Err(LambdaError::invalid_parameter(
                "You can't specify the function as a destination for itself.",
            ));
        }
        self.resolve(&target).map_err(|_| invalid())?;
        Ok(())
    }

    fn apply_destinations(
        &self,
        function: &str,
        config: &mut EventInvokeConfig,
        destinations: &DestinationConfig,
    ) -> Result<(), LambdaError> {
        if let Some(on_success) = &destinations.on_success {
            config.on_success = on_success.destination.clone().filter(|d| !d.is_empty());
        }
        if let Some(on_failure) = &destinations.on_failure {
            config.on_failure = on_failure.destination.clone().filter(|d| !d.is_empty());
        }
        for arn in config.on_success.iter().chain(config.on_failure.iter()) {
            self.check_destination(function, arn, config)?;
        }
        Ok(())
    }

    /// Put (`merge == false`, replaces the configuration) or Update (`merge == true`).
    pub async fn put_event_invoke_config(
        &self,
        r: &FunctionRef,
        input: EventInvokeConfigInput,
        merge: bool,
    ) -> Result<Arc<EventInvokeConfig>, LambdaError> {
        let mut v = Violations::default();
        check_input(&input, &mut v);
        v.into_result()?;
        // A destination setting counts even with no ARN in it (`{"OnSuccess": {}}`), as on
        // Lambda: it is stored as no destination.
        let has_destination = input.destination_config.is_some();
        if !merge
            && input.maximum_retry_attempts.is_none()
            && input.maximum_event_age_in_seconds.is_none()
            && !has_destination
        {
            return Err(LambdaError::invalid_parameter(
                "You must specify at least one of error handling or destination setting.",
            ));
        }
        r.check_scope(&self.settings.arns)?;
        let _write = self.writes.lock().await;
        let state = self
            .read()
            .get(&r.name)
            .cloned()
            .ok_or_else(function_missing)?;
        let qualifier = self.invoke_config_target(&state, r)?;
        let existing = state.event_invoke_configs.get(&qualifier).cloned();
        if merge && existing.is_none() {
            return Err(self.no_invoke_config(r));
        }
        let mut config = match (merge, existing) {
            (true, Some(existing)) => (*existing).clone(),
            _ => EventInvokeConfig {
                function: r.name.clone(),
                qualifier: qualifier.clone(),
                maximum_retry_attempts: None,
                maximum_event_age_seconds: None,
                on_success: None,
                on_failure: None,
                last_modified_ms: 0,
            },
        };
        if let Some(n) = input.maximum_retry_attempts {
            config.maximum_retry_attempts = Some(n as u32);
        }
        if let Some(n) = input.maximum_event_age_in_seconds {
            config.maximum_event_age_seconds = Some(n as u32);
        }
        if let Some(destinations) = &input.destination_config {
            self.apply_destinations(&r.name, &mut config, destinations)?;
        }
        config.last_modified_ms = epoch_ms(SystemTime::now());
        let config = Arc::new(config);
        {
            let config = config.clone();
            self.persist(move |m| m.put_event_invoke_config(&config))
                .await?;
        }
        if let Some(state) = self.write().get_mut(&r.name) {
            state.event_invoke_configs.insert(qualifier, config.clone());
        }
        Ok(config)
    }

    fn no_invoke_config(&self, r: &FunctionRef) -> LambdaError {
        LambdaError::not_found(format!(
            "The function {} doesn't have an EventInvokeConfig",
            self.settings
                .arns
                .qualified(&r.name, r.qualifier_or_latest())
        ))
    }

    pub fn get_event_invoke_config(
        &self,
        r: &FunctionRef,
    ) -> Result<Arc<EventInvokeConfig>, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry
            .get(&r.name)
            .ok_or_else(|| self.no_invoke_config(r))?;
        state
            .event_invoke_configs
            .get(r.qualifier_or_latest())
            .cloned()
            .ok_or_else(|| self.no_invoke_config(r))
    }

    /// The configuration that applies to an event invoked with `qualifier` (`None` = `$LATEST`).
    pub fn event_invoke_config_for(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Option<Arc<EventInvokeConfig>> {
        self.read()
            .get(function)?
            .event_invoke_configs
            .get(qualifier.unwrap_or(LATEST))
            .cloned()
    }

    pub async fn delete_event_invoke_config(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        self.get_event_invoke_config(r)?;
        let qualifier = r.qualifier_or_latest().to_string();
        {
            let (name, qualifier) = (r.name.clone(), qualifier.clone());
            self.persist(move |m| m.delete_event_invoke_config(&name, &qualifier))
                .await?;
        }
        if let Some(state) = self.write().get_mut(&r.name) {
            state.event_invoke_configs.remove(&qualifier);
        }
        Ok(())
    }

    pub fn list_event_invoke_configs(
        &self,
        r: &FunctionRef,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Arc<EventInvokeConfig>>, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry.get(&r.name).ok_or_else(function_missing)?;
        let all: Vec<Arc<EventInvokeConfig>> =
            state.event_invoke_configs.values().cloned().collect();
        drop(registry);
        Ok(paginate(
            all,
            marker.map(str::to_string),
            max_items,
            |c| c.qualifier.clone(),
            |c| c.qualifier.clone(),
        ))
    }
}
