//! Node.js functions through Gust's Node.js runtime: CommonJS, ES modules, handler styles and
//! errors.

use aws_sdk_lambda::types::Runtime;
use base64::Engine;

use crate::common::*;

const CJS: &str = r#"
let calls = 0;
exports.handler = async (event, context) => {
  calls += 1;
  console.log('cjs says', event.tag);
  return {
    calls,
    event,
    requestId: context.awsRequestId,
    arn: context.invokedFunctionArn,
    name: context.functionName,
    memory: context.memoryLimitInMB,
    remaining: context.getRemainingTimeInMillis(),
    runtimeApi: process.env.AWS_LAMBDA_RUNTIME_API,
    executionEnv: process.env.AWS_EXECUTION_ENV,
    tz: process.env.TZ,
    clientContext: context.clientContext,
  };
};
"#;

#[tokio::test(flavor = "multi_thread")]
async fn commonjs_and_es_modules_run() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "cjs",
        Runtime::from("nodejs20.x"),
        "index.handler",
        zip_of(&[("index.js", CJS.as_bytes(), 0o644)]),
    )
    .await;
    let out = invoke(&client, "cjs", serde_json::json!({"tag": "one"})).await;
    assert_eq!(out.function_error, None, "{out:?}");
    let p = &out.payload;
    assert_eq!(p["calls"], 1);
    assert_eq!(p["event"]["tag"], "one");
    assert_eq!(p["name"], "cjs");
    assert_eq!(p["memory"], "128");
    assert_eq!(
        p["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:cjs"
    );
    assert_eq!(p["executionEnv"], "AWS_Lambda_nodejs20.x");
    assert_eq!(p["tz"], ":UTC");
    assert!(p["remaining"].as_i64().unwrap() > 2000);
    let id = p["requestId"].as_str().unwrap();
    let line = out
        .log
        .lines()
        .find(|l| l.contains("cjs says one"))
        .expect("console.log line");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[1], id, "{line}");
    assert_eq!(fields[2], "INFO");
    assert!(out.log.contains("Init Duration"));
    let again = invoke(&client, "cjs", serde_json::json!({"tag": "two"})).await;
    assert_eq!(again.payload["calls"], 2);

    let cc = serde_json::json!({"custom": {"city": "Z\u{fc}rich"}});
    let with_cc = client
        .invoke()
        .function_name("cjs")
        .client_context(base64::engine::general_purpose::STANDARD.encode(cc.to_string()))
        .payload(aws_sdk_lambda::primitives::Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(with_cc.payload().unwrap().as_ref()).unwrap();
    assert_eq!(doc["clientContext"], cc);

    let esm = "export const handler = async (event) => ({ esm: true, got: event.n * 2 });\n";
    create(
        &client,
        "mjs",
        Runtime::from("nodejs20.x"),
        "index.handler",
        zip_of(&[("index.mjs", esm.as_bytes(), 0o644)]),
    )
    .await;
    assert_eq!(
        invoke(&client, "mjs", serde_json::json!({"n": 21}))
            .await
            .payload,
        serde_json::json!({"esm": true, "got": 42})
    );

    create(
        &client,
        "typemodule",
        Runtime::from("nodejs20.x"),
        "src/app.nested.handler",
        zip_of(&[
            ("package.json", br#"{"type": "module"}"#, 0o644),
            (
                "src/app.js",
                b"export const nested = { handler: async () => 'nested esm' };\n",
                0o644,
            ),
        ]),
    )
    .await;
    assert_eq!(
        invoke(&client, "typemodule", serde_json::json!({}))
            .await
            .payload,
        "nested esm"
    );

    let callback = "exports.handler = (event, context, callback) => { setTimeout(() => callback(null, { cb: event.v }), 10); };\n";
    create(
        &client,
        "callback",
        Runtime::from("nodejs18.x"),
        "index.handler",
        zip_of(&[("index.js", callback.as_bytes(), 0o644)]),
    )
    .await;
    assert_eq!(
        invoke(&client, "callback", serde_json::json!({"v": 5}))
            .await
            .payload,
        serde_json::json!({"cb": 5})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_errors_have_lambdas_shapes() {
    let server = Server::start();
    let client = server.client();
    let throwing = "exports.handler = async () => { throw new TypeError('bad thing'); };\n";
    create(
        &client,
        "throws",
        Runtime::from("nodejs20.x"),
        "index.handler",
        zip_of(&[("index.js", throwing.as_bytes(), 0o644)]),
    )
    .await;
    let out = invoke(&client, "throws", serde_json::json!({})).await;
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.payload["errorType"], "TypeError");
    assert_eq!(out.payload["errorMessage"], "bad thing");
    let trace = out.payload["trace"]
        .as_array()
        .expect("Node errors carry `trace`");
    assert_eq!(trace[0], "TypeError: bad thing");
    assert!(out.payload.get("stackTrace").is_none());
    assert!(out.log.contains("\tERROR\tInvoke Error "), "{}", out.log);

    let cases: [(&str, &str, &[ZipEntry], &str, &str); 4] = [
        (
            "no-module",
            "missing.handler",
            &[("index.js", b"exports.handler = async () => 1;\n", 0o644)],
            "Runtime.ImportModuleError",
            "Cannot find module 'missing'",
        ),
        (
            "no-export",
            "index.nope",
            &[("index.js", b"exports.handler = async () => 1;\n", 0o644)],
            "Runtime.HandlerNotFound",
            "index.nope is undefined or not exported",
        ),
        (
            "syntax",
            "index.handler",
            &[("index.js", b"exports.handler = async () => {;\n", 0o644)],
            "Runtime.UserCodeSyntaxError",
            "SyntaxError",
        ),
        (
            "bad-name",
            "index",
            &[("index.js", b"exports.handler = async () => 1;\n", 0o644)],
            "Runtime.MalformedHandlerName",
            "Bad handler",
        ),
    ];
    for (name, handler, files, error_type, message) in cases {
        create(
            &client,
            name,
            Runtime::from("nodejs20.x"),
            handler,
            zip_of(files),
        )
        .await;
        let out = invoke(&client, name, serde_json::json!({})).await;
        assert_eq!(out.function_error.as_deref(), Some("Unhandled"), "{name}");
        assert_eq!(
            out.payload["errorType"], error_type,
            "{name}: {:?}",
            out.payload
        );
        assert!(
            out.payload["errorMessage"]
                .as_str()
                .unwrap()
                .contains(message),
            "{name}: {:?}",
            out.payload
        );
    }

    let rejecting = "exports.handler = async () => { Promise.reject(new Error('nobody caught me')); await new Promise(r => setTimeout(r, 50)); return 1; };\n";
    create(
        &client,
        "rejects",
        Runtime::from("nodejs20.x"),
        "index.handler",
        zip_of(&[("index.js", rejecting.as_bytes(), 0o644)]),
    )
    .await;
    let out = invoke(&client, "rejects", serde_json::json!({})).await;
    assert_eq!(
        out.payload["errorType"], "Runtime.UnhandledPromiseRejection",
        "{out:?}"
    );
    assert!(
        out.payload["errorMessage"]
            .as_str()
            .unwrap()
            .contains("nobody caught me")
    );
    // The runtime exited after reporting; the next invocation gets a fresh one.
    assert_eq!(
        invoke(&client, "rejects", serde_json::json!({}))
            .await
            .payload["errorType"],
        "Runtime.UnhandledPromiseRejection"
    );
}
