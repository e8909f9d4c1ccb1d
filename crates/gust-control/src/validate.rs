//! Lambda's validation rules for function configuration, worded as Lambda words them.
//!
//! Front-end constraint violations (lengths, patterns, ranges, enums) are collected and
//! reported together as one `ValidationException`; semantic problems are
//! `InvalidParameterValueException`s, reported one at a time.

use gust_model::LambdaError;
use gust_model::error::violation;
use gust_model::limits::*;
use gust_model::names::{is_account, is_partition};
use gust_runtimes::ids::{AWS_ACCEPTED_RUNTIMES, Support};
use indexmap::IndexMap;

use crate::requests::ConfigurationInput;

pub const ROLE_PATTERN: &str = r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+";
const ENV_NAME_PATTERN: &str = "[a-zA-Z]([a-zA-Z0-9_])+";

/// Environment variables Lambda sets itself and refuses to let a function override.
pub const RESERVED_ENV_KEYS: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Collects front-end constraint violations.
#[derive(Debug, Default)]
pub struct Violations(Vec<String>);

impl Violations {
    pub fn push(&mut self, value: &str, field: &str, constraint: &str) {
        self.0.push(violation(value, field, constraint));
    }

    pub fn null(&mut self, field: &str) {
        self.0.push(format!(
            "Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ));
    }

    pub fn raw(&mut self, text: String) {
        self.0.push(text);
    }

    /// Whether exactly one violation was found.
    pub fn is_single(&self) -> bool {
        self.0.len() == 1
    }

    pub fn into_result(self) -> Result<(), LambdaError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(LambdaError::validation(&self.0))
        }
    }

    fn range(&mut self, value: i64, field: &str, min: i64, max: i64) {
        if value < min {
            self.push(
                &value.to_string(),
                field,
                &format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            self.push(
                &value.to_string(),
                field,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    fn one_of(&mut self, value: &str, field: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.push(
                value,
                field,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            );
        }
    }
}

pub fn is_role_arn(role: &str) -> bool {
    // arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+
    let Some(rest) = role.strip_prefix("arn:") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    if !is_partition(partition) {
        return false;
    }
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    if !is_account(account) {
        return false;
    }
    let Some(rest) = rest.strip_prefix("role") else {
        return false;
    };
    let path = rest.strip_prefix('/').unwrap_or(rest);
    !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-/".contains(c))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Front-end checks of the configuration members that are present.
pub fn check_configuration(input: &ConfigurationInput, v: &mut Violations) {
    if let Some(role) = &input.role
        && !is_role_arn(role)
    {
        v.push(
            role,
            "role",
            &format!("Member must satisfy regular expression pattern: {ROLE_PATTERN}"),
        );
    }
    if let Some(handler) = &input.handler {
        if handler.chars().count() > HANDLER_MAX {
            v.push(
                handler,
                "handler",
                &format!("Member must have length less than or equal to {HANDLER_MAX}"),
            );
        } else if handler.chars().any(char::is_whitespace) {
            v.push(
                handler,
                "handler",
                r"Member must satisfy regular expression pattern: [^\s]+",
            );
        }
    }
    check_description(input.description.as_deref(), v);
    if let Some(timeout) = input.timeout {
        v.range(timeout, "timeout", TIMEOUT_MIN_S, TIMEOUT_MAX_S);
    }
    if let Some(memory) = input.memory_size {
        v.range(memory, "memorySize", MEMORY_MIN_MB, MEMORY_MAX_MB);
    }
    if let Some(storage) = &input.ephemeral_storage {
        match storage.size {
            Some(size) => v.range(
                size,
                "ephemeralStorage.size",
                EPHEMERAL_MIN_MB,
                EPHEMERAL_MAX_MB,
            ),
            None => v.null("ephemeralStorage.size"),
        }
    }
    if let Some(vars) = input
        .environment
        .as_ref()
        .and_then(|e| e.variables.as_ref())
        && vars.keys().any(|k| !is_env_name(k))
    {
        v.raw(format!(
            "Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: {ENV_NAME_PATTERN}]"
        ));
    }
    if let Some(mode) = input
        .tracing_config
        .as_ref()
        .and_then(|t| t.mode.as_deref())
    {
        v.one_of(mode, "tracingConfig.mode", &["Active", "PassThrough"]);
    }
    if let Some(apply_on) = input
        .snap_start
        .as_ref()
        .and_then(|s| s.apply_on.as_deref())
    {
        v.one_of(
            apply_on,
            "snapStart.applyOn",
            &["PublishedVersions", "None"],
        );
    }
    if let Some(logging) = &input.logging_config {
        if let Some(format) = &logging.log_format {
            v.one_of(format, "loggingConfig.logFormat", &["JSON", "Text"]);
        }
        let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        if let Some(level) = &logging.application_log_level {
            v.one_of(level, "loggingConfig.applicationLogLevel", &levels);
        }
        if let Some(level) = &logging.system_log_level {
            v.one_of(
                level,
                "loggingConfig.systemLogLevel",
                &["DEBUG", "INFO", "WARN"],
            );
        }
    }
}

/// A `Description` member (functions and code signing configurations alike).
pub fn check_description(description: Option<&str>, v: &mut Violations) {
    if let Some(description) = description
        && description.chars().count() > DESCRIPTION_MAX
    {
        v.push(
            description,
            "description",
            &format!("Member must have length less than or equal to {DESCRIPTION_MAX}"),
        );
    }
}

pub fn check_architectures(architectures: &[String], v: &mut Violations) {
    let shown = format!("[{}]", architectures.join(", "));
    if architectures.len() != 1 {
        let constraint = if architectures.is_empty() {
            "Member must have length greater than or equal to 1"
        } else {
            "Member must have length less than or equal to 1"
        };
        v.push(&shown, "architectures", constraint);
    } else if !["x86_64", "arm64"].contains(&architectures[0].as_str()) {
        v.push(
            &shown,
            "architectures",
            "Member must satisfy constraint: [Member must satisfy enum value set: [x86_64, arm64], Member must not be null]",
        );
    }
}

/// A runtime Gust can run, or Lambda's error for it.
pub fn check_runtime(runtime: &str) -> Result<(), LambdaError> {
    match gust_runtimes::support(runtime) {
        Support::Supported(_) => Ok(()),
        Support::NotInGust => Err(LambdaError::invalid_parameter(format!(
            "The runtime parameter of {runtime} is not supported by Gust. Gust runs {}.",
            gust_runtimes::ids::GUST_RUNTIMES
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Support::Deprecated => Err(LambdaError::invalid_parameter(format!(
            "The runtime parameter of {runtime} is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions."
        ))),
        Support::Unknown => Err(LambdaError::invalid_parameter(format!(
            "Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [{}] or be a valid ARN",
            AWS_ACCEPTED_RUNTIMES.join(", ")
        ))),
    }
}

/// The 4 KB limit (measured on the compact JSON of the map, in the request's order) and the
/// reserved names.
pub fn check_environment(vars: &IndexMap<String, String>) -> Result<(), LambdaError> {
    let measured = serde_json::to_string(vars).unwrap_or_default();
    if measured.len() > ENVIRONMENT_MAX {
        return Err(LambdaError::invalid_parameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {measured}"
        )));
    }
    let reserved: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| RESERVED_ENV_KEYS.contains(k))
        .collect();
    if !reserved.is_empty() {
        return Err(LambdaError::invalid_parameter(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(",")
        )));
    }
    if let Some(value) = vars.get(gust_model::NETWORK_VARIABLE)
        && gust_model::Network::parse(value).is_none()
    {
        return Err(LambdaError::invalid_parameter(format!(
            "{} must be none or egress, got '{value}'.",
            gust_model::NETWORK_VARIABLE
        )));
    }
    Ok(())
}

/// Gust has no layers yet, so every layer reference names something that does not exist.
pub fn check_layers(layers: &[String]) -> Result<(), LambdaError> {
    if layers.len() > 5 {
        return Err(LambdaError::invalid_parameter(
            "Cannot reference more than 5 layers.",
        ));
    }
    match layers.first() {
        Some(layer) => Err(LambdaError::invalid_parameter(format!(
            "Layer version {layer} does not exist."
        ))),
        None => Ok(()),
    }
}

/// Runtime and handler must be present together for .zip functions (a custom runtime may
/// leave the handler out: its bootstrap decides what it means).
pub fn check_runtime_and_handler(
    runtime: Option<&str>,
    handler: Option<&str>,
) -> Result<(), LambdaError> {
    let custom = runtime.is_some_and(|r| r.starts_with("provided"));
    if runtime.is_none() || (handler.is_none() && !custom) {
        return Err(LambdaError::invalid_parameter(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        ));
    }
    Ok(())
}

/// Log levels only apply to JSON logs.
pub fn check_logging(
    format: &str,
    app_level: Option<&str>,
    system_level: Option<&str>,
) -> Result<(), LambdaError> {
    if format == "Text" && (app_level.is_some() || system_level.is_some()) {
        return Err(LambdaError::invalid_parameter(
            "LogLevel is not supported when LogFormat is set to \"Text\". Remove LogLevel from your request or change the LogFormat to \"JSON\" and try again.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::requests::EphemeralStorage;

    #[test]
    fn role_pattern() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/r"));
        assert!(is_role_arn(
            "arn:aws:iam::123456789012:role/service-role/x.y@z"
        ));
        assert!(is_role_arn("arn:aws-cn:iam::123456789012:role/r"));
        assert!(!is_role_arn("r1"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/r"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/r"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:role/"));
    }

    #[test]
    fn ranges_and_enums_are_collected() {
        let input = ConfigurationInput {
            timeout: Some(0),
            memory_size: Some(64),
            ephemeral_storage: Some(EphemeralStorage { size: Some(99_999) }),
            handler: Some("a b".into()),
            ..Default::default()
        };
        let mut v = Violations::default();
        check_configuration(&input, &mut v);
        let err = v.into_result().unwrap_err();
        assert!(
            err.message.starts_with("4 validation errors detected: "),
            "{}",
            err.message
        );
        assert!(err.message.contains(
            "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ));
        assert!(err.message.contains(
            "Value '64' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128"
        ));
    }

    #[test]
    fn environment_limits() {
        let mut vars = IndexMap::new();
        vars.insert("AWS_REGION".to_string(), "x".to_string());
        let err = check_environment(&vars).unwrap_err();
        assert!(
            err.message
                .ends_with("Reserved keys used in this request: AWS_REGION")
        );
        let mut network = IndexMap::new();
        network.insert("GUST_NETWORK".to_string(), "egress".to_string());
        assert!(check_environment(&network).is_ok());
        network.insert("GUST_NETWORK".to_string(), "internet".to_string());
        let err = check_environment(&network).unwrap_err();
        assert_eq!(
            err.message,
            "GUST_NETWORK must be none or egress, got 'internet'."
        );
        let mut big = IndexMap::new();
        big.insert("BIG".to_string(), "x".repeat(5000));
        let err = check_environment(&big).unwrap_err();
        assert!(
            err.message
                .contains("exceeded the 4KB limit. String measured: {\"BIG\":\"xxx")
        );
        // Quoted in the request's order, not sorted.
        let mut ordered = IndexMap::new();
        ordered.insert("SMALL".to_string(), "ok".to_string());
        ordered.insert("BIG".to_string(), "x".repeat(5000));
        let err = check_environment(&ordered).unwrap_err();
        assert!(
            err.message
                .contains("String measured: {\"SMALL\":\"ok\",\"BIG\":\"xxx")
        );
        assert!(!is_env_name("1A"));
        assert!(!is_env_name("A"));
        assert!(is_env_name("A_1"));
    }

    #[test]
    fn runtime_messages() {
        assert!(check_runtime("nodejs20.x").is_ok());
        let unknown = check_runtime("cobol").unwrap_err();
        assert!(unknown.message.starts_with(
            "Value cobol at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [nodejs20.x, python3.14,"
        ));
        assert!(
            check_runtime("python2.7")
                .unwrap_err()
                .message
                .contains("no longer supported")
        );
        assert!(
            check_runtime("java21")
                .unwrap_err()
                .message
                .contains("not supported by Gust")
        );
    }
}
