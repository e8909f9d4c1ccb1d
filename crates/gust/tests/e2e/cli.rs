//! The `gust` client subcommands against a running server.

use std::process::{Command, Output};

use crate::common::*;

fn gust(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gust"))
        .args(args)
        .env("GUST_ENDPOINT", server.endpoint())
        .output()
        .expect("run gust")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_invoke_list_and_remove() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import os\ndef handler(event, context):\n    print('from the cli function')\n    return {'v': os.environ.get('VV'), 'got': event}\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();

    let out = gust(
        &server,
        &[
            "deploy",
            path,
            "--name",
            "clifn",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
            "--env",
            "VV=1",
            "--memory",
            "256",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("created clifn (python3.12, handler app.handler)"),
        "{}",
        text(&out.stdout)
    );

    let out = gust(
        &server,
        &["invoke", "clifn", "--payload", r#"{"a": 1}"#, "--log"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result, serde_json::json!({"v": "1", "got": {"a": 1}}));
    assert!(text(&out.stderr).contains("from the cli function"));
    assert!(text(&out.stderr).contains("REPORT RequestId: "));

    // Deploying again updates code and configuration.
    std::fs::write(
        dir.path().join("app.py"),
        "def handler(event, context):\n    return 'v2'\n",
    )
    .unwrap();
    let out = gust(
        &server,
        &[
            "deploy",
            path,
            "--name",
            "clifn",
            "--timeout",
            "10",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["Timeout"], 10);
    assert_eq!(config["MemorySize"], 256);

    let payload = dir.path().join("event.json");
    std::fs::write(&payload, "{}").unwrap();
    let out = gust(
        &server,
        &[
            "invoke",
            "clifn",
            "--payload",
            &format!("@{}", payload.display()),
            "--json",
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["Payload"], "v2");
    assert_eq!(doc["StatusCode"], 200);
    assert_eq!(doc["ExecutedVersion"], "$LATEST");

    let out = gust(&server, &["ls"]);
    assert!(
        text(&out.stdout)
            .lines()
            .any(|l| l.starts_with("clifn ") && l.contains("python3.12")),
        "{}",
        text(&out.stdout)
    );
    let out = gust(&server, &["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["Functions"][0]["FunctionName"], "clifn");

    let out = gust(&server, &["status"]);
    let status = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(status.contains("isolation:          linux"), "{status}");
    assert!(status.contains("idle environments:  "), "{status}");
    assert!(status.contains("environment memory: "), "{status}");

    let out = gust(&server, &["runtimes", "--json"]);
    let runtimes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let python = runtimes["Runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Runtime"] == "python3.12")
        .unwrap();
    assert!(python["Interpreter"].as_str().unwrap().starts_with('/'));
    assert!(!python["Interpreter"].as_str().unwrap().contains("/shims/"));

    let out = gust(&server, &["rm", "clifn"]);
    assert!(out.status.success());
    let out = gust(&server, &["invoke", "clifn"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:123456789012:function:clifn"), "{}", text(&out.stderr));

    // Errors that say what to do.
    let out = gust(&server, &["deploy", path, "--name", "new-one"]);
    assert!(
        text(&out.stderr).contains("give --runtime (and --handler) to create it"),
        "{}",
        text(&out.stderr)
    );
    let unreachable = Command::new(env!("CARGO_BIN_EXE_gust"))
        .args(["ls", "--endpoint", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(
        text(&unreachable.stderr).contains("Start it with `gust serve`"),
        "{}",
        text(&unreachable.stderr)
    );

    // A function error is reported and sets the exit status.
    std::fs::write(
        dir.path().join("app.py"),
        "def handler(event, context):\n    raise KeyError('k')\n",
    )
    .unwrap();
    gust(
        &server,
        &[
            "deploy",
            path,
            "--name",
            "failing",
            "--runtime",
            "python3.12",
            "--handler",
            "app.handler",
        ],
    );
    let out = gust(&server, &["invoke", "failing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("function error (Unhandled)"));
    assert!(text(&out.stdout).contains("\"errorType\": \"KeyError\""));
}
