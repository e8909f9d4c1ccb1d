//! Function URLs: the Create/Get/Update/Delete/ListFunctionUrlConfigs operations, and the
//! URLs themselves (`http://<host>/lambda-url/<url-id>/...`, or any path on a host named
//! `<url-id>.lambda-url.<region>.<domain>` when DNS points such names at Gust).

use std::net::SocketAddr;

use gust_control::requests::FunctionUrlConfigInput;
use gust_model::limits::SYNC_PAYLOAD_MAX;
use gust_model::names::NameShape;
use gust_model::url::is_url_id;
use gust_model::{FunctionRef, FunctionUrlConfig, LambdaError};
use gust_triggers::gateway::{HttpCall, respond};
use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::functions::{function_ref, page_document};
use crate::http::{HttpResponse, Query, empty, json, read_body_of, read_json};

/// The path prefix of function URLs on Gust's API port.
pub const URL_PREFIX: &str = "/lambda-url/";

fn function(name: &str, query: &Query) -> Result<FunctionRef, LambdaError> {
    function_ref(name, NameShape::Plain, query)
}

fn host(app: &App, req: &Request<Incoming>) -> String {
    crate::http::request_host(req, &app.public_address)
}

/// The URL clients call; it keeps AWS's trailing slash.
pub fn function_url(host: &str, url_id: &str) -> String {
    format!("http://{host}{URL_PREFIX}{url_id}/")
}

/// Which members a URL configuration is shown with: Lambda's create and update answers carry
/// `InvokeMode` only when the request set it, and create's no `LastModifiedTime`.
#[derive(Clone, Copy)]
enum Shown {
    Created { invoke_mode_set: bool },
    Updated { invoke_mode_set: bool },
    Read,
}

fn document(app: &App, config: &FunctionUrlConfig, host: &str, shown: Shown) -> Value {
    let arns = app.control.arns();
    let arn = match &config.qualifier {
        Some(q) => arns.qualified(&config.function, q),
        None => arns.function(&config.function),
    };
    let mut doc = json!({
        "FunctionUrl": function_url(host, &config.url_id),
        "FunctionArn": arn,
        "AuthType": config.auth_type,
    });
    if let Some(cors) = &config.cors {
        doc["Cors"] = json!(cors);
    }
    doc["CreationTime"] = json!(config.creation_time);
    let (with_modified, with_mode) = match shown {
        Shown::Created { invoke_mode_set } => (false, invoke_mode_set),
        Shown::Updated { invoke_mode_set } => (true, invoke_mode_set),
        Shown::Read => (true, true),
    };
    if with_modified {
        doc["LastModifiedTime"] = json!(config.last_modified_time);
    }
    if with_mode {
        doc["InvokeMode"] = json!(config.invoke_mode);
    }
    doc
}

pub async fn create(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    let host = host(app, &req);
    let input: FunctionUrlConfigInput = read_json(req, "CreateFunctionUrlConfig").await?;
    let invoke_mode_set = input.invoke_mode.is_some();
    let config = app.control.create_url_config(&r, input).await?;
    Ok(json(
        StatusCode::CREATED,
        &document(app, &config, &host, Shown::Created { invoke_mode_set }),
        rid,
    ))
}

pub fn get(
    app: &App,
    name: &str,
    query: &Query,
    req: &Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    let config = app.control.get_url_config(&r)?;
    Ok(json(
        StatusCode::OK,
        &document(app, &config, &host(app, req), Shown::Read),
        rid,
    ))
}

pub async fn update(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    let host = host(app, &req);
    let input: FunctionUrlConfigInput = read_json(req, "UpdateFunctionUrlConfig").await?;
    let invoke_mode_set = input.invoke_mode.is_some();
    let config = app.control.update_url_config(&r, input).await?;
    Ok(json(
        StatusCode::OK,
        &document(app, &config, &host, Shown::Updated { invoke_mode_set }),
        rid,
    ))
}

pub async fn delete(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    app.control.delete_url_config(&r).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list(
    app: &App,
    name: &str,
    query: &Query,
    req: &Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let max_items = crate::functions::max_items(query)?;
    let page = app
        .control
        .list_url_configs(&r, query.get("Marker"), max_items)?;
    let host = host(app, req);
    let items = page
        .items
        .iter()
        .map(|c| document(app, c, &host, Shown::Read))
        .collect();
    Ok(json(
        StatusCode::OK,
        &page_document("FunctionUrlConfigs", items, page.next_marker),
        rid,
    ))
}

/// The URL id and the path the function sees, if the request is addressed to a function URL.
pub fn addressed_url(req: &Request<Incoming>) -> Option<(String, String)> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix(URL_PREFIX) {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        return is_url_id(id).then(|| (id.to_string(), format!("/{tail}")));
    }
    let host = req.headers().get(HOST)?.to_str().ok()?;
    let (id, rest) = host.split_once('.')?;
    (is_url_id(id) && rest.starts_with("lambda-url.")).then(|| (id.to_string(), path.to_string()))
}

/// Serves one request to a function URL.
pub async fn serve(
    app: &App,
    url_id: &str,
    path: &str,
    req: Request<Incoming>,
    peer: SocketAddr,
    local_port: u16,
    rid: &str,
) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let Ok(body) = read_body_of(&parts.headers, body, SYNC_PAYLOAD_MAX, "Invoke").await else {
        return respond(
            413,
            "application/json",
            r#"{"Message":"Request Entity Too Large"}"#,
            rid,
        );
    };
    app.gateway
        .function_url(
            url_id,
            HttpCall {
                method: parts.method.as_str(),
                path,
                query: parts.uri.query(),
                headers: &parts.headers,
                body,
                peer,
                local_port,
                request_id: rid,
            },
        )
        .await
}
