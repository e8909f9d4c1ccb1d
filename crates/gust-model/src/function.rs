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
    /// What execution environments are made from (code and configuration) changed last under
    /// this revision: a new `RevisionId` that only tags or a publish gave `$LATEST` leaves it,
    /// so its warm environments stay. (Empty in versions stored before it existed.)
    #[serde(default)]
    pub environment_revision: String,
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
    /// For a published version: the description `$LATEST` had when it was published (its own
    /// may be the one PublishVersion gave), so that a later change of description alone
    /// publishes a new version, as on Lambda.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_description: Option<String>,
}

fn snap_start_none() -> String {
    "None".into()
}

/// The environment variable that chooses a function's outbound network. Lambda has no such
/// setting (its functions outside a VPC reach the internet); Gust's sandboxes have no network
/// unless asked, and a variable is a per-function setting every Lambda client can set.
pub const NETWORK_VARIABLE: &str = "GUST_NETWORK";

/// A function's outbound network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Only the environment's own Runtime API.
    #[default]
    None,
    /// Outbound connections through NAT; the host and other environments stay unreachable.
    Egress,
}

impl Network {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "egress" => Some(Self::Egress),
            _ => None,
        }
    }
}

impl FunctionConfig {
    /// A minimal configuration of a Python function named `name`, for tests and tools
    /// that need one.
    pub fn sample(name: &str) -> Self {
        Self {
            name: name.into(),
            version: "$LATEST".into(),
            runtime: Some("python3.12".into()),
            role: "arn:aws:iam::123456789012:role/r".into(),
            handler: Some("app.handler".into()),
            description: String::new(),
            timeout: 3,
            memory_size: 128,
            environment: None,
            architecture: "x86_64".into(),
            ephemeral_storage: 512,
            tracing_mode: "PassThrough".into(),
            code: CodeRef {
                sha256: "x".into(),
                digest_hex: "y".into(),
                size: 1,
                unzipped_size: 1,
            },
            last_modified: "2020-04-10T19:06:32.563+0000".into(),
            revision_id: "r".into(),
            environment_revision: "r".into(),
            dead_letter_target: None,
            kms_key_arn: None,
            vpc_config: None,
            file_system_configs: None,
            snap_start_apply_on: "None".into(),
            logging: LoggingConfig {
                log_format: "Text".into(),
                application_log_level: None,
                system_log_level: None,
                log_group: format!("/aws/lambda/{name}"),
            },
            published_description: None,
        }
    }

    /// Whether this version starts its environments from a SnapStart snapshot
    /// (`OptimizationStatus: On`): a published version of a Python function that asked for
    /// SnapStart on published versions.
    pub fn snap_start_on(&self) -> bool {
        self.snap_start_apply_on == "PublishedVersions"
            && self.version != "$LATEST"
            && self
                .runtime
                .as_deref()
                .is_some_and(|r| r.starts_with("python"))
    }

    /// The outbound network the function asked for (`GUST_NETWORK`).
    pub fn network(&self) -> Network {
        self.environment
            .as_ref()
            .and_then(|vars| vars.get(NETWORK_VARIABLE))
            .and_then(|v| Network::parse(v))
            .unwrap_or_default()
    }

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
