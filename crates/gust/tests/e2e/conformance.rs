//! Responses as AWS gives them, recorded against AWS itself (the facts of LocalStack's
//! snapshot suite for the Lambda API): exact status, error code, message, and which members a
//! body carries.

use aws_sdk_lambda::types::Runtime;
use serde_json::{Value, json};

use crate::common::*;

/// An error body exactly: its members (`Type` only where AWS sends one) and the error code.
fn assert_body(response: &RawResponse, status: u16, code: &str, body: Value) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some(code),
        "{response:?}"
    );
    assert_eq!(response.json(), body, "{response:?}");
}

/// A ValidationException whose message lists exactly these violations, in Lambda's words.
fn assert_validation(response: &RawResponse, violations: &[String]) {
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        response.header("x-amzn-errortype"),
        Some("ValidationException"),
        "{response:?}"
    );
    let noun = if violations.len() == 1 {
        "error"
    } else {
        "errors"
    };
    let expected = format!(
        "{} validation {noun} detected: {}",
        violations.len(),
        violations.join("; ")
    );
    assert_eq!(response.json()["message"], json!(expected), "{response:?}");
}

fn post(server: &Server, path: &str, body: Value) -> RawResponse {
    server.raw("POST", path, &[], &serde_json::to_vec(&body).unwrap())
}

fn put(server: &Server, path: &str, body: Value) -> RawResponse {
    server.raw("PUT", path, &[], &serde_json::to_vec(&body).unwrap())
}

/// A server with function `f`, its version 1 and alias `live` pointing to it.
async fn server_with_alias() -> Server {
    let server = server_with_function().await;
    let client = server.client();
    client
        .publish_version()
        .function_name("f")
        .send()
        .await
        .unwrap();
    client
        .create_alias()
        .function_name("f")
        .name("live")
        .function_version("1")
        .send()
        .await
        .unwrap();
    server
}

async fn server_with_function() -> Server {
    let server = Server::start();
    create(
        &server.client(),
        "f",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("def handler(event, context):\n    return event\n"),
    )
    .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn url_config_errors_name_the_resource_or_the_function() {
    let server = server_with_function().await;
    let resource = json!({"Type": "User", "Message": "The resource you requested does not exist."});
    let function = json!({"Type": "User", "Message": "Function does not exist"});
    for (method, path) in [
        ("GET", "/2021-10-31/functions/f/url"),
        ("DELETE", "/2021-10-31/functions/f/url"),
        ("GET", "/2021-10-31/functions/nofn/url"),
        ("DELETE", "/2021-10-31/functions/nofn/url"),
    ] {
        let response = server.raw(method, path, &[], b"");
        assert_body(
            &response,
            404,
            "ResourceNotFoundException",
            resource.clone(),
        );
    }
    let response = put(
        &server,
        "/2021-10-31/functions/f/url",
        json!({"AuthType": "NONE"}),
    );
    assert_body(
        &response,
        404,
        "ResourceNotFoundException",
        resource.clone(),
    );
    for path in [
        "/2021-10-31/functions/nofn/url",
        "/2021-10-31/functions/f/url?Qualifier=nosuch",
    ] {
        let response = post(&server, path, json!({"AuthType": "NONE"}));
        assert_body(
            &response,
            404,
            "ResourceNotFoundException",
            function.clone(),
        );
    }
    let response = put(
        &server,
        "/2021-10-31/functions/nofn/url",
        json!({"AuthType": "NONE"}),
    );
    assert_body(
        &response,
        404,
        "ResourceNotFoundException",
        function.clone(),
    );
    let response = server.raw("GET", "/2021-10-31/functions/nofn/urls", &[], b"");
    assert_body(&response, 404, "ResourceNotFoundException", function);

    // Create and update answer InvokeMode only when asked for it; reads always show it.
    let created = post(
        &server,
        "/2021-10-31/functions/f/url",
        json!({"AuthType": "NONE"}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    assert!(created.json().get("InvokeMode").is_none(), "{created:?}");
    assert!(
        created.json().get("LastModifiedTime").is_none(),
        "{created:?}"
    );
    let updated = put(
        &server,
        "/2021-10-31/functions/f/url",
        json!({"AuthType": "NONE"}),
    );
    assert!(updated.json().get("InvokeMode").is_none(), "{updated:?}");
    assert!(
        updated.json().get("LastModifiedTime").is_some(),
        "{updated:?}"
    );
    let updated = put(
        &server,
        "/2021-10-31/functions/f/url",
        json!({"InvokeMode": "BUFFERED"}),
    );
    assert_eq!(updated.json()["InvokeMode"], "BUFFERED", "{updated:?}");
    let read = server.raw("GET", "/2021-10-31/functions/f/url", &[], b"");
    assert_eq!(read.json()["InvokeMode"], "BUFFERED", "{read:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_invoke_config_errors() {
    let server = server_with_function().await;
    let missing = |function: &str| {
        json!({"Type": "User", "Message": format!(
            "The function arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST doesn't have an EventInvokeConfig"
        )})
    };
    for function in ["f", "nofn"] {
        let path = format!("/2019-09-25/functions/{function}/event-invoke-config");
        for method in ["GET", "DELETE"] {
            let response = server.raw(method, &path, &[], b"");
            assert_body(
                &response,
                404,
                "ResourceNotFoundException",
                missing(function),
            );
        }
    }
    let response = post(
        &server,
        "/2019-09-25/functions/f/event-invoke-config",
        json!({"MaximumRetryAttempts": 1}),
    );
    assert_body(&response, 404, "ResourceNotFoundException", missing("f"));
    let gone = json!({"Type": "User", "Message": "The function doesn't exist."});
    let response = put(
        &server,
        "/2019-09-25/functions/nofn/event-invoke-config",
        json!({"MaximumRetryAttempts": 1}),
    );
    assert_body(&response, 404, "ResourceNotFoundException", gone.clone());
    let response = server.raw(
        "GET",
        "/2019-09-25/functions/nofn/event-invoke-config/list",
        &[],
        b"",
    );
    assert_body(&response, 404, "ResourceNotFoundException", gone);
}

#[tokio::test(flavor = "multi_thread")]
async fn function_errors_and_fields() {
    let server = server_with_function().await;
    let create = |name: &str, extra: Value| {
        let mut body = json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": base64_zip()},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post(&server, "/2015-03-31/functions", body)
    };
    // A name that is only too long is an invalid parameter, in the validation's words.
    let long = "a".repeat(65);
    let message = format!(
        "1 validation error detected: Value '{long}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 64"
    );
    assert_body(
        &create(&long, json!({})),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": message}),
    );
    // A function of another account: 403 with no message at all.
    let response = server.raw(
        "GET",
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A111111111111%3Afunction%3Af",
        &[],
        b"",
    );
    assert_body(&response, 403, "AccessDeniedException", json!({}));

    // An empty set of variables is echoed; JSON logs get INFO levels, text logs none.
    let created = create("env", json!({"Environment": {"Variables": {}}}));
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json()["Environment"], json!({"Variables": {}}));
    let updated = put(
        &server,
        "/2015-03-31/functions/env/configuration",
        json!({"LoggingConfig": {"LogFormat": "JSON"}}),
    );
    assert_eq!(
        updated.json()["LoggingConfig"],
        json!({"ApplicationLogLevel": "INFO", "LogFormat": "JSON", "LogGroup": "/aws/lambda/env", "SystemLogLevel": "INFO"}),
        "{updated:?}"
    );
    let updated = put(
        &server,
        "/2015-03-31/functions/env/configuration",
        json!({"LoggingConfig": {"LogFormat": "Text"}}),
    );
    assert_eq!(
        updated.json()["LoggingConfig"],
        json!({"LogFormat": "Text", "LogGroup": "/aws/lambda/env"}),
        "{updated:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_errors() {
    let server = server_with_function().await;
    server
        .client()
        .publish_version()
        .function_name("f")
        .send()
        .await
        .unwrap();
    // The concurrency-limit refusals carry no Type.
    let response = put(
        &server,
        "/2017-10-31/functions/f/concurrency",
        json!({"ReservedConcurrentExecutions": 950}),
    );
    assert_body(
        &response,
        400,
        "InvalidParameterValueException",
        json!({"message": "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."}),
    );
    let response = put(
        &server,
        "/2019-09-30/functions/f/provisioned-concurrency?Qualifier=1",
        json!({"ProvisionedConcurrentExecutions": 2000}),
    );
    assert_body(
        &response,
        400,
        "InvalidParameterValueException",
        json!({"message": "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [1000]."}),
    );
    let response = put(
        &server,
        "/2019-09-30/functions/f/provisioned-concurrency?Qualifier=1",
        json!({"ProvisionedConcurrentExecutions": 950}),
    );
    assert_body(
        &response,
        400,
        "InvalidParameterValueException",
        json!({"message": "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [100]."}),
    );

    let path = |q: &str| format!("/2019-09-30/functions/f/provisioned-concurrency?Qualifier={q}");
    let response = server.raw("GET", &path("1"), &[], b"");
    assert_body(
        &response,
        404,
        "ProvisionedConcurrencyConfigNotFoundException",
        json!({"Type": "User", "message": "No Provisioned Concurrency Config found for this function"}),
    );
    // Deleting a configuration that is not there is a no-op.
    assert_eq!(server.raw("DELETE", &path("1"), &[], b"").status, 204);
    assert_body(
        &server.raw("DELETE", &path("%24LATEST"), &[], b""),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": "The function resource provided must be an alias or a published version."}),
    );
    assert_body(
        &server.raw("DELETE", &path("noalias"), &[], b""),
        404,
        "ResourceNotFoundException",
        json!({"Type": "User", "Message": "Cannot find alias arn: arn:aws:lambda:us-east-1:123456789012:function:f:noalias"}),
    );
}

fn base64_zip() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(python_zip(
        "def handler(event, context):\n    return event\n",
    ))
}

/// PutFunctionRecursionConfig / GetFunctionRecursionConfig: Terminate by default, stored
/// across a restart, the enum and the unqualified name enforced.
#[tokio::test(flavor = "multi_thread")]
async fn recursion_config_is_stored_per_function() {
    let server = server_with_function().await;
    let client = server.client();
    let got = client
        .get_function_recursion_config()
        .function_name("f")
        .send()
        .await
        .unwrap();
    assert_eq!(got.recursive_loop().map(|r| r.as_str()), Some("Terminate"));
    let put = client
        .put_function_recursion_config()
        .function_name("f")
        .recursive_loop(aws_sdk_lambda::types::RecursiveLoop::Allow)
        .send()
        .await
        .unwrap();
    assert_eq!(put.recursive_loop().map(|r| r.as_str()), Some("Allow"));

    let path = "/2024-08-31/functions/f/recursion-config";
    put_raw_recursion(&server, path, "Sometimes").assert_error(
        400,
        "ValidationException",
        "1 validation error detected: Value 'Sometimes' at 'recursiveLoop' failed to satisfy constraint: Member must satisfy enum value set: [Terminate, Allow]",
    );
    put_raw_recursion(
        &server,
        "/2024-08-31/functions/f%3A1/recursion-config",
        "Allow",
    )
    .assert_error(
        400,
        "InvalidParameterValueException",
        "This operation is permitted on Lambda functions only.",
    );
    put_raw_recursion(
        &server,
        "/2024-08-31/functions/nofn/recursion-config",
        "Allow",
    )
    .assert_error(
        404,
        "ResourceNotFoundException",
        "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nofn",
    );

    let data_dir = server.kill();
    let server = Server::start_in(&data_dir, &[]);
    let got = server.raw("GET", path, &[], b"");
    assert_eq!(got.json(), json!({"RecursiveLoop": "Allow"}), "{got:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
}

fn put_raw_recursion(server: &Server, path: &str, value: &str) -> RawResponse {
    put(server, path, json!({"RecursiveLoop": value}))
}

/// ListFunctionUrlConfigs pages as Lambda does: `MaxItems` items and a `NextMarker` that
/// yields the rest, none when done.
#[tokio::test(flavor = "multi_thread")]
async fn url_configs_page() {
    let server = server_with_alias().await;
    let empty = server.raw("GET", "/2021-10-31/functions/f/urls", &[], b"");
    assert_eq!(empty.json(), json!({"FunctionUrlConfigs": []}));
    for path in [
        "/2021-10-31/functions/f/url",
        "/2021-10-31/functions/f/url?Qualifier=live",
    ] {
        assert_eq!(post(&server, path, json!({"AuthType": "NONE"})).status, 201);
    }
    let first = server
        .raw("GET", "/2021-10-31/functions/f/urls?MaxItems=1", &[], b"")
        .json();
    assert_eq!(
        first["FunctionUrlConfigs"].as_array().unwrap().len(),
        1,
        "{first}"
    );
    let marker = first["NextMarker"].as_str().expect("a next marker");
    let second = server
        .raw(
            "GET",
            &format!("/2021-10-31/functions/f/urls?MaxItems=1&Marker={marker}"),
            &[],
            b"",
        )
        .json();
    assert_eq!(
        second["FunctionUrlConfigs"].as_array().unwrap().len(),
        1,
        "{second}"
    );
    assert!(second.get("NextMarker").is_none(), "{second}");
    assert_ne!(
        first["FunctionUrlConfigs"][0]["FunctionArn"],
        second["FunctionUrlConfigs"][0]["FunctionArn"]
    );
    let all = server
        .raw("GET", "/2021-10-31/functions/f/urls", &[], b"")
        .json();
    assert_eq!(
        all["FunctionUrlConfigs"].as_array().unwrap().len(),
        2,
        "{all}"
    );
    assert!(all.get("NextMarker").is_none(), "{all}");
}

/// Code signing configurations: their lifecycle with the SDK, attaching them to functions,
/// and Lambda's errors for what does not exist.
#[tokio::test(flavor = "multi_thread")]
async fn code_signing_configs() {
    use aws_sdk_lambda::types::{AllowedPublishers, CodeSigningPolicies, CodeSigningPolicy};
    let server = server_with_function().await;
    let client = server.client();
    let profile = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/test";
    let created = client
        .create_code_signing_config()
        .description("Testing CodeSigning Config")
        .allowed_publishers(
            AllowedPublishers::builder()
                .signing_profile_version_arns(profile)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let config = created.code_signing_config().unwrap();
    let id = config.code_signing_config_id();
    assert!(
        id.len() == 21 && id.starts_with("csc-") && id[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    let arn = config.code_signing_config_arn().to_string();
    assert_eq!(
        arn,
        format!("arn:aws:lambda:us-east-1:123456789012:code-signing-config:{id}")
    );
    assert_eq!(
        config
            .code_signing_policies()
            .unwrap()
            .untrusted_artifact_on_deployment(),
        Some(&CodeSigningPolicy::Warn),
        "Warn unless set"
    );
    let updated = client
        .update_code_signing_config()
        .code_signing_config_arn(&arn)
        .code_signing_policies(
            CodeSigningPolicies::builder()
                .untrusted_artifact_on_deployment(CodeSigningPolicy::Enforce)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let updated = updated.code_signing_config().unwrap();
    assert_eq!(updated.description(), Some("Testing CodeSigning Config"));
    assert_eq!(
        updated
            .code_signing_policies()
            .unwrap()
            .untrusted_artifact_on_deployment(),
        Some(&CodeSigningPolicy::Enforce)
    );
    let listed = client.list_code_signing_configs().send().await.unwrap();
    assert_eq!(listed.code_signing_configs().len(), 1);

    // Attached to a function: at creation, or later.
    let none = server.raw(
        "GET",
        "/2020-06-30/functions/f/code-signing-config",
        &[],
        b"",
    );
    assert_eq!(none.json(), json!({}), "{none:?}");
    let attached_f = client
        .put_function_code_signing_config()
        .function_name("f")
        .code_signing_config_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(attached_f.code_signing_config_arn(), arn);
    assert_eq!(attached_f.function_name(), "f");
    let attached = create_with_signing(&server, "signed", &arn);
    assert_eq!(attached.status, 201, "{attached:?}");
    let users = client
        .list_functions_by_code_signing_config()
        .code_signing_config_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        users.function_arns(),
        [
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:function:signed"
        ]
    );
    let config_path = format!(
        "/2020-04-22/code-signing-configs/{}",
        arn.replace(':', "%3A")
    );
    let in_use = server.raw("DELETE", &config_path, &[], b"");
    assert_eq!(in_use.status, 409, "{in_use:?}");

    // What does not exist.
    let missing_arn = format!("{}x", &arn[..arn.len() - 1]);
    let missing_path = format!(
        "/2020-04-22/code-signing-configs/{}",
        missing_arn.replace(':', "%3A")
    );
    assert_body(
        &server.raw("GET", &missing_path, &[], b""),
        404,
        "ResourceNotFoundException",
        json!({"Message": format!("The Lambda code signing configuration {missing_arn} can not be found.")}),
    );
    assert_body(
        &put(
            &server,
            "/2020-06-30/functions/f/code-signing-config",
            json!({"CodeSigningConfigArn": missing_arn}),
        ),
        404,
        "CodeSigningConfigNotFoundException",
        json!({"Type": "User", "Message": format!("The code signing configuration cannot be found. Check that the provided configuration is not deleted: {missing_arn}.")}),
    );
    assert_eq!(
        create_with_signing(&server, "unsigned", &missing_arn).status,
        404
    );
    assert_body(
        &server.raw(
            "GET",
            "/2020-06-30/functions/nofn/code-signing-config",
            &[],
            b"",
        ),
        404,
        "ResourceNotFoundException",
        json!({"Type": "User", "Message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:nofn"}),
    );

    // Detached from both (twice: the second is a no-op), then deleted.
    for function in ["f", "signed", "signed"] {
        let path = format!("/2020-06-30/functions/{function}/code-signing-config");
        assert_eq!(server.raw("DELETE", &path, &[], b"").status, 204);
    }
    assert_eq!(server.raw("DELETE", &config_path, &[], b"").status, 204);
    assert_eq!(server.raw("GET", &config_path, &[], b"").status, 404);
}

fn create_with_signing(server: &Server, name: &str, arn: &str) -> RawResponse {
    post(
        server,
        "/2015-03-31/functions",
        json!({
            "FunctionName": name,
            "Runtime": "python3.12",
            "Handler": "app.handler",
            "Role": ROLE,
            "Code": {"ZipFile": base64_zip()},
            "CodeSigningConfigArn": arn,
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_and_reserved_errors_name_what_is_missing() {
    let server = server_with_function().await;
    let arn = "arn:aws:lambda:us-east-1:123456789012:function";
    let path = |f: &str, q: &str| {
        format!("/2019-09-30/functions/{f}/provisioned-concurrency?Qualifier={q}")
    };
    let one = json!({"ProvisionedConcurrentExecutions": 1});
    // A missing alias or version is named the same way whether or not the function exists.
    for (method, f, q, message) in [
        (
            "GET",
            "nofn",
            "noalias",
            format!("Cannot find alias arn: {arn}:nofn:noalias"),
        ),
        (
            "GET",
            "f",
            "noalias",
            format!("Cannot find alias arn: {arn}:f:noalias"),
        ),
        ("GET", "f", "10", format!("Function not found: {arn}:f:10")),
        (
            "DELETE",
            "nofn",
            "1",
            format!("Function not found: {arn}:nofn:1"),
        ),
        (
            "PUT",
            "nofn",
            "noalias",
            format!("Cannot find alias arn: {arn}:nofn:noalias"),
        ),
        (
            "PUT",
            "nofn",
            "1",
            format!("Function not found: {arn}:nofn:1"),
        ),
        ("PUT", "f", "10", format!("Function not found: {arn}:f:10")),
    ] {
        let body = if method == "PUT" {
            serde_json::to_vec(&one).unwrap()
        } else {
            Vec::new()
        };
        assert_body(
            &server.raw(method, &path(f, q), &[], &body),
            404,
            "ResourceNotFoundException",
            json!({"Type": "User", "Message": message}),
        );
    }
    // $LATEST: Get and Delete word it one way, Put another.
    assert_body(
        &server.raw("GET", &path("f", "%24LATEST"), &[], b""),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": "The function resource provided must be an alias or a published version."}),
    );
    assert_body(
        &put(&server, &path("f", "%24LATEST"), one.clone()),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": "Provisioned Concurrency Configs cannot be applied to unpublished function versions."}),
    );
    // Reserved concurrency of a missing function names its $LATEST.
    for value in [1, 0] {
        assert_body(
            &put(
                &server,
                "/2017-10-31/functions/nofn/concurrency",
                json!({"ReservedConcurrentExecutions": value}),
            ),
            404,
            "ResourceNotFoundException",
            json!({"Type": "User", "Message": format!("Function not found: {arn}:nofn:$LATEST")}),
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn name_and_qualifier_violations_are_all_reported() {
    let server = server_with_function().await;
    let namespaced_qualifier = r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+";
    let long_q = "a".repeat(129);
    // GetFunction, DeleteFunction and Invoke check the qualifier against their own pattern,
    // and its length on its own.
    for (method, prefix) in [
        ("GET", "/2015-03-31/functions/f"),
        ("DELETE", "/2015-03-31/functions/f"),
        ("POST", "/2015-03-31/functions/f/invocations"),
    ] {
        assert_validation(
            &server.raw(method, &format!("{prefix}?Qualifier=invalid!"), &[], b""),
            &[format!(
                "Value 'invalid!' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {namespaced_qualifier}"
            )],
        );
        assert_validation(
            &server.raw(method, &format!("{prefix}?Qualifier={long_q}"), &[], b""),
            &[format!(
                "Value '{long_q}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128"
            )],
        );
    }
    // Both members wrong: both reported, in one error.
    let name = format!(
        "arn:aws:lambda:invalid-region:123456789012:function:my-function-{}",
        "a".repeat(170)
    );
    assert_validation(
        &server.raw(
            "GET",
            &format!(
                "/2015-03-31/functions/{}?Qualifier={long_q}",
                name.replace(':', "%3A")
            ),
            &[],
            b"",
        ),
        &[
            format!(
                "Value '{long_q}' at 'qualifier' failed to satisfy constraint: Member must have length less than or equal to 128"
            ),
            format!(
                "Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {}",
                gust_model::names::NAMESPACED_FUNCTION_NAME_PATTERN
            ),
        ],
    );
    // A name too long and not matching: both constraints of CreateFunction's FunctionName.
    let response = post(
        &server,
        "/2015-03-31/functions",
        json!({"FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler",
               "Role": "arn:aws:iam::123456789012:role/r", "Code": {"ZipFile": base64_zip()}}),
    );
    assert_validation(
        &response,
        &[
            format!(
                "Value '{name}' at 'functionName' failed to satisfy constraint: Member must have length less than or equal to 140"
            ),
            format!(
                "Value '{name}' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: {}",
                gust_model::names::FUNCTION_NAME_PATTERN
            ),
        ],
    );
    // An ARN that stops after the account names a function called `function`.
    let incomplete = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction";
    for method in ["GET", "DELETE"] {
        assert_body(
            &server.raw(
                method,
                &format!("/2015-03-31/functions/{incomplete}"),
                &[],
                b"",
            ),
            404,
            "ResourceNotFoundException",
            json!({"Type": "User", "Message": "Function not found: arn:aws:lambda:us-east-1:123456789012:function:function"}),
        );
    }
    // DeleteFunction of $LATEST is refused before the function is looked up.
    assert_body(
        &server.raw(
            "DELETE",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Anofn%3A%24LATEST?Qualifier=%24LATEST",
            &[],
            b"",
        ),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": "$LATEST version cannot be deleted without deleting the function."}),
    );
    // A URL configuration's qualifier is checked before the function is looked up.
    for method in ["GET", "DELETE", "POST", "PUT"] {
        let body: &[u8] = if method == "POST" || method == "PUT" {
            br#"{"AuthType": "NONE"}"#
        } else {
            b""
        };
        assert_validation(
            &server.raw(method, "/2021-10-31/functions/nofn/url?Qualifier=1", &[], body),
            &[r"Value '1' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: ((?!^\d+$)^[0-9a-zA-Z-_]+$)".to_string()],
        );
    }
}

/// RevisionId as Lambda moves it: a tag change and a published version each give `$LATEST`
/// a new one; a version settles under a revision of its own, not the one its creation answered.
#[tokio::test(flavor = "multi_thread")]
async fn revisions_move_with_tags_and_publishing() {
    let server = server_with_function().await;
    let client = server.client();
    let latest_revision = || async {
        client
            .get_function()
            .function_name("f")
            .send()
            .await
            .unwrap()
            .configuration()
            .unwrap()
            .revision_id()
            .unwrap()
            .to_string()
    };
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
    let r1 = latest_revision().await;
    client
        .tag_resource()
        .resource(arn)
        .tags("k", "v")
        .send()
        .await
        .unwrap();
    let r2 = latest_revision().await;
    assert_ne!(r1, r2, "a tag change is a new revision");
    client
        .untag_resource()
        .resource(arn)
        .tag_keys("k")
        .send()
        .await
        .unwrap();
    let r3 = latest_revision().await;
    assert_ne!(r2, r3, "removing a tag is a new revision");

    let published = client
        .publish_version()
        .function_name("f")
        .send()
        .await
        .unwrap();
    let r4 = latest_revision().await;
    assert_ne!(r3, r4, "publishing a version is a new revision of $LATEST");
    let version_revision = published.revision_id().unwrap().to_string();
    assert_ne!(version_revision, r4, "a version has a revision of its own");
    let got = client
        .get_function()
        .function_name("f")
        .qualifier("1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.configuration().unwrap().revision_id(),
        Some(version_revision.as_str())
    );
    // Nothing changed: the same version, and $LATEST keeps its revision.
    let again = client
        .publish_version()
        .function_name("f")
        .send()
        .await
        .unwrap();
    assert_eq!(again.revision_id(), Some(version_revision.as_str()));
    assert_eq!(latest_revision().await, r4);

    // CreateFunction with Publish answers the version being created under a revision that
    // the settled version does not keep.
    let response = post(
        &server,
        "/2015-03-31/functions",
        json!({"FunctionName": "g", "Runtime": "python3.12", "Handler": "app.handler",
               "Role": "arn:aws:iam::123456789012:role/r", "Publish": true,
               "Code": {"ZipFile": base64_zip()}}),
    );
    assert_eq!(response.status, 201, "{response:?}");
    let created = response.json();
    assert_eq!(created["Version"], json!("1"));
    assert_eq!(created["State"], json!("Pending"));
    let settled = client
        .get_function()
        .function_name("g")
        .qualifier("1")
        .send()
        .await
        .unwrap();
    let settled = settled.configuration().unwrap();
    assert_eq!(settled.state().map(|s| s.as_str()), Some("Active"));
    assert_ne!(created["RevisionId"].as_str(), settled.revision_id());
}

#[tokio::test(flavor = "multi_thread")]
async fn destinations_principals_aliases_and_capacity_providers() {
    let server = server_with_function().await;
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:f";
    let config = "/2019-09-25/functions/f/event-invoke-config";
    // A destination setting with no ARN in it is a setting: stored as no destination.
    let response = put(
        &server,
        config,
        json!({"DestinationConfig": {"OnSuccess": {}}}),
    );
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.json()["DestinationConfig"],
        json!({"OnSuccess": {}, "OnFailure": {}})
    );
    // An ARN of a service Lambda does not deliver to: the whole configuration is quoted.
    let iam = "arn:aws:iam:us-east-1:123456789012:function:f";
    assert_body(
        &put(
            &server,
            config,
            json!({"DestinationConfig": {"OnSuccess": {"Destination": iam}}}),
        ),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": format!("The provided destination config DestinationConfig(onSuccess=OnSuccess(destination={iam}), onFailure=null) is invalid.")}),
    );
    // Not an ARN at all: the front end's pattern.
    let bad = "arn:aws:_-/!lambda:us-east-1:123456789012:function:f";
    assert_validation(
        &put(
            &server,
            config,
            json!({"DestinationConfig": {"OnFailure": {"Destination": bad}}}),
        ),
        &[format!(
            r"Value '{bad}' at 'destinationConfig.onFailure.destination' failed to satisfy constraint: Member must satisfy regular expression pattern: $|kafka://([^.]([a-zA-Z0-9\-_.]{{0,248}}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{{2}}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{{1}})?:(\d{{12}})?:(.*)"
        )],
    );

    // A principal outside Amazon's service domains is refused.
    let permission = |path: &str, principal: &str| {
        post(
            &server,
            path,
            json!({"StatementId": "s", "Action": "lambda:InvokeFunction", "Principal": principal}),
        )
    };
    assert_body(
        &permission("/2015-03-31/functions/f/policy", "invalid.nonaws.com"),
        400,
        "InvalidParameterValueException",
        json!({"Type": "User", "message": "The provided principal was invalid. Please check the principal and try again."}),
    );
    // A qualifier no alias could carry names a missing version.
    assert_body(
        &permission(
            "/2015-03-31/functions/f/policy?Qualifier=valid-with-%24-but-doesnotexist",
            "s3.amazonaws.com",
        ),
        404,
        "ResourceNotFoundException",
        json!({"Type": "User", "Message": format!("Function not found: {arn}:valid-with-$-but-doesnotexist")}),
    );

    // An alias of $LATEST with weights: refused with no Type.
    server
        .client()
        .publish_version()
        .function_name("f")
        .send()
        .await
        .unwrap();
    assert_body(
        &post(
            &server,
            "/2015-03-31/functions/f/aliases",
            json!({"Name": "a", "FunctionVersion": "$LATEST",
                   "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}),
        ),
        400,
        "InvalidParameterValueException",
        json!({"message": "$LATEST is not supported for an alias pointing to more than 1 version"}),
    );

    // Gust has no capacity providers: tagging one finds none.
    let provider = "arn:aws:lambda:us-east-1:123456789012:capacity-provider:cp";
    let path = format!("/2017-03-31/tags/{}", provider.replace(':', "%3A"));
    assert_body(
        &server.raw("GET", &path, &[], b""),
        404,
        "ResourceNotFoundException",
        json!({"Type": "User", "Message": format!("Capacity provider not found: {provider}")}),
    );
}

/// A version and an alias that points to it cannot both have provisioned concurrency.
#[tokio::test(flavor = "multi_thread")]
async fn provisioned_concurrency_on_a_version_or_its_alias() {
    let server = server_with_alias().await;
    let path = |q: &str| format!("/2019-09-30/functions/f/provisioned-concurrency?Qualifier={q}");
    let one = json!({"ProvisionedConcurrentExecutions": 1});
    assert_eq!(put(&server, &path("1"), one.clone()).status, 202);
    assert_body(
        &put(&server, &path("live"), one.clone()),
        409,
        "ResourceConflictException",
        json!({"Type": "User", "message": "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"}),
    );
    assert_eq!(server.raw("DELETE", &path("1"), &[], b"").status, 204);
    assert_eq!(put(&server, &path("live"), one.clone()).status, 202);
    assert_body(
        &put(&server, &path("1"), one),
        409,
        "ResourceConflictException",
        json!({"Type": "User", "message": "Version is pointed by a Provisioned Concurrency alias"}),
    );
}
