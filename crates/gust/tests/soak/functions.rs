//! The functions the soak scenarios deploy, and how they are deployed.
//!
//! Every function reports which execution environment served it (an id it makes once per
//! environment), so that a scenario can tell a warm environment from a new one by outcome, not
//! by timing. A sandboxed function can neither write to the host's files nor reach the host's
//! network, so what the scenarios cannot see in a response they learn from a *mailbox*: a
//! function that keeps what it receives in memory (see [`MAILBOX`]).

use aws_sdk_lambda::types::{
    DestinationConfig, OnFailure, OnSuccess, ProvisionedConcurrencyStatusEnum, Runtime, SnapStart,
    SnapStartApplyOn,
};
use serde_json::Value;

use crate::common::{create_with_env, python_zip, zip_of};

/// The timeout of the functions under test. Short on purpose: a deadline measured from the
/// wrong instant (the known bug: from when the runtime process started rather than from the
/// invocation) shows up once an environment is older than about 10 s plus this.
pub const TIMEOUT: i32 = 3;

/// The mailbox's timeout, Lambda's maximum. The mailbox is the scenarios' instrument, not
/// their subject: a long timeout keeps a deadline bug from resetting it (and losing what it
/// holds) within the suite's few minutes, so such a bug shows up in the functions under test,
/// which report it through the mailbox, instead of as missing records.
pub const MAILBOX_TIMEOUT: i32 = 900;

/// The Python function under test. The environment id is made at the first invocation rather
/// than during init: under SnapStart every environment restores the same init, so an id made
/// there would be the same in all of them. `fail_until` (Unix seconds) makes it fail until
/// then, whatever environment it runs in.
pub const PYTHON: &str = r#"import os, time, uuid

ENVIRONMENT = None
INVOCATIONS = 0

def handler(event, context):
    global ENVIRONMENT, INVOCATIONS
    if ENVIRONMENT is None:
        ENVIRONMENT = str(uuid.uuid4())
    INVOCATIONS += 1
    event = event if isinstance(event, dict) else {}
    if event.get("fail_until") and time.time() < event["fail_until"]:
        raise RuntimeError("failing on purpose until %.0f (invocation %d of environment %s)"
                           % (event["fail_until"], INVOCATIONS, ENVIRONMENT))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {
        "environment": ENVIRONMENT,
        "invocations": INVOCATIONS,
        "id": event.get("id"),
        "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "time": event.get("time"),
    }
"#;

/// The Node.js counterpart of [`PYTHON`] (without `fail_until`).
pub const NODE: &str = r#"const crypto = require('crypto');

let environment = null;
let invocations = 0;

exports.handler = async (event) => {
  environment = environment || crypto.randomUUID();
  invocations += 1;
  const e = event && typeof event === 'object' ? event : {};
  if (e.sleep) {
    await new Promise((resolve) => setTimeout(resolve, e.sleep * 1000));
  }
  return {
    environment,
    invocations,
    id: e.id === undefined ? null : e.id,
    init: process.env.AWS_LAMBDA_INITIALIZATION_TYPE || null,
  };
};
"#;

/// A custom runtime in the style of Lambda's shell tutorial: a `bootstrap` shell script that
/// talks to the Runtime API with curl, one process per request. It answers with its
/// environment id (made as the runtime starts), its invocation count and the event itself;
/// an event with a `sleep` key holds it for a second.
pub const SHELL_BOOTSTRAP: &str = r#"#!/bin/sh
set -u
ENVIRONMENT="$(cat /proc/sys/kernel/random/uuid)"
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
HEADERS="$(mktemp)"
INVOCATIONS=0
while true; do
  EVENT="$(curl -sSf -D "$HEADERS" "$API/next")" || exit 1
  REQUEST_ID="$(sed -n 's/^[Ll]ambda-[Rr]untime-[Aa]ws-[Rr]equest-[Ii]d: *\([^[:space:]]*\).*$/\1/p' "$HEADERS")"
  INVOCATIONS=$((INVOCATIONS + 1))
  case "$EVENT" in *'"sleep"'*) sleep 1 ;; esac
  curl -sS -o /dev/null -X POST "$API/$REQUEST_ID/response" \
    --data-binary "{\"environment\": \"$ENVIRONMENT\", \"invocations\": $INVOCATIONS, \"init\": \"${AWS_LAMBDA_INITIALIZATION_TYPE:-}\", \"event\": $EVENT}"
done
"#;

/// The mailbox: appends each event it receives to a module-level list and returns the list
/// when invoked with `{"query": true}`. It runs with a reserved concurrency of 1, so one
/// environment holds every record. Destination records (from asynchronous invocations) are
/// kept in a compact form: the request id, condition and `approximateInvokeCount` from their
/// `requestContext`, the request and response payloads.
pub const MAILBOX: &str = r#"import uuid

ENVIRONMENT = str(uuid.uuid4())
RECORDS = []

def handler(event, context):
    if isinstance(event, dict) and event.get("query"):
        return {"environment": ENVIRONMENT, "records": RECORDS}
    request = event.get("requestContext") if isinstance(event, dict) else None
    if isinstance(request, dict):
        RECORDS.append({
            "requestId": request.get("requestId"),
            "functionArn": request.get("functionArn"),
            "condition": request.get("condition"),
            "approximateInvokeCount": request.get("approximateInvokeCount"),
            "functionError": (event.get("responseContext") or {}).get("functionError"),
            "requestPayload": event.get("requestPayload"),
            "responsePayload": event.get("responsePayload"),
        })
    else:
        RECORDS.append({"event": event})
    return {"records": len(RECORDS)}
"#;

/// The kinds of function the scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Python,
    Node,
    /// A `provided.al2023` function with [`SHELL_BOOTSTRAP`].
    Custom,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Python => "Python",
            Kind::Node => "Node.js",
            Kind::Custom => "custom runtime",
        }
    }
}

/// Creates a function of `kind` with [`TIMEOUT`].
pub async fn create(client: &aws_sdk_lambda::Client, name: &str, kind: Kind) {
    let (runtime, handler, zip) = match kind {
        Kind::Python => ("python3.12", "app.handler", python_zip(PYTHON)),
        Kind::Node => (
            "nodejs20.x",
            "index.handler",
            zip_of(&[("index.js", NODE.as_bytes(), 0o644)]),
        ),
        Kind::Custom => (
            "provided.al2023",
            "unused",
            zip_of(&[("bootstrap", SHELL_BOOTSTRAP.as_bytes(), 0o755)]),
        ),
    };
    create_with_env(
        client,
        name,
        Runtime::from(runtime),
        handler,
        zip,
        TIMEOUT,
        &[],
    )
    .await;
}

/// Creates a mailbox ([`MAILBOX`]) with a reserved concurrency of 1.
pub async fn create_mailbox(client: &aws_sdk_lambda::Client, name: &str) {
    create_with_env(
        client,
        name,
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(MAILBOX),
        MAILBOX_TIMEOUT,
        &[],
    )
    .await;
    client
        .put_function_concurrency()
        .function_name(name)
        .reserved_concurrent_executions(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reserve concurrency for {name}: {e:?}"));
}

pub fn arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

/// Sends the outcome of `name`'s asynchronous invocations, success or failure, to `mailbox`,
/// after at most `retries` retries.
pub async fn report_to(client: &aws_sdk_lambda::Client, name: &str, mailbox: &str, retries: i32) {
    client
        .put_function_event_invoke_config()
        .function_name(name)
        .maximum_retry_attempts(retries)
        .destination_config(
            DestinationConfig::builder()
                .on_success(OnSuccess::builder().destination(arn(mailbox)).build())
                .on_failure(OnFailure::builder().destination(arn(mailbox)).build())
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("event invoke config of {name}: {e:?}"));
}

/// Publishes version 1 of `name` and gives it one provisioned environment; returns once it is
/// `READY` (or panics with the status reason).
pub async fn provision(client: &aws_sdk_lambda::Client, name: &str) -> String {
    let version = client
        .publish_version()
        .function_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("publish {name}: {e:?}"));
    let version = version.version().expect("a version number").to_string();
    client
        .put_provisioned_concurrency_config()
        .function_name(name)
        .qualifier(&version)
        .provisioned_concurrent_executions(1)
        .send()
        .await
        .unwrap_or_else(|e| panic!("provision {name}:{version}: {e:?}"));
    let started = std::time::Instant::now();
    loop {
        let config = client
            .get_provisioned_concurrency_config()
            .function_name(name)
            .qualifier(&version)
            .send()
            .await
            .unwrap_or_else(|e| panic!("provisioned concurrency of {name}:{version}: {e:?}"));
        match config.status() {
            Some(ProvisionedConcurrencyStatusEnum::Ready) => break,
            Some(ProvisionedConcurrencyStatusEnum::Failed) => panic!(
                "provisioned concurrency of {name}:{version} FAILED: {:?}",
                config.status_reason()
            ),
            _ => {}
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "provisioned concurrency of {name}:{version} not READY after 120 s: {config:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    format!("{name}:{version}")
}

/// Turns SnapStart on for `name` (a Python function) and publishes a version; returns the
/// qualified name of that version.
pub async fn publish_snapstart(client: &aws_sdk_lambda::Client, name: &str) -> String {
    client
        .update_function_configuration()
        .function_name(name)
        .snap_start(
            SnapStart::builder()
                .apply_on(SnapStartApplyOn::PublishedVersions)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("SnapStart for {name}: {e:?}"));
    let version = client
        .publish_version()
        .function_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("publish {name}: {e:?}"));
    format!("{name}:{}", version.version().expect("a version number"))
}

/// The environment id a function under test answered with.
pub fn environment_of(payload: &Value) -> Option<&str> {
    payload["environment"].as_str()
}

/// The `id` of the event a function under test answered (the custom runtime echoes the whole
/// event).
pub fn echoed_id(payload: &Value) -> Option<u64> {
    payload["id"]
        .as_u64()
        .or_else(|| payload["event"]["id"].as_u64())
}
