//! Control-plane operations: create, read, update, publish, list and delete functions, and the
//! account settings.

use gust_control::requests::{
    CreateFunction, PublishVersion, UpdateFunctionCode, UpdateFunctionConfiguration,
};
use gust_model::limits::*;
use gust_model::names::NameShape;
use gust_model::{FunctionRef, LambdaError};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::http::{HttpResponse, Query, empty, json, parse_json, read_body, read_json};
use crate::wire::{View, function_configuration};

/// A function name or ARN from the path, with the `Qualifier` query member folded in.
pub(crate) fn function_ref(
    name: &str,
    shape: NameShape,
    query: &Query,
) -> Result<FunctionRef, LambdaError> {
    FunctionRef::parse_qualified(name, shape, query.get("Qualifier"))
}

pub async fn create(
    app: &App,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let body = read_body(req, CODE_REQUEST_MAX, "CreateFunction").await?;
    let input: CreateFunction = parse_json(&body)?;
    drop(body);
    let created = app.control.create(input).await?;
    let arns = app.control.arns();
    // With Publish, the response describes version 1 under the unqualified ARN (as AWS does).
    let config = created.published.as_ref().unwrap_or(&created.latest);
    let doc = function_configuration(config, &arns.function(&config.name), arns, View::Create);
    Ok(json(StatusCode::CREATED, &doc, rid))
}

pub fn get(
    app: &App,
    name: &str,
    query: &Query,
    host: &str,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function_ref(name, NameShape::Namespaced, query)?;
    let view = app.control.get(&r)?;
    let arns = app.control.arns();
    let mut doc = json!({
        "Configuration": function_configuration(&view.config, &r.arn(arns), arns, View::Get),
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("http://{host}/gust/code/{}.zip", view.config.code.digest_hex),
        },
    });
    if !view.tags.is_empty() {
        doc["Tags"] = json!(view.tags);
    }
    if let Some(reserved) = app.control.reserved(&r.name) {
        doc["Concurrency"] = json!({ "ReservedConcurrentExecutions": reserved });
    }
    Ok(json(StatusCode::OK, &doc, rid))
}

pub fn get_configuration(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function_ref(name, NameShape::Namespaced, query)?;
    let config = app.control.resolve(&r)?;
    let arns = app.control.arns();
    let doc = function_configuration(&config, &r.arn(arns), arns, View::Get);
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn update_configuration(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let input: UpdateFunctionConfiguration = read_json(req, "UpdateFunctionConfiguration").await?;
    let config = app.control.update_configuration(&r, input).await?;
    let arns = app.control.arns();
    let doc = function_configuration(&config, &arns.function(&config.name), arns, View::Update);
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn update_code(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let body = read_body(req, CODE_REQUEST_MAX, "UpdateFunctionCode").await?;
    let input: UpdateFunctionCode = parse_json(&body)?;
    drop(body);
    let config = app.control.update_code(&r, input).await?;
    let arns = app.control.arns();
    let arn = if config.version == gust_model::LATEST {
        arns.function(&config.name)
    } else {
        arns.qualified(&config.name, &config.version)
    };
    // With Publish, the answer is the new version, which Lambda shows as being created.
    let view = if config.version == gust_model::LATEST {
        View::Update
    } else {
        View::Create
    };
    let doc = function_configuration(&config, &arn, arns, view);
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn publish_version(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Plain)?;
    let input: PublishVersion = read_json(req, "PublishVersion").await?;
    let config = app.control.publish_version(&r, input).await?;
    let arns = app.control.arns();
    let doc = function_configuration(
        &config,
        &arns.qualified(&config.name, &config.version),
        arns,
        View::Get,
    );
    Ok(json(StatusCode::CREATED, &doc, rid))
}

/// `MaxItems`: 1–10000 in the model; pages are capped further by each list.
pub fn max_items(query: &Query) -> Result<usize, LambdaError> {
    let Some(raw) = query.get("MaxItems") else {
        return Ok(usize::MAX);
    };
    let n: i64 = raw.parse().map_err(|_| {
        LambdaError::serialization(format!("MaxItems must be an integer, got '{raw}'"))
    })?;
    if n < 1 {
        return Err(LambdaError::validation(&[gust_model::error::violation(
            raw,
            "maxItems",
            "Member must have value greater than or equal to 1",
        )]));
    }
    if n > 10_000 {
        return Err(LambdaError::validation(&[gust_model::error::violation(
            raw,
            "maxItems",
            "Member must have value less than or equal to 10000",
        )]));
    }
    Ok(n as usize)
}

pub fn page_document(key: &str, items: Vec<Value>, next_marker: Option<String>) -> Value {
    let mut doc = json!({ key: items });
    if let Some(marker) = next_marker {
        doc["NextMarker"] = json!(marker);
    }
    doc
}

pub fn list(app: &App, query: &Query, rid: &str) -> Result<HttpResponse, LambdaError> {
    let all_versions = match query.get("FunctionVersion") {
        None => false,
        Some("ALL") => true,
        Some(other) => {
            return Err(LambdaError::validation(&[gust_model::error::violation(
                other,
                "functionVersion",
                "Member must satisfy enum value set: [ALL]",
            )]));
        }
    };
    let max = max_items(query)?;
    let page = app.control.list(query.get("Marker"), max, all_versions);
    let arns = app.control.arns();
    let items = page
        .items
        .iter()
        .map(|c| {
            let arn = if all_versions {
                arns.qualified(&c.name, &c.version)
            } else {
                arns.function(&c.name)
            };
            function_configuration(c, &arn, arns, View::List)
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &page_document("Functions", items, page.next_marker),
        rid,
    ))
}

pub fn list_versions(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Namespaced)?;
    let max = max_items(query)?;
    let page = app.control.list_versions(&r, query.get("Marker"), max)?;
    let arns = app.control.arns();
    let items = page
        .items
        .iter()
        .map(|c| function_configuration(c, &arns.qualified(&c.name, &c.version), arns, View::List))
        .collect();
    Ok(json(
        StatusCode::OK,
        &page_document("Versions", items, page.next_marker),
        rid,
    ))
}

pub async fn delete(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function_ref(name, NameShape::Namespaced, query)?;
    app.control.delete(&r).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn account_settings(app: &App, rid: &str) -> Result<HttpResponse, LambdaError> {
    let usage = app.control.account_usage();
    let limit = app.control.settings().concurrent_executions;
    let doc = json!({
        "AccountLimit": {
            "TotalCodeSize": TOTAL_CODE_SIZE_LIMIT,
            "CodeSizeUnzipped": UNZIPPED_CODE_MAX,
            "CodeSizeZipped": ZIPPED_CODE_MAX,
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": app.control.unreserved_limit(),
        },
        "AccountUsage": {
            "TotalCodeSize": usage.total_code_size,
            "FunctionCount": usage.function_count,
        },
    });
    let mut response = json(StatusCode::OK, &doc, rid);
    // Unknown headers are ignored by AWS clients; operators can see the isolation here.
    response.headers_mut().insert(
        "x-gust-isolation",
        hyper::header::HeaderValue::from_static(app.isolation),
    );
    Ok(response)
}

/// The deployment package behind GetFunction's `Code.Location`.
pub async fn download_code(app: &App, file: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let not_found = || LambdaError::not_found("The resource you requested does not exist.");
    let digest = file.strip_suffix(".zip").ok_or_else(not_found)?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let path = app.control.code_store().package_path(digest);
    let bytes = tokio::fs::read(&path).await.map_err(|_| not_found())?;
    let mut response = empty(StatusCode::OK, rid);
    *response.body_mut() = http_body_util::Full::new(bytes::Bytes::from(bytes));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/zip"),
    );
    Ok(response)
}
