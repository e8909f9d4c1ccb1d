//! Calls that report what happened instead of panicking: a soak scenario counts failures and
//! carries on, so that one run shows everything that went wrong.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, LogType};
use base64::Engine;
use serde_json::Value;

use crate::common::{RawResponse, Server, raw_http};
use crate::report::Report;

/// How long any one call may take before it counts as a failure (a hung call must not hang
/// the suite).
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// A client for `server` that never retries: the SDK's standard retries would hide throttles
/// and transient errors, which a soak test must see.
pub fn client(server: &Server) -> aws_sdk_lambda::Client {
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDGUSTSOAK",
            "secret",
            None,
            None,
            "soak",
        ))
        .endpoint_url(server.endpoint())
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// A synchronous invocation that Gust answered.
#[derive(Debug)]
pub struct Call {
    pub function_error: Option<String>,
    pub payload: Value,
    /// The Tail log (the last 4 KB of the call's log, REPORT line included).
    pub log: String,
}

impl Call {
    /// `errorType: errorMessage` of a function error, for messages.
    pub fn error_summary(&self) -> String {
        format!(
            "{}: {}",
            self.payload["errorType"].as_str().unwrap_or("?"),
            self.payload["errorMessage"]
                .as_str()
                .unwrap_or(&self.payload.to_string())
        )
    }

    /// Whether the call started a new environment, going by its REPORT line.
    pub fn started_environment(&self) -> bool {
        self.log.contains("Init Duration") || self.log.contains("Restore Duration")
    }

    /// The function's own output in the Tail log (its last lines, without START, END and
    /// REPORT), for messages about errors that are not timeouts.
    pub fn output(&self) -> String {
        let lines: Vec<&str> = self
            .log
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("START ")
                    && !l.starts_with("END ")
                    && !l.starts_with("REPORT ")
            })
            .collect();
        lines[lines.len().saturating_sub(6)..].join(" | ")
    }

    pub fn report_line(&self) -> &str {
        self.log
            .lines()
            .find(|l| l.starts_with("REPORT"))
            .unwrap_or("(no REPORT line)")
    }
}

/// A call Gust refused or that did not complete.
#[derive(Debug)]
pub struct CallError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl CallError {
    pub fn throttled(&self) -> bool {
        self.status == Some(429)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status} {}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

fn call_error<E>(err: SdkError<E, aws_sdk_lambda::config::http::HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => CallError {
            status: Some(ctx.raw().status().as_u16()),
            code: ctx.err().code().unwrap_or("?").to_string(),
            message: ctx.err().message().unwrap_or_default().to_string(),
        },
        _ => CallError {
            status: None,
            code: "no answer".into(),
            message: DisplayErrorContext(&err).to_string(),
        },
    }
}

fn timed_out() -> CallError {
    CallError {
        status: None,
        code: "no answer".into(),
        message: format!("no answer within {} s", CALL_LIMIT.as_secs()),
    }
}

/// One synchronous invocation with the Tail log.
pub async fn invoke(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: &Value,
) -> Result<Call, CallError> {
    let sent = client
        .invoke()
        .function_name(name)
        .payload(Blob::new(serde_json::to_vec(payload).unwrap()))
        .log_type(LogType::Tail)
        .send();
    let out = tokio::time::timeout(CALL_LIMIT, sent)
        .await
        .map_err(|_| timed_out())?
        .map_err(call_error)?;
    let raw = out.payload().map(|b| b.as_ref()).unwrap_or_default();
    let log = out
        .log_result()
        .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    if out.status_code() != 200 {
        return Err(CallError {
            status: Some(out.status_code() as u16),
            code: "unexpected status".into(),
            message: String::from_utf8_lossy(raw).into_owned(),
        });
    }
    Ok(Call {
        function_error: out.function_error().map(str::to_string),
        payload: serde_json::from_slice(raw).unwrap_or(Value::Null),
        log,
    })
}

/// One asynchronous invocation; returns its request id once Gust accepted it (202).
pub async fn send_event(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: &Value,
) -> Result<String, CallError> {
    let sent = client
        .invoke()
        .function_name(name)
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(serde_json::to_vec(payload).unwrap()))
        .send();
    let out = tokio::time::timeout(CALL_LIMIT, sent)
        .await
        .map_err(|_| timed_out())?
        .map_err(call_error)?;
    if out.status_code() != 202 {
        return Err(CallError {
            status: Some(out.status_code() as u16),
            code: "unexpected status".into(),
            message: "an event was not answered 202".into(),
        });
    }
    aws_sdk_lambda::operation::RequestId::request_id(&out)
        .map(str::to_string)
        .ok_or_else(|| CallError {
            status: Some(202),
            code: "no request id".into(),
            message: "a 202 without x-amzn-RequestId".into(),
        })
}

/// A mailbox watched over a scenario: every look also checks that it kept its environment,
/// since a mailbox in a new environment has lost its records.
pub struct MailboxWatch<'a> {
    client: &'a aws_sdk_lambda::Client,
    name: &'static str,
    environment: Option<String>,
}

impl<'a> MailboxWatch<'a> {
    /// Starts watching `name`: the first look fixes its environment.
    pub async fn start(
        client: &'a aws_sdk_lambda::Client,
        name: &'static str,
        report: &Report,
    ) -> Self {
        let mut watch = Self {
            client,
            name,
            environment: None,
        };
        watch.look(report).await;
        watch
    }

    /// What the mailbox holds now; `None` (and a failure reported) if it could not be asked.
    pub async fn look(&mut self, report: &Report) -> Option<Mail> {
        match mailbox(self.client, self.name).await {
            Err(e) => {
                report.fail(e);
                None
            }
            Ok(mail) => {
                if let Err(e) = mail.same_environment(&mut self.environment) {
                    report.fail(e);
                    self.environment = Some(mail.environment.clone());
                }
                Some(mail)
            }
        }
    }
}

/// What a mailbox holds: the id of its environment and its records.
pub struct Mail {
    pub environment: String,
    pub records: Vec<Value>,
}

impl Mail {
    /// Checks that the mailbox still runs in the environment of an earlier query (`known`,
    /// set on the first): a new one has lost every record the old one held.
    pub fn same_environment(&self, known: &mut Option<String>) -> Result<(), String> {
        match known {
            Some(before) if *before != self.environment => Err(format!(
                "the mailbox moved from environment {before} to {} and lost its records",
                self.environment
            )),
            Some(_) => Ok(()),
            None => {
                *known = Some(self.environment.clone());
                Ok(())
            }
        }
    }

    /// Destination records about the invocation `request_id`.
    pub fn about(&self, request_id: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r["requestId"] == request_id)
            .collect()
    }
}

/// Asks a mailbox what it holds. It runs one invocation at a time, so a query that arrives
/// while it takes a delivery is throttled (429): those are retried, for up to a minute.
pub async fn mailbox(client: &aws_sdk_lambda::Client, name: &str) -> Result<Mail, String> {
    let started = Instant::now();
    loop {
        match invoke(client, name, &serde_json::json!({"query": true})).await {
            Ok(call) if call.function_error.is_none() => {
                return Ok(Mail {
                    environment: call.payload["environment"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    records: call.payload["records"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                });
            }
            Ok(call) => {
                return Err(format!(
                    "the mailbox {name} failed: {}",
                    call.error_summary()
                ));
            }
            Err(e) if e.throttled() && started.elapsed() < Duration::from_secs(60) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("the mailbox {name} could not be queried: {e}")),
        }
    }
}

/// One raw HTTP request to the server's API port, off the async workers.
pub async fn raw(
    server: &Server,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
) -> RawResponse {
    let address = server.address.clone();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        raw_http(&address, method, &path, &headers, &body)
    })
    .await
    .expect("raw HTTP request")
}

/// One EventBridge call (the `AWSEvents` JSON protocol the `aws events` CLI speaks).
pub async fn events(server: &Server, operation: &str, body: Value) -> Value {
    let response = raw(
        server,
        "POST",
        "/".into(),
        vec![
            ("X-Amz-Target", format!("AWSEvents.{operation}")),
            ("Content-Type", "application/x-amz-json-1.1".into()),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(response.status, 200, "{operation}: {response:?}");
    response.json()
}
