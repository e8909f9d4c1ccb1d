//! Reserved and provisioned concurrency (PutFunctionConcurrency, GetFunctionConcurrency,
//! DeleteFunctionConcurrency and the ProvisionedConcurrencyConfig operations), and the
//! recursion config, which is set per function in the same way.

use gust_control::requests::{
    PutFunctionConcurrency, PutFunctionRecursionConfig, PutProvisionedConcurrency,
};
use gust_model::names::NameShape;
use gust_model::{FunctionRef, LambdaError, ProvisionedConfig};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::functions::{function_ref, page_document};
use crate::http::{HttpResponse, Query, empty, json, read_json};

fn function(name: &str, query: &Query) -> Result<FunctionRef, LambdaError> {
    function_ref(name, NameShape::Plain, query)
}

pub async fn put_reserved(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let input: PutFunctionConcurrency = read_json(req, "PutFunctionConcurrency").await?;
    let reserved = app.control.put_function_concurrency(&r, input).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "ReservedConcurrentExecutions": reserved }),
        rid,
    ))
}

pub async fn put_recursion(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let input: PutFunctionRecursionConfig = read_json(req, "PutFunctionRecursionConfig").await?;
    let value = app.control.put_recursion_config(&r, input).await?;
    Ok(json(
        StatusCode::OK,
        &json!({ "RecursiveLoop": value }),
        rid,
    ))
}

pub fn get_recursion(app: &App, name: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let value = app.control.get_recursion_config(&r)?;
    Ok(json(
        StatusCode::OK,
        &json!({ "RecursiveLoop": value }),
        rid,
    ))
}

pub fn get_reserved(app: &App, name: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let doc = match app.control.get_function_concurrency(&r)? {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    };
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn delete_reserved(
    app: &App,
    name: &str,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    app.control.delete_function_concurrency(&r).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

/// A provisioned configuration as Lambda shows it, with what Gust has allocated so far.
fn provisioned_document(app: &App, config: &ProvisionedConfig, with_arn: bool) -> Value {
    let status =
        app.invoker
            .provisioned_status(&config.function, &config.qualifier, config.requested);
    let mut doc = json!({});
    if with_arn {
        doc["FunctionArn"] = json!(
            app.control
                .arns()
                .qualified(&config.function, &config.qualifier)
        );
    }
    doc["RequestedProvisionedConcurrentExecutions"] = json!(config.requested);
    doc["AvailableProvisionedConcurrentExecutions"] = json!(status.allocated);
    doc["AllocatedProvisionedConcurrentExecutions"] = json!(status.allocated);
    doc["Status"] = json!(status.state.as_str());
    if let Some(reason) = status.reason {
        doc["StatusReason"] = json!(reason);
    }
    doc["LastModified"] = json!(config.last_modified);
    doc
}

pub async fn put_provisioned(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    let input: PutProvisionedConcurrency =
        read_json(req, "PutProvisionedConcurrencyConfig").await?;
    let config = app.control.put_provisioned(&r, input).await?;
    // Lambda answers before any environment exists; Get shows the progress.
    let doc = json!({
        "RequestedProvisionedConcurrentExecutions": config.requested,
        "AvailableProvisionedConcurrentExecutions": 0,
        "AllocatedProvisionedConcurrentExecutions": 0,
        "Status": "IN_PROGRESS",
        "LastModified": config.last_modified,
    });
    Ok(json(StatusCode::ACCEPTED, &doc, rid))
}

pub fn get_provisioned(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    let config = app.control.get_provisioned(&r)?;
    Ok(json(
        StatusCode::OK,
        &provisioned_document(app, &config, false),
        rid,
    ))
}

pub async fn delete_provisioned(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function(name, query)?;
    app.control.delete_provisioned(&r).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list_provisioned(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let max_items = crate::functions::max_items(query)?;
    let page = app
        .control
        .list_provisioned(&r, query.get("Marker"), max_items)?;
    let items = page
        .items
        .iter()
        .map(|c| provisioned_document(app, c, true))
        .collect();
    Ok(json(
        StatusCode::OK,
        &page_document("ProvisionedConcurrencyConfigs", items, page.next_marker),
        rid,
    ))
}
