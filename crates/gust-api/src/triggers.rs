//! The trigger endpoints: EventBridge's JSON 1.1 protocol (`X-Amz-Target: AWSEvents.*`, as
//! the `aws events` CLI sends it), Gust's route API (`/gust/routes`), the scheduler clock
//! (`/gust/clock`), and the route gateway's own listener.

use std::net::SocketAddr;

use bytes::Bytes;
use gust_model::limits::{CONTROL_REQUEST_MAX, SYNC_PAYLOAD_MAX};
use gust_model::{ErrorCode, LambdaError};
use gust_triggers::EventsError;
use gust_triggers::gateway::{HttpCall, respond};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::App;
use crate::http::{
    ERROR_TYPE, HttpResponse, Query, REQUEST_ID, empty, json, read_body, read_body_of, read_json,
};

/// The EventBridge operation a request names, if it is one.
pub fn events_operation(req: &Request<Incoming>) -> Option<String> {
    let target = req.headers().get("x-amz-target")?.to_str().ok()?;
    target.strip_prefix("AWSEvents.").map(str::to_string)
}

fn amz_json(status: u16, body: Vec<u8>, rid: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        headers.insert(REQUEST_ID, v);
    }
    response
}

fn events_error(error: &EventsError, rid: &str) -> HttpResponse {
    let mut response = amz_json(error.status, error.body(), rid);
    if let Ok(v) = HeaderValue::from_str(error.code) {
        response.headers_mut().insert(ERROR_TYPE, v);
    }
    response
}

/// One EventBridge call.
pub async fn events(app: &App, operation: &str, req: Request<Incoming>, rid: &str) -> HttpResponse {
    if req.method() != hyper::Method::POST {
        return events_error(
            &EventsError::unknown_operation(&format!("{operation} over {}", req.method())),
            rid,
        );
    }
    let body = match read_body(req, CONTROL_REQUEST_MAX, operation).await {
        Ok(body) => body,
        Err(e) => return events_error(&EventsError::validation(e.message), rid),
    };
    match app.schedules.call(operation, &body).await {
        Ok(doc) => amz_json(200, serde_json::to_vec(&doc).unwrap_or_default(), rid),
        Err(e) => {
            tracing::debug!(operation, error = %e, "EventBridge request refused");
            events_error(&e, rid)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRoute {
    route_key: Option<String>,
    target: Option<String>,
}

fn route_document(route: &gust_model::events::StoredRoute) -> serde_json::Value {
    json!({
        "RouteKey": route.route_key,
        "Target": route.target,
        "CreatedDate": route.created_ms / 1000,
    })
}

/// `GET /gust/routes`: the route table and where the gateway listens.
pub fn list_routes(app: &App, rid: &str) -> Result<HttpResponse, LambdaError> {
    let routes: Vec<_> = app
        .gateway
        .routes()
        .list()
        .iter()
        .map(route_document)
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({
            "Routes": routes,
            "Endpoint": app.gateway_address.as_ref().map(|a| format!("http://{a}")),
        }),
        rid,
    ))
}

/// `PUT /gust/routes` with `{"RouteKey": "GET /items/{id}", "Target": "function[:alias]"}`.
pub async fn put_route(
    app: &App,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let input: PutRoute = read_json(req, "PutRoute").await?;
    let (Some(key), Some(target)) = (input.route_key, input.target) else {
        return Err(LambdaError::invalid_parameter(
            "A route needs a RouteKey (like 'GET /items/{id}' or '$default') and a Target function.",
        ));
    };
    let route = app.gateway.routes().add(&key, &target).await?;
    Ok(json(StatusCode::CREATED, &route_document(&route), rid))
}

/// `DELETE /gust/routes?RouteKey=...`.
pub async fn delete_route(
    app: &App,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let Some(key) = query.get("RouteKey") else {
        return Err(LambdaError::invalid_parameter("RouteKey is required."));
    };
    app.gateway.routes().remove(key).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetClock {
    /// Unix milliseconds.
    now: Option<i64>,
}

/// `GET /gust/clock`: the scheduler's time.
pub fn get_clock(app: &App, rid: &str) -> Result<HttpResponse, LambdaError> {
    let clock = app.schedules.clock();
    Ok(json(
        StatusCode::OK,
        &json!({"Now": clock.now_ms(), "Adjustable": clock.is_adjustable()}),
        rid,
    ))
}

/// `PUT /gust/clock` with `{"Now": <unix ms>}`: only on a server started with
/// `--clock-start`, so that tests can drive schedules.
pub async fn set_clock(
    app: &App,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let input: SetClock = read_json(req, "SetClock").await?;
    let Some(now) = input.now else {
        return Err(LambdaError::invalid_parameter(
            "Now (Unix milliseconds) is required.",
        ));
    };
    if !app.schedules.clock().set_ms(now) {
        return Err(LambdaError::new(
            ErrorCode::InvalidParameterValue,
            "The scheduler clock is the system clock; start Gust with --clock-start to drive it.",
        ));
    }
    app.schedules.poke();
    get_clock(app, rid)
}

/// Serves one request on the route gateway.
pub async fn gateway(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    local_port: u16,
) -> HttpResponse {
    let rid = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let Ok(body) = read_body_of(&parts.headers, body, SYNC_PAYLOAD_MAX, "Invoke").await else {
        return respond(
            413,
            "application/json",
            r#"{"message":"Request Entity Too Large"}"#,
            &rid,
        );
    };
    app.gateway
        .route(HttpCall {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
            peer,
            local_port,
            request_id: &rid,
        })
        .await
}
