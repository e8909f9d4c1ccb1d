//! Serving HTTP requests with functions: function URLs and HTTP routes. A request becomes a
//! payload format 2.0 event, runs as a synchronous invocation, and the result becomes the
//! HTTP response; CORS preflights of function URLs are answered from the URL's configuration
//! without running the function.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use gust_control::Control;
use gust_invoke::{Invoke, InvokeRequest};
use gust_model::limits::SYNC_PAYLOAD_MAX;
use gust_model::{Cors, ErrorCode, FunctionRef, FunctionUrlConfig, LambdaError};
use http_body_util::Full;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use crate::http_event::{self, HttpResult, IncomingRequest, RequestContext};
use crate::routes::Routes;

pub type HttpResponse = Response<Full<Bytes>>;

/// One HTTP request with its body read.
pub struct HttpCall<'a> {
    pub method: &'a str,
    /// The path the function sees, still percent-encoded.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
    pub local_port: u16,
    pub request_id: &'a str,
}

/// The `apiId` of events from Gust's route gateway.
const ROUTES_API_ID: &str = "gust";

/// How a request reached its function.
struct Source<'a> {
    route_key: &'a str,
    path_parameters: Option<&'a BTreeMap<String, String>>,
    account_id: &'a str,
    /// The function URL's id; `None` on the route gateway.
    url_id: Option<&'a str>,
}

/// How a front answers when the function produced no response: function URLs answer as
/// Lambda's do, routes as API Gateway HTTP APIs do.
struct Answers {
    throttled: (u16, &'static str, &'static str),
    too_large: (u16, &'static str, &'static str),
    failed: (u16, &'static str, &'static str),
    /// What the log calls a request of this front.
    what: &'static str,
}

const FUNCTION_URL_ANSWERS: Answers = Answers {
    throttled: (429, "application/json", r#"{"Message":"Rate Exceeded."}"#),
    too_large: (
        413,
        "application/json",
        r#"{"Message":"Request Entity Too Large"}"#,
    ),
    failed: (502, "text/plain", "Internal Server Error"),
    what: "function URL request",
};

const ROUTE_ANSWERS: Answers = Answers {
    throttled: (
        429,
        "application/json",
        r#"{"message":"Too Many Requests"}"#,
    ),
    too_large: (
        413,
        "application/json",
        r#"{"message":"Request Entity Too Large"}"#,
    ),
    failed: (
        500,
        "application/json",
        r#"{"message":"Internal Server Error"}"#,
    ),
    what: "route request",
};

/// The HTTP response for an invocation's outcome; `target` names the URL or route in logs.
fn answer(
    outcome: Result<HttpResult, Failure>,
    answers: &Answers,
    target: &str,
    rid: &str,
) -> HttpResponse {
    let (status, content_type, body) = match outcome {
        Ok(result) => return from_result(result, rid),
        Err(Failure::Throttled) => answers.throttled,
        Err(Failure::TooLarge) => answers.too_large,
        Err(Failure::Function(detail)) => {
            tracing::debug!(%target, %detail, "{} failed in the function", answers.what);
            answers.failed
        }
        Err(Failure::Platform(e)) => {
            tracing::warn!(%target, error = %e, "{} failed", answers.what);
            answers.failed
        }
    };
    respond(status, content_type, body, rid)
}

/// Why a request produced no function response.
enum Failure {
    Throttled,
    TooLarge,
    /// The function failed, timed out, or answered something that is not a response.
    Function(String),
    Platform(LambdaError),
}

pub struct Gateway {
    control: Arc<Control>,
    invoker: Arc<dyn Invoke>,
    routes: Arc<Routes>,
}

/// A response with Lambda's request id header.
pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>, rid: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert("content-type", v);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

fn from_result(result: HttpResult, rid: &str) -> HttpResponse {
    let mut response = respond(result.status, "application/json", result.body, rid);
    let headers = response.headers_mut();
    for (name, value) in result.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    for cookie in result.cookies {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append("set-cookie", v);
        }
    }
    response
}

/// The host name a request was addressed to, without the port.
fn domain_name(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
        _ => host.to_string(),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Answers a CORS preflight from the URL's configuration.
fn preflight(cors: &Cors, headers: &HeaderMap, rid: &str) -> HttpResponse {
    let mut response = respond(200, "application/json", Bytes::new(), rid);
    let origin = header(headers, "origin").unwrap_or_default();
    let method = header(headers, "access-control-request-method").unwrap_or_default();
    let (Some(allowed_origin), true) = (cors.allowed_origin(origin), cors.allows_method(method))
    else {
        return response;
    };
    let out = response.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(name, v);
        }
    };
    set("access-control-allow-origin", &allowed_origin);
    let methods = cors.allow_methods.as_deref().unwrap_or_default();
    if methods.iter().any(|m| m == "*") {
        set("access-control-allow-methods", method);
    } else {
        set("access-control-allow-methods", &methods.join(","));
    }
    let allow_headers = cors.allow_headers.as_deref().unwrap_or_default();
    if allow_headers.iter().any(|h| h == "*") {
        if let Some(requested) = header(headers, "access-control-request-headers") {
            set("access-control-allow-headers", requested);
        }
    } else if !allow_headers.is_empty() {
        set("access-control-allow-headers", &allow_headers.join(","));
    }
    if let Some(age) = cors.max_age {
        set("access-control-max-age", &age.to_string());
    }
    if cors.allow_credentials == Some(true) {
        set("access-control-allow-credentials", "true");
    }
    set("vary", "Origin");
    response
}

/// Replaces whatever CORS headers the function set with the URL's configuration.
fn apply_cors(cors: &Cors, request_headers: &HeaderMap, response: &mut HttpResponse) {
    let headers = response.headers_mut();
    let stale: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in stale {
        headers.remove(name);
    }
    let Some(origin) = header(request_headers, "origin") else {
        return;
    };
    let Some(allowed) = cors.allowed_origin(origin) else {
        return;
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("access-control-allow-origin", &allowed);
    let expose = cors.expose_headers.as_deref().unwrap_or_default();
    if !expose.is_empty() {
        set("access-control-expose-headers", &expose.join(","));
    }
    if cors.allow_credentials == Some(true) {
        set("access-control-allow-credentials", "true");
    }
    set("vary", "Origin");
}

impl Gateway {
    pub fn new(control: Arc<Control>, invoker: Arc<dyn Invoke>, routes: Arc<Routes>) -> Self {
        Self {
            control,
            invoker,
            routes,
        }
    }

    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    async fn run(
        &self,
        function: FunctionRef,
        call: &HttpCall<'_>,
        source: Source<'_>,
    ) -> Result<HttpResult, Failure> {
        let domain = domain_name(call.headers);
        let prefix = match source.url_id {
            Some(id) => id.to_string(),
            None => domain.split('.').next().unwrap_or_default().to_string(),
        };
        let event = http_event::event(
            &IncomingRequest {
                method: call.method,
                path: call.path,
                raw_query: call.query,
                headers: call.headers,
                body: &call.body,
                source_ip: call.peer.ip().to_string(),
                protocol: "HTTP/1.1",
                local_port: call.local_port,
            },
            &RequestContext {
                account_id: source.account_id,
                api_id: source.url_id.unwrap_or(ROUTES_API_ID),
                domain_name: &domain,
                domain_prefix: &prefix,
                request_id: call.request_id,
                route_key: source.route_key,
                path_parameters: source.path_parameters,
                time: SystemTime::now(),
            },
        );
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        if payload.len() as u64 > SYNC_PAYLOAD_MAX {
            return Err(Failure::TooLarge);
        }
        let config = self
            .control
            .resolve_for_invoke(&function)
            .map_err(Failure::Platform)?;
        let response = self
            .invoker
            .invoke(InvokeRequest {
                function,
                config,
                request_id: call.request_id.to_string(),
                payload: Bytes::from(payload),
                client_context: None,
                tenant_id: None,
            })
            .await
            .map_err(|e| match e.code {
                ErrorCode::TooManyRequests => Failure::Throttled,
                _ => Failure::Platform(e),
            })?;
        if response.function_error {
            return Err(Failure::Function(
                String::from_utf8_lossy(&response.body).into_owned(),
            ));
        }
        http_event::map_result(&response.body).map_err(Failure::Function)
    }

    /// Serves a request to the function URL `url_id`.
    pub async fn function_url(&self, url_id: &str, call: HttpCall<'_>) -> HttpResponse {
        let rid = call.request_id;
        let Some(config) = self.control.find_url(url_id) else {
            return respond(404, "application/json", r#"{"Message":"Not Found"}"#, rid);
        };
        if config.auth_type != "NONE" {
            // AWS_IAM URLs need SigV4 verification, which Gust does not do yet: refuse
            // rather than serve a URL its owner meant to protect.
            return respond(403, "application/json", r#"{"Message":"Forbidden"}"#, rid);
        }
        let cors = config.cors.as_ref();
        if let Some(cors) = cors
            && call.method == "OPTIONS"
            && call.headers.contains_key("origin")
            && call.headers.contains_key("access-control-request-method")
        {
            return preflight(cors, call.headers, rid);
        }
        let mut response = self.serve_url(&config, &call).await;
        if let Some(cors) = cors {
            apply_cors(cors, call.headers, &mut response);
        }
        response
    }

    async fn serve_url(&self, config: &FunctionUrlConfig, call: &HttpCall<'_>) -> HttpResponse {
        let function = FunctionRef {
            name: config.function.clone(),
            qualifier: config.qualifier.clone(),
            region: None,
            account: None,
        };
        let source = Source {
            route_key: "$default",
            path_parameters: None,
            account_id: "anonymous",
            url_id: Some(&config.url_id),
        };
        let outcome = self.run(function, call, source).await;
        answer(
            outcome,
            &FUNCTION_URL_ANSWERS,
            &config.url_id,
            call.request_id,
        )
    }

    /// Serves a request on the route gateway.
    pub async fn route(&self, call: HttpCall<'_>) -> HttpResponse {
        let rid = call.request_id;
        let Some(matched) = self.routes.find(call.method, call.path) else {
            return respond(404, "application/json", r#"{"message":"Not Found"}"#, rid);
        };
        let account = self.control.arns().account.clone();
        let source = Source {
            route_key: &matched.route_key,
            path_parameters: matched.path_parameters.as_ref(),
            account_id: &account,
            url_id: None,
        };
        let outcome = self.run(matched.function.clone(), &call, source).await;
        answer(outcome, &ROUTE_ANSWERS, &matched.route_key, rid)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};
    use std::sync::Mutex;

    use base64::Engine;
    use gust_invoke::{InvokeFuture, InvokeResponse};
    use http_body_util::BodyExt;

    use super::*;

    /// An engine that records what it was asked to run and answers with `answer`.
    struct Recorder {
        seen: Mutex<Vec<InvokeRequest>>,
        answer: fn() -> Result<InvokeResponse, LambdaError>,
    }

    impl Invoke for Recorder {
        fn invoke(&self, request: InvokeRequest) -> InvokeFuture<'_> {
            self.seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(request);
            let answer = (self.answer)();
            Box::pin(async move { answer })
        }
    }

    fn response(body: &str, function_error: bool) -> InvokeResponse {
        InvokeResponse {
            body: Bytes::from(body.to_string()),
            content_type: None,
            function_error,
            executed_version: "$LATEST".into(),
            log: Vec::new(),
        }
    }

    fn code() -> String {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"def handler(e, c):\n    return e\n")
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(zip.finish().unwrap().into_inner())
    }

    /// A gateway over a real control plane and route table, with `answer` as the engine.
    async fn gateway(
        dir: &std::path::Path,
        answer: fn() -> Result<InvokeResponse, LambdaError>,
    ) -> (Gateway, Arc<Recorder>) {
        let settings = gust_control::Settings {
            arns: gust_model::Arns::new("us-east-1", "123456789012"),
            concurrent_executions: 1000,
        };
        let control = Arc::new(Control::open(dir, settings).unwrap());
        let create = serde_json::from_value(serde_json::json!({
            "FunctionName": "hello",
            "Runtime": "python3.12",
            "Role": "arn:aws:iam::123456789012:role/r",
            "Handler": "app.handler",
            "Code": {"ZipFile": code()},
        }))
        .unwrap();
        control.create(create).await.unwrap();
        let store = gust_store::TriggerStore::open(&dir.join("triggers.db")).unwrap();
        let routes = Routes::open(control.clone(), Arc::new(Mutex::new(store))).unwrap();
        routes.add("GET /greet/{name}", "hello").await.unwrap();
        let recorder = Arc::new(Recorder {
            seen: Mutex::new(Vec::new()),
            answer,
        });
        let gateway = Gateway::new(control, recorder.clone(), routes);
        (gateway, recorder)
    }

    async fn get(gateway: &Gateway, path: &str) -> (u16, String) {
        let headers = HeaderMap::new();
        let answer = gateway
            .route(HttpCall {
                method: "GET",
                path,
                query: Some("polite=yes"),
                headers: &headers,
                body: Bytes::new(),
                peer: "127.0.0.1:40000".parse().unwrap(),
                local_port: 9000,
                request_id: "rid-1",
            })
            .await;
        let status = answer.status().as_u16();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_route_request_becomes_an_http_api_event_and_its_result_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, engine) = gateway(dir.path(), || {
            Ok(response(
                r#"{"statusCode": 201, "body": "hi there"}"#,
                false,
            ))
        })
        .await;
        assert_eq!(get(&gateway, "/greet/ada").await, (201, "hi there".into()));
        let seen = engine.seen.lock().unwrap();
        let [request] = seen.as_slice() else {
            panic!("one invocation expected, got {}", seen.len());
        };
        assert_eq!(request.function.name, "hello");
        assert_eq!(request.request_id, "rid-1");
        let event: serde_json::Value = serde_json::from_slice(&request.payload).unwrap();
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "GET /greet/{name}");
        assert_eq!(event["rawPath"], "/greet/ada");
        assert_eq!(event["rawQueryString"], "polite=yes");
        assert_eq!(event["pathParameters"]["name"], "ada");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    }

    #[tokio::test]
    async fn failures_get_the_gateways_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (throttled, _) = gateway(dir.path(), || {
            Err(LambdaError::new(
                ErrorCode::TooManyRequests,
                "Rate Exceeded.",
            ))
        })
        .await;
        assert_eq!(get(&throttled, "/greet/ada").await.0, 429);

        let dir = tempfile::tempdir().unwrap();
        let (failing, _) = gateway(dir.path(), || {
            Ok(response(r#"{"errorMessage": "boom"}"#, true))
        })
        .await;
        assert_eq!(
            get(&failing, "/greet/ada").await,
            (500, r#"{"message":"Internal Server Error"}"#.into())
        );

        let dir = tempfile::tempdir().unwrap();
        let (engine_unused, engine) = gateway(dir.path(), || unreachable!()).await;
        assert_eq!(get(&engine_unused, "/nowhere").await.0, 404);
        assert!(engine.seen.lock().unwrap().is_empty());
    }
}
