//! The HTTP side of the Runtime API, served on a listener that belongs to one environment.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use gust_model::limits::RUNTIME_RESPONSE_MAX;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::control::{self, ControlError, ExitReport, ForkReport};
use crate::link::{Link, Outcome, Refusal};

const PREFIX: &str = "/2018-06-01/runtime";
/// Error-cause headers (X-Ray) can approach 1 MiB; the whole head must fit in this buffer.
const MAX_HEAD_BYTES: usize = 2 * 1024 * 1024;
/// Bodies of error reports are capped like responses.
const MAX_ERROR_BODY: u64 = RUNTIME_RESPONSE_MAX;
/// A bootstrap's control messages are a few fields.
const MAX_CONTROL_BODY: u64 = 64 * 1024;

/// Serves the Runtime API on `listener` until the returned task is aborted; aborting it also
/// ends every open connection.
pub fn spawn(listener: TcpListener, link: Arc<Link>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let link = link.clone();
                    // The runtime this connection belongs to: the one since the last reset.
                    let generation = link.generation();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let link = link.clone();
                            async move { Ok::<_, Infallible>(route(&link, generation, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .max_buf_size(MAX_HEAD_BYTES)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    json(status, body.to_string())
}

fn accepted() -> Response<Full<Bytes>> {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#.to_string())
}

fn refusal(r: Refusal) -> Response<Full<Bytes>> {
    match r {
        Refusal::UnknownRequestId => error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        ),
        Refusal::StillInvoking => error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "State transition from Invoking to Ready failed for runtime. Error: the current invocation has no response or error yet",
        ),
        Refusal::Closed => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Runtime.ShuttingDown",
            "The execution environment is shutting down; the runtime must exit.",
        ),
    }
}

fn too_large() -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({RUNTIME_RESPONSE_MAX} bytes)."),
    )
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a body up to `limit` bytes; `None` if it is larger or the connection broke. An
/// oversized body is still read (up to twice the limit) so that the runtime, which sends the
/// whole body before reading the answer, gets the 413 rather than a reset connection.
async fn read_body(req: Request<Incoming>, limit: u64) -> Option<Bytes> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let drain_limit = limit.saturating_mul(2);
    if declared.is_some_and(|n| n > drain_limit) {
        return None;
    }
    let mut too_large = declared.is_some_and(|n| n > limit);
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut seen: u64 = 0;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let data = frame.ok()?.into_data().unwrap_or_default();
        seen += data.len() as u64;
        too_large |= seen > limit;
        if too_large {
            if seen > drain_limit {
                break;
            }
            continue;
        }
        buffer.extend_from_slice(&data);
    }
    (!too_large).then(|| Bytes::from(buffer))
}

async fn route(link: &Link, generation: u64, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if method == Method::GET && path == "/2018-06-01/ping" {
        return json(StatusCode::OK, "{}".into());
    }
    if path.starts_with("/2022-07-01/telemetry") || path.starts_with("/2020-08-15/logs") {
        let kind = if path.starts_with("/2022") {
            "Telemetry"
        } else {
            "Logs"
        };
        return error(
            StatusCode::ACCEPTED,
            &format!("{kind}.NotSupported"),
            &format!("{kind} API is not supported"),
        );
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Unknown Runtime API path",
        );
    };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(link, generation).await,
        (Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            if let Some(mode) = header(&req, "lambda-runtime-function-response-mode")
                && !mode.eq_ignore_ascii_case("streaming")
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidFunctionResponseMode",
                    &format!("Invalid function response mode: {mode}"),
                );
            }
            if !link.is_current(&id) {
                return refusal(Refusal::UnknownRequestId);
            }
            let content_type = header(&req, "content-type");
            match read_body(req, RUNTIME_RESPONSE_MAX).await {
                Some(body) => match link.complete(&id, Outcome::Response { body, content_type }) {
                    Ok(()) => accepted(),
                    Err(r) => refusal(r),
                },
                None => {
                    let _ = link.complete(&id, Outcome::ResponseTooLarge);
                    too_large()
                }
            }
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            if !link.is_current(&id) {
                return refusal(Refusal::UnknownRequestId);
            }
            let error_type = header(&req, "lambda-runtime-function-error-type");
            match read_body(req, MAX_ERROR_BODY).await {
                Some(body) => match link.complete(&id, Outcome::Error { body, error_type }) {
                    Ok(()) => accepted(),
                    Err(r) => refusal(r),
                },
                None => too_large(),
            }
        }
        (Method::POST, ["init", "error"]) => {
            let error_type = header(&req, "lambda-runtime-function-error-type");
            match read_body(req, MAX_ERROR_BODY).await {
                Some(body) => {
                    link.init_error(Outcome::InitError { body, error_type });
                    accepted()
                }
                None => too_large(),
            }
        }
        (method, ["gust", call]) => gust(link, method, call, req).await,
        (Method::GET, ["restore", "next"]) => json(StatusCode::OK, "{}".into()),
        (Method::POST, ["restore", "error"]) => accepted(),
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Unknown Runtime API path {path}"),
        ),
    }
}

/// Gust's control protocol (see [`control`]): every call states the version its bootstrap
/// speaks, and every body is a control message.
async fn gust(
    link: &Link,
    method: Method,
    call: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if !matches!(
        (&method, call),
        (&Method::GET, "standby") | (&Method::POST, "forked" | "exited")
    ) {
        let path = req.uri().path();
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Unknown Runtime API path {path}"),
        );
    }
    if let Some(refused) = unspoken_version(&req) {
        return refused;
    }
    match call {
        // A pre-started runtime waits here for its function's environment, and a SnapStart
        // snapshot process for its next fork.
        "standby" => match link.standby().await {
            Ok(claim) => send(claim.encode()),
            Err(r) => refusal(r),
        },
        // A SnapStart snapshot process reports each process it forked, and waits for its
        // sandbox to be ready.
        "forked" => {
            let report = match read_body(req, MAX_CONTROL_BODY).await {
                Some(body) => ForkReport::decode(&body),
                None => return too_large(),
            };
            match report {
                Ok(report) => match link.report_fork(report).await {
                    Ok(answer) => send(answer.encode()),
                    Err(r) => refusal(r),
                },
                Err(e) => invalid_message("a fork report", &e),
            }
        }
        // The first process of an environment forked from a snapshot process reports how its
        // runtime ended, as Gust is not its parent.
        _ => {
            let report = match read_body(req, MAX_CONTROL_BODY).await {
                Some(body) => ExitReport::decode(&body),
                None => return too_large(),
            };
            match report {
                Ok(report) => {
                    link.report_exit(report);
                    accepted()
                }
                Err(e) => invalid_message("an exit report", &e),
            }
        }
    }
}

/// The refusal of a control call whose bootstrap does not speak this side's version.
fn unspoken_version(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let message = match header(req, control::HEADER) {
        Some(version) if version == control::VERSION => return None,
        Some(version) => format!(
            "The bootstrap speaks {}; this Runtime API speaks {}.",
            version.chars().take(64).collect::<String>(),
            control::VERSION
        ),
        None => format!(
            "The bootstrap did not state the protocol it speaks (the {} header); this Runtime API speaks {}.",
            control::HEADER,
            control::VERSION
        ),
    };
    tracing::warn!(%message, "refused a bootstrap's control call");
    Some(error(
        StatusCode::BAD_REQUEST,
        "Gust.UnsupportedProtocol",
        &message,
    ))
}

fn invalid_message(what: &str, e: &ControlError) -> Response<Full<Bytes>> {
    tracing::warn!(error = %e, "refused {what} from a bootstrap");
    error(
        StatusCode::BAD_REQUEST,
        "Gust.InvalidMessage",
        &format!("Not {what}: {e}"),
    )
}

/// A control message for the bootstrap. The invoke path checks what it hands over, so a
/// message that cannot be written is Gust's own fault.
fn send(message: Result<Vec<u8>, ControlError>) -> Response<Full<Bytes>> {
    match message {
        Ok(bytes) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(control::CONTENT_TYPE),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "a control message could not be written");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Gust.InvalidMessage",
                &format!("Gust could not write its message: {e}"),
            )
        }
    }
}

async fn next(link: &Link, generation: u64) -> Response<Full<Bytes>> {
    let event = match link.next_in(generation).await {
        Ok(event) => event,
        Err(r) => return refusal(r),
    };
    let inv = event.invocation;
    let mut response = Response::new(Full::new(inv.payload));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", &inv.request_id);
    set(
        "lambda-runtime-deadline-ms",
        &event.deadline_epoch_ms.to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        &inv.invoked_function_arn,
    );
    set("lambda-runtime-trace-id", &inv.trace_id);
    if let Some(cc) = &inv.client_context {
        set("lambda-runtime-client-context", &single_line(cc));
    }
    if let Some(ci) = &inv.cognito_identity {
        set("lambda-runtime-cognito-identity", &single_line(ci));
    }
    if let Some(tenant) = &inv.tenant_id {
        set("lambda-runtime-aws-tenant-id", tenant);
    }
    response
}

/// JSON text may be pretty-printed; raw line breaks can only be whitespace between tokens
/// (inside strings they are escaped), so they become spaces to fit in a header.
fn single_line(json: &str) -> String {
    json.replace(['\r', '\n', '\t'], " ")
}
