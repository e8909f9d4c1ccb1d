//! Concurrency settings: a function's reserved concurrency and provisioned concurrency of its
//! versions and aliases.

use serde::{Deserialize, Serialize};

/// Pre-initialised environments requested for a published version or an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    pub function: String,
    /// A version number or an alias name (never `$LATEST`).
    pub qualifier: String,
    pub requested: u32,
    pub last_modified: String,
}
