//! The Invoke operation: request headers and payload checks, and the response headers clients
//! read (`X-Amz-Executed-Version`, `X-Amz-Function-Error`, `X-Amz-Log-Result`).

use base64::Engine;
use bytes::Bytes;
use gust_invoke::InvokeRequest;
use gust_model::error::violation;
use gust_model::limits::{ASYNC_PAYLOAD_MAX, CLIENT_CONTEXT_MAX, SYNC_PAYLOAD_MAX};
use gust_model::names::NameShape;
use gust_model::{FunctionRef, LambdaError};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::App;
use crate::http::{HttpResponse, Query, REQUEST_ID, empty, read_body};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A closed set of values a header may take, as Lambda names them.
trait HeaderChoice: Sized + Copy + 'static {
    /// Every value, with its wire name, in the order Lambda lists them in errors.
    const ALL: &'static [(&'static str, Self)];
    const DEFAULT: Self;
}

/// How Invoke runs the function (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    Event,
    RequestResponse,
    DryRun,
}

impl HeaderChoice for InvocationType {
    const ALL: &'static [(&'static str, Self)] = &[
        ("Event", Self::Event),
        ("RequestResponse", Self::RequestResponse),
        ("DryRun", Self::DryRun),
    ];
    const DEFAULT: Self = Self::RequestResponse;
}

/// Whether a synchronous Invoke returns the tail of the call's log (`X-Amz-Log-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogType {
    Tail,
    None,
}

impl HeaderChoice for LogType {
    const ALL: &'static [(&'static str, Self)] = &[("Tail", Self::Tail), ("None", Self::None)];
    const DEFAULT: Self = Self::None;
}

/// The value of header `name` (request member `field`), or the default when it is absent.
fn enum_header<T: HeaderChoice>(
    headers: &HeaderMap,
    name: &str,
    field: &str,
) -> Result<T, LambdaError> {
    let Some(value) = header(headers, name) else {
        return Ok(T::DEFAULT);
    };
    if let Some((_, choice)) = T::ALL.iter().find(|(wire, _)| *wire == value) {
        return Ok(*choice);
    }
    let allowed: Vec<&str> = T::ALL.iter().map(|(wire, _)| *wire).collect();
    Err(LambdaError::validation(&[violation(
        value,
        field,
        &format!(
            "Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        ),
    )]))
}

/// `X-Amz-Client-Context`: base64 of a JSON document, handed to the runtime decoded.
fn client_context(headers: &HeaderMap) -> Result<Option<String>, LambdaError> {
    let Some(encoded) = header(headers, "x-amz-client-context") else {
        return Ok(None);
    };
    let invalid = || {
        LambdaError::invalid_request_content(
            "Client context must be a valid Base64-encoded JSON object.",
        )
    };
    if encoded.len() > CLIENT_CONTEXT_MAX {
        return Err(LambdaError::invalid_request_content(format!(
            "Client context must be at most {CLIENT_CONTEXT_MAX} bytes of Base64-encoded data."
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|_| invalid())?;
    if !parsed.is_object() {
        return Err(invalid());
    }
    Ok(Some(text))
}

/// The event as the function receives it: the body if it is JSON (an empty body is `{}`).
fn json_payload(body: Bytes) -> Result<Bytes, LambdaError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| {
        LambdaError::invalid_request_content(format!(
            "Could not parse request body into json: Could not parse payload into json: {e}"
        ))
    })?;
    Ok(body)
}

/// The deprecated InvokeAsync operation: the body is the event, the answer is 202.
pub async fn invoke_async(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let function = FunctionRef::parse(name, NameShape::Namespaced)?;
    app.control.resolve(&function)?;
    let payload = json_payload(read_body(req, ASYNC_PAYLOAD_MAX, "InvokeAsync").await?)?;
    app.queue.enqueue(&function, rid, payload).await?;
    Ok(crate::http::json(
        StatusCode::ACCEPTED,
        &serde_json::json!({"Status": 202}),
        rid,
    ))
}

pub async fn invoke(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let function =
        FunctionRef::parse_qualified(name, NameShape::Namespaced, query.get("Qualifier"))?;
    let headers = req.headers();
    let invocation_type: InvocationType =
        enum_header(headers, "x-amz-invocation-type", "invocationType")?;
    let log_type: LogType = enum_header(headers, "x-amz-log-type", "logType")?;
    let client_context = client_context(headers)?;
    let tenant_id = header(headers, "x-amz-tenant-id").map(str::to_string);
    let config = app.control.resolve_for_invoke(&function)?;
    if invocation_type == InvocationType::DryRun {
        return Ok(empty(StatusCode::NO_CONTENT, rid));
    }
    let limit = if invocation_type == InvocationType::Event {
        ASYNC_PAYLOAD_MAX
    } else {
        SYNC_PAYLOAD_MAX
    };
    let payload = json_payload(read_body(req, limit, "InvokeFunction").await?)?;
    if invocation_type == InvocationType::Event {
        app.queue.enqueue(&function, rid, payload).await?;
        return Ok(empty(StatusCode::ACCEPTED, rid));
    }

    let result = app
        .invoker
        .invoke(InvokeRequest {
            function,
            config,
            request_id: rid.to_string(),
            payload,
            client_context,
            tenant_id,
        })
        .await?;

    let mut response = Response::new(Full::new(result.body));
    let headers = response.headers_mut();
    let content_type = result
        .content_type
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or(HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_TYPE, content_type);
    if let Ok(v) = HeaderValue::from_str(&result.executed_version) {
        headers.insert("x-amz-executed-version", v);
    }
    if result.function_error {
        headers.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if log_type == LogType::Tail
        && let Ok(v) = HeaderValue::from_str(&gust_invoke::report::tail(&result.log))
    {
        headers.insert("x-amz-log-result", v);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        headers.insert(REQUEST_ID, v);
    }
    Ok(response)
}
