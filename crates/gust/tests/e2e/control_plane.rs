//! The control-plane API through the official AWS SDK for Rust.

use std::time::Duration;

use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};
use base64::Engine;
use sha2::Digest;

use crate::common::*;

const HELLO: &str = "def handler(event, context):\n    return {'ok': True}\n";

#[tokio::test(flavor = "multi_thread")]
async fn create_get_update_delete_round_trip() {
    let server = Server::start();
    let client = server.client();
    let zip = python_zip(HELLO);
    let created = client
        .create_function()
        .function_name("round-trip")
        .runtime(Runtime::from("python3.12"))
        .handler("app.handler")
        .role(ROLE)
        .description("first")
        .timeout(7)
        .memory_size(256)
        .architectures(Architecture::Arm64)
        .environment(Environment::builder().variables("GREETING", "hi").build())
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(zip.clone()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let expected_sha = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&zip));
    assert_eq!(created.function_name(), Some("round-trip"));
    assert_eq!(
        created.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:round-trip")
    );
    assert_eq!(created.code_sha256(), Some(expected_sha.as_str()));
    assert_eq!(created.code_size(), zip.len() as i64);
    assert_eq!(created.version(), Some("$LATEST"));
    assert_eq!(created.timeout(), Some(7));
    assert_eq!(created.memory_size(), Some(256));
    assert_eq!(created.description(), Some("first"));
    assert_eq!(created.architectures(), &[Architecture::Arm64]);
    assert_eq!(
        created
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get("GREETING"))
            .map(String::as_str),
        Some("hi")
    );
    let last_modified = created.last_modified().unwrap();
    assert_eq!(last_modified.len(), 28, "{last_modified}");
    assert!(last_modified.ends_with("+0000"), "{last_modified}");
    // Lambda's sequence, which deployment tools wait on: Pending while being created, then
    // Active with a new RevisionId.
    assert_eq!(created.state().map(|s| s.as_str()), Some("Pending"));
    assert_eq!(
        created.state_reason(),
        Some("The function is being created.")
    );
    assert_eq!(
        created.state_reason_code().map(|c| c.as_str()),
        Some("Creating")
    );
    assert!(created.last_update_status().is_none());
    let created_revision = created.revision_id().unwrap().to_string();

    client
        .wait_until_function_active_v2()
        .function_name("round-trip")
        .wait(Duration::from_secs(10))
        .await
        .expect("function-active-v2 waiter");

    let got = client
        .get_function()
        .function_name("round-trip")
        .send()
        .await
        .unwrap();
    let config = got.configuration().unwrap();
    assert_eq!(config.code_sha256(), Some(expected_sha.as_str()));
    assert_eq!(config.state().map(|s| s.as_str()), Some("Active"));
    assert!(config.state_reason().is_none());
    let revision = config.revision_id().unwrap().to_string();
    assert_ne!(
        revision, created_revision,
        "becoming Active is a new revision"
    );
    assert_eq!(
        config.last_update_status().map(|s| s.as_str()),
        Some("Successful")
    );
    let location = got.code().unwrap().location().unwrap();
    let path = location
        .strip_prefix(&server.endpoint())
        .expect("Code.Location is served by Gust");
    let download = server.raw("GET", path, &[], b"");
    assert_eq!(download.status, 200);
    assert_eq!(download.body, zip, "Code.Location serves the uploaded zip");

    let stale = client
        .update_function_configuration()
        .function_name("round-trip")
        .revision_id("not-the-revision")
        .timeout(9)
        .send()
        .await
        .unwrap_err();
    let (status, code, message) = service_error(stale);
    assert_eq!(
        (status, code.as_str()),
        (412, "PreconditionFailedException")
    );
    assert!(message.starts_with("The Revision Id provided does not match the latest Revision Id."));

    let updated = client
        .update_function_configuration()
        .function_name("round-trip")
        .revision_id(&revision)
        .timeout(9)
        .environment(Environment::builder().variables("OTHER", "x").build())
        .send()
        .await
        .unwrap();
    assert_eq!(updated.timeout(), Some(9));
    assert_eq!(
        updated.memory_size(),
        Some(256),
        "members not sent are kept"
    );
    assert_ne!(updated.revision_id(), Some(revision.as_str()));
    assert_eq!(updated.state().map(|s| s.as_str()), Some("Active"));
    assert_eq!(
        updated.last_update_status().map(|s| s.as_str()),
        Some("InProgress")
    );
    assert_eq!(
        updated.last_update_status_reason(),
        Some("The function is being created.")
    );
    assert_eq!(
        updated.last_update_status_reason_code().map(|c| c.as_str()),
        Some("Creating")
    );
    let vars = updated.environment().and_then(|e| e.variables()).unwrap();
    assert_eq!(vars.len(), 1, "Environment replaces the whole map");
    client
        .wait_until_function_updated_v2()
        .function_name("round-trip")
        .wait(Duration::from_secs(10))
        .await
        .expect("function-updated-v2 waiter");
    let settled = client
        .get_function_configuration()
        .function_name("round-trip")
        .send()
        .await
        .unwrap();
    assert_eq!(
        settled.last_update_status().map(|s| s.as_str()),
        Some("Successful")
    );
    assert!(settled.last_update_status_reason().is_none());
    assert_ne!(
        settled.revision_id(),
        updated.revision_id(),
        "completing the update is a new revision"
    );

    let new_zip = python_zip("def handler(event, context):\n    return 2\n");
    let code = client
        .update_function_code()
        .function_name("round-trip")
        .zip_file(Blob::new(new_zip.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(code.code_size(), new_zip.len() as i64);
    assert_ne!(code.code_sha256(), Some(expected_sha.as_str()));
    assert_eq!(
        invoke(&client, "round-trip", serde_json::json!({}))
            .await
            .payload,
        2
    );

    let conf = client
        .get_function_configuration()
        .function_name("round-trip")
        .send()
        .await
        .unwrap();
    assert_eq!(conf.timeout(), Some(9));

    client
        .delete_function()
        .function_name("round-trip")
        .send()
        .await
        .unwrap();
    let (status, code, message) = service_error(
        client
            .get_function()
            .function_name("round-trip")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
    assert_eq!(
        message,
        "Function not found: arn:aws:lambda:us-east-1:123456789012:function:round-trip"
    );
    let (status, code, _) = service_error(
        client
            .delete_function()
            .function_name("round-trip")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
}

#[tokio::test(flavor = "multi_thread")]
async fn list_paginates_over_120_functions() {
    let server = Server::start();
    let client = server.client();
    let zip = python_zip(HELLO);
    let mut expected = Vec::new();
    for i in 0..120 {
        let name = format!("fn-{i:03}");
        create(
            &client,
            &name,
            Runtime::from("python3.12"),
            "app.handler",
            zip.clone(),
        )
        .await;
        expected.push(name);
    }

    // A single page is capped at 50 even when more are asked for.
    let first = client
        .list_functions()
        .max_items(1000)
        .send()
        .await
        .unwrap();
    assert_eq!(first.functions().len(), 50);
    assert!(first.next_marker().is_some());
    assert!(
        first.functions()[0].state().is_none(),
        "list items carry no State"
    );
    assert!(
        first.functions()[0].runtime_version_config().is_none(),
        "list items carry no RuntimeVersionConfig"
    );
    assert_eq!(
        first.functions()[0].runtime().map(|r| r.as_str()),
        Some("python3.12")
    );
    let single = client
        .get_function_configuration()
        .function_name("fn-000")
        .send()
        .await
        .unwrap();
    assert!(single.runtime_version_config().is_some());

    // The SDK paginator follows NextMarker to the end.
    let mut pages = client.list_functions().max_items(7).into_paginator().send();
    let mut names = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        assert!(page.functions().len() <= 7);
        names.extend(
            page.functions()
                .iter()
                .map(|f| f.function_name().unwrap().to_string()),
        );
        page_count += 1;
    }
    assert_eq!(names, expected);
    assert_eq!(page_count, 18);

    let settings = client.get_account_settings().send().await.unwrap();
    assert_eq!(settings.account_usage().unwrap().function_count(), 120);
    assert_eq!(
        settings.account_usage().unwrap().total_code_size(),
        120 * zip.len() as i64
    );
    assert_eq!(
        settings.account_limit().unwrap().concurrent_executions(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_name_form_reaches_the_function() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "named",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(HELLO),
    )
    .await;
    for form in [
        "named",
        "named:$LATEST",
        "arn:aws:lambda:us-east-1:123456789012:function:named",
        "arn:aws:lambda:us-east-1:123456789012:function:named:$LATEST",
        "123456789012:function:named",
    ] {
        let got = client.get_function().function_name(form).send().await;
        assert!(got.is_ok(), "{form}: {got:?}");
        let invoked = invoke(&client, form, serde_json::json!({})).await;
        assert_eq!(invoked.payload["ok"], true, "{form}");
    }
    let qualified = client
        .get_function_configuration()
        .function_name("named:$LATEST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        qualified.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:named:$LATEST")
    );

    let (status, code, message) = service_error(
        client
            .get_function()
            .function_name("named:1")
            .qualifier("2")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert_eq!(
        message,
        "The derived qualifier from the function name does not match the specified qualifier."
    );

    let (status, code, message) = service_error(
        client
            .get_function()
            .function_name("arn:aws:lambda:eu-west-1:123456789012:function:named")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));
    assert_eq!(
        message,
        "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
    );

    let (status, code, message) = service_error(
        client
            .get_function()
            .function_name("bad name!")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "ValidationException"));
    assert!(
        message.starts_with("1 validation error detected: Value 'bad name!' at 'functionName'")
    );

    let (status, code, _) = service_error(
        client
            .get_function()
            .function_name("named:7")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));

    // Percent-encoded ARNs in the raw path.
    let raw = server.raw(
        "GET",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Anamed/configuration?Qualifier=%24LATEST",
        &[],
        b"",
    );
    assert_eq!(raw.status, 200, "{raw:?}");
    assert_eq!(raw.json()["Version"], "$LATEST");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_are_refused_with_lambdas_errors() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "exists",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(HELLO),
    )
    .await;

    let (status, code, message) = service_error(
        client
            .create_function()
            .function_name("exists")
            .runtime(Runtime::from("python3.12"))
            .handler("app.handler")
            .role(ROLE)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(python_zip(HELLO)))
                    .build(),
            )
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            409,
            "ResourceConflictException",
            "Function already exist: exists"
        )
    );

    struct Case {
        body: serde_json::Value,
        status: u16,
        code: &'static str,
        message: &'static str,
    }
    let zip = base64::engine::general_purpose::STANDARD.encode(python_zip(HELLO));
    let base = serde_json::json!({
        "FunctionName": "new-fn", "Runtime": "python3.12", "Handler": "app.handler",
        "Role": ROLE, "Code": {"ZipFile": zip},
    });
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases = vec![
        Case {
            body: with("Runtime", "python9.9".into()),
            status: 400,
            code: "InvalidParameterValueException",
            message: "Value python9.9 at 'runtime' failed to satisfy constraint: Member must satisfy enum value set: [nodejs20.x,",
        },
        Case {
            body: with("Runtime", "python2.7".into()),
            status: 400,
            code: "InvalidParameterValueException",
            message: "The runtime parameter of python2.7 is no longer supported",
        },
        Case {
            body: with("MemorySize", 64.into()),
            status: 400,
            code: "ValidationException",
            message: "1 validation error detected: Value '64' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128",
        },
        Case {
            body: with("MemorySize", 20000.into()),
            status: 400,
            code: "ValidationException",
            message: "Member must have value less than or equal to 10240",
        },
        Case {
            body: with("Timeout", 0.into()),
            status: 400,
            code: "ValidationException",
            message: "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1",
        },
        Case {
            body: with("Timeout", 901.into()),
            status: 400,
            code: "ValidationException",
            message: "Member must have value less than or equal to 900",
        },
        Case {
            body: with("Role", "r1".into()),
            status: 400,
            code: "ValidationException",
            message: "Value 'r1' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        },
        Case {
            body: with("Handler", "app handler".into()),
            status: 400,
            code: "ValidationException",
            message: "at 'handler' failed to satisfy constraint",
        },
        Case {
            body: without("Handler"),
            status: 400,
            code: "InvalidParameterValueException",
            message: "Runtime and Handler are mandatory parameters for functions created with deployment packages.",
        },
        Case {
            body: with("Description", "x".repeat(257).into()),
            status: 400,
            code: "ValidationException",
            message: "Member must have length less than or equal to 256",
        },
        Case {
            body: with("Architectures", serde_json::json!(["x86_64", "arm64"])),
            status: 400,
            code: "ValidationException",
            message: "Value '[x86_64, arm64]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1",
        },
        // Lambda reports a name that is only too long as an invalid parameter.
        Case {
            body: with("FunctionName", "a".repeat(65).into()),
            status: 400,
            code: "InvalidParameterValueException",
            message: "1 validation error detected: Value 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64",
        },
        Case {
            body: with("Runtime", "provided".into()),
            status: 400,
            code: "InvalidParameterValueException",
            message: "The runtime parameter of provided is no longer supported for creating or updating AWS Lambda functions. We recommend you use a supported runtime while creating or updating functions.",
        },
        Case {
            body: without("Role"),
            status: 400,
            code: "ValidationException",
            message: "Value null at 'role' failed to satisfy constraint: Member must not be null",
        },
        Case {
            body: with(
                "Environment",
                serde_json::json!({"Variables": {"AWS_REGION": "x"}}),
            ),
            status: 400,
            code: "InvalidParameterValueException",
            message: "contains reserved keys that are currently not supported for modification. Reserved keys used in this request: AWS_REGION",
        },
        Case {
            body: with(
                "Environment",
                serde_json::json!({"Variables": {"BIG": "x".repeat(4100)}}),
            ),
            status: 400,
            code: "InvalidParameterValueException",
            message: "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {\"BIG\":",
        },
        Case {
            body: with(
                "Environment",
                serde_json::json!({"Variables": {"1BAD": "x"}}),
            ),
            status: 400,
            code: "ValidationException",
            message: "Map keys must satisfy constraint",
        },
        Case {
            body: with("EphemeralStorage", serde_json::json!({"Size": 100})),
            status: 400,
            code: "ValidationException",
            message: "Value '100' at 'ephemeralStorage.size' failed to satisfy constraint",
        },
        Case {
            body: with("Timeout", "soon".into()),
            status: 400,
            code: "SerializationException",
            message: "not a valid JSON document",
        },
    ];
    for case in cases {
        let body = serde_json::to_vec(&case.body).unwrap();
        let response = server.raw(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            &body,
        );
        response.assert_error(case.status, case.code, case.message);
    }
    // None of them created anything.
    let listed = client.list_functions().send().await.unwrap();
    assert_eq!(listed.functions().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_not_implemented_answer_lambda_errors() {
    let server = Server::start();
    let not_yet = server.raw("GET", "/2018-10-31/layers", &[], b"");
    not_yet.assert_error(
        501,
        "NotImplementedException",
        "Gust does not implement the ListLayers operation yet.",
    );
    let unknown = server.raw("GET", "/no/such/thing", &[], b"");
    unknown.assert_error(
        404,
        "UnknownOperationException",
        "No Lambda operation matches GET /no/such/thing",
    );
    assert_eq!(unknown.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_survive_a_restart() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "durable",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip(HELLO),
    )
    .await;
    let before = client
        .get_function()
        .function_name("durable")
        .send()
        .await
        .unwrap();
    let data_dir = server.kill();

    let server = Server::start_in(&data_dir, &[]);
    let client = server.client();
    let after = client
        .get_function()
        .function_name("durable")
        .send()
        .await
        .unwrap();
    assert_eq!(
        before.configuration().unwrap().revision_id(),
        after.configuration().unwrap().revision_id()
    );
    assert_eq!(
        before.configuration().unwrap().code_sha256(),
        after.configuration().unwrap().code_sha256()
    );
    assert_eq!(
        invoke(&client, "durable", serde_json::json!({}))
            .await
            .payload["ok"],
        true
    );
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}
