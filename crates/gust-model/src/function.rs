//! The configuration of one function version, as Gust stores it.
//!
//! Every member a client may set is kept, including the ones Gust accepts and echoes without
//! acting on them (VPC, dead-letter target, KMS key), so that infrastructure tools that read
//! back what they wrote see no drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The mutable, unpublished version of every function.
pub const LATEST: &str = "$LATEST";

/// The deployment package a version runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// Base64 of the SHA-256 digest of the zip, as Lambda reports `CodeSha256`.
    pub sha256: String,
    /// Hex of the same digest: the package's key in the content-addressed code store.
    pub digest_hex: String,
    /// Size of the zip in bytes (`CodeSize`).
    pub size: u64,
    /// Total size of the extracted files.
    #[serde(default)]
    pub unzipped_size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcConfig {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub ipv6_allowed_for_dual_stack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    pub log_format: String,
    #[serde(default)]
    pub application_log_level: Option<String>,
    #[serde(default)]
    pub system_log_level: Option<String>,
    pub log_group: String,
}

/// One version's configuration and code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub name: String,
    pub version: String,
    pub runtime: Option<String>,
    pub role: String,
    pub handler: Option<String>,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub environment: Option<BTreeMap<String, String>>,
    pub architecture: String,
    pub ephemeral_storage: u32,
    pub tracing_mode: String,
    pub code: CodeRef,
    pub last_modified: String,
    pub revision_id: String,
    #[serde(default)]
    pub dead_letter_target: Option<String>,
    #[serde(default)]
    pub kms_key_arn: Option<String>,
    #[serde(default)]
    pub vpc_config: Option<VpcConfig>,
    #[serde(default)]
    pub file_system_configs: Option<serde_json::Value>,
    #[serde(default = "snap_start_none")]
    pub snap_start_apply_on: String,
    pub logging: LoggingConfig,
}

fn snap_start_none() -> String {
    "None".into()
}

impl FunctionConfig {
    /// Whether the function brings its own runtime (`provided*`): the zip's `bootstrap` runs.
    pub fn is_custom_runtime(&self) -> bool {
        self.runtime
            .as_deref()
            .is_some_and(|r| r.starts_with("provided"))
    }

    /// The default log group of a function.
    pub fn default_log_group(name: &str) -> String {
        format!("/aws/lambda/{name}")
    }
}
