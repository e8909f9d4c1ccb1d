//! Code signing configurations: which signing profiles a function's code must come from, and
//! what a deployment does with code that is not signed by one of them.

use serde::{Deserialize, Serialize};

/// `UntrustedArtifactOnDeployment`: what a deployment of unsigned or wrongly signed code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UntrustedArtifactPolicy {
    /// The deployment goes ahead and the check is logged (Lambda's default).
    #[default]
    Warn,
    /// The deployment is refused.
    Enforce,
}

impl UntrustedArtifactPolicy {
    pub const ALL: [(&'static str, Self); 2] = [("Warn", Self::Warn), ("Enforce", Self::Enforce)];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, policy)| *policy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "Warn",
            Self::Enforce => "Enforce",
        }
    }
}

/// A code signing configuration (`csc-` and 17 hexadecimal digits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSigningConfig {
    pub id: String,
    pub description: String,
    /// `AllowedPublishers.SigningProfileVersionArns`.
    pub signing_profile_version_arns: Vec<String>,
    pub untrusted_artifact_on_deployment: UntrustedArtifactPolicy,
    pub last_modified: String,
}
