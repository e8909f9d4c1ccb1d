//! The errors a Lambda client can receive, with the status code, `X-Amzn-ErrorType` name and
//! body shape that real clients (botocore, the JS and Rust SDKs) parse.

use std::fmt;

/// An error code as it travels in the `X-Amzn-ErrorType` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ResourceNotFound,
    ResourceConflict,
    InvalidParameterValue,
    Validation,
    PreconditionFailed,
    RequestEntityTooLarge,
    InvalidRequestContent,
    UnsupportedMediaType,
    TooManyRequests,
    Serialization,
    UnknownOperation,
    NotImplemented,
    Service,
    InvalidRuntime,
    PolicyLengthExceeded,
    ProvisionedConcurrencyConfigNotFound,
    AccessDenied,
    CodeSigningConfigNotFound,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceConflict => "ResourceConflictException",
            Self::InvalidParameterValue => "InvalidParameterValueException",
            Self::Validation => "ValidationException",
            Self::PreconditionFailed => "PreconditionFailedException",
            Self::RequestEntityTooLarge => "RequestEntityTooLargeException",
            Self::InvalidRequestContent => "InvalidRequestContentException",
            Self::UnsupportedMediaType => "UnsupportedMediaTypeException",
            Self::TooManyRequests => "TooManyRequestsException",
            Self::Serialization => "SerializationException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::NotImplemented => "NotImplementedException",
            Self::Service => "ServiceException",
            Self::InvalidRuntime => "InvalidRuntimeException",
            Self::PolicyLengthExceeded => "PolicyLengthExceededException",
            Self::AccessDenied => "AccessDeniedException",
            Self::CodeSigningConfigNotFound => "CodeSigningConfigNotFoundException",
            Self::ProvisionedConcurrencyConfigNotFound => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::ResourceNotFound
            | Self::UnknownOperation
            | Self::ProvisionedConcurrencyConfigNotFound
            | Self::CodeSigningConfigNotFound => 404,
            Self::ResourceConflict => 409,
            Self::AccessDenied => 403,
            Self::InvalidParameterValue
            | Self::Validation
            | Self::InvalidRequestContent
            | Self::Serialization
            | Self::PolicyLengthExceeded => 400,
            Self::PreconditionFailed => 412,
            Self::RequestEntityTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            // 501 is not in any client's retry list, so an unimplemented operation is not re-sent.
            Self::NotImplemented => 501,
            Self::Service => 500,
            Self::InvalidRuntime => 502,
        }
    }

    /// The message member's spelling differs per exception in Lambda's model; clients read
    /// either, but matching the model keeps strict deserialisers happy.
    pub fn message_key(self) -> &'static str {
        match self {
            Self::ResourceNotFound
            | Self::Service
            | Self::RequestEntityTooLarge
            | Self::InvalidRuntime
            | Self::AccessDenied
            | Self::CodeSigningConfigNotFound => "Message",
            _ => "message",
        }
    }

    /// `Type` member: who is at fault.
    pub fn fault(self) -> &'static str {
        if self.status() >= 500 {
            "Service"
        } else {
            "User"
        }
    }
}

/// An error answered to a Lambda client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LambdaError {
    pub code: ErrorCode,
    pub message: String,
    /// `Reason` member of TooManyRequestsException.
    pub reason: Option<&'static str>,
    /// Whether the body carries `Type` (Lambda leaves it out of a few errors).
    pub typed: bool,
}

impl fmt::Display for LambdaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl LambdaError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason: None,
            typed: code != ErrorCode::AccessDenied,
        }
    }

    /// The same error with no `Type` member in its body, as Lambda words some of them.
    pub fn without_type(mut self) -> Self {
        self.typed = false;
        self
    }

    /// A resource of another account: Lambda answers 403 with no message at all.
    pub fn access_denied() -> Self {
        Self::new(ErrorCode::AccessDenied, "")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceNotFound, message)
    }

    pub fn function_not_found(arn: &str) -> Self {
        Self::not_found(format!("Function not found: {arn}"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceConflict, message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }

    /// A front-end validation failure, one entry per violated constraint, in Lambda's words.
    pub fn validation(violations: &[String]) -> Self {
        let count = violations.len();
        let noun = if count == 1 { "error" } else { "errors" };
        Self::new(
            ErrorCode::Validation,
            format!(
                "{count} validation {noun} detected: {}",
                violations.join("; ")
            ),
        )
    }

    pub fn precondition_failed(api: &str) -> Self {
        Self::new(
            ErrorCode::PreconditionFailed,
            format!(
                "The Revision Id provided does not match the latest Revision Id. Call the {api} API to retrieve the latest Revision Id"
            ),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RequestEntityTooLarge, message)
    }

    pub fn request_too_large(limit: u64, operation: &str) -> Self {
        Self::too_large(format!(
            "Request must be smaller than {limit} bytes for the {operation} operation"
        ))
    }

    pub fn invalid_request_content(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequestContent, message)
    }

    pub fn too_many_requests(reason: &'static str) -> Self {
        Self {
            reason: Some(reason),
            ..Self::new(ErrorCode::TooManyRequests, "Rate Exceeded.")
        }
    }

    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Serialization, message)
    }

    pub fn service(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Service, message)
    }

    pub fn not_implemented(operation: &str) -> Self {
        Self::new(
            ErrorCode::NotImplemented,
            format!("Gust does not implement the {operation} operation yet."),
        )
    }

    /// The JSON body clients parse: `{"Type": ..., "message"|"Message": ..., "Reason"?}`.
    pub fn body(&self) -> Vec<u8> {
        let mut body = serde_json::Map::new();
        if self.typed {
            body.insert("Type".into(), self.code.fault().into());
        }
        if !self.message.is_empty() {
            body.insert(self.code.message_key().into(), self.message.clone().into());
        }
        if let Some(reason) = self.reason {
            body.insert("Reason".into(), reason.into());
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// Formats one violated constraint the way Lambda's front end words it.
pub fn violation(value: &str, field: &str, constraint: &str) -> String {
    format!("Value '{value}' at '{field}' failed to satisfy constraint: {constraint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_message_counts_violations() {
        let one = LambdaError::validation(&[violation("r1", "role", "Member must x")]);
        assert_eq!(
            one.message,
            "1 validation error detected: Value 'r1' at 'role' failed to satisfy constraint: Member must x"
        );
        let two = LambdaError::validation(&["a".into(), "b".into()]);
        assert_eq!(two.message, "2 validation errors detected: a; b");
    }

    #[test]
    fn body_uses_the_models_message_key() {
        let nf: serde_json::Value =
            serde_json::from_slice(&LambdaError::not_found("x").body()).unwrap();
        assert_eq!(nf, serde_json::json!({"Type": "User", "Message": "x"}));
        let throttled: serde_json::Value = serde_json::from_slice(
            &LambdaError::too_many_requests("ConcurrentInvocationLimitExceeded").body(),
        )
        .unwrap();
        assert_eq!(
            throttled,
            serde_json::json!({"Type": "User", "message": "Rate Exceeded.", "Reason": "ConcurrentInvocationLimitExceeded"})
        );
    }
}
