//! Scheduled rules with EventBridge's interface (PutRule, PutTargets, RemoveTargets,
//! ListRules, ListTargetsByRule, ListRuleNamesByTarget, DescribeRule, EnableRule,
//! DisableRule, DeleteRule) and the scheduler that fires them.
//!
//! A firing sends the scheduled-event payload (or the target's Input, InputPath selection or
//! InputTransformer result) as an asynchronous invocation. Each rule's last firing is stored before its events are
//! queued, and after a restart only ticks after the restart fire: a tick is never sent twice
//! and ticks missed while Gust was down are not backfilled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gust_invoke::AsyncQueue;
use gust_model::events::{Rule, Target};
use gust_model::names::NameShape;
use gust_model::{Arns, FunctionRef};
use gust_store::{StoreError, TriggerStore};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::jsonpath::JsonPath;
use crate::schedule::Schedule;
use crate::transform::InputTransformer;

const DEFAULT_BUS: &str = "default";
const NAME_PATTERN: &str = r"[\.\-_A-Za-z0-9]+";

gust_model::closed_set! {
    /// The EventBridge operations Gust serves (scheduled rules and their targets).
    pub enum EventsOperation {
        PutRule,
        DescribeRule,
        DeleteRule,
        EnableRule,
        DisableRule,
        ListRules,
        PutTargets,
        RemoveTargets,
        ListTargetsByRule,
        ListRuleNamesByTarget,
    }
}

/// EventBridge's limit of targets per rule.
const TARGETS_PER_RULE: usize = 5;
const INPUT_MAX: usize = 8192;
const LIST_LIMIT: usize = 100;

/// An EventBridge error: `__type` and `message` in a JSON 1.1 body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EventsError {
    pub code: &'static str,
    pub message: String,
    pub status: u16,
}

impl EventsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: 400,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new("ValidationException", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new("ResourceNotFoundException", message)
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "schedule storage failure");
        Self {
            code: "InternalException",
            message: format!("Gust could not complete the request: {e}"),
            status: 500,
        }
    }

    pub fn unknown_operation(operation: &str) -> Self {
        Self::new(
            "UnknownOperationException",
            format!("Gust does not implement the EventBridge operation {operation}"),
        )
    }

    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"__type": self.code, "message": self.message}))
            .unwrap_or_default()
    }
}

fn violation(value: &str, field: &str, constraint: &str) -> EventsError {
    EventsError::validation(format!(
        "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: {constraint}"
    ))
}

fn check_name(value: Option<&str>, field: &str) -> Result<String, EventsError> {
    let Some(value) = value else {
        return Err(EventsError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )));
    };
    if value.is_empty() || value.len() > 64 {
        return Err(violation(
            value,
            field,
            "Member must have length less than or equal to 64 and greater than or equal to 1",
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(violation(
            value,
            field,
            &format!("Member must satisfy regular expression pattern: {NAME_PATTERN}"),
        ));
    }
    Ok(value.to_string())
}

/// Only the default bus exists (by name or by ARN).
fn check_bus(bus: Option<&str>) -> Result<(), EventsError> {
    match bus {
        None => Ok(()),
        Some(b) if b == DEFAULT_BUS || b.ends_with(":event-bus/default") => Ok(()),
        Some(b) => Err(EventsError::not_found(format!(
            "Event bus {b} does not exist."
        ))),
    }
}

fn rule_missing(name: &str) -> EventsError {
    EventsError::not_found(format!(
        "Rule {name} does not exist on EventBus {DEFAULT_BUS}."
    ))
}

/// `2015-10-08T16:53:06Z`: the scheduled event's `time`, without fractions.
fn event_time(secs: i64) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRuleInput {
    name: Option<String>,
    schedule_expression: Option<String>,
    event_pattern: Option<String>,
    state: Option<String>,
    description: Option<String>,
    role_arn: Option<String>,
    tags: Option<Vec<Tag>>,
    event_bus_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RuleNameInput {
    name: Option<String>,
    event_bus_name: Option<String>,
    force: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    name_prefix: Option<String>,
    rule: Option<String>,
    target_arn: Option<String>,
    event_bus_name: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TargetInput {
    id: Option<String>,
    arn: Option<String>,
    input: Option<String>,
    input_path: Option<String>,
    input_transformer: Option<Value>,
    role_arn: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutTargetsInput {
    rule: Option<String>,
    event_bus_name: Option<String>,
    targets: Option<Vec<TargetInput>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTargetsInput {
    rule: Option<String>,
    event_bus_name: Option<String>,
    ids: Option<Vec<String>>,
}

/// A rule in memory, with its parsed schedule.
#[derive(Debug, Clone)]
struct Entry {
    rule: Rule,
    schedule: Schedule,
    targets: Vec<Target>,
    last_fired: Option<i64>,
}

/// One due firing.
struct Firing {
    rule: String,
    tick: i64,
    targets: Vec<Target>,
}

pub struct Schedules {
    arns: Arns,
    store: Arc<Mutex<TriggerStore>>,
    rules: Mutex<BTreeMap<String, Entry>>,
    queue: Arc<AsyncQueue>,
    clock: Arc<Clock>,
    /// Clock reading at start (Unix seconds): ticks before it are not backfilled.
    started: i64,
    writes: tokio::sync::Mutex<()>,
    wake: Notify,
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, EventsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        EventsError::new(
            "SerializationException",
            format!("The request body is not a valid JSON document: {e}"),
        )
    })
}

fn page<T: Clone>(
    items: Vec<T>,
    next_token: Option<&str>,
    limit: Option<i64>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), EventsError> {
    let limit = match limit {
        None => LIST_LIMIT,
        Some(n) if (1..=LIST_LIMIT as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(violation(
                &n.to_string(),
                "limit",
                "Member must have value between 1 and 100",
            ));
        }
    };
    let start = match next_token {
        Some(token) => items
            .iter()
            .position(|i| key(i).as_str() > token)
            .unwrap_or(items.len()),
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let out = items[start..end].to_vec();
    let next = (end < items.len()).then(|| key(&out[out.len() - 1]));
    Ok((out, next))
}

impl Schedules {
    /// Loads the stored rules. Call [`Schedules::start`] to begin firing them.
    pub fn open(
        store: Arc<Mutex<TriggerStore>>,
        arns: Arns,
        queue: Arc<AsyncQueue>,
        clock: Arc<Clock>,
    ) -> Result<Arc<Self>, StoreError> {
        let stored = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .load_rules()?;
        let mut rules = BTreeMap::new();
        for s in stored {
            match Schedule::parse(&s.rule.schedule_expression) {
                Ok(schedule) => {
                    rules.insert(
                        s.rule.name.clone(),
                        Entry {
                            rule: s.rule,
                            schedule,
                            targets: s.targets,
                            last_fired: s.last_fired,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(rule = %s.rule.name, error = %e, "stored rule has an unreadable schedule; skipping it")
                }
            }
        }
        let started = clock.now_secs();
        Ok(Arc::new(Self {
            arns,
            store,
            rules: Mutex::new(rules),
            queue,
            clock,
            started,
            writes: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }))
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Wakes the scheduler (after the clock was set).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    fn rule_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:rule/{name}",
            self.arns.region, self.arns.account
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn persist(
        &self,
        op: impl FnOnce(&mut TriggerStore) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), EventsError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            op(&mut store.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await
        .map_err(EventsError::internal)?
        .map_err(EventsError::internal)
    }

    /// Runs one operation of the JSON 1.1 protocol (`X-Amz-Target: AWSEvents.<operation>`).
    pub async fn call(&self, operation: &str, body: &[u8]) -> Result<Value, EventsError> {
        let Some(operation) = EventsOperation::parse(operation) else {
            return Err(EventsError::unknown_operation(operation));
        };
        match operation {
            EventsOperation::PutRule => self.put_rule(parse(body)?).await,
            EventsOperation::DescribeRule => self.describe_rule(parse(body)?),
            EventsOperation::DeleteRule => self.delete_rule(parse(body)?).await,
            EventsOperation::EnableRule => self.set_state(parse(body)?, "ENABLED").await,
            EventsOperation::DisableRule => self.set_state(parse(body)?, "DISABLED").await,
            EventsOperation::ListRules => self.list_rules(parse(body)?),
            EventsOperation::PutTargets => self.put_targets(parse(body)?).await,
            EventsOperation::RemoveTargets => self.remove_targets(parse(body)?).await,
            EventsOperation::ListTargetsByRule => self.list_targets(parse(body)?),
            EventsOperation::ListRuleNamesByTarget => self.list_rule_names_by_target(parse(body)?),
        }
    }

    async fn put_rule(&self, input: PutRuleInput) -> Result<Value, EventsError> {
        let name = check_name(input.name.as_deref(), "name")?;
        check_bus(input.event_bus_name.as_deref())?;
        if input.event_pattern.is_some() {
            return Err(EventsError::validation(
                "Gust runs scheduled rules only: EventPattern rules are not supported yet.",
            ));
        }
        let Some(expression) = input.schedule_expression else {
            return Err(EventsError::validation(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        };
        let schedule = Schedule::parse(&expression).map_err(|e| {
            EventsError::validation(format!("Parameter ScheduleExpression is not valid: {e}."))
        })?;
        let state = input.state.unwrap_or_else(|| "ENABLED".into());
        if !["ENABLED", "DISABLED"].contains(&state.as_str()) {
            return Err(violation(
                &state,
                "state",
                "Member must satisfy enum value set: [ENABLED, DISABLED]",
            ));
        }
        if let Some(d) = &input.description
            && d.chars().count() > 512
        {
            return Err(violation(
                d,
                "description",
                "Member must have length less than or equal to 512",
            ));
        }
        let mut tags = BTreeMap::new();
        for tag in input.tags.unwrap_or_default() {
            let (Some(k), Some(v)) = (tag.key, tag.value) else {
                return Err(EventsError::validation("Each tag needs a Key and a Value."));
            };
            tags.insert(k, v);
        }
        let _write = self.writes.lock().await;
        let now = self.clock.now_secs();
        let existing = self.lock().get(&name).cloned();
        // A rate keeps counting from when it was set, unless the schedule changed.
        let anchor = existing
            .as_ref()
            .filter(|e| e.rule.schedule_expression == expression)
            .map_or(now, |e| e.rule.anchor);
        let rule = Rule {
            name: name.clone(),
            schedule_expression: expression,
            state,
            description: input.description,
            role_arn: input.role_arn,
            tags,
            anchor,
            active_since: now,
        };
        let stored = rule.clone();
        self.persist(move |s| s.put_rule(&stored)).await?;
        let (targets, last_fired) = existing
            .map(|e| (e.targets, e.last_fired))
            .unwrap_or_default();
        self.lock().insert(
            name.clone(),
            Entry {
                rule,
                schedule,
                targets,
                last_fired,
            },
        );
        self.wake.notify_one();
        tracing::info!(rule = %name, "rule saved");
        Ok(json!({ "RuleArn": self.rule_arn(&name) }))
    }

    fn existing(&self, name: Option<&str>, field: &str) -> Result<Entry, EventsError> {
        let name = check_name(name, field)?;
        self.lock()
            .get(&name)
            .cloned()
            .ok_or_else(|| rule_missing(&name))
    }

    fn describe(&self, rule: &Rule, full: bool) -> Value {
        let mut doc = json!({
            "Name": rule.name,
            "Arn": self.rule_arn(&rule.name),
            "ScheduleExpression": rule.schedule_expression,
            "State": rule.state,
            "EventBusName": DEFAULT_BUS,
        });
        if let Some(d) = &rule.description {
            doc["Description"] = d.clone().into();
        }
        if let Some(r) = &rule.role_arn {
            doc["RoleArn"] = r.clone().into();
        }
        if full {
            doc["CreatedBy"] = self.arns.account.clone().into();
        }
        doc
    }

    fn describe_rule(&self, input: RuleNameInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let entry = self.existing(input.name.as_deref(), "name")?;
        Ok(self.describe(&entry.rule, true))
    }

    async fn delete_rule(&self, input: RuleNameInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let name = check_name(input.name.as_deref(), "name")?;
        let _write = self.writes.lock().await;
        let Some(entry) = self.lock().get(&name).cloned() else {
            return Ok(json!({}));
        };
        if !entry.targets.is_empty() && input.force != Some(true) {
            return Err(EventsError::validation(
                "Rule can't be deleted since it has targets.",
            ));
        }
        let stored = name.clone();
        self.persist(move |s| s.delete_rule(&stored)).await?;
        self.lock().remove(&name);
        tracing::info!(rule = %name, "rule deleted");
        Ok(json!({}))
    }

    async fn set_state(&self, input: RuleNameInput, state: &str) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let _write = self.writes.lock().await;
        let mut entry = self.existing(input.name.as_deref(), "name")?;
        if entry.rule.state != state {
            entry.rule.state = state.to_string();
            entry.rule.active_since = self.clock.now_secs();
            let stored = entry.rule.clone();
            self.persist(move |s| s.put_rule(&stored)).await?;
            if let Some(e) = self.lock().get_mut(&entry.rule.name) {
                e.rule = entry.rule;
            }
            self.wake.notify_one();
        }
        Ok(json!({}))
    }

    fn list_rules(&self, input: ListInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let prefix = input.name_prefix.unwrap_or_default();
        let rules: Vec<Rule> = self
            .lock()
            .values()
            .filter(|e| e.rule.name.starts_with(&prefix))
            .map(|e| e.rule.clone())
            .collect();
        let (items, next) = page(rules, input.next_token.as_deref(), input.limit, |r| {
            r.name.clone()
        })?;
        let mut doc = json!({
            "Rules": items.iter().map(|r| self.describe(r, false)).collect::<Vec<_>>(),
        });
        if let Some(next) = next {
            doc["NextToken"] = next.into();
        }
        Ok(doc)
    }

    fn check_target(&self, input: TargetInput) -> Result<Result<Target, Value>, EventsError> {
        let id = check_name(input.id.as_deref(), "targets.member.id")?;
        let Some(arn) = input.arn.filter(|a| !a.is_empty()) else {
            return Err(EventsError::validation(
                "1 validation error detected: Value null at 'targets.member.arn' failed to satisfy constraint: Member must not be null",
            ));
        };
        let given = [
            input.input.is_some(),
            input.input_path.is_some(),
            input.input_transformer.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(EventsError::validation(format!(
                "Only one of Input, InputPath, or InputTransformer must be provided for target {id}."
            )));
        }
        if let Some(text) = &input.input {
            if text.len() > INPUT_MAX {
                return Err(violation(
                    "...",
                    "targets.member.input",
                    "Member must have length less than or equal to 8192",
                ));
            }
            if serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
                return Err(EventsError::validation(format!(
                    "Input for target {id} is not valid JSON text."
                )));
            }
        }
        if let Some(path) = &input.input_path {
            JsonPath::parse(path).map_err(|e| {
                EventsError::validation(format!("InputPath for target {id} is invalid: {e}."))
            })?;
        }
        let failed = |message: String| {
            Ok(Err(json!({
                "TargetId": id,
                "ErrorCode": "ValidationException",
                "ErrorMessage": message,
            })))
        };
        if let Some(doc) = &input.input_transformer {
            let transformer: InputTransformer =
                serde_json::from_value(doc.clone()).map_err(|e| {
                    EventsError::validation(format!(
                        "InputTransformer for target {id} is invalid: {e}."
                    ))
                })?;
            transformer.check().map_err(|e| {
                EventsError::validation(format!(
                    "InputTransformer for target {id} is invalid: {e}."
                ))
            })?;
        }
        let is_lambda = arn.split(':').nth(2) == Some("lambda");
        let function = FunctionRef::parse(&arn, NameShape::Namespaced)
            .ok()
            .filter(|f| is_lambda && f.check_scope(&self.arns).is_ok());
        if function.is_none() {
            return failed(format!(
                "Gust delivers scheduled events to Lambda functions of this region and account only; {arn} is not one."
            ));
        }
        Ok(Ok(Target {
            id,
            arn,
            input: input.input,
            input_path: input.input_path,
            input_transformer: input.input_transformer,
            role_arn: input.role_arn,
        }))
    }

    async fn put_targets(&self, input: PutTargetsInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let name = check_name(input.rule.as_deref(), "rule")?;
        let targets = input.targets.unwrap_or_default();
        if targets.is_empty() || targets.len() > 10 {
            return Err(violation(
                &format!("{} targets", targets.len()),
                "targets",
                "Member must have length less than or equal to 10 and greater than or equal to 1",
            ));
        }
        let _write = self.writes.lock().await;
        let entry = self
            .lock()
            .get(&name)
            .cloned()
            .ok_or_else(|| rule_missing(&name))?;
        let mut accepted = Vec::new();
        let mut failures = Vec::new();
        for t in targets {
            match self.check_target(t)? {
                Ok(target) => accepted.push(target),
                Err(failure) => failures.push(failure),
            }
        }
        let mut all = entry.targets.clone();
        for t in &accepted {
            match all.iter_mut().find(|e| e.id == t.id) {
                Some(existing) => *existing = t.clone(),
                None => all.push(t.clone()),
            }
        }
        if all.len() > TARGETS_PER_RULE {
            return Err(EventsError::new(
                "LimitExceededException",
                "The requested resource exceeds the maximum number allowed.",
            ));
        }
        let (stored_name, stored) = (name.clone(), accepted);
        self.persist(move |s| s.put_targets(&stored_name, &stored))
            .await?;
        all.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(e) = self.lock().get_mut(&name) {
            e.targets = all;
        }
        self.wake.notify_one();
        Ok(json!({"FailedEntryCount": failures.len(), "FailedEntries": failures}))
    }

    async fn remove_targets(&self, input: RemoveTargetsInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let name = check_name(input.rule.as_deref(), "rule")?;
        let ids = input.ids.unwrap_or_default();
        if ids.is_empty() || ids.len() > 100 {
            return Err(violation(
                &format!("{} ids", ids.len()),
                "ids",
                "Member must have length less than or equal to 100 and greater than or equal to 1",
            ));
        }
        let _write = self.writes.lock().await;
        if !self.lock().contains_key(&name) {
            return Err(rule_missing(&name));
        }
        let (stored_name, stored_ids) = (name.clone(), ids.clone());
        self.persist(move |s| s.remove_targets(&stored_name, &stored_ids))
            .await?;
        if let Some(e) = self.lock().get_mut(&name) {
            e.targets.retain(|t| !ids.contains(&t.id));
        }
        Ok(json!({"FailedEntryCount": 0, "FailedEntries": []}))
    }

    fn list_targets(&self, input: ListInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let entry = self.existing(input.rule.as_deref(), "rule")?;
        let (items, next) = page(
            entry.targets,
            input.next_token.as_deref(),
            input.limit,
            |t| t.id.clone(),
        )?;
        let targets: Vec<Value> = items
            .iter()
            .map(|t| {
                let mut doc = json!({"Id": t.id, "Arn": t.arn});
                if let Some(i) = &t.input {
                    doc["Input"] = i.clone().into();
                }
                if let Some(p) = &t.input_path {
                    doc["InputPath"] = p.clone().into();
                }
                if let Some(transformer) = &t.input_transformer {
                    doc["InputTransformer"] = transformer.clone();
                }
                if let Some(r) = &t.role_arn {
                    doc["RoleArn"] = r.clone().into();
                }
                doc
            })
            .collect();
        let mut doc = json!({ "Targets": targets });
        if let Some(next) = next {
            doc["NextToken"] = next.into();
        }
        Ok(doc)
    }

    fn list_rule_names_by_target(&self, input: ListInput) -> Result<Value, EventsError> {
        check_bus(input.event_bus_name.as_deref())?;
        let Some(arn) = input.target_arn else {
            return Err(EventsError::validation(
                "1 validation error detected: Value null at 'targetArn' failed to satisfy constraint: Member must not be null",
            ));
        };
        let names: Vec<String> = self
            .lock()
            .values()
            .filter(|e| e.targets.iter().any(|t| t.arn == arn))
            .map(|e| e.rule.name.clone())
            .collect();
        let (items, next) = page(names, input.next_token.as_deref(), input.limit, |n| {
            n.clone()
        })?;
        let mut doc = json!({ "RuleNames": items });
        if let Some(next) = next {
            doc["NextToken"] = next.into();
        }
        Ok(doc)
    }

    /// Rules due at `now`, with the tick each fires for.
    fn due(&self, now: i64) -> (Vec<Firing>, Option<i64>) {
        let rules = self.lock();
        let mut firings = Vec::new();
        let mut next: Option<i64> = None;
        for entry in rules.values() {
            if !entry.rule.enabled() || entry.targets.is_empty() {
                continue;
            }
            let after = entry
                .last_fired
                .unwrap_or(i64::MIN)
                .max(entry.rule.active_since)
                .max(self.started);
            let anchor = entry.rule.anchor;
            if let Some(tick) = entry.schedule.latest_due(after, now, anchor) {
                firings.push(Firing {
                    rule: entry.rule.name.clone(),
                    tick,
                    targets: entry.targets.clone(),
                });
            } else if let Some(t) = entry.schedule.next_after(after.max(now), anchor) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        (firings, next)
    }

    /// The event a target receives for one tick.
    fn payload(&self, rule: &str, tick: i64, target: &Target) -> Option<Bytes> {
        if let Some(input) = &target.input {
            return Some(Bytes::from(input.clone()));
        }
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.arns.account,
            "time": event_time(tick),
            "region": self.arns.region,
            "resources": [self.rule_arn(rule)],
            "detail": {},
        });
        if let Some(doc) = &target.input_transformer {
            let transformer: InputTransformer = serde_json::from_value(doc.clone()).ok()?;
            let text = transformer.apply(&event, &self.rule_arn(rule), rule);
            // Lambda takes JSON: text that is not a JSON document goes as a JSON string.
            if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
                return Some(Bytes::from(text));
            }
            return Some(Bytes::from(serde_json::to_vec(&Value::String(text)).ok()?));
        }
        let selected = match &target.input_path {
            Some(path) => JsonPath::parse(path).ok()?.select(&event)?.clone(),
            None => event,
        };
        Some(Bytes::from(serde_json::to_vec(&selected).ok()?))
    }

    async fn fire(&self, firing: Firing) {
        let (name, tick) = (firing.rule.clone(), firing.tick);
        if let Err(e) = self.persist(move |s| s.set_last_fired(&name, tick)).await {
            tracing::warn!(rule = %firing.rule, error = %e, "could not record the firing; not sending it");
            return;
        }
        if let Some(e) = self.lock().get_mut(&firing.rule) {
            e.last_fired = Some(tick);
        }
        for target in &firing.targets {
            let Some(payload) = self.payload(&firing.rule, tick, target) else {
                tracing::warn!(rule = %firing.rule, target = %target.id, "InputPath selects nothing; target skipped");
                continue;
            };
            let Ok(function) = FunctionRef::parse(&target.arn, NameShape::Namespaced) else {
                continue;
            };
            let request_id = uuid::Uuid::new_v4().to_string();
            match self.queue.enqueue(&function, &request_id, payload).await {
                Ok(()) => {
                    tracing::info!(rule = %firing.rule, target = %target.id, tick, %request_id, "rule fired")
                }
                Err(e) => {
                    tracing::warn!(rule = %firing.rule, target = %target.id, error = %e, "could not queue the scheduled event")
                }
            }
        }
    }

    /// Fires rules as their ticks come, until the process ends.
    pub fn start(self: &Arc<Self>) {
        let schedules = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(this) = schedules.upgrade() else {
                    return;
                };
                let now = this.clock.now_secs();
                let (firings, next) = this.due(now);
                for firing in firings {
                    this.fire(firing).await;
                }
                // Sleep to the next tick, but look again every second: the clock can be set.
                let wait_ms = next
                    .map(|t| {
                        t.saturating_mul(1000)
                            .saturating_sub(this.clock.now_ms())
                            .clamp(10, 1000)
                    })
                    .unwrap_or(1000);
                let notified = this.wake.notified();
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_have_no_fractions() {
        assert_eq!(event_time(1_444_323_186), "2015-10-08T16:53:06Z");
    }

    #[test]
    fn names_follow_eventbridge_rules() {
        assert!(check_name(Some("my-rule.v1_x"), "name").is_ok());
        assert!(check_name(Some("bad name"), "name").is_err());
        assert!(check_name(Some(""), "name").is_err());
        assert!(check_name(None, "name").is_err());
        assert!(check_bus(Some("default")).is_ok());
        assert!(
            check_bus(Some(
                "arn:aws:events:us-east-1:123456789012:event-bus/default"
            ))
            .is_ok()
        );
        assert_eq!(
            check_bus(Some("other")).unwrap_err().code,
            "ResourceNotFoundException"
        );
    }
}
