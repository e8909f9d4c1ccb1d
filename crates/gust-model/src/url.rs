//! Function URLs: a dedicated HTTP endpoint for a function or one of its aliases.

use serde::{Deserialize, Serialize};

/// `AuthType` of a function URL.
pub const AUTH_TYPES: &[&str] = &["NONE", "AWS_IAM"];
/// `InvokeMode` of a function URL.
pub const INVOKE_MODES: &[&str] = &["BUFFERED", "RESPONSE_STREAM"];

/// Cross-origin settings Gust applies to a function URL's responses and preflights.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

impl Cors {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allowed_origin(&self, origin: &str) -> Option<String> {
        let origins = self.allow_origins.as_deref().unwrap_or_default();
        if origins.iter().any(|o| o == "*") {
            // With credentials a browser refuses `*`: echo the origin instead.
            return Some(if self.allow_credentials == Some(true) {
                origin.to_string()
            } else {
                "*".to_string()
            });
        }
        origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
            .then(|| origin.to_string())
    }

    pub fn allows_method(&self, method: &str) -> bool {
        self.allow_methods
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|m| m == "*" || m.eq_ignore_ascii_case(method))
    }
}

/// A function URL as Gust stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    pub function: String,
    /// The alias the URL invokes, or `None` for the unqualified function (`$LATEST`).
    pub qualifier: Option<String>,
    /// The URL's own id: 32 lower-case letters and digits, as on AWS.
    pub url_id: String,
    pub auth_type: String,
    #[serde(default)]
    pub cors: Option<Cors>,
    pub invoke_mode: String,
    pub creation_time: String,
    pub last_modified_time: String,
}

/// A new URL id: 32 characters of `[a-z0-9]`.
pub fn new_url_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let more = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .chain(more.iter())
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn is_url_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ids_have_the_aws_shape() {
        let a = new_url_id();
        assert!(is_url_id(&a), "{a}");
        assert_ne!(a, new_url_id());
        assert!(!is_url_id("ABC"));
    }

    #[test]
    fn cors_origins_and_methods() {
        let cors = Cors {
            allow_origins: Some(vec!["https://a.example".into()]),
            allow_methods: Some(vec!["GET".into(), "POST".into()]),
            ..Cors::default()
        };
        assert_eq!(
            cors.allowed_origin("https://a.example").as_deref(),
            Some("https://a.example")
        );
        assert_eq!(cors.allowed_origin("https://b.example"), None);
        assert!(cors.allows_method("post"));
        assert!(!cors.allows_method("DELETE"));
        let any = Cors {
            allow_origins: Some(vec!["*".into()]),
            ..Cors::default()
        };
        assert_eq!(any.allowed_origin("https://x").as_deref(), Some("*"));
    }
}
