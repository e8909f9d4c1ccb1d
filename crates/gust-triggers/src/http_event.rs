//! HTTP requests as Lambda sees them (the payload format 2.0 event of API Gateway HTTP APIs
//! and function URLs) and function results as HTTP responses.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper::HeaderMap;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

/// One HTTP request, as received.
pub struct IncomingRequest<'a> {
    pub method: &'a str,
    /// The path the function sees (for a function URL, without Gust's `/lambda-url/<id>`
    /// prefix), still percent-encoded.
    pub path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    /// `HTTP/1.1`.
    pub protocol: &'a str,
    /// The port the request came in on (`x-forwarded-port`).
    pub local_port: u16,
}

/// What the platform adds: who serves the request and how it was routed.
pub struct RequestContext<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub domain_name: &'a str,
    /// The first label of the domain name (the URL id, for function URLs).
    pub domain_prefix: &'a str,
    pub request_id: &'a str,
    pub route_key: &'a str,
    /// `{param}` values of the matched route; `None` for function URLs.
    pub path_parameters: Option<&'a BTreeMap<String, String>>,
    pub time: SystemTime,
}

/// Content types whose bodies reach the function as text; everything else is base64.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct.split(';').next().unwrap_or_default().trim();
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.ends_with("+json")
        || ct.ends_with("+xml")
        || matches!(
            ct.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
                | "application/graphql"
                | "application/x-www-form-urlencoded"
        )
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// `12/Mar/2020:19:03:58 +0000`.
fn request_time(t: SystemTime) -> String {
    let format =
        format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    OffsetDateTime::from(t).format(&format).unwrap_or_default()
}

/// The payload format 2.0 event of a request.
pub fn event(req: &IncomingRequest<'_>, ctx: &RequestContext<'_>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in req.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name.as_str() == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let forwarded = match headers.get("x-forwarded-for") {
        Some(chain) => format!("{chain}, {}", req.source_ip),
        None => req.source_ip.clone(),
    };
    headers.insert("x-forwarded-for".into(), forwarded);
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert("x-forwarded-port".into(), req.local_port.to_string());
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();

    let epoch_ms = gust_model::timefmt::epoch_ms(ctx.time);
    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), ctx.route_key.into());
    event.insert("rawPath".into(), req.path.into());
    event.insert(
        "rawQueryString".into(),
        req.raw_query.unwrap_or_default().into(),
    );
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), json!(headers));
    if let Some(query) = req.raw_query.filter(|q| !q.is_empty()) {
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k), decode(v));
            params
                .entry(k)
                .and_modify(|existing| {
                    existing.push(',');
                    existing.push_str(&v);
                })
                .or_insert(v);
        }
        event.insert("queryStringParameters".into(), json!(params));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": ctx.account_id,
            "apiId": ctx.api_id,
            "domainName": ctx.domain_name,
            "domainPrefix": ctx.domain_prefix,
            "http": {
                "method": req.method,
                "path": req.path,
                "protocol": req.protocol,
                "sourceIp": req.source_ip,
                "userAgent": user_agent,
            },
            "requestId": ctx.request_id,
            "routeKey": ctx.route_key,
            "stage": "$default",
            "time": request_time(ctx.time),
            "timeEpoch": epoch_ms,
        }),
    );
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let is_base64 = if req.body.is_empty() {
        false
    } else {
        match std::str::from_utf8(req.body) {
            Ok(text) if is_text(content_type) => {
                event.insert("body".into(), text.into());
                false
            }
            _ => {
                event.insert("body".into(), BASE64.encode(req.body).into());
                true
            }
        }
    };
    if let Some(params) = ctx.path_parameters {
        event.insert("pathParameters".into(), json!(params));
    }
    event.insert("isBase64Encoded".into(), is_base64.into());
    Value::Object(event)
}

/// A function's result as an HTTP response.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResult {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
    pub body: Vec<u8>,
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Maps a function's output to the HTTP response; `Err` says why it cannot be one (the caller
/// answers 502).
pub fn map_result(output: &[u8]) -> Result<HttpResult, String> {
    let value: Value = serde_json::from_slice(output)
        .map_err(|e| format!("the function's result is not JSON: {e}"))?;
    let json_type = ("content-type".to_string(), "application/json".to_string());
    let Some(status) = value.get("statusCode") else {
        // A result without statusCode is the body of a 200 answer.
        let body = match &value {
            Value::String(s) => s.clone().into_bytes(),
            _ => output.trim_ascii().to_vec(),
        };
        return Ok(HttpResult {
            status: 200,
            headers: vec![json_type],
            cookies: Vec::new(),
            body,
        });
    };
    let status = status
        .as_u64()
        .or_else(|| status.as_str().and_then(|s| s.parse().ok()))
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| format!("statusCode {status} is not an HTTP status"))?
        as u16;
    let mut headers = Vec::new();
    if let Some(map) = value.get("headers").and_then(Value::as_object) {
        for (name, v) in map {
            if let Some(text) = scalar_text(v) {
                headers.push((name.to_ascii_lowercase(), text));
            }
        }
    }
    if let Some(map) = value.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in map {
            for v in values.as_array().into_iter().flatten() {
                if let Some(text) = scalar_text(v) {
                    headers.push((name.to_ascii_lowercase(), text));
                }
            }
        }
    }
    if !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(json_type);
    }
    let cookies = value
        .get("cookies")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(scalar_text).collect())
        .unwrap_or_default();
    let base64 = value
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match value.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if base64 => BASE64
            .decode(s.trim())
            .map_err(|e| format!("the body is marked base64 but does not decode: {e}"))?,
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    Ok(HttpResult {
        status,
        headers,
        cookies,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn request<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        query: Option<&'a str>,
    ) -> IncomingRequest<'a> {
        IncomingRequest {
            method: "POST",
            path: "/my/path",
            raw_query: query,
            headers,
            body,
            source_ip: "10.1.2.3".into(),
            protocol: "HTTP/1.1",
            local_port: 4878,
        }
    }

    fn context(params: Option<&BTreeMap<String, String>>) -> RequestContext<'_> {
        RequestContext {
            account_id: "anonymous",
            api_id: "abc",
            domain_name: "abc.lambda-url.us-east-1.localhost",
            domain_prefix: "abc",
            request_id: "rid",
            route_key: "$default",
            path_parameters: params,
            time: UNIX_EPOCH + Duration::from_millis(1_583_348_638_390),
        }
    }

    #[test]
    fn headers_cookies_query_and_text_body() {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", "application/json".parse().unwrap());
        headers.append("X-Multi", "a".parse().unwrap());
        headers.append("X-Multi", "b".parse().unwrap());
        headers.insert("Cookie", "c1=v1; c2=v2".parse().unwrap());
        headers.insert("User-Agent", "curl/8.0".parse().unwrap());
        let e = event(
            &request(&headers, br#"{"k":"v"}"#, Some("a=1&a=2&b=x%20y")),
            &context(None),
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(e["queryStringParameters"], json!({"a": "1,2", "b": "x y"}));
        assert_eq!(e["cookies"], json!(["c1=v1", "c2=v2"]));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["headers"]["x-forwarded-for"], "10.1.2.3");
        assert_eq!(e["body"], r#"{"k":"v"}"#);
        assert_eq!(e["isBase64Encoded"], false);
        assert_eq!(e["requestContext"]["http"]["userAgent"], "curl/8.0");
        assert_eq!(e["requestContext"]["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(e["requestContext"]["timeEpoch"], 1_583_348_638_390u64);
        assert_eq!(e["requestContext"]["domainPrefix"], "abc");
        assert!(e.get("pathParameters").is_none());
    }

    #[test]
    fn binary_bodies_are_base64_and_no_query_means_no_member() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/octet-stream".parse().unwrap());
        let e = event(
            &request(&headers, &[0, 159, 146, 150], None),
            &context(None),
        );
        assert_eq!(e["body"], "AJ+Slg==");
        assert_eq!(e["isBase64Encoded"], true);
        assert!(e.get("queryStringParameters").is_none());
        assert_eq!(e["rawQueryString"], "");
        let params: BTreeMap<String, String> = [("id".to_string(), "7".to_string())].into();
        let e = event(&request(&headers, b"", None), &context(Some(&params)));
        assert!(e.get("body").is_none());
        assert_eq!(e["pathParameters"], json!({"id": "7"}));
    }

    #[test]
    fn results_without_status_code_are_json_bodies() {
        let r = map_result(br#""Hello""#).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello"[..]));
        assert_eq!(
            r.headers,
            vec![("content-type".into(), "application/json".into())]
        );
        let r = map_result(br#"{"message":"hi"}"#).unwrap();
        assert_eq!(r.body, br#"{"message":"hi"}"#);
        assert!(map_result(b"not json").is_err());
    }

    #[test]
    fn structured_results_map_every_member() {
        let r = map_result(
            br#"{"statusCode":201,"headers":{"X-A":"1","n":2},"cookies":["a=b; Max-Age=60","c=d"],"body":"AAE=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert!(r.headers.contains(&("x-a".into(), "1".into())));
        assert!(r.headers.contains(&("n".into(), "2".into())));
        assert!(
            r.headers
                .contains(&("content-type".into(), "application/json".into()))
        );
        assert_eq!(r.cookies, vec!["a=b; Max-Age=60", "c=d"]);
        assert_eq!(r.body, vec![0, 1]);
        assert!(map_result(br#"{"statusCode":"teapot"}"#).is_err());
        assert!(map_result(br#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#).is_err());
        let r = map_result(br#"{"statusCode":204}"#).unwrap();
        assert!(r.body.is_empty());
    }
}
