//! Code signing configurations and the functions they are attached to.

use gust_control::requests::{CodeSigningConfigInput, PutFunctionCodeSigningConfig};
use gust_model::code_signing::CodeSigningConfig;
use gust_model::names::NameShape;
use gust_model::{FunctionRef, LambdaError};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::functions::{max_items, page_document};
use crate::http::{HttpResponse, Query, empty, json, read_json};

fn document(app: &App, config: &CodeSigningConfig) -> Value {
    json!({
        "CodeSigningConfigId": config.id,
        "CodeSigningConfigArn": app.control.code_signing_config_arn(&config.id),
        "Description": config.description,
        "AllowedPublishers": {"SigningProfileVersionArns": config.signing_profile_version_arns},
        "CodeSigningPolicies": {
            "UntrustedArtifactOnDeployment": config.untrusted_artifact_on_deployment.as_str()
        },
        "LastModified": config.last_modified,
    })
}

fn wrapped(app: &App, config: &CodeSigningConfig) -> Value {
    json!({ "CodeSigningConfig": document(app, config) })
}

pub async fn create(
    app: &App,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let input: CodeSigningConfigInput = read_json(req, "CreateCodeSigningConfig").await?;
    let config = app.control.create_code_signing_config(input).await?;
    Ok(json(StatusCode::CREATED, &wrapped(app, &config), rid))
}

pub fn get(app: &App, arn: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let config = app.control.get_code_signing_config(arn)?;
    Ok(json(StatusCode::OK, &wrapped(app, &config), rid))
}

pub async fn update(
    app: &App,
    arn: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let input: CodeSigningConfigInput = read_json(req, "UpdateCodeSigningConfig").await?;
    let config = app.control.update_code_signing_config(arn, input).await?;
    Ok(json(StatusCode::OK, &wrapped(app, &config), rid))
}

pub async fn delete(app: &App, arn: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    app.control.delete_code_signing_config(arn).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list(app: &App, query: &Query, rid: &str) -> Result<HttpResponse, LambdaError> {
    let page = app
        .control
        .list_code_signing_configs(query.get("Marker"), max_items(query)?);
    let items = page.items.iter().map(|c| document(app, c)).collect();
    Ok(json(
        StatusCode::OK,
        &page_document("CodeSigningConfigs", items, page.next_marker),
        rid,
    ))
}

pub fn list_functions(
    app: &App,
    arn: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let page = app.control.list_functions_by_code_signing_config(
        arn,
        query.get("Marker"),
        max_items(query)?,
    )?;
    let items = page.items.into_iter().map(Value::String).collect();
    Ok(json(
        StatusCode::OK,
        &page_document("FunctionArns", items, page.next_marker),
        rid,
    ))
}

pub async fn put_function(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Namespaced)?;
    let input: PutFunctionCodeSigningConfig =
        read_json(req, "PutFunctionCodeSigningConfig").await?;
    let arn = app
        .control
        .put_function_code_signing_config(&r, input)
        .await?;
    Ok(json(
        StatusCode::OK,
        &json!({"CodeSigningConfigArn": arn, "FunctionName": r.name}),
        rid,
    ))
}

pub fn get_function(app: &App, name: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Namespaced)?;
    // Without one, Lambda answers an empty document.
    let doc = match app.control.get_function_code_signing_config(&r)? {
        Some(arn) => json!({"CodeSigningConfigArn": arn, "FunctionName": r.name}),
        None => json!({}),
    };
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn delete_function(
    app: &App,
    name: &str,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Namespaced)?;
    app.control.delete_function_code_signing_config(&r).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}
