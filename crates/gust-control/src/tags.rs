//! Tags on functions: TagResource, UntagResource, ListTags (and `Tags` on CreateFunction).

use std::collections::BTreeMap;

use gust_model::names::{is_account, is_partition};
use gust_model::{FunctionRef, LambdaError};

use crate::Control;

/// Lambda's limit of tags per resource.
const MAX_TAGS: usize = 50;

pub const RESOURCE_PATTERN: &str = r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)";

/// The number and sizes of a resource's tags.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), LambdaError> {
    if tags.len() > MAX_TAGS {
        return Err(LambdaError::invalid_parameter(
            "Number of tags exceeds resource tag limit.",
        ));
    }
    let mut v = crate::validate::Violations::default();
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            v.push(key, "tags", "Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]");
        }
        if value.chars().count() > 256 {
            v.push(value, "tags", "Map value must satisfy constraint: [Member must have length less than or equal to 256]");
        }
    }
    v.into_result()
}

fn invalid_resource(resource: &str) -> LambdaError {
    LambdaError::validation(&[gust_model::error::violation(
        resource,
        "resource",
        &format!("Member must satisfy regular expression pattern: {RESOURCE_PATTERN}"),
    )])
}

impl Control {
    /// The function a tagging ARN names. Only unqualified function ARNs carry tags.
    fn tagged_function(&self, resource: &str) -> Result<String, LambdaError> {
        let parts: Vec<&str> = resource.split(':').collect();
        let [arn, partition, "lambda", _region, account, kind, rest @ ..] = parts.as_slice() else {
            return Err(invalid_resource(resource));
        };
        if *arn != "arn" || partition.is_empty() || !is_partition(partition) || !is_account(account)
        {
            return Err(invalid_resource(resource));
        }
        match (*kind, rest) {
            ("function", [_] | [_, _]) => {}
            ("event-source-mapping", [_]) => {
                return Err(LambdaError::not_found(format!(
                    "Event source mapping not found: {resource}"
                )));
            }
            ("capacity-provider", [_]) => {
                // Gust has no capacity providers (Lambda Managed Instances): none is found.
                return Err(LambdaError::not_found(format!(
                    "Capacity provider not found: {resource}"
                )));
            }
            ("layer" | "code-signing-config", [_]) => {
                return Err(LambdaError::not_found(
                    "The resource you requested does not exist.",
                ));
            }
            _ => return Err(invalid_resource(resource)),
        }
        let r = FunctionRef::parse(resource, gust_model::names::NameShape::Plain)
            .map_err(|_| invalid_resource(resource))?;
        if r.qualifier.is_some() {
            return Err(LambdaError::invalid_parameter(
                "Tags on function aliases and versions are not supported. Please specify a function ARN.",
            ));
        }
        r.check_scope(&self.settings.arns)?;
        if !self.read().contains_key(&r.name) {
            return Err(LambdaError::function_not_found(
                &self.settings.arns.function(&r.name),
            ));
        }
        Ok(r.name)
    }

    pub fn list_tags(&self, resource: &str) -> Result<BTreeMap<String, String>, LambdaError> {
        let name = self.tagged_function(resource)?;
        Ok(self
            .read()
            .get(&name)
            .map(|s| s.tags.clone())
            .unwrap_or_default())
    }

    async fn replace_tags(
        &self,
        resource: &str,
        change: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let name = self.tagged_function(resource)?;
        let mut tags = self.list_tags(resource)?;
        change(&mut tags);
        check_tags(&tags)?;
        {
            let (name, tags) = (name.clone(), tags.clone());
            self.persist(move |m| m.put_tags(&name, &tags)).await?;
        }
        if let Some(state) = self.write().get_mut(&name) {
            state.tags = tags;
        }
        // On Lambda a change of a function's tags is a new revision of `$LATEST`.
        self.renew_latest_revision(&name).await
    }

    pub async fn tag_resource(
        &self,
        resource: &str,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<(), LambdaError> {
        let tags = tags.filter(|t| !t.is_empty()).ok_or_else(|| {
            LambdaError::invalid_parameter("An error occurred and the request cannot be processed.")
        })?;
        self.replace_tags(resource, |current| current.extend(tags))
            .await
    }

    pub async fn untag_resource(&self, resource: &str, keys: &[String]) -> Result<(), LambdaError> {
        if keys.is_empty() {
            return Err(LambdaError::validation(&[
                "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null"
                    .into(),
            ]));
        }
        self.replace_tags(resource, |current| {
            for key in keys {
                current.remove(key);
            }
        })
        .await
    }
}
