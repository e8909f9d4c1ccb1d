//! Resource-based policies: AddPermission, GetPolicy, RemovePermission.
//!
//! Gust stores and returns policies exactly as Lambda renders them; enforcing them comes with
//! authentication.

use gust_model::{FunctionRef, LATEST, LambdaError, Policy};
use serde_json::{Map, Value, json};

use crate::requests::AddPermission;
use crate::validate::Violations;
use crate::{Control, FunctionState, new_revision};

/// Lambda's limit on the size of one resource policy document.
const POLICY_MAX_BYTES: usize = 20_480;
const STATEMENT_ID_PATTERN: &str = "([a-zA-Z0-9-_]+)";
const ACTION_PATTERN: &str = "(lambda:[*]|lambda:[a-zA-Z]+|[*])";

/// GetPolicy's answer.
#[derive(Debug, Clone)]
pub struct PolicyView {
    /// The policy document as JSON text.
    pub document: String,
    pub revision_id: String,
}

fn document(policy: &Policy) -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": policy.statements,
    })
    .to_string()
}

fn is_action(action: &str) -> bool {
    action == "*"
        || action.strip_prefix("lambda:").is_some_and(|rest| {
            rest == "*" || (!rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphabetic()))
        })
}

/// The `Principal` member of a statement, or `None` when Lambda would refuse the principal.
fn principal(raw: &str) -> Option<Value> {
    if raw == "*" {
        return Some(json!("*"));
    }
    if raw.len() == 12 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Some(json!({ "AWS": format!("arn:aws:iam::{raw}:root") }));
    }
    if raw.starts_with("arn:") && raw.contains(":iam::") {
        return Some(json!({ "AWS": raw }));
    }
    // A service principal is a name in one of Amazon's service domains
    // (`s3.amazonaws.com`, `alexa-appkit.amazon.com`, …); Lambda refuses any other domain.
    let service = [".amazonaws.com", ".amazonaws.com.cn", ".amazon.com"]
        .iter()
        .any(|domain| {
            raw.strip_suffix(domain)
                .is_some_and(|host| !host.is_empty())
        })
        && raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    service.then(|| json!({ "Service": raw }))
}

impl Control {
    /// The qualifier key a policy is stored under (`""`, a version, or an alias), after
    /// checking that what it names exists.
    fn policy_target(&self, state: &FunctionState, r: &FunctionRef) -> Result<String, LambdaError> {
        match r.qualifier.as_deref() {
            None => Ok(String::new()),
            Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
                if state.version(q).is_some() {
                    Ok(q.to_string())
                } else {
                    Err(LambdaError::function_not_found(&r.arn(&self.settings.arns)))
                }
            }
            // A qualifier no alias could be named (`$` is allowed in qualifiers, not in alias
            // names) is reported as a missing function version, as Lambda reports it.
            Some(q)
                if !q
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                Err(LambdaError::function_not_found(&r.arn(&self.settings.arns)))
            }
            Some(alias) => {
                if state.aliases.contains_key(alias) {
                    Ok(alias.to_string())
                } else {
                    Err(LambdaError::not_found(format!(
                        "Cannot find alias arn: {}",
                        r.arn(&self.settings.arns)
                    )))
                }
            }
        }
    }

    /// The revision a RevisionId in a permission request is compared with: the policy's, or
    /// when there is no policy yet, the function's, version's or alias's.
    fn check_policy_revision(
        state: &FunctionState,
        target: &str,
        expected: Option<&str>,
    ) -> Result<(), LambdaError> {
        let Some(expected) = expected else {
            return Ok(());
        };
        if let Some(policy) = state.policies.get(target) {
            if policy.revision_id != expected {
                return Err(LambdaError::precondition_failed("GetPolicy"));
            }
            return Ok(());
        }
        let current = match state.aliases.get(target) {
            Some(alias) => alias.revision_id.clone(),
            None => state
                .version(if target.is_empty() { LATEST } else { target })
                .map(|c| c.revision_id.clone())
                .unwrap_or_default(),
        };
        if current != expected {
            return Err(LambdaError::precondition_failed("GetFunction/GetAlias"));
        }
        Ok(())
    }

    /// Adds a statement; returns it as JSON text (the `Statement` member of the response).
    pub async fn add_permission(
        &self,
        r: &FunctionRef,
        req: AddPermission,
    ) -> Result<String, LambdaError> {
        let mut v = Violations::default();
        match &req.statement_id {
            None => v.null("statementId"),
            Some(sid) => {
                let valid = !sid.is_empty()
                    && sid.len() <= 100
                    && sid
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    v.push(
                        sid,
                        "statementId",
                        &format!(
                            "Member must satisfy regular expression pattern: {STATEMENT_ID_PATTERN}"
                        ),
                    );
                }
            }
        }
        match &req.action {
            None => v.null("action"),
            Some(action) if !is_action(action) => v.push(
                action,
                "action",
                &format!("Member must satisfy regular expression pattern: {ACTION_PATTERN}"),
            ),
            Some(_) => {}
        }
        match &req.principal {
            None => v.null("principal"),
            Some(p) if p.is_empty() || p.chars().any(char::is_whitespace) => v.push(
                p,
                "principal",
                r"Member must satisfy regular expression pattern: [^\s]+",
            ),
            Some(_) => {}
        }
        if let Some(auth) = &req.function_url_auth_type
            && auth != "NONE"
            && auth != "AWS_IAM"
        {
            v.push(
                auth,
                "functionUrlAuthType",
                "Member must satisfy enum value set: [AWS_IAM, NONE]",
            );
        }
        v.into_result()?;
        r.check_scope(&self.settings.arns)?;
        if r.qualifier.as_deref() == Some(LATEST) {
            return Err(LambdaError::invalid_parameter(
                "We currently do not support adding policies for $LATEST.",
            ));
        }
        let sid = req.statement_id.unwrap_or_default();
        let principal =
            principal(req.principal.as_deref().unwrap_or_default()).ok_or_else(|| {
                LambdaError::invalid_parameter(
                    "The provided principal was invalid. Please check the principal and try again.",
                )
            })?;

        let _write = self.writes.lock().await;
        let state = self.read().get(&r.name).cloned().ok_or_else(|| {
            LambdaError::function_not_found(&self.settings.arns.function(&r.name))
        })?;
        let target = self.policy_target(&state, r)?;
        Self::check_policy_revision(&state, &target, req.revision_id.as_deref())?;
        let mut policy = state.policies.get(&target).cloned().unwrap_or(Policy {
            statements: Vec::new(),
            revision_id: String::new(),
        });
        if policy.statements.iter().any(|s| s["Sid"] == sid.as_str()) {
            return Err(LambdaError::conflict(format!(
                "The statement id ({sid}) provided already exists. Please provide a new statement id, or remove the existing statement."
            )));
        }

        let mut statement = Map::new();
        statement.insert("Sid".into(), json!(sid));
        statement.insert("Effect".into(), json!("Allow"));
        statement.insert("Principal".into(), principal);
        statement.insert("Action".into(), json!(req.action));
        statement.insert("Resource".into(), json!(r.arn(&self.settings.arns)));
        let mut equals = Map::new();
        if let Some(account) = req.source_account {
            equals.insert("AWS:SourceAccount".into(), json!(account));
        }
        if let Some(auth) = req.function_url_auth_type {
            equals.insert("lambda:FunctionUrlAuthType".into(), json!(auth));
        }
        if let Some(org) = req.principal_org_id {
            equals.insert("aws:PrincipalOrgID".into(), json!(org));
        }
        if let Some(token) = req.event_source_token {
            equals.insert("lambda:EventSourceToken".into(), json!(token));
        }
        if req.invoked_via_function_url == Some(true) {
            equals.insert("lambda:InvokedViaFunctionUrl".into(), json!("true"));
        }
        let mut condition = Map::new();
        if !equals.is_empty() {
            condition.insert("StringEquals".into(), Value::Object(equals));
        }
        if let Some(source) = req.source_arn {
            condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": source }));
        }
        if !condition.is_empty() {
            statement.insert("Condition".into(), Value::Object(condition));
        }
        let statement = Value::Object(statement);
        policy.statements.push(statement.clone());
        let size = document(&policy).len();
        if size > POLICY_MAX_BYTES {
            return Err(LambdaError::new(
                gust_model::ErrorCode::PolicyLengthExceeded,
                format!(
                    "The final policy size ({size}) is bigger than the limit ({POLICY_MAX_BYTES})."
                ),
            ));
        }
        policy.revision_id = new_revision();
        self.store_policy(&r.name, &target, policy).await?;
        Ok(statement.to_string())
    }

    async fn store_policy(
        &self,
        function: &str,
        target: &str,
        policy: Policy,
    ) -> Result<(), LambdaError> {
        {
            let (function, target, policy) =
                (function.to_string(), target.to_string(), policy.clone());
            self.persist(move |m| m.put_policy(&function, &target, &policy))
                .await?;
        }
        if let Some(state) = self.write().get_mut(function) {
            if policy.statements.is_empty() {
                state.policies.remove(target);
            } else {
                state.policies.insert(target.to_string(), policy);
            }
        }
        Ok(())
    }

    pub fn get_policy(&self, r: &FunctionRef) -> Result<PolicyView, LambdaError> {
        let missing = || LambdaError::not_found("The resource you requested does not exist.");
        r.check_scope(&self.settings.arns)?;
        let registry = self.read();
        let state = registry.get(&r.name).ok_or_else(missing)?;
        let target = r
            .qualifier
            .clone()
            .filter(|q| q != LATEST)
            .unwrap_or_default();
        let policy = state.policies.get(&target).ok_or_else(missing)?;
        Ok(PolicyView {
            document: document(policy),
            revision_id: policy.revision_id.clone(),
        })
    }

    pub async fn remove_permission(
        &self,
        r: &FunctionRef,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<(), LambdaError> {
        r.check_scope(&self.settings.arns)?;
        let _write = self.writes.lock().await;
        let state = self.read().get(&r.name).cloned().ok_or_else(|| {
            LambdaError::not_found(format!(
                "No policy found for: {}",
                self.settings.arns.function(&r.name)
            ))
        })?;
        let target = self.policy_target(&state, r)?;
        let mut policy = state.policies.get(&target).cloned().ok_or_else(|| {
            LambdaError::not_found("No policy is associated with the given resource.")
        })?;
        Self::check_policy_revision(&state, &target, revision_id)?;
        let before = policy.statements.len();
        policy.statements.retain(|s| s["Sid"] != statement_id);
        if policy.statements.len() == before {
            return Err(LambdaError::not_found(format!(
                "Statement {statement_id} is not found in resource policy."
            )));
        }
        policy.revision_id = new_revision();
        self.store_policy(&r.name, &target, policy).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_render_like_lambda() {
        assert_eq!(principal("*"), Some(json!("*")));
        assert_eq!(
            principal("s3.amazonaws.com"),
            Some(json!({"Service": "s3.amazonaws.com"}))
        );
        assert_eq!(
            principal("123456789012"),
            Some(json!({"AWS": "arn:aws:iam::123456789012:root"}))
        );
        assert_eq!(
            principal("arn:aws:iam::123456789012:user/u"),
            Some(json!({"AWS": "arn:aws:iam::123456789012:user/u"}))
        );
        assert_eq!(principal("invalid"), None);
        assert_eq!(principal("invalid.nonaws.com"), None);
        assert_eq!(principal(".amazonaws.com"), None);
        assert_eq!(
            principal("alexa-appkit.amazon.com"),
            Some(json!({ "Service": "alexa-appkit.amazon.com" }))
        );
        assert!(is_action("lambda:InvokeFunction") && is_action("*") && is_action("lambda:*"));
        assert!(!is_action("s3:GetObject"));
    }
}
