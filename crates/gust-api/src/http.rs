//! Request and response plumbing shared by every handler: reading bodies within a limit,
//! query strings, and responses that carry Lambda's request id and error headers.

use bytes::Bytes;
use gust_model::LambdaError;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;

pub type HttpResponse = Response<Full<Bytes>>;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
pub const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// Reads the whole body; anything over `limit` bytes is refused with Lambda's 413 for the
/// operation. An oversized body is still read (up to twice the limit) before answering, so that
/// clients that send the whole request before reading the response see the error instead of a
/// reset connection.
pub async fn read_body(
    req: Request<Incoming>,
    limit: u64,
    operation: &str,
) -> Result<Bytes, LambdaError> {
    let (parts, body) = req.into_parts();
    read_body_of(&parts.headers, body, limit, operation).await
}

/// [`read_body`] for a request already taken apart.
pub async fn read_body_of(
    headers: &HeaderMap,
    body: Incoming,
    limit: u64,
    operation: &str,
) -> Result<Bytes, LambdaError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_limit = limit.saturating_mul(2);
    if declared.is_some_and(|n| n > drain_limit) {
        return Err(LambdaError::request_too_large(limit, operation));
    }
    let mut too_large = declared.is_some_and(|n| n > limit);
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut seen: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            LambdaError::invalid_request_content(format!("Could not read the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > limit {
            too_large = true;
        }
        if too_large {
            if seen > drain_limit {
                break;
            }
            continue;
        }
        buffer.extend_from_slice(&data);
    }
    if too_large {
        return Err(LambdaError::request_too_large(limit, operation));
    }
    Ok(Bytes::from(buffer))
}

/// Parses a JSON request document; an empty body is an empty document (botocore sends `{}`,
/// other clients send nothing).
pub fn parse_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, LambdaError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        LambdaError::serialization(format!(
            "The request body is not a valid JSON document: {e}"
        ))
    })
}

/// A control-plane request's JSON body, read within Lambda's limit for such requests and
/// parsed (an empty body is `T::default()`).
pub async fn read_json<T: DeserializeOwned + Default>(
    req: Request<Incoming>,
    operation: &str,
) -> Result<T, LambdaError> {
    let body = read_body(req, gust_model::limits::CONTROL_REQUEST_MAX, operation).await?;
    parse_json(&body)
}

/// Decoded query parameters, in order (keys may repeat).
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let Some(raw) = raw else {
            return Self::default();
        };
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        Self(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(pair), String::new()),
                })
                .collect(),
        )
    }

    /// Every value of a repeated key (`?tagKeys=a&tagKeys=b`).
    pub fn get_all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `host:port` the client addressed (its `Host` header), else `fallback`: for URLs Gust
/// hands back.
pub fn request_host<B>(req: &Request<B>, fallback: &str) -> String {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(fallback)
        .to_string()
}

fn with_request_id(mut response: HttpResponse, request_id: &str) -> HttpResponse {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

pub fn json(status: StatusCode, body: &serde_json::Value, request_id: &str) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_request_id(response, request_id)
}

pub fn empty(status: StatusCode, request_id: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    with_request_id(response, request_id)
}

pub fn error(error: &LambdaError, request_id: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(error.body())));
    *response.status_mut() =
        StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ERROR_TYPE, HeaderValue::from_static(error.code.name()));
    with_request_id(response, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some("Qualifier=%24LATEST&tagKeys=a&tagKeys=b%20c&flag"));
        assert_eq!(q.get("Qualifier"), Some("$LATEST"));
        assert_eq!(q.get("tagKeys"), Some("a"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
    }

    #[test]
    fn errors_carry_the_code_header() {
        let response = error(&LambdaError::not_found("Function not found: x"), "rid");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[ERROR_TYPE], "ResourceNotFoundException");
        assert_eq!(response.headers()[REQUEST_ID], "rid");
    }
}
