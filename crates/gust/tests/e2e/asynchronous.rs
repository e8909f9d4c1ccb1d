//! Asynchronous invocations: durable acceptance, retries, event age, destinations, dead letters,
//! fairness, and delivery across crashes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{DestinationConfig, InvocationType, OnFailure, OnSuccess};

use crate::common::*;

/// Runs asynchronous timing at 1/100 of Lambda's: a 1-minute retry delay takes 0.6 s.
/// These tests observe executions through files the functions write on the host, which the
/// Linux sandbox rightly forbids, so they run functions as plain processes; the sandbox has
/// its own tests (`sandbox.rs`).
const FAST: &[&str] = &["--async-time-scale", "0.01", "--isolation", "process"];
const RECORDING: &[&str] = &["--isolation", "process"];

async fn send_event(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: serde_json::Value,
) -> String {
    let out = client
        .invoke()
        .function_name(name)
        .invocation_type(InvocationType::Event)
        .payload(Blob::new(serde_json::to_vec(&payload).unwrap()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("event to {name}: {e:?}"));
    assert_eq!(out.status_code(), 202);
    assert!(out.payload().is_none_or(|p| p.as_ref().is_empty()));
    aws_sdk_lambda::operation::RequestId::request_id(&out)
        .expect("x-amzn-RequestId")
        .to_string()
}

fn destination(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn events_are_accepted_and_run() {
    let server = Server::start_with(FAST);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "rec", false, dir.path()).await;

    let request_id = send_event(&client, "rec", serde_json::json!({"n": 1})).await;
    let seen = eventually(Duration::from_secs(20), "the event to run", || {
        records(dir.path(), "rec").into_iter().next()
    })
    .await;
    assert_eq!(seen["event"]["n"], 1);
    assert_eq!(
        seen["request_id"],
        request_id.as_str(),
        "the function sees the 202's request id"
    );

    // The deprecated InvokeAsync operation queues the same way.
    let legacy = server.raw(
        "POST",
        "/2014-11-13/functions/rec/invoke-async",
        &[],
        br#"{"n": 2}"#,
    );
    assert_eq!(legacy.status, 202, "{legacy:?}");
    eventually(Duration::from_secs(20), "the InvokeAsync event", || {
        (records(dir.path(), "rec").len() == 2).then_some(())
    })
    .await;

    let big = format!("\"{}\"", "a".repeat(1_048_576));
    server
        .raw(
            "POST",
            "/2015-03-31/functions/rec/invocations",
            &[("x-amz-invocation-type", "Event")],
            big.as_bytes(),
        )
        .assert_error(
            413,
            "RequestEntityTooLargeException",
            "Request must be smaller than 1048576 bytes for the InvokeFunction operation",
        );
    server
        .raw(
            "POST",
            "/2015-03-31/functions/rec/invocations",
            &[("x-amz-invocation-type", "Event")],
            b"{oops",
        )
        .assert_error(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    server
        .raw(
            "POST",
            "/2015-03-31/functions/nope/invocations",
            &[("x-amz-invocation-type", "Event")],
            b"{}",
        )
        .assert_error(404, "ResourceNotFoundException", "Function not found");
    server
        .raw(
            "POST",
            "/2015-03-31/functions/rec/invocations",
            &[("x-amz-invocation-type", "Later")],
            b"{}",
        )
        .assert_error(
            400,
            "ValidationException",
            "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_invoke_config_api() {
    let server = Server::start_with(RECORDING);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "cfg", false, dir.path()).await;
    create_recorder(&client, "target", false, dir.path()).await;

    let (status, _, message) = service_error(
        client
            .get_function_event_invoke_config()
            .function_name("cfg")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            404,
            "The function arn:aws:lambda:us-east-1:123456789012:function:cfg:$LATEST doesn't have an EventInvokeConfig"
        )
    );

    let put = client
        .put_function_event_invoke_config()
        .function_name("cfg")
        .maximum_retry_attempts(1)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(
                    OnFailure::builder()
                        .destination(destination("target"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:cfg:$LATEST")
    );
    assert_eq!(put.maximum_retry_attempts(), Some(1));
    assert_eq!(
        put.maximum_event_age_in_seconds(),
        None,
        "unset members are omitted"
    );
    let modified = put
        .last_modified()
        .expect("LastModified parses as a timestamp");
    assert!(modified.secs() > 1_700_000_000);

    let updated = client
        .update_function_event_invoke_config()
        .function_name("cfg")
        .maximum_event_age_in_seconds(120)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.maximum_retry_attempts(), Some(1), "update merges");
    assert_eq!(updated.maximum_event_age_in_seconds(), Some(120));
    assert_eq!(
        updated
            .destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|f| f.destination()),
        Some(destination("target").as_str())
    );
    let listed = client
        .list_function_event_invoke_configs()
        .function_name("cfg")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.function_event_invoke_configs().len(), 1);

    let raw = |body: serde_json::Value| {
        server.raw(
            "PUT",
            "/2019-09-25/functions/cfg/event-invoke-config",
            &[("content-type", "application/json")],
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    raw(serde_json::json!({})).assert_error(
        400,
        "InvalidParameterValueException",
        "You must specify at least one of error handling or destination setting.",
    );
    raw(serde_json::json!({"MaximumRetryAttempts": 3})).assert_error(400, "ValidationException", "Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value less than or equal to 2");
    raw(serde_json::json!({"MaximumEventAgeInSeconds": 59})).assert_error(400, "ValidationException", "Value '59' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 60");
    raw(serde_json::json!({"DestinationConfig": {"OnSuccess": {"Destination": destination("cfg")}}})).assert_error(400, "InvalidParameterValueException", "You can't specify the function as a destination for itself.");
    raw(serde_json::json!({"DestinationConfig": {"OnSuccess": {"Destination": destination("ghost")}}})).assert_error(400, "InvalidParameterValueException", &format!("The destination ARN {} is invalid.", destination("ghost")));
    raw(serde_json::json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:123456789012:q"}}})).assert_error(400, "InvalidParameterValueException", "Gust cannot deliver to an Amazon SQS queue yet");

    client
        .delete_function_event_invoke_config()
        .function_name("cfg")
        .send()
        .await
        .unwrap();
    let (status, _, _) = service_error(
        client
            .get_function_event_invoke_config()
            .function_name("cfg")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_destinations_and_dead_letters() {
    let server = Server::start_with(FAST);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "flaky", true, dir.path()).await;
    create_recorder(&client, "failures", false, dir.path()).await;
    create_recorder(&client, "steady", false, dir.path()).await;
    create_recorder(&client, "successes", false, dir.path()).await;
    client
        .put_function_event_invoke_config()
        .function_name("flaky")
        .destination_config(
            DestinationConfig::builder()
                .on_failure(
                    OnFailure::builder()
                        .destination(destination("failures"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    client
        .put_function_event_invoke_config()
        .function_name("steady")
        .destination_config(
            DestinationConfig::builder()
                .on_success(
                    OnSuccess::builder()
                        .destination(destination("successes"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let failing_id = send_event(&client, "flaky", serde_json::json!({"order": 7})).await;
    let ok_id = send_event(&client, "steady", serde_json::json!({"order": 8})).await;

    // Default: 2 retries, about 1 and 2 "minutes" (0.6 s and 1.2 s here) apart.
    let failure = eventually(Duration::from_secs(30), "the failure record", || {
        records(dir.path(), "failures").into_iter().next()
    })
    .await;
    let attempts = records(dir.path(), "flaky");
    assert_eq!(attempts.len(), 3, "one invocation and two retries");
    let at: Vec<f64> = attempts.iter().map(|a| a["at"].as_f64().unwrap()).collect();
    assert!(
        at[1] - at[0] >= 0.55 && at[2] - at[1] >= 1.15,
        "retry spacing {at:?}"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["request_id"] == failing_id.as_str()),
        "retries keep the request id"
    );

    let record = &failure["event"];
    assert_eq!(record["version"], "1.0");
    assert_eq!(record["requestContext"]["requestId"], failing_id.as_str());
    assert_eq!(
        record["requestContext"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:flaky:$LATEST"
    );
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["requestPayload"], serde_json::json!({"order": 7}));
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert_eq!(record["responseContext"]["executedVersion"], "$LATEST");
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(
        record["responsePayload"]["errorMessage"],
        "failing on purpose"
    );
    assert!(record["timestamp"].as_str().unwrap().ends_with('Z'));

    let success = eventually(Duration::from_secs(20), "the success record", || {
        records(dir.path(), "successes").into_iter().next()
    })
    .await;
    let record = &success["event"];
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestContext"]["requestId"], ok_id.as_str());
    assert_eq!(record["responsePayload"], serde_json::json!({"ok": true}));
    assert!(record["responseContext"].get("functionError").is_none());

    // The failed event is a dead letter, visible in the status and redrivable once fixed. The
    // failure record is sent before the dead letter is stored (a crash in between runs the event
    // again rather than losing the record), so the dead letter may show a moment later.
    let flaky = eventually(Duration::from_secs(10), "the dead letter", || {
        let status = server.raw("GET", "/gust/status", &[], b"").json();
        status["AsyncQueues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["FunctionName"] == "flaky" && q["DeadLettered"] == 1 && q["Depth"] == 0)
            .cloned()
    })
    .await;
    assert_eq!(flaky["InFlight"], 0);
    let letters = server
        .raw("GET", "/gust/dead-letters?function=flaky", &[], b"")
        .json();
    let letter = &letters["DeadLetters"][0];
    assert_eq!(letter["Condition"], "RetriesExhausted");
    assert_eq!(letter["Attempts"], 3);
    assert_eq!(letter["RequestId"], failing_id.as_str());
    let id = letter["Id"].as_i64().unwrap();
    let shown = server
        .raw("GET", &format!("/gust/dead-letters/{id}"), &[], b"")
        .json();
    assert_eq!(shown["Payload"], serde_json::json!({"order": 7}));
    assert_eq!(shown["Response"]["errorType"], "RuntimeError");

    client
        .update_function_code()
        .function_name("flaky")
        .zip_file(Blob::new(recorder(false)))
        .send()
        .await
        .unwrap();
    let redriven = server.raw(
        "POST",
        &format!("/gust/dead-letters/{id}/redrive"),
        &[],
        b"",
    );
    assert_eq!(redriven.status, 202);
    eventually(
        Duration::from_secs(20),
        "the redriven event to succeed",
        || (records(dir.path(), "flaky").len() == 4).then_some(()),
    )
    .await;
    let letters = server.raw("GET", "/gust/dead-letters", &[], b"").json();
    assert!(letters["DeadLetters"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn old_events_expire() {
    let server = Server::start_with(FAST);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "slowfail", true, dir.path()).await;
    create_recorder(&client, "expired", false, dir.path()).await;
    // 60 s of maximum age is 0.6 s here; the first retry would come after 0.6 s.
    client
        .put_function_event_invoke_config()
        .function_name("slowfail")
        .maximum_event_age_in_seconds(60)
        .destination_config(
            DestinationConfig::builder()
                .on_failure(
                    OnFailure::builder()
                        .destination(destination("expired"))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = send_event(&client, "slowfail", serde_json::json!({"x": 1})).await;
    let expired = eventually(Duration::from_secs(20), "the expiry record", || {
        records(dir.path(), "expired").into_iter().next()
    })
    .await;
    assert_eq!(
        expired["event"]["requestContext"]["condition"],
        "EventAgeExceeded"
    );
    assert_eq!(expired["event"]["requestContext"]["requestId"], id.as_str());
    assert_eq!(
        records(dir.path(), "slowfail").len(),
        1,
        "no retry after the event expired"
    );
    let letters = server
        .raw("GET", "/gust/dead-letters?function=slowfail", &[], b"")
        .json();
    assert_eq!(letters["DeadLetters"][0]["Condition"], "EventAgeExceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_function_does_not_starve_a_healthy_one() {
    let mut args = FAST.to_vec();
    args.extend(["--concurrency-limit", "4"]);
    let server = Server::start_with(&args);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "noisy", true, dir.path()).await;
    create_recorder(&client, "quiet", false, dir.path()).await;
    for i in 0..40 {
        send_event(&client, "noisy", serde_json::json!({"i": i, "sleep": 0.2})).await;
    }
    let started = Instant::now();
    for i in 0..10 {
        send_event(&client, "quiet", serde_json::json!({"i": i})).await;
    }
    eventually(
        Duration::from_secs(30),
        "the healthy function's events",
        || (records(dir.path(), "quiet").len() == 10).then_some(()),
    )
    .await;
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    let noisy = status["AsyncQueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["FunctionName"] == "noisy")
        .unwrap()
        .clone();
    assert!(
        noisy["Depth"].as_u64().unwrap() > 0,
        "the healthy function finished while the failing one still had work queued ({:?} after {:?})",
        noisy,
        started.elapsed()
    );
}

/// Events a client got a 202 for, by payload number.
type Accepted = Vec<u64>;

async fn send_until_killed(server: &Server, total: u64, kill_after: usize) -> Accepted {
    let client = server.client();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, accepted, next) = (client.clone(), accepted.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= total {
                    return;
                }
                let sent = client
                    .invoke()
                    .function_name("crashy")
                    .invocation_type(InvocationType::Event)
                    .payload(Blob::new(
                        serde_json::to_vec(&serde_json::json!({"n": n})).unwrap(),
                    ))
                    .send()
                    .await;
                match sent {
                    Ok(out) if out.status_code() == 202 => accepted.lock().unwrap().push(n),
                    _ => return,
                }
            }
        }));
    }
    eventually(
        Duration::from_secs(60),
        "half of the events to be accepted",
        || (accepted.lock().unwrap().len() >= kill_after).then_some(()),
    )
    .await;
    let pid = server_pid(server);
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    for sender in senders {
        let _ = sender.await;
    }
    accepted.lock().unwrap().clone()
}

fn server_pid(server: &Server) -> u32 {
    let status = server.raw("GET", "/gust/health", &[], b"");
    assert_eq!(status.status, 200);
    server.pid()
}

#[tokio::test(flavor = "multi_thread")]
async fn accepted_events_survive_a_crash() {
    let server = Server::start_with(RECORDING);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "crashy", false, dir.path()).await;

    let accepted = send_until_killed(&server, 2000, 1000).await;
    let data_dir: PathBuf = server.kill();
    let ran_before: usize = records(dir.path(), "crashy").len();

    let server = Server::start_in(&data_dir, RECORDING);
    let expected: std::collections::HashSet<u64> = accepted.iter().copied().collect();
    let counts = eventually(
        Duration::from_secs(120),
        "every accepted event to run",
        || {
            let mut counts: HashMap<u64, usize> = HashMap::new();
            for r in records(dir.path(), "crashy") {
                *counts.entry(r["event"]["n"].as_u64().unwrap()).or_default() += 1;
            }
            expected
                .iter()
                .all(|n| counts.contains_key(n))
                .then_some(counts)
        },
    )
    .await;
    let twice = counts.values().filter(|c| **c > 1).count();
    println!(
        "crash test: {} events accepted before SIGKILL, {ran_before} ran before the crash, all ran after restart; {twice} ran more than once",
        accepted.len()
    );
    assert!(accepted.len() >= 1000);
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_or_requeues_running_events() {
    let server = Server::start_with(&["--shutdown-grace", "2", "--isolation", "process"]);
    let client = server.client();
    let dir = tempfile::tempdir().unwrap();
    create_recorder(&client, "slow", false, dir.path()).await;
    for i in 0..4 {
        send_event(&client, "slow", serde_json::json!({"i": i, "sleep": 5})).await;
    }
    eventually(Duration::from_secs(20), "an event to start", || {
        (!records(dir.path(), "slow").is_empty()).then_some(())
    })
    .await;
    let (took, data_dir) = server.terminate();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");

    // Events that had not finished run after the restart.
    let _server = Server::start_in(&data_dir, RECORDING);
    eventually(
        Duration::from_secs(60),
        "every event to finish after the restart",
        || {
            let seen: std::collections::HashSet<u64> = phase(dir.path(), "slow", "done")
                .iter()
                .map(|r| r["event"]["i"].as_u64().unwrap())
                .collect();
            (seen.len() == 4).then_some(())
        },
    )
    .await;
}
