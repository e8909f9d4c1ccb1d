//! Custom runtimes: the function's own `bootstrap`, here an unmodified program built with the
//! official `lambda_runtime` crate.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::Runtime;
use base64::Engine;

use crate::common::*;

fn rust_echo_zip() -> Vec<u8> {
    let binary = std::fs::read(rust_echo_binary()).unwrap();
    zip_of(&[("bootstrap", &binary, 0o755)])
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_rust_runtime_runs_unmodified() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "rusty",
        Runtime::from("provided.al2023"),
        "bootstrap",
        rust_echo_zip(),
    )
    .await;

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let out = invoke(&client, "rusty", serde_json::json!({"hello": "rust"})).await;
    assert_eq!(out.function_error, None, "{out:?}\n{}", server.log());
    let p = &out.payload;
    assert_eq!(p["echo"], serde_json::json!({"hello": "rust"}));
    assert_eq!(p["functionName"], "rusty");
    assert_eq!(p["functionVersion"], "$LATEST");
    assert_eq!(p["memoryMb"], 128);
    assert_eq!(
        p["invokedFunctionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:rusty"
    );
    let deadline = p["deadlineMs"].as_u64().unwrap();
    assert!(
        deadline > before + 2000 && deadline <= before + 4000,
        "deadline {deadline} vs now {before}"
    );
    assert!(out.log.contains("Init Duration"), "{}", out.log);

    // Client context passes the Rust client's strict parsing.
    let cc = serde_json::json!({"custom": {"tenant": "t1"}, "env": {"platform": "test"}});
    let with_cc = client
        .invoke()
        .function_name("rusty")
        .client_context(base64::engine::general_purpose::STANDARD.encode(cc.to_string()))
        .payload(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(with_cc.payload().unwrap().as_ref()).unwrap();
    assert_eq!(doc["clientContext"]["custom"]["tenant"], "t1", "{doc}");

    let failed = invoke(
        &client,
        "rusty",
        serde_json::json!({"fail": "requested failure"}),
    )
    .await;
    assert_eq!(failed.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(failed.payload["errorMessage"], "requested failure");
    assert!(failed.payload["errorType"].as_str().is_some());

    // Still warm after a handled error.
    let warm = invoke(&client, "rusty", serde_json::json!({"n": 1})).await;
    assert_eq!(warm.payload["echo"]["n"], 1);
    assert!(!warm.log.contains("Init Duration"));

    let exited = invoke(&client, "rusty", serde_json::json!({"exit": true})).await;
    assert_eq!(exited.payload["errorType"], "Runtime.ExitError");
    assert!(
        exited.payload["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Runtime exited with error: exit status 3")
    );
    assert_eq!(
        invoke(&client, "rusty", serde_json::json!({"n": 2}))
            .await
            .payload["echo"]["n"],
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_runtime_without_a_bootstrap_fails_clearly() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "no-bootstrap",
        Runtime::from("provided.al2023"),
        "function.handler",
        zip_of(&[("function.sh", b"echo hi", 0o755)]),
    )
    .await;
    let out = invoke(&client, "no-bootstrap", serde_json::json!({})).await;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.payload["errorType"], "Runtime.InvalidEntrypoint");
    let message = out.payload["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Couldn't find valid bootstrap(s): ["),
        "{message}"
    );
    assert!(message.contains("/bootstrap /opt/bootstrap]"), "{message}");

    // A bootstrap that is not executable cannot start.
    create(
        &client,
        "not-exec",
        Runtime::from("provided.al2"),
        "x",
        zip_of(&[("bootstrap", b"#!/bin/sh\necho hi\n", 0o644)]),
    )
    .await;
    let out = invoke(&client, "not-exec", serde_json::json!({})).await;
    assert_eq!(out.payload["errorType"], "Runtime.InvalidEntrypoint");
    assert!(
        out.payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("permission denied"),
        "{:?}",
        out.payload
    );

    // A bootstrap that exits at once.
    create(
        &client,
        "exits",
        Runtime::from("provided.al2"),
        "x",
        zip_of(&[("bootstrap", b"#!/bin/sh\nexit 127\n", 0o755)]),
    )
    .await;
    let out = invoke(&client, "exits", serde_json::json!({})).await;
    assert_eq!(out.payload["errorType"], "Runtime.ExitError");
    assert!(
        out.payload["errorMessage"]
            .as_str()
            .unwrap()
            .ends_with("Runtime exited with error: exit status 127")
    );
}
