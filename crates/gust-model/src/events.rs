//! EventBridge rules and targets, and HTTP routes: what starts a function besides a call.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A scheduled rule on the default event bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub schedule_expression: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When the schedule was set (Unix seconds): rates count from here.
    pub anchor: i64,
    /// When the rule last became enabled or changed (Unix seconds): nothing earlier fires.
    pub active_since: i64,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.state == "ENABLED"
    }
}

/// Where a rule delivers its event: a Lambda function, invoked asynchronously.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub arn: String,
    /// JSON text sent instead of the event.
    #[serde(default)]
    pub input: Option<String>,
    /// JSONPath selecting the part of the event that is sent.
    #[serde(default)]
    pub input_path: Option<String>,
    /// `InputTransformer` as the request gave it (`InputPathsMap`, `InputTemplate`).
    #[serde(default)]
    pub input_transformer: Option<serde_json::Value>,
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// An HTTP route of Gust's gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRoute {
    pub route_key: String,
    /// `function` or `function:alias`.
    pub target: String,
    /// Unix milliseconds.
    pub created_ms: u64,
}
