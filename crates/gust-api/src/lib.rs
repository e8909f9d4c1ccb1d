//! Gust's HTTP front: the Lambda REST API.
//!
//! This crate only translates: it finds the operation, reads and checks the request, calls the
//! control plane or the invoke path, and writes Lambda's response or error shape. The rules
//! live in `gust-control`, the execution in `gust-invoke`.

pub mod asynchronous;
pub mod code_signing;
pub mod concurrency;
pub mod functions;
pub mod http;
pub mod invoke;
pub mod resources;
pub mod routes;
pub mod triggers;
pub mod urls;
pub mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gust_control::Control;
use gust_invoke::{AsyncQueue, Invoker};
use gust_model::LambdaError;
use gust_runtimes::RuntimeTable;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;

use crate::http::{HttpResponse, Query};

/// What the handlers work with.
pub struct App {
    pub control: Arc<Control>,
    pub invoker: Arc<Invoker>,
    pub queue: Arc<AsyncQueue>,
    pub runtimes: Arc<RuntimeTable>,
    /// How execution environments are isolated (`process`, ...), as reported to operators.
    pub isolation: &'static str,
    /// `host:port` clients reach this server on, for URLs Gust hands out when a request carries
    /// no `Host` header.
    pub public_address: String,
    /// Function URLs and HTTP routes.
    pub gateway: Arc<gust_triggers::Gateway>,
    /// `host:port` of the route gateway's listener, if it runs.
    pub gateway_address: Option<String>,
    /// Scheduled rules (EventBridge's API).
    pub schedules: Arc<gust_triggers::Schedules>,
}

/// Which front a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The Lambda and EventBridge APIs, Gust's own endpoints and function URLs.
    Api,
    /// The HTTP route gateway.
    Gateway,
}

/// Serves the API on `listener` until `shutdown` resolves, then lets open requests finish
/// (for at most `grace`).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    front: Front,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let service = hyper::service::service_fn(move |req| {
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(match front {
                            Front::Api => handle(&app, req, peer, local_port).await,
                            Front::Gateway => triggers::gateway(&app, req, peer, local_port).await,
                        })
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over with requests still open");
        }
    }
}

/// Handles one request; never fails (errors become Lambda error responses).
pub async fn handle(
    app: &App,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    local_port: u16,
) -> HttpResponse {
    let rid = uuid::Uuid::new_v4().to_string();
    if let Some((url_id, path)) = urls::addressed_url(&req) {
        return urls::serve(app, &url_id, &path, req, peer, local_port, &rid).await;
    }
    if let Some(operation) = triggers::events_operation(&req) {
        return triggers::events(app, &operation, req, &rid).await;
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let result = dispatch(app, req, &rid).await;
    match result {
        Ok(response) => response,
        Err(error) => {
            if error.code.status() >= 500 {
                tracing::warn!(%method, %path, error = %error, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %error, "request refused");
            }
            http::error(&error, &rid)
        }
    }
}

async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let query = Query::parse(req.uri().query());
    let segments: Vec<String> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let method = req.method().as_str().to_string();

    if segments.first().map(String::as_str) == Some("gust") {
        return gust_route(app, req, &method, &segments[1..], &query, rid).await;
    }

    let Some(matched) = routes::find(&method, &segments, |k| query.get(k).is_some()) else {
        return Err(LambdaError::new(
            gust_model::ErrorCode::UnknownOperation,
            format!("No Lambda operation matches {method} {}", req.uri().path()),
        ));
    };
    let param = |i: usize| {
        matched
            .params
            .get(i)
            .map(String::as_str)
            .unwrap_or_default()
    };
    use routes::Operation as Op;
    match matched.operation {
        Op::CreateFunction => functions::create(app, req, rid).await,
        Op::ListFunctions => functions::list(app, &query, rid),
        Op::GetFunction => {
            let host = http::request_host(&req, &app.public_address);
            functions::get(app, param(0), &query, &host, rid)
        }
        Op::GetFunctionConfiguration => functions::get_configuration(app, param(0), &query, rid),
        Op::UpdateFunctionConfiguration => {
            functions::update_configuration(app, param(0), req, rid).await
        }
        Op::UpdateFunctionCode => functions::update_code(app, param(0), req, rid).await,
        Op::PublishVersion => functions::publish_version(app, param(0), req, rid).await,
        Op::ListVersionsByFunction => functions::list_versions(app, param(0), &query, rid),
        Op::DeleteFunction => functions::delete(app, param(0), &query, rid).await,
        Op::GetAccountSettings => functions::account_settings(app, rid),
        Op::Invoke => invoke::invoke(app, param(0), &query, req, rid).await,
        Op::CreateAlias => resources::create_alias(app, param(0), req, rid).await,
        Op::GetAlias => resources::get_alias(app, param(0), param(1), rid),
        Op::UpdateAlias => resources::update_alias(app, param(0), param(1), req, rid).await,
        Op::DeleteAlias => resources::delete_alias(app, param(0), param(1), rid).await,
        Op::ListAliases => resources::list_aliases(app, param(0), &query, rid),
        Op::AddPermission => resources::add_permission(app, param(0), &query, req, rid).await,
        Op::GetPolicy => resources::get_policy(app, param(0), &query, rid),
        Op::RemovePermission => {
            resources::remove_permission(app, param(0), param(1), &query, rid).await
        }
        Op::InvokeAsync => invoke::invoke_async(app, param(0), req, rid).await,
        Op::PutFunctionEventInvokeConfig => {
            asynchronous::put_config(app, param(0), &query, req, false, rid).await
        }
        Op::UpdateFunctionEventInvokeConfig => {
            asynchronous::put_config(app, param(0), &query, req, true, rid).await
        }
        Op::GetFunctionEventInvokeConfig => asynchronous::get_config(app, param(0), &query, rid),
        Op::DeleteFunctionEventInvokeConfig => {
            asynchronous::delete_config(app, param(0), &query, rid).await
        }
        Op::ListFunctionEventInvokeConfigs => {
            asynchronous::list_configs(app, param(0), &query, rid)
        }
        Op::TagResource => resources::tag_resource(app, param(0), req, rid).await,
        Op::UntagResource => resources::untag_resource(app, param(0), &query, rid).await,
        Op::ListTags => resources::list_tags(app, param(0), rid),
        Op::PutFunctionConcurrency => concurrency::put_reserved(app, param(0), req, rid).await,
        Op::GetFunctionConcurrency => concurrency::get_reserved(app, param(0), rid),
        Op::CreateCodeSigningConfig => code_signing::create(app, req, rid).await,
        Op::ListCodeSigningConfigs => code_signing::list(app, &query, rid),
        Op::GetCodeSigningConfig => code_signing::get(app, param(0), rid),
        Op::UpdateCodeSigningConfig => code_signing::update(app, param(0), req, rid).await,
        Op::DeleteCodeSigningConfig => code_signing::delete(app, param(0), rid).await,
        Op::ListFunctionsByCodeSigningConfig => {
            code_signing::list_functions(app, param(0), &query, rid)
        }
        Op::PutFunctionCodeSigningConfig => {
            code_signing::put_function(app, param(0), req, rid).await
        }
        Op::GetFunctionCodeSigningConfig => code_signing::get_function(app, param(0), rid),
        Op::DeleteFunctionCodeSigningConfig => {
            code_signing::delete_function(app, param(0), rid).await
        }
        Op::PutFunctionRecursionConfig => concurrency::put_recursion(app, param(0), req, rid).await,
        Op::GetFunctionRecursionConfig => concurrency::get_recursion(app, param(0), rid),
        Op::DeleteFunctionConcurrency => concurrency::delete_reserved(app, param(0), rid).await,
        Op::PutProvisionedConcurrencyConfig => {
            concurrency::put_provisioned(app, param(0), &query, req, rid).await
        }
        Op::GetProvisionedConcurrencyConfig => {
            concurrency::get_provisioned(app, param(0), &query, rid)
        }
        Op::DeleteProvisionedConcurrencyConfig => {
            concurrency::delete_provisioned(app, param(0), &query, rid).await
        }
        Op::ListProvisionedConcurrencyConfigs => {
            concurrency::list_provisioned(app, param(0), &query, rid)
        }
        Op::CreateFunctionUrlConfig => urls::create(app, param(0), &query, req, rid).await,
        Op::GetFunctionUrlConfig => urls::get(app, param(0), &query, &req, rid),
        Op::UpdateFunctionUrlConfig => urls::update(app, param(0), &query, req, rid).await,
        Op::DeleteFunctionUrlConfig => urls::delete(app, param(0), &query, rid).await,
        Op::ListFunctionUrlConfigs => urls::list(app, param(0), &query, &req, rid),
        // Operations of the model Gust does not have yet: a Lambda error naming each.
        Op::CreateEventSourceMapping
        | Op::ListEventSourceMappings
        | Op::DeleteEventSourceMapping
        | Op::GetEventSourceMapping
        | Op::UpdateEventSourceMapping
        | Op::ListLayers
        | Op::ListLayerVersions
        | Op::PublishLayerVersion
        | Op::DeleteLayerVersion
        | Op::GetLayerVersion
        | Op::AddLayerVersionPermission
        | Op::GetLayerVersionPolicy
        | Op::RemoveLayerVersionPermission
        | Op::GetRuntimeManagementConfig
        | Op::PutRuntimeManagementConfig
        | Op::InvokeWithResponseStream
        | Op::CreateCapacityProvider
        | Op::ListCapacityProviders
        | Op::DeleteCapacityProvider
        | Op::GetCapacityProvider
        | Op::UpdateCapacityProvider
        | Op::ListFunctionVersionsByCapacityProvider
        | Op::GetFunctionScalingConfig
        | Op::PutFunctionScalingConfig
        | Op::SendDurableExecutionCallbackFailure
        | Op::SendDurableExecutionCallbackHeartbeat
        | Op::SendDurableExecutionCallbackSuccess
        | Op::GetDurableExecution
        | Op::CheckpointDurableExecution
        | Op::GetDurableExecutionHistory
        | Op::GetDurableExecutionState
        | Op::StopDurableExecution
        | Op::ListDurableExecutionsByFunction
        | Op::GetLayerVersionByArn => Err(LambdaError::not_implemented(matched.operation.name())),
    }
}

/// Gust's own endpoints.
async fn gust_route(
    app: &App,
    req: Request<Incoming>,
    method: &str,
    segments: &[String],
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, parts.as_slice()) {
        ("GET", ["health"]) => Ok(http::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok" }),
            rid,
        )),
        ("GET", ["code", file]) => functions::download_code(app, file, rid).await,
        ("GET", ["runtimes"]) => Ok(http::json(StatusCode::OK, &describe_runtimes(app), rid)),
        ("GET", ["status"]) => asynchronous::status(app, rid).await,
        ("GET", ["dead-letters"]) => asynchronous::list_dead_letters(app, query, rid).await,
        ("POST", ["dead-letters", "redrive"]) => asynchronous::redrive_all(app, query, rid).await,
        ("GET", ["dead-letters", id]) => asynchronous::show_dead_letter(app, id, rid).await,
        ("DELETE", ["dead-letters", id]) => asynchronous::forget(app, id, rid).await,
        ("POST", ["dead-letters", id, "redrive"]) => asynchronous::redrive(app, id, rid).await,
        ("GET", ["routes"]) => triggers::list_routes(app, rid),
        ("PUT", ["routes"]) => triggers::put_route(app, req, rid).await,
        ("DELETE", ["routes"]) => triggers::delete_route(app, query, rid).await,
        ("GET", ["clock"]) => triggers::get_clock(app, rid),
        ("PUT", ["clock"]) => triggers::set_clock(app, req, rid).await,
        _ => Err(LambdaError::new(
            gust_model::ErrorCode::UnknownOperation,
            format!(
                "No Gust endpoint matches {method} /gust/{}",
                segments.join("/")
            ),
        )),
    }
}

/// `GET /gust/runtimes`: which host interpreter serves each runtime id.
fn describe_runtimes(app: &App) -> serde_json::Value {
    let mut doc = app.runtimes.describe();
    doc["Isolation"] = app.isolation.into();
    doc
}
