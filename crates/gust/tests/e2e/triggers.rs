//! Triggers: function URLs and HTTP routes (payload format 2.0 in, HTTP out) and scheduled
//! rules over EventBridge's JSON 1.1 protocol.

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_lambda::types::{Cors, FunctionUrlAuthType, Runtime};
use serde_json::{Value, json};

use crate::common::*;

const ECHO: &str = r#"import base64, json, time

def handler(event, context):
    path = event.get("rawPath", "")
    if path == "/fail":
        raise RuntimeError("failing on purpose")
    if path == "/slow":
        time.sleep(3)
    if path == "/hello":
        return "Hello"
    if path == "/object":
        return {"message": "hi"}
    if path == "/binary":
        raw = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event.get("body", "").encode()
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(raw[::-1]).decode(), "isBase64Encoded": True}
    return {
        "statusCode": 201,
        "headers": {"x-echo": "yes", "access-control-allow-origin": "https://evil.example"},
        "cookies": ["session=abc; Max-Age=60", "theme=dark"],
        "body": json.dumps({"event": event, "arn": context.invoked_function_arn}),
    }
"#;

async fn create_echo(server: &Server, name: &str) {
    let client = server.client();
    create(
        &client,
        name,
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(ECHO),
    )
    .await;
    client
        .update_function_configuration()
        .function_name(name)
        .timeout(1)
        .send()
        .await
        .unwrap();
}

/// The path part of a function URL (`/lambda-url/<id>/`).
fn url_path(url: &str, server: &Server) -> String {
    let prefix = format!("{}/lambda-url/", server.endpoint());
    assert!(url.starts_with(&prefix), "{url}");
    assert!(url.ends_with('/'), "{url}");
    url[server.endpoint().len()..].to_string()
}

fn echoed(response: &RawResponse) -> Value {
    assert_eq!(response.status, 201, "{response:?}");
    response.json()
}

#[tokio::test(flavor = "multi_thread")]
async fn function_urls_turn_requests_into_events_and_results_into_responses() {
    let server = Server::start();
    let client = server.client();
    create_echo(&server, "web").await;

    let created = client
        .create_function_url_config()
        .function_name("web")
        .auth_type(FunctionUrlAuthType::None)
        .cors(
            Cors::builder()
                .allow_origins("https://app.example")
                .allow_methods("GET")
                .allow_methods("POST")
                .allow_headers("x-token")
                .expose_headers("x-echo")
                .max_age(300)
                .build(),
        )
        .send()
        .await
        .expect("create the URL");
    let url = created.function_url().to_string();
    assert_eq!(
        created.function_arn(),
        "arn:aws:lambda:us-east-1:123456789012:function:web"
    );
    let base = url_path(&url, &server);

    // Methods, repeated headers and query keys, cookies and a JSON body.
    let response = server.raw(
        "POST",
        &format!("{base}items/42?a=1&a=2&b=x%20y"),
        &[
            ("Content-Type", "application/json"),
            ("X-Multi", "one"),
            ("X-Multi", "two"),
            ("Cookie", "c1=v1; c2=v2"),
            ("User-Agent", "curl/8.0"),
        ],
        br#"{"k":"v"}"#,
    );
    let doc = echoed(&response);
    let event = &doc["event"];
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/items/42");
    assert_eq!(event["rawQueryString"], "a=1&a=2&b=x%20y");
    assert_eq!(
        event["queryStringParameters"],
        json!({"a": "1,2", "b": "x y"})
    );
    assert_eq!(event["cookies"], json!(["c1=v1", "c2=v2"]));
    assert_eq!(event["headers"]["x-multi"], "one,two");
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(event["headers"].get("cookie").is_none());
    assert_eq!(event["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(event["body"], r#"{"k":"v"}"#);
    assert_eq!(event["isBase64Encoded"], false);
    let context = &event["requestContext"];
    assert_eq!(context["http"]["method"], "POST");
    assert_eq!(context["http"]["path"], "/items/42");
    assert_eq!(context["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(context["http"]["userAgent"], "curl/8.0");
    assert_eq!(
        context["requestId"],
        response.header("x-amzn-requestid").unwrap()
    );
    assert!(context["timeEpoch"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(
        context["time"].as_str().unwrap().ends_with(" +0000"),
        "{context}"
    );
    assert_eq!(context["stage"], "$default");
    assert!(event.get("pathParameters").is_none());
    assert_eq!(
        doc["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:web"
    );
    // The result's members: status, headers, one Set-Cookie per cookie.
    assert_eq!(response.header("x-echo"), Some("yes"));
    let cookies: Vec<&str> = response
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["session=abc; Max-Age=60", "theme=dark"]);

    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let doc = echoed(&server.raw(method, &format!("{base}m"), &[], b""));
        assert_eq!(doc["event"]["requestContext"]["http"]["method"], method);
        assert!(doc["event"].get("body").is_none());
        assert!(doc["event"].get("queryStringParameters").is_none());
    }

    // Binary bodies travel as base64 both ways.
    let bytes: Vec<u8> = vec![0, 159, 146, 150, 255, 1];
    let response = server.raw(
        "POST",
        &format!("{base}binary"),
        &[("Content-Type", "application/octet-stream")],
        &bytes,
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/octet-stream")
    );
    let mut reversed = bytes.clone();
    reversed.reverse();
    assert_eq!(response.body, reversed);

    // Results without statusCode are 200 JSON bodies.
    let response = server.raw("GET", &format!("{base}hello"), &[], b"");
    assert_eq!(
        (response.status, response.body.as_slice()),
        (200, &b"Hello"[..])
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    let response = server.raw("GET", &format!("{base}object"), &[], b"");
    assert_eq!(response.json(), json!({"message": "hi"}));

    // Function errors and timeouts are 502.
    for path in ["fail", "slow"] {
        let response = server.raw("GET", &format!("{base}{path}"), &[], b"");
        assert_eq!(response.status, 502, "{path}: {response:?}");
        assert_eq!(response.body, b"Internal Server Error");
    }

    // CORS: preflights are answered from the configuration, without the function.
    let preflight = server.raw(
        "OPTIONS",
        &format!("{base}items"),
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "x-token"),
        ],
        b"",
    );
    assert_eq!(preflight.status, 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-token")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("300"));
    assert!(preflight.body.is_empty());
    let refused = server.raw(
        "OPTIONS",
        &format!("{base}items"),
        &[
            ("Origin", "https://other.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);
    // ...and the configuration replaces the CORS headers a function sets.
    let response = server.raw(
        "GET",
        &format!("{base}x"),
        &[("Origin", "https://app.example")],
        b"",
    );
    assert_eq!(
        response.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        response.header("access-control-expose-headers"),
        Some("x-echo")
    );
    let response = server.raw("GET", &format!("{base}x"), &[], b"");
    assert_eq!(response.header("access-control-allow-origin"), None);

    // The configuration API.
    let got = client
        .get_function_url_config()
        .function_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(got.function_url(), url);
    assert!(!got.last_modified_time().is_empty());
    assert_eq!(got.cors().unwrap().max_age(), Some(300));
    let duplicate = server.raw(
        "POST",
        "/2021-10-31/functions/web/url",
        &[],
        br#"{"AuthType":"NONE"}"#,
    );
    duplicate.assert_error(
        409,
        "ResourceConflictException",
        "FunctionUrlConfig exists for this Lambda function",
    );
    for qualifier in ["1", "%24LATEST"] {
        server
            .raw(
                "POST",
                &format!("/2021-10-31/functions/web/url?Qualifier={qualifier}"),
                &[],
                br#"{"AuthType":"NONE"}"#,
            )
            .assert_error(400, "ValidationException", "failed to satisfy constraint");
    }
    server
        .raw(
            "POST",
            "/2021-10-31/functions/web/url?Qualifier=nosuch",
            &[],
            br#"{"AuthType":"NONE"}"#,
        )
        .assert_error(404, "ResourceNotFoundException", "Function does not exist");
    server
        .raw(
            "POST",
            "/2021-10-31/functions/web/url?Qualifier=live",
            &[],
            br#"{"AuthType":"BASIC"}"#,
        )
        .assert_error(400, "ValidationException", "authType");

    // A URL for an alias invokes the alias.
    let version = client
        .publish_version()
        .function_name("web")
        .send()
        .await
        .unwrap();
    client
        .create_alias()
        .function_name("web")
        .name("live")
        .function_version(version.version().unwrap())
        .send()
        .await
        .unwrap();
    let live = client
        .create_function_url_config()
        .function_name("web")
        .qualifier("live")
        .auth_type(FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.function_arn(),
        "arn:aws:lambda:us-east-1:123456789012:function:web:live"
    );
    assert_ne!(live.function_url(), url);
    let doc = echoed(&server.raw("GET", &url_path(live.function_url(), &server), &[], b""));
    assert_eq!(
        doc["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:web:live"
    );
    let listed = client
        .list_function_url_configs()
        .function_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.function_url_configs().len(), 2);

    // AWS_IAM URLs need signatures Gust cannot check yet: they are refused, not served.
    client
        .update_function_url_config()
        .function_name("web")
        .auth_type(FunctionUrlAuthType::AwsIam)
        .send()
        .await
        .unwrap();
    assert_eq!(server.raw("GET", &base, &[], b"").status, 403);
    let updated = client
        .update_function_url_config()
        .function_name("web")
        .auth_type(FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    assert_eq!(
        updated.cors().unwrap().max_age(),
        Some(300),
        "update keeps Cors"
    );
    assert_eq!(server.raw("GET", &base, &[], b"").status, 201);

    // Deleting the URL, or the alias, or the function, takes the URL away.
    client
        .delete_alias()
        .function_name("web")
        .name("live")
        .send()
        .await
        .unwrap();
    assert_eq!(
        server
            .raw("GET", &url_path(live.function_url(), &server), &[], b"")
            .status,
        404
    );
    let deleted = server.raw("DELETE", "/2021-10-31/functions/web/url", &[], b"");
    assert_eq!(deleted.status, 204);
    assert_eq!(server.raw("GET", &base, &[], b"").status, 404);
    server
        .raw("GET", "/2021-10-31/functions/web/url", &[], b"")
        .assert_error(
            404,
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn function_urls_survive_restarts_and_go_with_their_function() {
    let server = Server::start();
    create_echo(&server, "kept").await;
    let created = server.raw(
        "POST",
        "/2021-10-31/functions/kept/url",
        &[],
        br#"{"AuthType":"NONE"}"#,
    );
    assert_eq!(created.status, 201, "{created:?}");
    let url = created.json()["FunctionUrl"].as_str().unwrap().to_string();
    let id = url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let dir = server.kill();
    let server = Server::start_in(&dir, &[]);
    let base = format!("/lambda-url/{id}/");
    assert_eq!(server.raw("GET", &base, &[], b"").status, 201);
    // A host named after the URL id reaches it too, at any path.
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    write!(
        stream,
        "GET /hello HTTP/1.1\r\nHost: {id}.lambda-url.us-east-1.localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nHello"), "{answer}");
    server
        .client()
        .delete_function()
        .function_name("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(server.raw("GET", &base, &[], b"").status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn function_urls_answer_429_when_throttled() {
    let server = Server::start_with(&["--concurrency-limit", "1"]);
    create_echo(&server, "busy").await;
    let created = server.raw(
        "POST",
        "/2021-10-31/functions/busy/url",
        &[],
        br#"{"AuthType":"NONE"}"#,
    );
    let url = created.json()["FunctionUrl"].as_str().unwrap().to_string();
    let base = url_path(&url, &server);
    let address = server.address.clone();
    let slow_path = format!("{base}slow");
    let slow = std::thread::spawn(move || raw_http(&address, "GET", &slow_path, &[], b""));
    // Let the slow request take the only slot first.
    std::thread::sleep(Duration::from_millis(300));
    let mut throttled = None;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(50));
        let response = server.raw("GET", &format!("{base}x"), &[], b"");
        if response.status == 429 {
            throttled = Some(response);
            break;
        }
    }
    let throttled = throttled.expect("a second request while the first runs is throttled");
    assert!(throttled.header("x-amzn-requestid").is_some());
    assert_eq!(slow.join().unwrap().status, 502);
}

fn gateway(server: &Server, method: &str, path: &str, body: &[u8]) -> RawResponse {
    raw_http(&server.gateway, method, path, &[], body)
}

fn add_route(server: &Server, key: &str, target: &str) -> RawResponse {
    server.raw(
        "PUT",
        "/gust/routes",
        &[],
        &serde_json::to_vec(&json!({"RouteKey": key, "Target": target})).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_send_each_request_to_its_function() {
    let server = Server::start();
    create_echo(&server, "items").await;
    create_echo(&server, "files").await;
    create_echo(&server, "fallback").await;
    for (key, target) in [
        ("GET /items/{id}", "items"),
        ("GET /items/special", "items"),
        ("ANY /files/{proxy+}", "files"),
        ("$default", "fallback"),
    ] {
        let r = add_route(&server, key, target);
        assert_eq!(r.status, 201, "{key}: {r:?}");
    }
    // The CLI manages the same table.
    let gust = env!("CARGO_BIN_EXE_gust");
    let endpoint = server.endpoint();
    let out = std::process::Command::new(gust)
        .args([
            "route",
            "add",
            "POST /items",
            "items",
            "--endpoint",
            &endpoint,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(gust)
        .args(["route", "ls", "--endpoint", &endpoint])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("POST /items") && listing.contains(&server.gateway),
        "{listing}"
    );

    // Conflicts and bad keys are refused with a clear error, and change nothing.
    add_route(&server, "GET /items/{name}", "items").assert_error(
        409,
        "ResourceConflictException",
        "conflicts with the existing route 'GET /items/{id}'",
    );
    add_route(&server, "GET /items/{id}", "files").assert_error(
        409,
        "ResourceConflictException",
        "already exists",
    );
    add_route(&server, "GET items", "items").assert_error(
        400,
        "InvalidParameterValueException",
        "must start with '/'",
    );
    add_route(&server, "GET /ghost", "ghost").assert_error(
        404,
        "ResourceNotFoundException",
        "function:ghost",
    );

    let doc = echoed(&gateway(&server, "GET", "/items/42?x=1", b""));
    assert_eq!(doc["event"]["routeKey"], "GET /items/{id}");
    assert_eq!(doc["event"]["pathParameters"], json!({"id": "42"}));
    assert_eq!(
        doc["event"]["requestContext"]["routeKey"],
        "GET /items/{id}"
    );
    assert_eq!(doc["event"]["requestContext"]["accountId"], "123456789012");
    assert_eq!(doc["event"]["queryStringParameters"], json!({"x": "1"}));
    assert!(doc["arn"].as_str().unwrap().ends_with(":function:items"));
    let doc = echoed(&gateway(&server, "GET", "/items/special", b""));
    assert_eq!(doc["event"]["routeKey"], "GET /items/special");
    let doc = echoed(&gateway(&server, "DELETE", "/files/a/b%20c.txt", b""));
    assert_eq!(doc["event"]["routeKey"], "ANY /files/{proxy+}");
    assert_eq!(
        doc["event"]["pathParameters"],
        json!({"proxy": "a/b c.txt"})
    );
    assert!(doc["arn"].as_str().unwrap().ends_with(":function:files"));
    let doc = echoed(&gateway(&server, "POST", "/items", b"{}"));
    assert_eq!(doc["event"]["routeKey"], "POST /items");
    let doc = echoed(&gateway(&server, "PUT", "/anything/else", b""));
    assert_eq!(doc["event"]["routeKey"], "$default");
    assert!(doc["arn"].as_str().unwrap().ends_with(":function:fallback"));
    let response = gateway(&server, "GET", "/hello", b"");
    assert_eq!(response.body, b"Hello");

    // Without a default route, unmatched requests are 404; a failing function is a 500.
    let removed = server.raw("DELETE", "/gust/routes?RouteKey=%24default", &[], b"");
    assert_eq!(removed.status, 204);
    let missing = gateway(&server, "GET", "/nothing", b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"message": "Not Found"}));
    let r = add_route(&server, "GET /fail", "fallback");
    assert_eq!(r.status, 201);
    let failed = gateway(&server, "GET", "/fail", b"");
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json(), json!({"message": "Internal Server Error"}));

    // Routes survive a restart.
    let dir = server.kill();
    let server = Server::start_in(&dir, &[]);
    let doc = echoed(&gateway(&server, "GET", "/items/7", b""));
    assert_eq!(doc["event"]["pathParameters"], json!({"id": "7"}));
    let listed = server.raw("GET", "/gust/routes", &[], b"").json();
    assert_eq!(listed["Routes"].as_array().unwrap().len(), 5, "{listed}");
}

/// One EventBridge call, with the headers the `aws events` CLI sends.
fn events(server: &Server, operation: &str, body: Value) -> RawResponse {
    server.raw(
        "POST",
        "/",
        &[
            ("X-Amz-Target", &format!("AWSEvents.{operation}")),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        &serde_json::to_vec(&body).unwrap(),
    )
}

fn events_ok(server: &Server, operation: &str, body: Value) -> Value {
    let response = events(server, operation, body);
    assert_eq!(response.status, 200, "{operation}: {response:?}");
    assert_eq!(
        response.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    response.json()
}

fn events_error(server: &Server, operation: &str, body: Value, code: &str, message: &str) {
    let response = events(server, operation, body);
    assert_eq!(response.status, 400, "{operation}: {response:?}");
    let doc = response.json();
    assert_eq!(doc["__type"], code, "{doc}");
    assert!(doc["message"].as_str().unwrap().contains(message), "{doc}");
}

fn set_clock(server: &Server, secs: f64) {
    let response = server.raw(
        "PUT",
        "/gust/clock",
        &[],
        &serde_json::to_vec(&json!({"Now": (secs * 1000.0) as i64})).unwrap(),
    );
    assert_eq!(response.status, 200, "{response:?}");
}

/// 2030-01-01T00:00:00Z.
const T0: i64 = 1_893_456_000;
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:tick";

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_rules_fire_their_targets_once_per_tick() {
    let records_dir = tempfile::tempdir().unwrap();
    let start = T0.to_string();
    let args = ["--isolation", "process", "--clock-start", start.as_str()];
    let server = Server::start_with(&args);
    create_recorder(&server.client(), "tick", false, records_dir.path()).await;
    create_recorder(&server.client(), "shape", false, records_dir.path()).await;

    // Validation, with EventBridge's error shapes.
    events_error(
        &server,
        "PutRule",
        json!({"Name": "bad", "ScheduleExpression": "rate(1 minutes)"}),
        "ValidationException",
        "Parameter ScheduleExpression is not valid",
    );
    events_error(
        &server,
        "PutRule",
        json!({"Name": "bad", "ScheduleExpression": "cron(0 0 * * * *)"}),
        "ValidationException",
        "Parameter ScheduleExpression is not valid",
    );
    events_error(
        &server,
        "PutRule",
        json!({"Name": "bad name", "ScheduleExpression": "rate(1 minute)"}),
        "ValidationException",
        "failed to satisfy constraint",
    );
    events_error(
        &server,
        "DescribeRule",
        json!({"Name": "nope"}),
        "ResourceNotFoundException",
        "Rule nope does not exist on EventBus default.",
    );

    set_clock(&server, T0 as f64);
    let put = events_ok(
        &server,
        "PutRule",
        json!({"Name": "every-minute", "ScheduleExpression": "rate(1 minute)", "State": "ENABLED", "Description": "a test"}),
    );
    let rule_arn = "arn:aws:events:us-east-1:123456789012:rule/every-minute";
    assert_eq!(put["RuleArn"], rule_arn);
    events_ok(
        &server,
        "PutRule",
        json!({"Name": "shaped", "ScheduleExpression": "rate(1 minute)"}),
    );
    let shaped_target = events_ok(
        &server,
        "PutTargets",
        json!({"Rule": "shaped", "Targets": [{
            "Id": "t", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:shape",
            "InputTransformer": {
                "InputPathsMap": {"source": "$.source", "when": "$.time", "gone": "$.detail.nothing"},
                "InputTemplate": "{\"source\": <source>, \"when\": <when>, \"rule\": \"<aws.events.rule-name>\", \"line\": \"<aws.events.rule-name> fired at <when>\", \"missing\": <gone>}"
            }
        }]}),
    );
    assert_eq!(shaped_target["FailedEntryCount"], 0, "{shaped_target}");
    events_error(
        &server,
        "PutTargets",
        json!({"Rule": "shaped", "Targets": [{
            "Id": "bad", "Arn": FUNCTION_ARN,
            "InputTransformer": {"InputPathsMap": {"x": "no-dollar"}, "InputTemplate": "<x>"}
        }]}),
        "ValidationException",
        "InputTransformer for target bad is invalid",
    );
    let targets = events_ok(
        &server,
        "PutTargets",
        json!({"Rule": "every-minute", "Targets": [
            {"Id": "whole", "Arn": FUNCTION_ARN},
            {"Id": "fixed", "Arn": FUNCTION_ARN, "Input": "{\"custom\": 1}"},
            {"Id": "part", "Arn": FUNCTION_ARN, "InputPath": "$.resources"},
            {"Id": "queue", "Arn": "arn:aws:sqs:us-east-1:123456789012:q"}
        ]}),
    );
    assert_eq!(targets["FailedEntryCount"], 1, "{targets}");
    assert_eq!(targets["FailedEntries"][0]["TargetId"], "queue");
    let described = events_ok(&server, "DescribeRule", json!({"Name": "every-minute"}));
    assert_eq!(described["ScheduleExpression"], "rate(1 minute)");
    assert_eq!(described["State"], "ENABLED");
    assert_eq!(described["Arn"], rule_arn);
    let listed = events_ok(
        &server,
        "ListTargetsByRule",
        json!({"Rule": "every-minute"}),
    );
    assert_eq!(listed["Targets"].as_array().unwrap().len(), 3, "{listed}");
    let by_target = events_ok(
        &server,
        "ListRuleNamesByTarget",
        json!({"TargetArn": FUNCTION_ARN}),
    );
    assert_eq!(by_target["RuleNames"], json!(["every-minute"]));

    // Nothing before the first tick; at the tick, each target gets its event once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(records(records_dir.path(), "tick").is_empty());
    set_clock(&server, T0 as f64 + 59.5);
    let fired = eventually(Duration::from_secs(30), "the first tick", || {
        let r = records(records_dir.path(), "tick");
        (r.len() >= 3).then_some(r)
    })
    .await;
    let events_of =
        |records: &[Value]| -> Vec<Value> { records.iter().map(|r| r["event"].clone()).collect() };
    let delivered = events_of(&fired);
    let scheduled = delivered
        .iter()
        .find(|e| e.get("detail-type").is_some())
        .expect("the scheduled event");
    assert_eq!(scheduled["source"], "aws.events");
    assert_eq!(scheduled["detail-type"], "Scheduled Event");
    assert_eq!(scheduled["version"], "0");
    assert_eq!(scheduled["account"], "123456789012");
    assert_eq!(scheduled["region"], "us-east-1");
    assert_eq!(scheduled["resources"], json!([rule_arn]));
    assert_eq!(scheduled["detail"], json!({}));
    let tick_time = scheduled["time"].as_str().unwrap().to_string();
    assert!(
        ["2030-01-01T00:01:00Z", "2030-01-01T00:01:01Z"].contains(&tick_time.as_str()),
        "{tick_time}"
    );
    assert!(delivered.contains(&json!({"custom": 1})), "{delivered:?}");
    assert!(delivered.contains(&json!([rule_arn])), "{delivered:?}");
    // The other rule's target shapes its input with an InputTransformer.
    let shaped = eventually(Duration::from_secs(30), "the shaped event", || {
        records(records_dir.path(), "shape").into_iter().next()
    })
    .await;
    assert_eq!(
        shaped["event"],
        json!({
            "source": "aws.events",
            "when": tick_time,
            "rule": "shaped",
            "line": format!("shaped fired at {tick_time}"),
            "missing": null,
        }),
        "{shaped}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(records(records_dir.path(), "tick").len(), 3, "fired twice");

    // A disabled rule does not fire.
    events_ok(&server, "DisableRule", json!({"Name": "every-minute"}));
    set_clock(&server, T0 as f64 + 119.5);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(records(records_dir.path(), "tick").len(), 3);
    events_ok(&server, "EnableRule", json!({"Name": "every-minute"}));
    events_ok(
        &server,
        "RemoveTargets",
        json!({"Rule": "every-minute", "Ids": ["fixed", "part"]}),
    );
    set_clock(&server, T0 as f64 + 179.5);
    let fired = eventually(Duration::from_secs(30), "the tick after enabling", || {
        let r = records(records_dir.path(), "tick");
        (r.len() >= 4).then_some(r)
    })
    .await;
    let last_tick = events_of(&fired)[3]["time"].as_str().unwrap().to_string();
    assert!(last_tick.starts_with("2030-01-01T00:03:0"), "{last_tick}");

    // A restart just before the tick that already fired does not fire it again...
    let dir = server.kill();
    let restart_at = (T0 + 179).to_string();
    let server = Server::start_in(
        &dir,
        &[
            "--isolation",
            "process",
            "--clock-start",
            restart_at.as_str(),
        ],
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        records(records_dir.path(), "tick").len(),
        4,
        "a tick fired twice"
    );
    // ...and ticks that fell while Gust was down are not backfilled.
    let dir = server.kill();
    let restart_at = format!("{}.5", T0 + 479);
    let server = Server::start_in(
        &dir,
        &[
            "--isolation",
            "process",
            "--clock-start",
            restart_at.as_str(),
        ],
    );
    let fired = eventually(
        Duration::from_secs(30),
        "the tick after the restart",
        || {
            let r = records(records_dir.path(), "tick");
            (r.len() >= 5).then_some(r)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = records(records_dir.path(), "tick");
    assert_eq!(all.len(), 5, "{all:?}");
    let time = fired[4]["event"]["time"].as_str().unwrap();
    assert!(time.starts_with("2030-01-01T00:08:0"), "{time}");

    // Deleting needs the targets gone first (or Force).
    events_error(
        &server,
        "DeleteRule",
        json!({"Name": "every-minute"}),
        "ValidationException",
        "Rule can't be deleted since it has targets.",
    );
    events_ok(
        &server,
        "DeleteRule",
        json!({"Name": "every-minute", "Force": true}),
    );
    let rules = events_ok(&server, "ListRules", json!({}));
    assert_eq!(rules["Rules"].as_array().unwrap().len(), 1, "{rules}");
    assert_eq!(rules["Rules"][0]["Name"], "shaped");
}
