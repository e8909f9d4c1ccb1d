//! Asynchronous invocation settings (the FunctionEventInvokeConfig operations) and Gust's own
//! endpoints for the queue: status and dead letters.

use std::time::{Duration, UNIX_EPOCH};

use gust_control::requests::EventInvokeConfigInput;
use gust_model::names::NameShape;
use gust_model::timefmt::iso_millis;
use gust_model::{Arns, EventInvokeConfig, FunctionRef, LambdaError};
use gust_store::DeadLetter;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};

use crate::App;
use crate::http::{HttpResponse, Query, empty, json, read_json};

/// FunctionEventInvokeConfig. `LastModified` is a `timestamp` in the model: epoch seconds as a
/// JSON number (strict SDKs refuse a string there).
fn config_document(config: &EventInvokeConfig, arns: &Arns) -> Value {
    let mut doc = json!({
        "LastModified": config.last_modified_ms as f64 / 1000.0,
        "FunctionArn": arns.qualified(&config.function, &config.qualifier),
    });
    if let Some(n) = config.maximum_retry_attempts {
        doc["MaximumRetryAttempts"] = json!(n);
    }
    if let Some(n) = config.maximum_event_age_seconds {
        doc["MaximumEventAgeInSeconds"] = json!(n);
    }
    let target = |d: &Option<String>| match d {
        Some(arn) => json!({ "Destination": arn }),
        None => json!({}),
    };
    doc["DestinationConfig"] = json!({
        "OnSuccess": target(&config.on_success),
        "OnFailure": target(&config.on_failure),
    });
    doc
}

fn function_ref(name: &str, query: &Query) -> Result<FunctionRef, LambdaError> {
    FunctionRef::parse_qualified(name, NameShape::Namespaced, query.get("Qualifier"))
}

pub async fn put_config(
    app: &App,
    name: &str,
    query: &Query,
    req: Request<Incoming>,
    merge: bool,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = function_ref(name, query)?;
    let operation = if merge {
        "UpdateFunctionEventInvokeConfig"
    } else {
        "PutFunctionEventInvokeConfig"
    };
    let input: EventInvokeConfigInput = read_json(req, operation).await?;
    let config = app
        .control
        .put_event_invoke_config(&r, input, merge)
        .await?;
    Ok(json(
        StatusCode::OK,
        &config_document(&config, app.control.arns()),
        rid,
    ))
}

pub fn get_config(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let config = app
        .control
        .get_event_invoke_config(&function_ref(name, query)?)?;
    Ok(json(
        StatusCode::OK,
        &config_document(&config, app.control.arns()),
        rid,
    ))
}

pub async fn delete_config(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    app.control
        .delete_event_invoke_config(&function_ref(name, query)?)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT, rid))
}

pub fn list_configs(
    app: &App,
    name: &str,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let r = FunctionRef::parse(name, NameShape::Namespaced)?;
    let max = crate::functions::max_items(query)?;
    let page = app
        .control
        .list_event_invoke_configs(&r, query.get("Marker"), max)?;
    let arns = app.control.arns();
    let items = page
        .items
        .iter()
        .map(|c| config_document(c, arns))
        .collect();
    Ok(json(
        StatusCode::OK,
        &crate::functions::page_document("FunctionEventInvokeConfigs", items, page.next_marker),
        rid,
    ))
}

fn iso(ms: u64) -> String {
    iso_millis(UNIX_EPOCH + Duration::from_millis(ms))
}

fn dead_letter_document(letter: &DeadLetter) -> Value {
    let mut doc = json!({
        "Id": letter.id,
        "RequestId": letter.request_id,
        "FunctionName": letter.function,
        "Condition": letter.condition,
        "Attempts": letter.attempts,
        "ReceivedAt": iso(letter.received_ms),
        "FailedAt": iso(letter.failed_ms),
    });
    if let Some(q) = &letter.qualifier {
        doc["Qualifier"] = json!(q);
    }
    if let Some(response) = &letter.response {
        doc["Response"] = serde_json::from_str(response).unwrap_or_else(|_| json!(response));
    }
    doc
}

pub async fn status(app: &App, rid: &str) -> Result<HttpResponse, LambdaError> {
    let usage = app.control.account_usage();
    let queues: Vec<Value> = app
        .queue
        .status()
        .into_iter()
        .map(|q| {
            json!({
                "FunctionName": q.function,
                "Depth": q.depth,
                "InFlight": q.in_flight,
                "OldestEventAgeSeconds": q.oldest_age_ms.map(|ms| ms as f64 / 1000.0),
                "DeadLettered": q.dead_lettered,
                "Succeeded": q.succeeded,
            })
        })
        .collect();
    let tmp = app.invoker.tmp_usage();
    let doc = json!({
        "Isolation": app.isolation,
        "IsolationWarning": (app.isolation == "process").then_some(PROCESS_ISOLATION_WARNING),
        "FunctionCount": usage.function_count,
        "IdleEnvironments": app.invoker.idle_environments(),
        "RunningInvocations": app.invoker.admission().running(),
        "EnvironmentMemoryMB": app.invoker.committed_memory_mb(),
        "MemoryBudgetMB": app.invoker.memory_budget_mb(),
        "EnvironmentTmpMB": tmp.map(|(used, _)| used),
        "TmpBudgetMB": tmp.map(|(_, budget)| budget),
        "RuntimesStartedAhead": app
            .invoker
            .standby_counts()
            .into_iter()
            .map(|(runtime, ready)| json!({"Runtime": runtime, "Ready": ready}))
            .collect::<Vec<_>>(),
        "RuntimeTemplates": app.invoker.templates(),
        "SnapStartSnapshots": app
            .invoker
            .snapshots()
            .into_iter()
            .map(|(function, version)| json!({"FunctionName": function, "Version": version}))
            .collect::<Vec<_>>(),
        "AsyncQueues": queues,
    });
    Ok(json(StatusCode::OK, &doc, rid))
}

/// What `gust status` says when functions are not sandboxed.
const PROCESS_ISOLATION_WARNING: &str = "functions run as plain processes of the Gust server: they can read and change the host, Gust's data and each other (--isolation=process)";

fn dead_letter_id(raw: &str) -> Result<i64, LambdaError> {
    raw.parse()
        .map_err(|_| LambdaError::not_found(format!("No dead letter has the id '{raw}'.")))
}

pub async fn list_dead_letters(
    app: &App,
    query: &Query,
    rid: &str,
) -> Result<HttpResponse, LambdaError> {
    let letters = app
        .queue
        .dead_letters(query.get("function").map(str::to_string))
        .await?;
    let items: Vec<Value> = letters.iter().map(dead_letter_document).collect();
    Ok(json(StatusCode::OK, &json!({ "DeadLetters": items }), rid))
}

pub async fn show_dead_letter(app: &App, id: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let id = dead_letter_id(id)?;
    let (letter, payload) = app
        .queue
        .dead_letter(id)
        .await?
        .ok_or_else(|| LambdaError::not_found(format!("No dead letter has the id '{id}'.")))?;
    let mut doc = dead_letter_document(&letter);
    doc["Payload"] = serde_json::from_slice(&payload)
        .unwrap_or_else(|_| json!(String::from_utf8_lossy(&payload)));
    Ok(json(StatusCode::OK, &doc, rid))
}

pub async fn redrive(app: &App, id: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let id = dead_letter_id(id)?;
    let request_id = app
        .queue
        .redrive(id)
        .await?
        .ok_or_else(|| LambdaError::not_found(format!("No dead letter has the id '{id}'.")))?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "Redriven": [request_id] }),
        rid,
    ))
}

/// Redrives every dead letter (of one function with `?function=`).
pub async fn redrive_all(app: &App, query: &Query, rid: &str) -> Result<HttpResponse, LambdaError> {
    let letters = app
        .queue
        .dead_letters(query.get("function").map(str::to_string))
        .await?;
    let mut redriven = Vec::new();
    for letter in letters {
        if let Some(request_id) = app.queue.redrive(letter.id).await? {
            redriven.push(request_id);
        }
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({ "Redriven": redriven }),
        rid,
    ))
}

pub async fn forget(app: &App, id: &str, rid: &str) -> Result<HttpResponse, LambdaError> {
    let id = dead_letter_id(id)?;
    if !app.queue.forget(id).await? {
        return Err(LambdaError::not_found(format!(
            "No dead letter has the id '{id}'."
        )));
    }
    Ok(empty(StatusCode::NO_CONTENT, rid))
}
