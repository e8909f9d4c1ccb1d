//! Aliases: named pointers to versions, with weighted routing between two versions.

use std::collections::BTreeMap;
use std::sync::Arc;

use gust_model::{Alias, FunctionRef, LATEST, LambdaError};

use crate::requests::{AliasRoutingConfiguration, CreateAlias, UpdateAlias};
use crate::validate::Violations;
use crate::{Control, FunctionState, Page, new_revision, paginate};

const ALIAS_NAME_PATTERN: &str = "(?!^[0-9]+$)([a-zA-Z0-9-_]+)";
const VERSION_PATTERN: &str = r"(\$LATEST|[0-9]+)";

fn is_alias_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.bytes().all(|b| b.is_ascii_digit())
}

fn is_version(version: &str) -> bool {
    version == LATEST || (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()))
}

/// Java's rendering of a map, as Lambda's validation messages quote it: `{2=0.5}`.
fn java_map(weights: &BTreeMap<String, f64>) -> String {
    let entries: Vec<String> = weights.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", entries.join(", "))
}

fn check_alias_fields(
    name: Option<&str>,
    version: Option<&str>,
    description: Option<&str>,
    routing: Option<&AliasRoutingConfiguration>,
    v: &mut Violations,
) {
    if let Some(name) = name
        && !is_alias_name(name)
    {
        v.push(
            name,
            "name",
            &format!("Member must satisfy regular expression pattern: {ALIAS_NAME_PATTERN}"),
        );
    }
    if let Some(version) = version
        && !is_version(version)
    {
        v.push(
            version,
            "functionVersion",
            &format!("Member must satisfy regular expression pattern: {VERSION_PATTERN}"),
        );
    }
    if let Some(description) = description
        && description.chars().count() > 256
    {
        v.push(
            description,
            "description",
            "Member must have length less than or equal to 256",
        );
    }
    if let Some(weights) = routing.and_then(|r| r.additional_version_weights.as_ref()) {
        if weights
            .keys()
            .any(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()))
        {
            v.push(
                &java_map(weights),
                "routingConfig.additionalVersionWeights",
                "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]",
            );
        }
        if weights.values().any(|w| !(0.0..=1.0).contains(w)) {
            v.push(
                &java_map(weights),
                "routingConfig.additionalVersionWeights",
                "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]",
            );
        }
    }
}

impl Control {
    fn alias_arn(&self, function: &str, alias: &str) -> String {
        self.settings.arns.qualified(function, alias)
    }

    /// The function an alias operation applies to: named without a qualifier.
    pub(crate) fn function_state(&self, r: &FunctionRef) -> Result<FunctionState, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        self.read()
            .get(&r.name)
            .cloned()
            .ok_or_else(|| LambdaError::function_not_found(&self.settings.arns.function(&r.name)))
    }

    /// Lambda's semantic rules for where an alias points.
    fn check_routing(
        &self,
        state: &FunctionState,
        version: &str,
        weights: &BTreeMap<String, f64>,
    ) -> Result<(), LambdaError> {
        let name = &state.latest.name;
        if weights.len() > 1 {
            return Err(LambdaError::invalid_parameter(
                "Number of items in AdditionalVersionWeights cannot be greater than 1",
            ));
        }
        if let Some(extra) = weights.keys().find(|k| k.as_str() == version) {
            return Err(LambdaError::invalid_parameter(format!(
                "Invalid function version {extra}. Function version {extra} is already included in routing configuration."
            )));
        }
        if version == LATEST && !weights.is_empty() {
            return Err(LambdaError::invalid_parameter(
                "$LATEST is not supported for an alias pointing to more than 1 version",
            )
            .without_type());
        }
        for v in std::iter::once(version).chain(weights.keys().map(String::as_str)) {
            if state.version(v).is_none() {
                return Err(LambdaError::function_not_found(
                    &self.settings.arns.qualified(name, v),
                ));
            }
        }
        Ok(())
    }

    async fn store_alias(&self, alias: Alias) -> Result<Arc<Alias>, LambdaError> {
        let alias = Arc::new(alias);
        {
            let alias = alias.clone();
            self.persist(move |m| m.put_alias(&alias)).await?;
        }
        if let Some(state) = self.write().get_mut(&alias.function) {
            state.aliases.insert(alias.name.clone(), alias.clone());
        }
        Ok(alias)
    }

    pub async fn create_alias(
        &self,
        r: &FunctionRef,
        req: CreateAlias,
    ) -> Result<Arc<Alias>, LambdaError> {
        let mut v = Violations::default();
        if req.name.is_none() {
            v.null("name");
        }
        if req.function_version.is_none() {
            v.null("functionVersion");
        }
        check_alias_fields(
            req.name.as_deref(),
            req.function_version.as_deref(),
            req.description.as_deref(),
            req.routing_config.as_ref(),
            &mut v,
        );
        v.into_result()?;
        let (name, version) = (
            req.name.unwrap_or_default(),
            req.function_version.unwrap_or_default(),
        );
        let weights = req
            .routing_config
            .and_then(|r| r.additional_version_weights)
            .unwrap_or_default();

        let _write = self.writes.lock().await;
        r.check_scope(&self.settings.arns)?;
        let Some(state) = self.read().get(&r.name).cloned() else {
            return Err(LambdaError::function_not_found(
                &self.settings.arns.qualified(&r.name, &version),
            ));
        };
        self.check_routing(&state, &version, &weights)?;
        if state.aliases.contains_key(&name) {
            return Err(LambdaError::conflict(format!(
                "Alias already exists: {}",
                self.alias_arn(&r.name, &name)
            )));
        }
        let alias = self
            .store_alias(Alias {
                function: r.name.clone(),
                name,
                function_version: version,
                description: req.description.unwrap_or_default(),
                additional_version_weights: weights,
                revision_id: new_revision(),
            })
            .await?;
        tracing::info!(function = %alias.function, alias = %alias.name, version = %alias.function_version, "alias created");
        Ok(alias)
    }

    pub fn get_alias(&self, r: &FunctionRef, name: &str) -> Result<Arc<Alias>, LambdaError> {
        r.check_scope(&self.settings.arns)?;
        self.read()
            .get(&r.name)
            .and_then(|s| s.aliases.get(name).cloned())
            .ok_or_else(|| {
                LambdaError::not_found(format!(
                    "Cannot find alias arn: {}",
                    self.alias_arn(&r.name, name)
                ))
            })
    }

    pub async fn update_alias(
        &self,
        r: &FunctionRef,
        name: &str,
        req: UpdateAlias,
    ) -> Result<Arc<Alias>, LambdaError> {
        let mut v = Violations::default();
        check_alias_fields(
            None,
            req.function_version.as_deref(),
            req.description.as_deref(),
            req.routing_config.as_ref(),
            &mut v,
        );
        v.into_result()?;
        let _write = self.writes.lock().await;
        let state = self.function_state(r)?;
        let current = state.aliases.get(name).cloned().ok_or_else(|| {
            LambdaError::not_found(format!(
                "Alias not found: {}",
                self.alias_arn(&r.name, name)
            ))
        })?;
        if let Some(expected) = &req.revision_id
            && expected != &current.revision_id
        {
            return Err(LambdaError::precondition_failed("GetFunction/GetAlias"));
        }
        let mut alias = (*current).clone();
        if let Some(version) = req.function_version {
            alias.function_version = version;
        }
        if let Some(description) = req.description {
            alias.description = description;
        }
        if let Some(routing) = req.routing_config {
            alias.additional_version_weights =
                routing.additional_version_weights.unwrap_or_default();
        }
        self.check_routing(
            &state,
            &alias.function_version,
            &alias.additional_version_weights,
        )?;
        alias.revision_id = new_revision();
        let alias = self.store_alias(alias).await?;
        // Provisioned environments follow the alias to its new version.
        let _ = self.changes.send(alias.function.clone());
        tracing::info!(function = %alias.function, alias = %alias.name, version = %alias.function_version, "alias updated");
        Ok(alias)
    }

    /// Deletes an alias; deleting one that does not exist succeeds, as on Lambda.
    pub async fn delete_alias(&self, r: &FunctionRef, name: &str) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let state = self.function_state(r)?;
        if !state.aliases.contains_key(name) {
            return Ok(());
        }
        let (function, alias) = (r.name.clone(), name.to_string());
        self.persist(move |m| m.delete_alias(&function, &alias))
            .await?;
        if let Some(state) = self.write().get_mut(&r.name) {
            state.aliases.remove(name);
            state.policies.remove(name);
            state.event_invoke_configs.remove(name);
            state.provisioned.remove(name);
            state.url_configs.remove(name);
        }
        let _ = self.changes.send(r.name.clone());
        tracing::info!(function = %r.name, alias = name, "alias deleted");
        Ok(())
    }

    /// ListAliases, optionally only those that route to `function_version`.
    pub fn list_aliases(
        &self,
        r: &FunctionRef,
        function_version: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Arc<Alias>>, LambdaError> {
        let state = self.function_state(r)?;
        let all: Vec<Arc<Alias>> = state
            .aliases
            .values()
            .filter(|a| function_version.is_none_or(|v| a.versions().any(|av| av == v)))
            .cloned()
            .collect();
        Ok(paginate(
            all,
            marker.map(str::to_string),
            max_items,
            |a| a.name.clone(),
            |a| a.name.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_maps() {
        assert!(is_alias_name("2024-01-02"));
        assert!(is_alias_name("prod_1"));
        assert!(!is_alias_name("2024"));
        assert!(!is_alias_name("a.b"));
        assert!(is_version("$LATEST") && is_version("12") && !is_version("v1"));
        let weights: BTreeMap<String, f64> = [("2".to_string(), 2.0)].into();
        assert_eq!(java_map(&weights), "{2=2.0}");
        let weights: BTreeMap<String, f64> = [("$LATEST".to_string(), 0.5)].into();
        assert_eq!(java_map(&weights), "{$LATEST=0.5}");
    }
}
