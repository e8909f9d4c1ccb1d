//! Aliases, resource policies and tags.

use gust_control::requests::{AddPermission, CreateAlias, TagResource, UpdateAlias};
use gust_model::names::NameShape;
use gust_model::{Alias, Arns, FunctionRef, LambdaError};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::http::{HttpResponse, Query, empty, json, read_json};

/// AliasConfiguration.
fn alias_document(alias: &Alias, arns: &Arns) -> Value {
    let mut doc = json!({
        "AliasArn": arns.qualified(&alias.function, &alias.name),
        "Name": alias.name,
        "FunctionVersion": alias.function_version,
        "Description": alias.description,
    });
    if !alias.additional_version_weights.is_empty() {
        doc["RoutingConfig"] =
            json!({ "AdditionalVersionWeights": alias.additional_version_weights });
    }
    doc["RevisionId"] = json!(alias.revision_id);
    doc
}

fn unqualified(name: &str) -> Result<FunctionRef, LambdaError> {
    FunctionRef::parse(name, NameShape::Plain)
}

pub async fn create_alias(
    app: &App,
    name: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = unqualified(name)?;
    let input: CreateAlias = read_json(req, "CreateAlias").await?;
    let alias = app.control.create_alias(&r, input).await?;
    Ok(json(
        StatusCode::CREATED,
        &alias_document(&alias, app.control.arns()),
        rid,
    ))
}

pub fn get_alias(
    app: &App,
    name: &str,
    alias: &str,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = unqualified(name)?;
    let alias = app.control.get_alias(&r, alias)?;
    Ok(json(
        StatusCode::OK,
        &alias_document(&alias, app.control.arns()),
        rid,
    ))
}

pub async fn update_alias(
    app: &App,
    name: &str,
    alias: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = unqualified(name)?;
    let input: UpdateAlias = read_json(req, "UpdateAlias").await?;
    let alias = app.control.update_alias(&r, alias, input).await?;
    Ok(json(
        StatusCode::OK,
        &alias_document(&alias, app.control.arns()),
        rid,
    ))
}

pub async fn delete_alias(
    app: &App,
    name: &str,
    alias: &str,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    app.control.delete_alias(&unqualified(name)?, alias).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list_aliases(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = unqualified(name)?;
    let max = crate::functions::max_items(query)?;
    let page =
        app.control
            .list_aliases(&r, query.get("FunctionVersion"), query.get("Marker"), max)?;
    let arns = app.control.arns();
    let items = page.items.iter().map(|a| alias_document(a, arns)).collect();
    Ok(json(
        StatusCode::OK,
        &crate::functions::page_document("Aliases", items, page.next_marker),
        rid,
    ))
}

fn qualified(name: &str, query: &Query) -> Result<FunctionRef, LambdaError> {
    crate::functions::function_ref(name, NameShape::Namespaced, query)
}

pub async fn add_permission(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = qualified(name, query)?;
    let input: AddPermission = read_json(req, "AddPermission").await?;
    let statement = app.control.add_permission(&r, input).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "Statement": statement }),
        rid,
    ))
}

pub fn get_policy(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = qualified(name, query)?;
    let policy = app.control.get_policy(&r)?;
    Ok(json(
        StatusCode::OK,
        &json!({ "Policy": policy.document, "RevisionId": policy.revision_id }),
        rid,
    ))
}

pub async fn remove_permission(
    app: &App,
    name: &str,
    statement_id: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = qualified(name, query)?;
    app.control
        .remove_permission(&r, statement_id, query.get("RevisionId"))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub async fn tag_resource(
    app: &App,
    resource: &str,
    req: Request<Incoming>,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let input: TagResource = read_json(req, "TagResource").await?;
    app.control.tag_resource(resource, input.tags).await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub async fn untag_resource(
    app: &App,
    resource: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    app.control
        .untag_resource(resource, &query.get_all("tagKeys"))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list_tags(app: &App, resource: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let tags = app.control.list_tags(resource)?;
    Ok(json(StatusCode::OK, &json!({ "Tags": tags }), rid))
}
