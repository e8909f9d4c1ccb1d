//! Aliases and resource policies, as Gust stores them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A named pointer to a version, optionally splitting traffic with a second version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    /// `$LATEST` or a version number.
    pub function_version: String,
    pub description: String,
    /// Extra version → share of traffic (0.0–1.0); at most one entry.
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
    pub revision_id: String,
}

impl Alias {
    /// The versions this alias can send traffic to.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.function_version.as_str())
            .chain(self.additional_version_weights.keys().map(String::as_str))
    }

    /// The version that serves one request, given a uniform draw in `[0, 1)`.
    pub fn pick(&self, draw: f64) -> &str {
        let mut threshold = 0.0;
        for (version, weight) in &self.additional_version_weights {
            threshold += weight;
            if draw < threshold {
                return version;
            }
        }
        &self.function_version
    }
}

/// The resource-based policy of a function, a version or an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Statements as Lambda renders them (member order matters: clients see the text).
    pub statements: Vec<serde_json::Value>,
    pub revision_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pick() {
        let alias = Alias {
            function: "f".into(),
            name: "live".into(),
            function_version: "1".into(),
            description: String::new(),
            additional_version_weights: [("2".to_string(), 0.25)].into(),
            revision_id: "r".into(),
        };
        assert_eq!(alias.pick(0.1), "2");
        assert_eq!(alias.pick(0.25), "1");
        assert_eq!(alias.pick(0.99), "1");
        assert_eq!(alias.versions().collect::<Vec<_>>(), vec!["1", "2"]);
    }
}

/// How asynchronous invocations of a function, version or alias are retried and where their
/// results go (PutFunctionEventInvokeConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub function: String,
    /// `$LATEST`, a version number or an alias name.
    pub qualifier: String,
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_seconds: Option<u32>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified_ms: u64,
}

impl EventInvokeConfig {
    /// Lambda's defaults when a member is unset: 2 retries, 6 hours.
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_MAX_AGE_SECONDS: u32 = 21_600;

    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts.unwrap_or(Self::DEFAULT_RETRIES)
    }

    pub fn max_age_seconds(&self) -> u32 {
        self.maximum_event_age_seconds
            .unwrap_or(Self::DEFAULT_MAX_AGE_SECONDS)
    }
}
