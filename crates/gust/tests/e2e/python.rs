//! Python functions through Gust's Python runtime.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{InvocationType, Runtime};
use base64::Engine;

use crate::common::*;

const PROBE: &str = r#"
import os, tempfile, time

calls = 0

def handler(event, context):
    global calls
    calls += 1
    marker = os.path.join(tempfile.gettempdir(), "gust-marker")
    existed = os.path.exists(marker)
    with open(marker, "w") as f:
        f.write("x")
    print("printed by the function", event.get("tag"))
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    second = context.get_remaining_time_in_millis()
    env = {k: os.environ.get(k) for k in [
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_RUNTIME_API", "_HANDLER",
        "LAMBDA_TASK_ROOT", "TZ", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_INITIALIZATION_TYPE", "GREETING", "_X_AMZN_TRACE_ID"]}
    cc = context.client_context
    return {
        "calls": calls,
        "tmp_existed": existed,
        "remaining": [first, second],
        "env": env,
        "cwd": os.getcwd(),
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "version": context.function_version,
        "log_stream": context.log_stream_name,
        "custom": cc.custom if cc else None,
        "client_app": cc.client.app_title if cc and cc.client else None,
    }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_python_function_sees_lambdas_environment_and_keeps_warm_state() {
    let server = Server::start();
    let client = server.client();
    create_with_env(
        &client,
        "probe",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(PROBE),
        5,
        &[("GREETING", "hello")],
    )
    .await;

    let first = invoke(&client, "probe", serde_json::json!({"tag": "one"})).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.function_error, None, "{first:?}");
    assert_eq!(first.executed_version.as_deref(), Some("$LATEST"));
    let p = &first.payload;
    assert_eq!(p["calls"], 1);
    assert_eq!(p["tmp_existed"], false);
    let env = &p["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "probe");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/probe");
    assert_eq!(env["_HANDLER"], "app.handler");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
    assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.12");
    assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(env["GREETING"], "hello");
    assert!(
        env["_X_AMZN_TRACE_ID"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-")
    );
    let api = env["AWS_LAMBDA_RUNTIME_API"].as_str().unwrap();
    assert!(!api.contains("://") && api.contains(':'), "{api}");
    assert_eq!(p["cwd"], env["LAMBDA_TASK_ROOT"]);
    let stream = p["log_stream"].as_str().unwrap();
    assert!(
        stream.contains("/[$LATEST]") && stream.len() == "2026/01/01/[$LATEST]".len() + 32,
        "{stream}"
    );
    assert_eq!(p["function_name"], "probe");
    assert_eq!(p["memory"], "128");
    assert_eq!(p["version"], "$LATEST");
    assert_eq!(
        p["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:probe"
    );
    let remaining: Vec<i64> = p["remaining"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(remaining[0] <= 5000 && remaining[0] > 3000, "{remaining:?}");
    assert!(
        remaining[1] < remaining[0],
        "get_remaining_time_in_millis decreases: {remaining:?}"
    );

    // The Tail log: the function's output and the platform's lines, with Init Duration on a
    // cold start only.
    let id = p["request_id"].as_str().unwrap();
    assert!(
        first
            .log
            .contains(&format!("START RequestId: {id} Version: $LATEST")),
        "{}",
        first.log
    );
    assert!(
        first.log.contains("printed by the function one"),
        "{}",
        first.log
    );
    assert!(first.log.contains(&format!("END RequestId: {id}")));
    let report = first
        .log
        .lines()
        .find(|l| l.starts_with("REPORT"))
        .expect("REPORT line");
    for field in [
        "\tDuration: ",
        " ms\tBilled Duration: ",
        " ms\tMemory Size: 128 MB\tMax Memory Used: ",
        " MB\tInit Duration: ",
    ] {
        assert!(report.contains(field), "{report}");
    }

    let second = invoke(&client, "probe", serde_json::json!({"tag": "two"})).await;
    assert_eq!(
        second.payload["calls"], 2,
        "module state survives a warm invocation"
    );
    assert_eq!(
        second.payload["tmp_existed"], true,
        "/tmp survives a warm invocation"
    );
    assert_eq!(second.payload["log_stream"], p["log_stream"]);
    assert!(!second.log.contains("Init Duration"), "{}", second.log);
    assert!(second.log.contains("printed by the function two"));

    // New configuration: a new environment.
    client
        .update_function_configuration()
        .function_name("probe")
        .memory_size(256)
        .send()
        .await
        .unwrap();
    let third = invoke(&client, "probe", serde_json::json!({})).await;
    assert_eq!(third.payload["calls"], 1, "{third:?}");
    assert_eq!(third.payload["memory"], "256");
    assert_ne!(third.payload["log_stream"], p["log_stream"]);
    assert!(third.log.contains("Init Duration"));

    // Client context reaches the function decoded.
    let cc = serde_json::json!({"custom": {"k": "v", "city": "Z\u{fc}rich"}, "client": {"installation_id": "i", "app_title": "Gust", "app_version_name": "1", "app_version_code": "1", "app_package_name": "p"}, "env": {}});
    let out = client
        .invoke()
        .function_name("probe")
        .client_context(base64::engine::general_purpose::STANDARD.encode(cc.to_string()))
        .payload(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap();
    assert_eq!(doc["custom"]["k"], "v");
    assert_eq!(
        doc["custom"]["city"], "Z\u{fc}rich",
        "client context text is UTF-8"
    );
    assert_eq!(doc["client_app"], "Gust");

    let dry = client
        .invoke()
        .function_name("probe")
        .invocation_type(InvocationType::DryRun)
        .send()
        .await
        .unwrap();
    assert_eq!(dry.status_code(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn python_errors_have_lambdas_shapes() {
    let server = Server::start();
    let client = server.client();
    let raising = "def handler(event, context):\n    raise ValueError('boom')\n";
    create(
        &client,
        "raising",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(raising),
    )
    .await;
    let out = invoke(&client, "raising", serde_json::json!({})).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.payload["errorType"], "ValueError");
    assert_eq!(out.payload["errorMessage"], "boom");
    assert!(
        out.payload["requestId"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    let trace = out.payload["stackTrace"].as_array().unwrap();
    assert!(
        trace[0]
            .as_str()
            .unwrap()
            .contains("app.py\", line 2, in handler"),
        "{trace:?}"
    );
    assert!(out.log.contains("[ERROR] ValueError: boom"), "{}", out.log);
    // The environment survives a handled error.
    assert_eq!(
        invoke(&client, "raising", serde_json::json!({}))
            .await
            .payload["errorMessage"],
        "boom"
    );

    let init_errors = [
        (
            "no-dot",
            "app",
            "Runtime.MalformedHandlerName",
            "Bad handler 'app': not enough values to unpack (expected 2, got 1)",
        ),
        (
            "no-module",
            "missing.handler",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "no-handler",
            "app.nope",
            "Runtime.HandlerNotFound",
            "Handler 'nope' missing on module 'app'",
        ),
    ];
    for (name, handler, error_type, message) in init_errors {
        create(
            &client,
            name,
            Runtime::from("python3.12"),
            handler,
            python_zip("def handler(e, c):\n    return 1\n"),
        )
        .await;
        let out = invoke(&client, name, serde_json::json!({})).await;
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"), "{name}");
        assert_eq!(
            out.payload["errorType"], error_type,
            "{name}: {:?}",
            out.payload
        );
        assert_eq!(out.payload["errorMessage"], message, "{name}");
        assert_eq!(out.payload["requestId"], "");
        // Init is retried on the next invocation, with the same answer.
        assert_eq!(
            invoke(&client, name, serde_json::json!({})).await.payload["errorType"],
            error_type
        );
    }

    create(
        &client,
        "syntax",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("def handler(e, c)\n    return 1\n"),
    )
    .await;
    let out = invoke(&client, "syntax", serde_json::json!({})).await;
    assert_eq!(out.payload["errorType"], "Runtime.UserCodeSyntaxError");
    assert!(
        out.payload["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("Syntax error in module 'app': ")
    );

    create(
        &client,
        "init-raise",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("raise RuntimeError('broken init')\n"),
    )
    .await;
    let out = invoke(&client, "init-raise", serde_json::json!({})).await;
    assert_eq!(out.payload["errorType"], "RuntimeError");
    assert_eq!(out.payload["errorMessage"], "broken init");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_crashes_reset_the_environment() {
    let server = Server::start();
    let client = server.client();
    let source = r#"
import os, tempfile, time
calls = 0
def handler(event, context):
    global calls
    calls += 1
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("kill"):
        os.kill(os.getpid(), 9)
    marker = os.path.join(tempfile.gettempdir(), "reset-marker")
    existed = os.path.exists(marker)
    open(marker, "w").close()
    return {"calls": calls, "tmp_existed": existed}
"#;
    create_with_env(
        &client,
        "resets",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(source),
        1,
        &[],
    )
    .await;
    assert_eq!(
        invoke(&client, "resets", serde_json::json!({}))
            .await
            .payload["calls"],
        1
    );

    let timed_out = invoke(&client, "resets", serde_json::json!({"sleep": 5})).await;
    assert_eq!(timed_out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(timed_out.payload["errorType"], "Sandbox.Timedout");
    let message = timed_out.payload["errorMessage"].as_str().unwrap();
    assert!(
        message.starts_with("RequestId: ")
            && message.ends_with(" Error: Task timed out after 1.00 seconds"),
        "{message}"
    );
    assert!(
        timed_out.log.contains("Task timed out after 1.00 seconds"),
        "{}",
        timed_out.log
    );
    assert!(timed_out.log.contains("Status: timeout"));

    // Reset: a fresh runtime (module state gone), same environment (/tmp kept), cold start.
    let after = invoke(&client, "resets", serde_json::json!({})).await;
    assert_eq!(after.payload["calls"], 1, "{after:?}");
    assert_eq!(after.payload["tmp_existed"], true);
    assert!(after.log.contains("Init Duration"));

    let crashed = invoke(&client, "resets", serde_json::json!({"exit": 3})).await;
    assert_eq!(crashed.payload["errorType"], "Runtime.ExitError");
    assert!(
        crashed.payload["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Error: Runtime exited with error: exit status 3")
    );
    let killed = invoke(&client, "resets", serde_json::json!({"kill": true})).await;
    assert!(
        killed.payload["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Error: Runtime exited with error: signal: killed"),
        "{killed:?}"
    );
    assert_eq!(
        invoke(&client, "resets", serde_json::json!({}))
            .await
            .payload["calls"],
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_limits_and_formats() {
    let server = Server::start();
    let client = server.client();
    let source = "def handler(event, context):\n    n = event.get('n') if isinstance(event, dict) else None\n    return 'x' * n if n else event\n";
    create(
        &client,
        "echo",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(source),
    )
    .await;

    // Empty payloads are an empty object; any JSON value is accepted.
    assert_eq!(
        invoke_bytes(&client, "echo", Vec::new()).await.payload,
        serde_json::json!({})
    );
    assert_eq!(
        invoke_bytes(&client, "echo", b"[1, 2]".to_vec())
            .await
            .payload,
        serde_json::json!([1, 2])
    );
    assert_eq!(
        invoke_bytes(&client, "echo", "\"caf\u{e9}\"".as_bytes().to_vec())
            .await
            .payload,
        "caf\u{e9}"
    );

    let (status, code, message) = service_error(
        client
            .invoke()
            .function_name("echo")
            .payload(Blob::new(b"{not json".to_vec()))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidRequestContentException")
    );
    assert!(
        message.starts_with(
            "Could not parse request body into json: Could not parse payload into json: "
        ),
        "{message}"
    );

    let big = format!("\"{}\"", "a".repeat(6_291_456));
    let raw = server.raw(
        "POST",
        "/2015-03-31/functions/echo/invocations",
        &[],
        big.as_bytes(),
    );
    raw.assert_error(
        413,
        "RequestEntityTooLargeException",
        "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
    );

    // Just under the limit works.
    let fits = format!("\"{}\"", "a".repeat(6_000_000));
    assert_eq!(
        invoke_bytes(&client, "echo", fits.into_bytes())
            .await
            .payload
            .as_str()
            .unwrap()
            .len(),
        6_000_000
    );

    let too_big = invoke(&client, "echo", serde_json::json!({"n": 7_000_000})).await;
    assert_eq!(too_big.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(
        too_big.payload["errorType"],
        "Function.ResponseSizeTooLarge"
    );
    assert_eq!(
        too_big.payload["errorMessage"],
        "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    );
    assert_eq!(
        invoke(&client, "echo", serde_json::json!({"k": 1}))
            .await
            .payload["k"],
        1
    );

    let (status, code, _) = service_error(
        client
            .invoke()
            .function_name("nope")
            .payload(Blob::new(b"{}".to_vec()))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread")]
async fn python_logging_uses_lambdas_format() {
    let server = Server::start();
    let client = server.client();
    let source = "import logging\nlogger = logging.getLogger()\nlogger.setLevel(logging.INFO)\n\ndef handler(event, context):\n    logger.info('hello from logging')\n    return 1\n";
    create(
        &client,
        "logs",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(source),
    )
    .await;
    let out = invoke(&client, "logs", serde_json::json!({})).await;
    let line = out
        .log
        .lines()
        .find(|l| l.contains("hello from logging"))
        .expect("log line");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[0], "[INFO]");
    assert!(fields[1].ends_with('Z') && fields[1].len() == 24, "{line}");
    assert_eq!(fields[2].len(), 36, "request id: {line}");
    assert_eq!(fields[3], "hello from logging");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_invocations_get_their_own_environments() {
    let server = Server::start();
    let client = server.client();
    let source = "import os, time\ndef handler(event, context):\n    time.sleep(0.3)\n    return os.environ['AWS_LAMBDA_LOG_STREAM_NAME']\n";
    create(
        &client,
        "parallel",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(source),
    )
    .await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { invoke(&client, "parallel", serde_json::json!({})).await })
        })
        .collect();
    let mut streams = std::collections::HashSet::new();
    for call in calls {
        let out = call.await.unwrap();
        assert_eq!(out.function_error, None, "{out:?}");
        streams.insert(out.payload.as_str().unwrap().to_string());
    }
    assert_eq!(
        streams.len(),
        6,
        "each in-flight invocation runs in its own environment"
    );

    // Afterwards they are warm and reused: no new environments.
    for _ in 0..6 {
        let out = invoke(&client, "parallel", serde_json::json!({})).await;
        assert!(streams.contains(out.payload.as_str().unwrap()));
        assert!(!out.log.contains("Init Duration"));
    }
}

/// The runtime encodes results and decodes events exactly as Python's `json` module does
/// (it uses the same C codec without importing `json`, which would cost every cold start).
#[tokio::test(flavor = "multi_thread")]
async fn python_results_and_events_are_json_as_the_json_module_writes_it() {
    let server = Server::start();
    let client = server.client();
    let source = r#"import decimal, json

def handler(event, context):
    value = {"event": event, "float": 1e300, "neg": -0.0, "nan": float("nan"),
             "inf": float("-inf"), "text": "caf\u00e9 \u2028 \"q\"", "tuple": (1, 2),
             "dec": decimal.Decimal("1.5"), "decint": decimal.Decimal("2"), "big": 2 ** 70,
             "keys": {1: "a", None: "b", True: "c", 1.5: "d"}}
    return {"value": value, "json": json.dumps(value, default=str, ensure_ascii=False)}
"#;
    create(
        &client,
        "codec",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(source),
    )
    .await;
    let event = r#"{"n": 12345678901234567890123, "f": 2.5e-5, "s": "\ud83d\ude00\u00e9", "l": [true, false, null, {}], "dup": 1, "dup": 2}"#;
    let response = server.raw(
        "POST",
        "/2015-03-31/functions/codec/invocations",
        &[],
        event.as_bytes(),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let body = String::from_utf8(response.body.clone()).unwrap();
    let expected = format!(
        "{}{}{}",
        r#"{"value": {"event": {"n": 12345678901234567890123, "f": 2.5e-05, "s": "😀é", "l": [true, false, null, {}], "dup": 2}, "float": 1e+300, "neg": -0.0, "nan": NaN, "inf": -Infinity, "text": "café "#,
        '\u{2028}',
        r#" \"q\"", "tuple": [1, 2], "dec": 1.5, "decint": 2, "big": 1180591620717411303424, "keys": {"1": "c", "null": "b", "1.5": "d"}}, "json": "#,
    );
    assert!(body.starts_with(&expected), "{body}\n{expected}");
}
