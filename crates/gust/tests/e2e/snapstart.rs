//! SnapStart: a published version's init runs once, in its snapshot process, and every
//! environment of the version starts from that state in a sandbox of its own.

use aws_sdk_lambda::types::{Runtime, SnapStart, SnapStartApplyOn, SnapStartOptimizationStatus};
use serde_json::{Value, json};

use crate::common::*;

const SNAPSHOTTED: &str = r#"import ctypes, os, random, socket, time, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

# Made once, in the snapshot: the same in every environment (Lambda's own caveat).
INIT_ID = str(uuid.uuid4())
print("INIT RAN", flush=True)
open("/tmp/from-init", "w").write("made during init")
HOOKS = []

@register_before_snapshot
def first_before():
    HOOKS.append("before 1")

@register_before_snapshot
def second_before():
    HOOKS.append("before 2")

@register_after_restore
def after():
    HOOKS.append("after")

def handler(event, context):
    if event.get("write"):
        open("/tmp/" + event["write"], "w").write("mine")
    time.sleep(event.get("sleep", 0))
    if event.get("allocate_mb"):
        hog = bytearray(event["allocate_mb"] * 1024 * 1024)
        for i in range(0, len(hog), 4096):
            hog[i] = 1
    status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
    try:
        open("/var/task/written", "w").write("x")
        task_writable = True
    except OSError:
        task_writable = False
    # What the snapshot process may do, a restored environment may not.
    libc = ctypes.CDLL(None, use_errno=True)
    unshared = libc.unshare(0x10000000) == 0
    try:
        socket.create_connection(("127.0.0.1", event.get("host_port", 1)), timeout=1).close()
        reached_host = True
    except OSError:
        reached_host = False
    return {
        "init_id": INIT_ID,
        "random": random.random(),
        "hooks": HOOKS,
        "tmp": sorted(os.listdir("/tmp")),
        "ids": [os.getuid(), os.getpid(), os.getppid()],
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
        "snapshot_variable": os.environ.get("_GUST_SNAPSHOT"),
        "security": [status.get("CapEff"), status.get("NoNewPrivs"), status.get("Seccomp")],
        "task_writable": task_writable,
        "unshared": unshared,
        "reached_host": reached_host,
    }
"#;

/// Creates a Python function from `source` and turns SnapStart on for its published versions.
async fn create_snapstart(
    client: &aws_sdk_lambda::Client,
    name: &str,
    source: &str,
) -> aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationOutput {
    create(
        client,
        name,
        Runtime::Python312,
        "app.handler",
        python_zip(source),
    )
    .await;
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
        .unwrap()
}

fn report_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.starts_with("REPORT"))
        .unwrap_or_else(|| panic!("no REPORT in {log}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapstart_version_initialises_once_and_restores_each_environment() {
    require_interpreters();
    let server = Server::start();
    let client = server.client();
    let latest = create_snapstart(&client, "snap", SNAPSHOTTED).await;
    let off = latest.snap_start().unwrap();
    assert_eq!(off.apply_on(), Some(&SnapStartApplyOn::PublishedVersions));
    assert_eq!(
        off.optimization_status(),
        Some(&SnapStartOptimizationStatus::Off)
    );
    let published = client
        .publish_version()
        .function_name("snap")
        .send()
        .await
        .unwrap();
    assert_eq!(
        published.snap_start().unwrap().optimization_status(),
        Some(&SnapStartOptimizationStatus::On)
    );

    // As on Lambda, publishing makes the snapshot: no invocation waits for the init.
    eventually(
        std::time::Duration::from_secs(60),
        "the snapshot made at publication",
        || {
            server
                .log()
                .contains("SnapStart snapshot initialised")
                .then_some(())
        },
    )
    .await;

    // Three at once: three environments from one snapshot.
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                invoke(
                    &client,
                    "snap:1",
                    json!({"sleep": 1, "write": format!("env{i}")}),
                )
                .await
            })
        })
        .collect();
    let mut results: Vec<Invoked> = Vec::new();
    for call in calls {
        results.push(call.await.unwrap());
    }
    let bodies: Vec<&Value> = results.iter().map(|r| &r.payload).collect();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.function_error, None, "{:?}", r.payload);
        let body = &r.payload;
        assert_eq!(
            body["init_id"], bodies[0]["init_id"],
            "init ran more than once"
        );
        assert_eq!(body["hooks"], json!(["before 2", "before 1", "after"]));
        assert_eq!(body["init_type"], "snap-start");
        assert_eq!(body["snapshot_variable"], Value::Null);
        // What init left in /tmp, and only this environment's own file.
        let own = body["tmp"].as_array().unwrap();
        assert!(own.contains(&json!("from-init")), "{body}");
        assert_eq!(own.len(), 2, "{body}");
        let report = report_line(&r.log);
        assert!(report.contains("Restore Duration: "), "{report}");
        assert!(report.contains("Billed Restore Duration: "), "{report}");
        assert!(!report.contains("Init Duration"), "{report}");
        assert!(
            !r.log.contains("INIT RAN"),
            "init output in an invocation: {}",
            r.log
        );
        // Its own PID namespace under its own init, no capabilities, the seccomp filter.
        assert_eq!(body["ids"], json!([993, 2, 1]), "{body}");
        assert_eq!(body["processes"], json!([1, 2]), "{body}");
        assert_eq!(body["security"], json!(["0000000000000000", "1", "2"]));
        assert_eq!(body["task_writable"], false);
        assert_eq!(
            body["unshared"], false,
            "a restored environment made a namespace"
        );
        assert_eq!(
            body["reached_host"], false,
            "a restored environment reached Gust"
        );
        for other in &bodies[..i] {
            assert_ne!(body["random"], other["random"], "random was not re-seeded");
        }
    }
    let distinct_tmp: std::collections::HashSet<String> =
        bodies.iter().map(|b| b["tmp"].to_string()).collect();
    assert_eq!(distinct_tmp.len(), 3, "environments share /tmp: {bodies:?}");
    assert_eq!(
        server
            .log()
            .matches("SnapStart snapshot initialised")
            .count(),
        1,
        "{}",
        server.log()
    );
    let status = server.raw("GET", "/gust/status", &[], b"").json();
    assert_eq!(
        status["SnapStartSnapshots"],
        json!([{"FunctionName": "snap", "Version": "1"}])
    );

    // Going over the memory limit kills that environment only; the next invocation works.
    let killed = invoke(&client, "snap:1", json!({"allocate_mb": 300})).await;
    assert_eq!(killed.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(killed.payload["errorType"], "Runtime.ExitError");
    assert!(
        killed.payload["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("signal: killed")),
        "{:?}",
        killed.payload
    );
    let after = invoke(&client, "snap:1", json!({})).await;
    assert_eq!(after.function_error, None, "{:?}", after.payload);
    assert_eq!(after.payload["init_id"], bodies[0]["init_id"]);

    // $LATEST initialises on demand.
    let latest = invoke(&client, "snap", json!({})).await;
    assert_eq!(latest.payload["init_type"], "on-demand");
    assert_ne!(latest.payload["init_id"], bodies[0]["init_id"]);
    assert!(report_line(&latest.log).contains("Init Duration"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapstart_init_error_is_reported_like_any_init_error() {
    require_interpreters();
    let server = Server::start();
    let client = server.client();
    create_snapstart(
        &client,
        "broken",
        "raise RuntimeError('no snapshot today')\n",
    )
    .await;
    client
        .publish_version()
        .function_name("broken")
        .send()
        .await
        .unwrap();
    let failed = invoke(&client, "broken:1", json!({})).await;
    assert_eq!(failed.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(
        failed.payload["errorType"], "RuntimeError",
        "{:?}",
        failed.payload
    );
    assert_eq!(failed.payload["errorMessage"], "no snapshot today");
}

/// An environment restored from a snapshot has its own /tmp on disk, as every environment
/// does: it starts with what init left there, and writing more than the function's memory to
/// it neither kills the function nor counts as memory used.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_environment_has_its_own_tmp_on_disk() {
    require_interpreters();
    let server = Server::start();
    let client = server.client();
    let source = r#"import os
open("/tmp/from-init", "w").write("made during init")

def handler(event, context):
    with open("/tmp/big", "wb") as f:
        for _ in range(event["mb"]):
            f.write(b"s" * (1 << 20))
        f.flush()
        os.fsync(f.fileno())
    stat = os.statvfs("/tmp")
    return {"tmp": sorted(os.listdir("/tmp")), "size": stat.f_blocks * stat.f_frsize >> 20}
"#;
    create_snapstart(&client, "tmpwriter", source).await;
    client
        .publish_version()
        .function_name("tmpwriter")
        .send()
        .await
        .unwrap();
    let out = invoke(&client, "tmpwriter:1", json!({"mb": 200})).await;
    assert_eq!(out.function_error, None, "{out:?}");
    assert_eq!(out.payload["tmp"], json!(["big", "from-init"]), "{out:?}");
    assert!(out.payload["size"].as_u64().unwrap() >= 512, "{out:?}");
    let report = report_line(&out.log);
    assert!(report.contains("Restore Duration"), "{report}");
    let used = max_memory_used(report);
    assert!(used < 100, "/tmp counted as memory: {report}");
}

/// A restored runtime is not Gust's child: how it ended reaches Gust as its environment's first
/// process reports it (the `exited` message of PROTOCOL.md), exit status and all.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_runtimes_exit_status_is_reported() {
    require_interpreters();
    let server = Server::start();
    let client = server.client();
    let source = "import os\n\ndef handler(event, context):\n    os._exit(event[\"code\"])\n";
    create_snapstart(&client, "exiter", source).await;
    client
        .publish_version()
        .function_name("exiter")
        .send()
        .await
        .unwrap();
    let out = invoke(&client, "exiter:1", json!({"code": 3})).await;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.payload["errorType"], "Runtime.ExitError", "{out:?}");
    assert!(
        out.payload["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Runtime exited with error: exit status 3")),
        "{:?}",
        out.payload
    );
    assert!(
        report_line(&out.log).contains("Restore Duration"),
        "{}",
        out.log
    );
}
