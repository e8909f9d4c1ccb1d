//! Scaling and concurrency controls: reserved and provisioned concurrency, throttling with
//! each of Lambda's reasons, keep-alive and memory-budget retirement, and bursts of cold
//! starts.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_lambda::types::{EphemeralStorage, Runtime};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

/// A function that says which environment served it and how that environment started.
const WHO: &str = r#"import os, time, uuid
ENVIRONMENT = str(uuid.uuid4())

def handler(event, context):
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    return {"environment": ENVIRONMENT, "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
"#;

/// A function that counts how many of its invocations run at once, in a file on the host
/// (so the server runs functions as plain processes), and records the peak.
const COUNTER: &str = r#"import fcntl, json, os, time

def update(delta):
    path = os.path.join(os.environ["RECORD_DIR"], "counter.json")
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        state = json.loads(text) if text else {"now": 0, "peak": 0, "runs": 0}
        state["now"] += delta
        state["peak"] = max(state["peak"], state["now"])
        if delta > 0:
            state["runs"] += 1
        f.seek(0)
        f.truncate()
        f.write(json.dumps(state))

def handler(event, context):
    update(1)
    time.sleep(event.get("sleep", 1.0))
    update(-1)
    return {"ok": True}
"#;

fn counter(dir: &Path) -> Value {
    std::fs::read_to_string(dir.join("counter.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(json!({"now": 0, "peak": 0, "runs": 0}))
}

/// One synchronous Invoke over raw HTTP: the SDKs retry throttles, which would hide them.
fn raw_invoke(address: &str, function: &str, payload: &Value) -> RawResponse {
    raw_http(
        address,
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        &[("X-Amz-Log-Type", "Tail")],
        &serde_json::to_vec(payload).unwrap(),
    )
}

fn tail(response: &RawResponse) -> String {
    let encoded = response.header("x-amz-log-result").unwrap_or_default();
    String::from_utf8_lossy(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default(),
    )
    .into_owned()
}

fn assert_throttled(response: &RawResponse, reason: &str) {
    response.assert_error(429, "TooManyRequestsException", "Rate Exceeded.");
    assert_eq!(response.json()["Reason"], reason, "{response:?}");
}

async fn create_who(server: &Server, name: &str) {
    create_with_env(
        &server.client(),
        name,
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(WHO),
        30,
        &[],
    )
    .await;
}

fn environment_of(response: &RawResponse) -> String {
    assert_eq!(response.status, 200, "{response:?}");
    response.json()["environment"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_concurrency_api_follows_lambda() {
    let server = Server::start_with(&["--concurrency-limit", "110"]);
    create_who(&server, "reserved").await;
    let put = |name: &str, body: Value| {
        server.raw(
            "PUT",
            &format!("/2017-10-31/functions/{name}/concurrency"),
            &[],
            &serde_json::to_vec(&body).unwrap(),
        )
    };
    let get = || {
        server.raw(
            "GET",
            "/2019-09-30/functions/reserved/concurrency",
            &[],
            b"",
        )
    };
    assert_eq!(get().json(), json!({}));
    let r = put("reserved", json!({"ReservedConcurrentExecutions": 10}));
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"ReservedConcurrentExecutions": 10}));
    assert_eq!(get().json(), json!({"ReservedConcurrentExecutions": 10}));
    let settings = server
        .raw("GET", "/2016-08-19/account-settings", &[], b"")
        .json();
    assert_eq!(settings["AccountLimit"]["ConcurrentExecutions"], 110);
    assert_eq!(
        settings["AccountLimit"]["UnreservedConcurrentExecutions"],
        100
    );
    let function = server
        .raw("GET", "/2015-03-31/functions/reserved", &[], b"")
        .json();
    assert_eq!(
        function["Concurrency"],
        json!({"ReservedConcurrentExecutions": 10})
    );
    put("reserved", json!({"ReservedConcurrentExecutions": 11})).assert_error(
        400,
        "InvalidParameterValueException",
        "decreases account's UnreservedConcurrentExecution below its minimum value of [100]",
    );
    put("reserved", json!({"ReservedConcurrentExecutions": -1})).assert_error(
        400,
        "ValidationException",
        "reservedConcurrentExecutions",
    );
    put("reserved:1", json!({"ReservedConcurrentExecutions": 1})).assert_error(
        400,
        "InvalidParameterValueException",
        "Aliases and versions do not support this operation",
    );
    put("ghost", json!({"ReservedConcurrentExecutions": 1})).assert_error(
        404,
        "ResourceNotFoundException",
        "function:ghost",
    );
    assert_eq!(get().json(), json!({"ReservedConcurrentExecutions": 10}));
    let deleted = server.raw(
        "DELETE",
        "/2017-10-31/functions/reserved/concurrency",
        &[],
        b"",
    );
    assert_eq!(deleted.status, 204);
    assert_eq!(get().json(), json!({}));
    let settings = server
        .raw("GET", "/2016-08-19/account-settings", &[], b"")
        .json();
    assert_eq!(
        settings["AccountLimit"]["UnreservedConcurrentExecutions"],
        110
    );

    // Reservations survive restarts.
    put("reserved", json!({"ReservedConcurrentExecutions": 0}));
    let dir = server.kill();
    let server = Server::start_in(&dir, &["--concurrency-limit", "110"]);
    let r = server.raw(
        "GET",
        "/2019-09-30/functions/reserved/concurrency",
        &[],
        b"",
    );
    assert_eq!(r.json(), json!({"ReservedConcurrentExecutions": 0}));
    // Reserved 0 throttles every invocation.
    assert_throttled(
        &raw_invoke(&server.address, "reserved", &json!({})),
        "ReservedFunctionConcurrentInvocationLimitExceeded",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttles_carry_each_reason() {
    // An account limit of 1: the second concurrent invocation is over it, and more than ten
    // invocations a second are over the request rate.
    let server = Server::start_with(&["--concurrency-limit", "1"]);
    create_who(&server, "solo").await;
    let address = server.address.clone();
    let slow = std::thread::spawn(move || raw_invoke(&address, "solo", &json!({"sleep": 2})));
    let mut throttled = None;
    let started = Instant::now();
    while throttled.is_none() && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let r = raw_invoke(&server.address, "solo", &json!({}));
        if r.status == 429 {
            throttled = Some(r);
        }
    }
    assert_throttled(
        &throttled.expect("a concurrent invocation over the limit"),
        "ConcurrentInvocationLimitExceeded",
    );
    assert_eq!(slow.join().unwrap().status, 200);
    let rate = (0..40)
        .map(|_| raw_invoke(&server.address, "solo", &json!({})))
        .find(|r| r.status == 429)
        .expect("more than 10 invocations a second are throttled");
    assert_throttled(&rate, "FunctionInvocationRateLimitExceeded");

    // With a reservation of 1: the reserved limits and the reserved rate.
    let server = Server::start_with(&["--concurrency-limit", "110"]);
    create_who(&server, "one").await;
    let r = server.raw(
        "PUT",
        "/2017-10-31/functions/one/concurrency",
        &[],
        br#"{"ReservedConcurrentExecutions": 1}"#,
    );
    assert_eq!(r.status, 200);
    let address = server.address.clone();
    let slow = std::thread::spawn(move || raw_invoke(&address, "one", &json!({"sleep": 2})));
    let mut throttled = None;
    let started = Instant::now();
    while throttled.is_none() && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        let r = raw_invoke(&server.address, "one", &json!({}));
        if r.status == 429 {
            throttled = Some(r);
        }
    }
    assert_throttled(
        &throttled.expect("a concurrent invocation over the reservation"),
        "ReservedFunctionConcurrentInvocationLimitExceeded",
    );
    assert_eq!(slow.join().unwrap().status, 200);
    let rate = (0..40)
        .map(|_| raw_invoke(&server.address, "one", &json!({})))
        .find(|r| r.status == 429)
        .expect("more than 10 invocations a second are throttled");
    assert_throttled(&rate, "ReservedFunctionInvocationRateLimitExceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn reserved_concurrency_bounds_parallel_executions_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&["--isolation", "process"]);
    let client = server.client();
    create_with_env(
        &client,
        "bounded",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(COUNTER),
        30,
        &[("RECORD_DIR", dir.path().to_str().unwrap())],
    )
    .await;
    let r = server.raw(
        "PUT",
        "/2017-10-31/functions/bounded/concurrency",
        &[],
        br#"{"ReservedConcurrentExecutions": 3}"#,
    );
    assert_eq!(r.status, 200);

    // Synchronous: three run together, the others are throttled at once.
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let address = server.address.clone();
            std::thread::spawn(move || raw_invoke(&address, "bounded", &json!({"sleep": 1.5})))
        })
        .collect();
    let statuses: Vec<u16> = calls
        .into_iter()
        .map(|c| c.join().unwrap().status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    let state = counter(dir.path());
    assert_eq!(state["peak"], 3, "{state}");

    // Asynchronous: every event runs, never more than three at once.
    std::fs::remove_file(dir.path().join("counter.json")).unwrap();
    for _ in 0..9 {
        let r = server.raw(
            "POST",
            "/2015-03-31/functions/bounded/invocations",
            &[("X-Amz-Invocation-Type", "Event")],
            br#"{"sleep": 0.5}"#,
        );
        assert_eq!(r.status, 202);
    }
    let state = eventually(Duration::from_secs(60), "nine events", || {
        let state = counter(dir.path());
        (state["runs"] == 9 && state["now"] == 0).then_some(state)
    })
    .await;
    assert_eq!(state["peak"], 3, "{state}");
}

fn provisioned(server: &Server, qualifier: &str) -> RawResponse {
    server.raw(
        "GET",
        &format!("/2019-09-30/functions/warm/provisioned-concurrency?Qualifier={qualifier}"),
        &[],
        b"",
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_environments_answer_without_init() {
    let server = Server::start();
    create_who(&server, "warm").await;
    let client = server.client();
    let version = client
        .publish_version()
        .function_name("warm")
        .send()
        .await
        .unwrap();
    assert_eq!(version.version(), Some("1"));
    let put = |qualifier: &str, n: i64| {
        server.raw(
            "PUT",
            &format!("/2019-09-30/functions/warm/provisioned-concurrency?Qualifier={qualifier}"),
            &[],
            &serde_json::to_vec(&json!({"ProvisionedConcurrentExecutions": n})).unwrap(),
        )
    };
    put("%24LATEST", 1).assert_error(
        400,
        "InvalidParameterValueException",
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
    );
    put("7", 1).assert_error(404, "ResourceNotFoundException", "function:warm:7");
    put("1", 0).assert_error(
        400,
        "ValidationException",
        "provisionedConcurrentExecutions",
    );
    provisioned(&server, "1").assert_error(
        404,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found for this function",
    );

    let accepted = put("1", 2);
    assert_eq!(accepted.status, 202, "{accepted:?}");
    let doc = accepted.json();
    assert_eq!(doc["RequestedProvisionedConcurrentExecutions"], 2);
    assert_eq!(doc["AllocatedProvisionedConcurrentExecutions"], 0);
    assert_eq!(doc["Status"], "IN_PROGRESS");
    let ready = eventually(Duration::from_secs(60), "READY", || {
        let doc = provisioned(&server, "1").json();
        (doc["Status"] == "READY").then_some(doc)
    })
    .await;
    assert_eq!(ready["AvailableProvisionedConcurrentExecutions"], 2);
    assert_eq!(ready["AllocatedProvisionedConcurrentExecutions"], 2);

    // The first invocation of a provisioned environment has no init to report.
    let first = raw_invoke(&server.address, "warm:1", &json!({}));
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json()["init"], "provisioned-concurrency");
    let log = tail(&first);
    assert!(log.contains("REPORT RequestId"), "{log}");
    assert!(!log.contains("Init Duration"), "{log}");
    // $LATEST has no provisioned environments: an on-demand cold start.
    let latest = raw_invoke(&server.address, "warm", &json!({}));
    assert_eq!(latest.json()["init"], "on-demand");
    assert!(tail(&latest).contains("Init Duration"));

    // Beyond the provisioned environments, invocations spill over to on-demand ones.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let address = server.address.clone();
            std::thread::spawn(move || raw_invoke(&address, "warm:1", &json!({"sleep": 1})))
        })
        .collect();
    let mut kinds: Vec<String> = calls
        .into_iter()
        .map(|c| {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            r.json()["init"].as_str().unwrap().to_string()
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "on-demand",
            "provisioned-concurrency",
            "provisioned-concurrency"
        ]
    );

    let listed = server.raw(
        "GET",
        "/2019-09-30/functions/warm/provisioned-concurrency?List=ALL",
        &[],
        b"",
    );
    let configs = listed.json()["ProvisionedConcurrencyConfigs"].clone();
    assert_eq!(configs.as_array().unwrap().len(), 1, "{configs}");
    assert_eq!(
        configs[0]["FunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:warm:1"
    );

    // Deleting the configuration retires its environments.
    let deleted = server.raw(
        "DELETE",
        "/2019-09-30/functions/warm/provisioned-concurrency?Qualifier=1",
        &[],
        b"",
    );
    assert_eq!(deleted.status, 204);
    provisioned(&server, "1").assert_error(
        404,
        "ProvisionedConcurrencyConfigNotFoundException",
        "No Provisioned Concurrency Config found",
    );
    let after = raw_invoke(&server.address, "warm:1", &json!({}));
    assert_eq!(after.json()["init"], "on-demand", "{after:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_environments_retire_after_the_keep_alive() {
    let server = Server::start_with(&["--keep-alive", "1"]);
    create_who(&server, "brief").await;
    let first = environment_of(&raw_invoke(&server.address, "brief", &json!({})));
    let again = environment_of(&raw_invoke(&server.address, "brief", &json!({})));
    assert_eq!(first, again, "a warm environment is reused");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert_eq!(status["IdleEnvironments"], 0, "{status}");
    let later = environment_of(&raw_invoke(&server.address, "brief", &json!({})));
    assert_ne!(first, later, "the environment outlived its keep-alive");
}

/// A warm environment still answers after a quiet spell longer than the init allowance plus
/// the timeout (10 s + 1 s): the deadline of an invocation counts from the invocation, not
/// from when its runtime started. Provisioned environments too, whose runtime started even
/// earlier.
#[tokio::test(flavor = "multi_thread")]
async fn a_warm_environment_answers_after_a_quiet_spell() {
    let server = Server::start();
    let client = server.client();
    create_with_env(
        &client,
        "quiet",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(WHO),
        1,
        &[],
    )
    .await;
    client
        .publish_version()
        .function_name("quiet")
        .send()
        .await
        .unwrap();
    let put = server.raw(
        "PUT",
        "/2019-09-30/functions/quiet/provisioned-concurrency?Qualifier=1",
        &[],
        &serde_json::to_vec(&json!({"ProvisionedConcurrentExecutions": 1})).unwrap(),
    );
    assert_eq!(put.status, 202, "{put:?}");
    eventually(Duration::from_secs(30), "provisioned READY", || {
        let doc = server
            .raw(
                "GET",
                "/2019-09-30/functions/quiet/provisioned-concurrency?Qualifier=1",
                &[],
                b"",
            )
            .json();
        (doc["Status"] == "READY").then_some(())
    })
    .await;
    let on_demand = environment_of(&raw_invoke(&server.address, "quiet", &json!({})));
    let provisioned = raw_invoke(&server.address, "quiet:1", &json!({}));
    assert_eq!(
        provisioned.json()["init"],
        "provisioned-concurrency",
        "{provisioned:?}"
    );
    tokio::time::sleep(Duration::from_secs(12)).await;
    let later = raw_invoke(&server.address, "quiet", &json!({}));
    assert_eq!(environment_of(&later), on_demand, "{later:?}");
    assert!(!tail(&later).contains("Init Duration"), "{}", tail(&later));
    let later = raw_invoke(&server.address, "quiet:1", &json!({}));
    assert_eq!(later.json()["init"], "provisioned-concurrency", "{later:?}");
    assert_eq!(
        environment_of(&later),
        environment_of(&provisioned),
        "{later:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_memory_budget_retires_the_least_recently_used() {
    // Room for two 128 MB environments counted at their MemorySize (and none for runtimes
    // started ahead, which would only be retired first, or for a runtime template).
    let server = Server::start_with(&[
        "--memory-budget",
        "256",
        "--memory-policy",
        "reserved",
        "--standby-runtimes",
        "0",
        "--runtime-templates",
        "false",
    ]);
    for name in ["a", "b", "c"] {
        create_who(&server, name).await;
    }
    let a1 = environment_of(&raw_invoke(&server.address, "a", &json!({})));
    let b1 = environment_of(&raw_invoke(&server.address, "b", &json!({})));
    // c needs room: a, used least recently, retires.
    environment_of(&raw_invoke(&server.address, "c", &json!({})));
    let b2 = environment_of(&raw_invoke(&server.address, "b", &json!({})));
    assert_eq!(b1, b2, "b was used more recently than a and stays warm");
    let a2 = environment_of(&raw_invoke(&server.address, "a", &json!({})));
    assert_ne!(a1, a2, "a's environment was retired to make room");
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert!(
        status["EnvironmentMemoryMB"].as_u64().unwrap() <= 256,
        "{status}"
    );
    assert_eq!(status["MemoryBudgetMB"], 256);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_environments_count_for_the_memory_their_sandbox_holds() {
    // The same budget under the default (measured) policy: an idle Python environment holds
    // a few MB of its 128, so all three stay warm, and the total stays within the budget.
    let server = Server::start_with(&["--memory-budget", "256", "--standby-runtimes", "0"]);
    for name in ["a", "b", "c"] {
        create_who(&server, name).await;
    }
    let first: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| environment_of(&raw_invoke(&server.address, name, &json!({}))))
        .collect();
    let again: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|name| environment_of(&raw_invoke(&server.address, name, &json!({}))))
        .collect();
    assert_eq!(first, again, "every environment stayed warm");
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    let committed = status["EnvironmentMemoryMB"].as_u64().unwrap();
    assert!(committed <= 256, "{status}");
}

/// Tags and publishing give `$LATEST` a new RevisionId, as on Lambda, but change nothing an
/// environment is made from: its warm environments stay. A configuration change retires them.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_revision_without_a_new_configuration_keeps_environments_warm() {
    let server = Server::start();
    create_who(&server, "kept").await;
    let client = server.client();
    let first = environment_of(&raw_invoke(&server.address, "kept", &json!({})));
    let arn = client
        .get_function()
        .function_name("kept")
        .send()
        .await
        .unwrap()
        .configuration
        .unwrap()
        .function_arn
        .unwrap();
    client
        .tag_resource()
        .resource(&arn)
        .tags("team", "gust")
        .send()
        .await
        .unwrap();
    client
        .publish_version()
        .function_name("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(
        environment_of(&raw_invoke(&server.address, "kept", &json!({}))),
        first,
        "a tag and a publish keep $LATEST's environment warm"
    );
    client
        .update_function_configuration()
        .function_name("kept")
        .description("changed")
        .send()
        .await
        .unwrap();
    assert_ne!(
        environment_of(&raw_invoke(&server.address, "kept", &json!({}))),
        first,
        "a configuration change retires it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_cold_invocations_all_succeed() {
    let server = Server::start();
    create_who(&server, "burst").await;
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let address = server.address.clone();
            std::thread::spawn(move || raw_invoke(&address, "burst", &json!({"sleep": 0.2})))
        })
        .collect();
    let mut environments = std::collections::HashSet::new();
    for call in calls {
        let response = call.join().unwrap();
        assert_eq!(response.status, 200, "{response:?}\n{}", server.log());
        environments.insert(environment_of(&response));
    }
    assert!(environments.len() > 1, "the burst scaled out");
}

/// Everything a function can observe about its environment that must not depend on whether
/// its runtime was started ahead of demand.
const INTROSPECT: &str = r#"import os, resource, socket, sys

STATE = {"invocations": 0}

def handler(event, context):
    STATE["invocations"] += 1
    if event.get("allocate_mb"):
        hog = bytearray(event["allocate_mb"] * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    try:
        open("/var/task/written", "w").write("x")
        task_writable = True
    except OSError:
        task_writable = False
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    env = dict(os.environ)
    for volatile in ("AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID"):
        env.pop(volatile, None)
    return {
        "invocations": STATE["invocations"],
        "env": env,
        "path": sys.path,
        "modules": sorted(sys.modules),
        "flags": repr(sys.flags),
        "cwd": os.getcwd(),
        "tmp": sorted(os.listdir("/tmp")),
        "task": sorted(os.listdir("/var/task")),
        "task_writable": task_writable,
        "ids": [os.getuid(), os.getgid(), os.getpid()],
        "hostname": socket.gethostname(),
        "fds": sorted(os.listdir("/proc/self/fd")),
        "limits": [resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_NPROC)],
        "security": [status.get("CapEff"), status.get("NoNewPrivs"), status.get("Seccomp")],
        "umask": os.umask(0o22),
        "memory_mb": context.memory_limit_in_mb,
    }
"#;

/// A custom runtime (a shell `bootstrap` handing over to the system's Python) that reports
/// what its process sees, including what a stand-in could leave behind: signal dispositions,
/// descriptors, working directory.
const CUSTOM_BOOTSTRAP: &[u8] = b"#!/bin/sh\n# What the bootstrap itself inherited, before Python changes its own signals.\nexport BOOTSTRAP_STATUS=\"$(grep -E '^(SigIgn|SigBlk)' /proc/self/status | tr '\\n\\t' '  ')\"\nexec /usr/bin/python3 -S /var/task/runtime.py\n";
const CUSTOM_RUNTIME: &str = r#"import json, os, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
report = {
    "env": {k: v for k, v in os.environ.items() if k not in ("AWS_LAMBDA_LOG_STREAM_NAME",)},
    "cwd": os.getcwd(),
    "fds": sorted(os.listdir("/proc/self/fd")),
    "ids": [os.getuid(), os.getgid(), os.getpid(), os.getppid()],
    "signals": [status.get("SigIgn"), status.get("SigBlk"), status.get("SigCgt")],
    "security": [status.get("CapEff"), status.get("NoNewPrivs"), status.get("Seccomp")],
    "tmp": sorted(os.listdir("/tmp")),
    "tmp_mb": os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize // (1024 * 1024),
    "task": sorted(os.listdir("/var/task")),
    "umask": os.umask(0o22),
}
while True:
    with urllib.request.urlopen(API + "next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
    body = json.dumps(report).encode()
    urllib.request.urlopen(urllib.request.Request(API + request_id + "/response", data=body, method="POST")).read()
"#;

/// The Node.js counterpart of [`INTROSPECT`].
const NODE_INTROSPECT: &str = r#"const fs = require('fs');
let invocations = 0;
exports.handler = async () => {
  invocations += 1;
  const status = Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\n')
    .filter((l) => l.includes(':\t')).map((l) => l.split(':\t')));
  const env = Object.assign({}, process.env);
  delete env.AWS_LAMBDA_LOG_STREAM_NAME;
  delete env._X_AMZN_TRACE_ID;
  return {
    invocations,
    env,
    execArgv: process.execArgv,
    argv: process.argv,
    cwd: process.cwd(),
    modules: Object.keys(require.cache).sort(),
    tmp: fs.readdirSync('/tmp').sort(),
    task: fs.readdirSync('/var/task').sort(),
    ids: [process.getuid(), process.getgid(), process.pid],
    fds: fs.readdirSync('/proc/self/fd').sort(),
    security: [status.CapEff, status.NoNewPrivs, status.Seccomp, status.SigIgn, status.SigBlk],
    umask: process.umask(),
    zone: [Intl.DateTimeFormat().resolvedOptions().timeZone, new Date(0).getTimezoneOffset()],
    heapLimit: require('v8').getHeapStatistics().heap_size_limit,
    noDeprecation: process.noDeprecation === true,
  };
};
"#;

/// Runs a function on a new environment of a new configuration.
async fn introspect_function(server: &Server, function: &str, description: &str) -> Value {
    server
        .client()
        .update_function_configuration()
        .function_name(function)
        .description(description)
        .send()
        .await
        .unwrap();
    let r = raw_invoke(&server.address, function, &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

const ADOPTED: &str = "environment adopted a runtime started ahead";

/// A function as deployed for [`fresh_and_adopted`]: runtime, handler, code, its variables
/// besides `GREETING`, and its /tmp size (MB) if not the default.
type Deployment<'a> = (
    &'a str,
    &'a str,
    Vec<u8>,
    &'a [(&'a str, &'a str)],
    Option<i32>,
);

/// Deploys `function` on both servers and cold-starts it once (the first cold start of a kind
/// is always fresh; it starts sandboxes ahead of the next), then starts a second environment
/// on each: returns what they report, `(fresh, adopted)`. `pool` names the kind of sandboxes
/// started ahead that the second start adopts (a name ending in `:` stands for any name that
/// starts with it).
async fn fresh_and_adopted(
    fresh_server: &Server,
    ahead_server: &Server,
    function: &str,
    (runtime, handler, code, vars, tmp_mb): Deployment<'_>,
    pool: &str,
) -> (Value, Value) {
    let vars: Vec<(&str, &str)> = [("GREETING", "hello")]
        .into_iter()
        .chain(vars.iter().copied())
        .collect();
    for server in [fresh_server, ahead_server] {
        create_with_env(
            &server.client(),
            function,
            Runtime::from(runtime),
            handler,
            code.clone(),
            30,
            &vars,
        )
        .await;
        if let Some(mb) = tmp_mb {
            server
                .client()
                .update_function_configuration()
                .function_name(function)
                .ephemeral_storage(EphemeralStorage::builder().size(mb).build().unwrap())
                .send()
                .await
                .unwrap();
        }
        raw_invoke(&server.address, function, &json!({}));
    }
    let matches = |name: &str| match pool.strip_suffix(':') {
        Some(_) => name.starts_with(pool),
        None => name == pool,
    };
    eventually(Duration::from_secs(60), "sandboxes started ahead", || {
        let status = ahead_server.raw("GET", "/gust/status", &[], b"").json();
        let ready = status["RuntimesStartedAhead"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Runtime"].as_str().is_some_and(matches) && r["Ready"].as_u64() > Some(0));
        ready.then_some(())
    })
    .await;
    let adopted_before = ahead_server.log().matches(ADOPTED).count();
    let fresh = introspect_function(fresh_server, function, "second").await;
    let ahead = introspect_function(ahead_server, function, "second").await;
    assert_eq!(
        ahead_server.log().matches(ADOPTED).count(),
        adopted_before + 1,
        "{function}: the second environment was not started ahead"
    );
    assert_eq!(ahead["env"]["GREETING"], "hello");
    assert!(ahead["env"].get("_GUST_STANDBY").is_none());
    (fresh, ahead)
}

/// What a Python function reports of itself in [`INTROSPECT`] that must not tell a fresh
/// start from another.
const PYTHON_KEYS: [&str; 16] = [
    "invocations",
    "env",
    "path",
    "modules",
    "flags",
    "cwd",
    "tmp",
    "task",
    "task_writable",
    "ids",
    "hostname",
    "fds",
    "limits",
    "security",
    "umask",
    "memory_mb",
];

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_forked_from_a_template_is_indistinguishable_from_a_fresh_one() {
    let fresh_server =
        Server::start_with(&["--standby-runtimes", "0", "--runtime-templates", "false"]);
    let forking_server = Server::start_with(&["--standby-runtimes", "0"]);
    for server in [&fresh_server, &forking_server] {
        create_with_env(
            &server.client(),
            "inside",
            Runtime::Python312,
            "app.handler",
            python_zip(INTROSPECT),
            30,
            &[("GREETING", "hello")],
        )
        .await;
        // The first cold start of a runtime starts its template.
        raw_invoke(&server.address, "inside", &json!({}));
    }
    runtime_template_ready(&forking_server).await;
    let fresh = introspect_function(&fresh_server, "inside", "second").await;
    let forked = introspect_function(&forking_server, "inside", "second").await;
    assert!(
        !fresh_server.log().contains(FORKED),
        "templates were not off"
    );
    assert_eq!(forking_server.log().matches(FORKED).count(), 1);
    assert_eq!(forked["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(forked["task"], json!(["app.py"]));
    assert!(forked["env"].get("_GUST_TEMPLATE").is_none());
    assert_same(
        &fresh,
        &forked,
        &PYTHON_KEYS,
        "Python forked from a template",
    );

    // The function's memory limit applies to a forked environment.
    let client = forking_server.client();
    client
        .update_function_configuration()
        .function_name("inside")
        .memory_size(128)
        .send()
        .await
        .unwrap();
    let killed = raw_invoke(
        &forking_server.address,
        "inside",
        &json!({"allocate_mb": 400}),
    );
    assert_eq!(forking_server.log().matches(FORKED).count(), 2);
    assert_eq!(killed.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        killed.json()["errorType"],
        "Runtime.ExitError",
        "{killed:?}"
    );
    // The next invocation gets a new environment, forked again.
    let r = raw_invoke(&forking_server.address, "inside", &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["invocations"], 1);
    assert_eq!(forking_server.log().matches(FORKED).count(), 3);
}

/// Two environments of one function draw different random numbers and UUIDs, and each sees
/// only its own /tmp.
const DRAWS: &str = r#"import os, random, time, uuid

def handler(event, context):
    mine = os.listdir("/tmp")
    open("/tmp/" + context.aws_request_id, "w").close()
    time.sleep(event.get("sleep", 0))
    return {"random": [random.random() for _ in range(3)], "uuid": str(uuid.uuid4()),
            "tmp_before": mine, "pid_ns": os.readlink("/proc/self/ns/pid")}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn environments_forked_from_one_template_differ() {
    let server = Server::start_with(&["--standby-runtimes", "0"]);
    let client = server.client();
    create_with_env(
        &client,
        "draws",
        Runtime::Python312,
        "app.handler",
        python_zip(DRAWS),
        30,
        &[],
    )
    .await;
    raw_invoke(&server.address, "draws", &json!({}));
    runtime_template_ready(&server).await;
    // A new configuration: its environments are new ones, each forked from the template;
    // two invocations at once need two environments.
    client
        .update_function_configuration()
        .function_name("draws")
        .description("forked")
        .send()
        .await
        .unwrap();
    let address = server.address.clone();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let address = address.clone();
            std::thread::spawn(move || raw_invoke(&address, "draws", &json!({"sleep": 1})))
        })
        .collect();
    let results: Vec<Value> = calls
        .into_iter()
        .map(|c| {
            let r = c.join().unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            r.json()
        })
        .collect();
    assert_eq!(server.log().matches(FORKED).count(), 2, "{}", server.log());
    let (a, b) = (&results[0], &results[1]);
    assert_ne!(a["random"], b["random"], "random is re-seeded in each fork");
    assert_ne!(a["uuid"], b["uuid"]);
    assert_ne!(a["pid_ns"], b["pid_ns"], "each has its own PID namespace");
    assert_eq!(a["tmp_before"], json!([]));
    assert_eq!(b["tmp_before"], json!([]), "each has its own /tmp");
}

fn assert_same(fresh: &Value, ahead: &Value, keys: &[&str], what: &str) {
    for key in keys {
        assert_eq!(fresh[key], ahead[key], "{what}: {key} differs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_started_ahead_is_indistinguishable_from_a_fresh_one() {
    // Python environments fork from a template unless told otherwise: this compares the
    // runtimes started ahead one by one (the next test compares the template's forks).
    let fresh_server =
        Server::start_with(&["--standby-runtimes", "0", "--runtime-templates", "false"]);
    let ahead_server = Server::start_with(&["--runtime-templates", "false"]);

    let python = (
        "python3.12",
        "app.handler",
        python_zip(INTROSPECT),
        &[][..],
        None,
    );
    let (fresh, ahead) =
        fresh_and_adopted(&fresh_server, &ahead_server, "inside", python, "python3.12").await;
    assert!(
        !fresh_server.log().contains(ADOPTED),
        "--standby-runtimes 0 still started ahead"
    );
    assert_eq!(ahead["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(ahead["task"], json!(["app.py"]));
    assert_eq!(ahead["task_writable"], false);
    assert_eq!(ahead["invocations"], 1);
    assert_same(&fresh, &ahead, &PYTHON_KEYS, "Python");

    // The function's memory limit applies to an adopted environment.
    ahead_server
        .client()
        .update_function_configuration()
        .function_name("inside")
        .memory_size(128)
        .send()
        .await
        .unwrap();
    let adopted_before = ahead_server.log().matches(ADOPTED).count();
    let killed = raw_invoke(
        &ahead_server.address,
        "inside",
        &json!({"allocate_mb": 400}),
    );
    assert_eq!(
        ahead_server.log().matches(ADOPTED).count(),
        adopted_before + 1,
        "the 128 MB environment was not started ahead"
    );
    assert_eq!(killed.status, 200);
    assert_eq!(killed.header("x-amz-function-error"), Some("Unhandled"));
    assert_eq!(
        killed.json()["errorType"],
        "Runtime.ExitError",
        "{killed:?}"
    );

    // Custom runtimes: the stand-in execs the function's bootstrap, which sees what a fresh
    // start shows it, down to the signal state it inherits.
    let code = zip_of(&[
        ("bootstrap", CUSTOM_BOOTSTRAP, 0o755),
        ("runtime.py", CUSTOM_RUNTIME.as_bytes(), 0o644),
    ]);
    let custom = ("provided.al2023", "unused", code.clone(), &[][..], None);
    let (fresh, ahead) =
        fresh_and_adopted(&fresh_server, &ahead_server, "custom", custom, "provided").await;
    assert!(
        ahead["env"]["BOOTSTRAP_STATUS"]
            .as_str()
            .is_some_and(|s| s.contains("SigIgn")),
        "{ahead}"
    );
    assert_eq!(ahead["task"], json!(["bootstrap", "runtime.py"]));
    let custom_keys = [
        "env", "cwd", "fds", "ids", "signals", "security", "tmp", "task", "umask",
    ];
    assert_same(&fresh, &ahead, &custom_keys, "custom runtime");

    // Node.js: pools per memory size, the bootstrap loaded ahead.
    let node_code = zip_of(&[("index.js", NODE_INTROSPECT.as_bytes(), 0o644)]);
    let node = (
        "nodejs20.x",
        "index.handler",
        node_code.clone(),
        &[][..],
        None,
    );
    let (fresh, ahead) =
        fresh_and_adopted(&fresh_server, &ahead_server, "node", node, "nodejs20.x/128").await;
    assert_eq!(ahead["invocations"], 1);
    let node_keys = [
        "invocations",
        "env",
        "execArgv",
        "argv",
        "cwd",
        "modules",
        "tmp",
        "task",
        "ids",
        "fds",
        "security",
        "umask",
        "zone",
        "heapLimit",
        "noDeprecation",
    ];
    assert_same(&fresh, &ahead, &node_keys, "Node.js");

    // A larger /tmp: the sandbox started ahead grows its /tmp when adopted.
    let big_tmp = ("provided.al2023", "unused", code, &[][..], Some(1024));
    let (fresh, ahead) = fresh_and_adopted(
        &fresh_server,
        &ahead_server,
        "custom-tmp",
        big_tmp,
        "provided",
    )
    .await;
    // At least the 1 GB asked for, beside the filesystem's own few percent.
    let tmp_mb = ahead["tmp_mb"].as_u64().unwrap();
    assert!((1024..1024 + 64).contains(&tmp_mb), "{ahead}");
    assert_same(&fresh, &ahead, &["tmp_mb"], "custom runtime, /tmp of 1 GB");
    assert_same(&fresh, &ahead, &custom_keys, "custom runtime, /tmp of 1 GB");

    // Variables the interpreter reads as it starts: a sandbox started ahead whose stand-in
    // starts the interpreter with them.
    let python = (
        "python3.12",
        "app.handler",
        python_zip(INTROSPECT),
        &[("PYTHONDONTWRITEBYTECODE", "1")][..],
        None,
    );
    let (fresh, ahead) = fresh_and_adopted(
        &fresh_server,
        &ahead_server,
        "python-vars",
        python,
        "provided:",
    )
    .await;
    assert!(
        ahead["flags"]
            .as_str()
            .is_some_and(|f| f.contains("dont_write_bytecode=1")),
        "{ahead}"
    );
    assert_same(
        &fresh,
        &ahead,
        &PYTHON_KEYS,
        "Python with PYTHONDONTWRITEBYTECODE",
    );
    let node = (
        "nodejs20.x",
        "index.handler",
        node_code,
        &[("NODE_OPTIONS", "--no-deprecation")][..],
        None,
    );
    let (fresh, ahead) =
        fresh_and_adopted(&fresh_server, &ahead_server, "node-vars", node, "provided:").await;
    // Only a Node.js started with NODE_OPTIONS has applied it.
    assert_eq!(ahead["noDeprecation"], true, "{ahead}");
    assert_same(&fresh, &ahead, &node_keys, "Node.js with NODE_OPTIONS");
}
