//! Versions, aliases, weighted routing, tags and resource policies through the AWS SDK for Rust.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, FunctionCode, FunctionVersion, Runtime};

use crate::common::*;

fn versioned_source(tag: &str) -> Vec<u8> {
    python_zip(&format!(
        "import os\n\ndef handler(event, context):\n    return {{'code': '{tag}', 'version': os.environ['AWS_LAMBDA_FUNCTION_VERSION'], 'arn': context.invoked_function_arn, 'stream': context.log_stream_name}}\n"
    ))
}

async fn invoke_qualified(
    client: &aws_sdk_lambda::Client,
    name: &str,
    qualifier: &str,
) -> (Option<String>, serde_json::Value, String) {
    use base64::Engine;
    let out = client
        .invoke()
        .function_name(name)
        .qualifier(qualifier)
        .log_type(aws_sdk_lambda::types::LogType::Tail)
        .payload(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {name}:{qualifier}: {e:?}"));
    let log = out
        .log_result()
        .map(|l| {
            String::from_utf8_lossy(&base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .into_owned()
        })
        .unwrap_or_default();
    (
        out.executed_version().map(str::to_string),
        serde_json::from_slice(out.payload().unwrap().as_ref()).unwrap(),
        log,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_version_lifecycle() {
    let server = Server::start();
    let client = server.client();
    let created = client
        .create_function()
        .function_name("ver")
        .runtime(Runtime::from("python3.12"))
        .handler("app.handler")
        .role(ROLE)
        .publish(true)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(versioned_source("one")))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.version(),
        Some("1"),
        "Publish on create returns version 1"
    );

    let updated = client
        .update_function_code()
        .function_name("ver")
        .zip_file(Blob::new(versioned_source("two")))
        .send()
        .await
        .unwrap();
    let v2 = client
        .publish_version()
        .function_name("ver")
        .code_sha256(updated.code_sha256().unwrap())
        .description("second")
        .send()
        .await
        .unwrap();
    assert_eq!(v2.version(), Some("2"));
    assert_eq!(
        v2.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:ver:2")
    );
    assert_eq!(v2.description(), Some("second"));
    let again = client
        .publish_version()
        .function_name("ver")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.version(),
        Some("2"),
        "publishing an unchanged $LATEST returns the existing version"
    );

    let (status, code, message) = service_error(
        client
            .publish_version()
            .function_name("ver")
            .code_sha256("somethingelse")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert!(
        message.starts_with(
            "CodeSHA256 (somethingelse) is different from current CodeSHA256 in $LATEST ("
        ),
        "{message}"
    );
    let (status, code, _) = service_error(
        client
            .publish_version()
            .function_name("ver")
            .revision_id("stale")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (412, "PreconditionFailedException")
    );

    // Each version runs its own code, in its own environments, and says which version ran.
    let (executed, payload, log) = invoke_qualified(&client, "ver", "1").await;
    assert_eq!(executed.as_deref(), Some("1"));
    assert_eq!(payload["code"], "one");
    assert_eq!(payload["version"], "1");
    assert_eq!(
        payload["arn"],
        "arn:aws:lambda:us-east-1:123456789012:function:ver:1"
    );
    assert!(payload["stream"].as_str().unwrap().contains("/[1]"));
    assert!(log.contains(" Version: 1\n"), "{log}");
    let latest = invoke(&client, "ver", serde_json::json!({})).await;
    assert_eq!(latest.executed_version.as_deref(), Some("$LATEST"));
    assert_eq!(latest.payload["code"], "two");
    let by_name = invoke(&client, "ver:2", serde_json::json!({})).await;
    assert_eq!(by_name.executed_version.as_deref(), Some("2"));

    let got = client
        .get_function()
        .function_name("ver")
        .qualifier("1")
        .send()
        .await
        .unwrap();
    assert_eq!(got.configuration().unwrap().version(), Some("1"));
    assert_eq!(
        got.configuration().unwrap().function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:ver:1")
    );

    let versions = client
        .list_versions_by_function()
        .function_name("ver")
        .send()
        .await
        .unwrap();
    let listed: Vec<(&str, &str)> = versions
        .versions()
        .iter()
        .map(|v| (v.version().unwrap(), v.function_arn().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![
            (
                "$LATEST",
                "arn:aws:lambda:us-east-1:123456789012:function:ver:$LATEST"
            ),
            ("1", "arn:aws:lambda:us-east-1:123456789012:function:ver:1"),
            ("2", "arn:aws:lambda:us-east-1:123456789012:function:ver:2"),
        ]
    );
    let all = client
        .list_functions()
        .function_version(FunctionVersion::All)
        .send()
        .await
        .unwrap();
    assert_eq!(all.functions().len(), 3);

    let (status, code, message) = service_error(
        client
            .delete_function()
            .function_name("ver")
            .qualifier("$LATEST")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            400,
            "InvalidParameterValueException",
            "$LATEST version cannot be deleted without deleting the function."
        )
    );
    // Deleting it again (or a version that never existed) is a no-op, as on Lambda.
    for _ in 0..2 {
        client
            .delete_function()
            .function_name("ver")
            .qualifier("2")
            .send()
            .await
            .unwrap();
    }
    client
        .delete_function()
        .function_name("ver")
        .qualifier("99")
        .send()
        .await
        .unwrap();
    let (status, _, message) = service_error(
        client
            .invoke()
            .function_name("ver")
            .qualifier("2")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            404,
            "Function not found: arn:aws:lambda:us-east-1:123456789012:function:ver:2"
        )
    );

    // Numbers are never reused; UpdateFunctionCode with Publish returns the new version.
    let v3 = client
        .update_function_code()
        .function_name("ver")
        .zip_file(Blob::new(versioned_source("three")))
        .publish(true)
        .send()
        .await
        .unwrap();
    assert_eq!(v3.version(), Some("3"));
    let (_, payload, _) = invoke_qualified(&client, "ver", "3").await;
    assert_eq!(payload["code"], "three");
    let (_, payload, _) = invoke_qualified(&client, "ver", "1").await;
    assert_eq!(
        payload["code"], "one",
        "an old version keeps running its own code"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aliases_route_traffic_by_weight() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "aliased",
        Runtime::from("python3.12"),
        "app.handler",
        versioned_source("one"),
    )
    .await;
    client
        .publish_version()
        .function_name("aliased")
        .send()
        .await
        .unwrap();
    client
        .update_function_code()
        .function_name("aliased")
        .zip_file(Blob::new(versioned_source("two")))
        .send()
        .await
        .unwrap();
    client
        .publish_version()
        .function_name("aliased")
        .send()
        .await
        .unwrap();

    let weights = AliasRoutingConfiguration::builder()
        .additional_version_weights("2", 0.3)
        .build();
    let alias = client
        .create_alias()
        .function_name("aliased")
        .name("live")
        .function_version("1")
        .description("canary")
        .routing_config(weights)
        .send()
        .await
        .unwrap();
    assert_eq!(
        alias.alias_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:aliased:live")
    );
    assert_eq!(alias.function_version(), Some("1"));
    assert_eq!(
        alias
            .routing_config()
            .unwrap()
            .additional_version_weights()
            .unwrap()
            .get("2"),
        Some(&0.3)
    );

    let via_alias = client
        .get_function()
        .function_name("aliased")
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let config = via_alias.configuration().unwrap();
    assert_eq!(
        config.function_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:aliased:live")
    );
    assert_eq!(config.version(), Some("1"));

    let mut to_two = 0;
    let total = 2000;
    for _ in 0..total {
        let (executed, payload, _) = invoke_qualified(&client, "aliased", "live").await;
        assert_eq!(
            payload["arn"],
            "arn:aws:lambda:us-east-1:123456789012:function:aliased:live"
        );
        assert_eq!(payload["version"].as_str(), executed.as_deref());
        if executed.as_deref() == Some("2") {
            to_two += 1;
        }
    }
    let share = to_two as f64 / total as f64;
    assert!(
        (share - 0.3).abs() <= 0.03,
        "version 2 got {share:.3} of the traffic, configured 0.3"
    );

    let listed = client
        .list_aliases()
        .function_name("aliased")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.aliases().len(), 1);
    let filtered = client
        .list_aliases()
        .function_name("aliased")
        .function_version("7")
        .send()
        .await
        .unwrap();
    assert!(filtered.aliases().is_empty());

    let (status, code, _) = service_error(
        client
            .update_alias()
            .function_name("aliased")
            .name("live")
            .revision_id("stale")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (412, "PreconditionFailedException")
    );
    let cleared = client
        .update_alias()
        .function_name("aliased")
        .name("live")
        .routing_config(AliasRoutingConfiguration::builder().build())
        .revision_id(alias.revision_id().unwrap())
        .send()
        .await
        .unwrap();
    assert!(cleared.routing_config().is_none());
    for _ in 0..20 {
        assert_eq!(
            invoke_qualified(&client, "aliased", "live")
                .await
                .0
                .as_deref(),
            Some("1")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_errors_match_lambda() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "al",
        Runtime::from("python3.12"),
        "app.handler",
        versioned_source("one"),
    )
    .await;
    client
        .publish_version()
        .function_name("al")
        .send()
        .await
        .unwrap();
    client
        .update_function_configuration()
        .function_name("al")
        .timeout(5)
        .send()
        .await
        .unwrap();
    client
        .publish_version()
        .function_name("al")
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:al";

    let body = |name: &str, version: &str, weights: Option<serde_json::Value>| {
        let mut doc = serde_json::json!({"Name": name, "FunctionVersion": version});
        if let Some(w) = weights {
            doc["RoutingConfig"] = serde_json::json!({"AdditionalVersionWeights": w});
        }
        serde_json::to_vec(&doc).unwrap()
    };
    let path = "/2015-03-31/functions/al/aliases";
    let cases: Vec<(Vec<u8>, u16, &str, String)> = vec![
        (body("2024", "1", None), 400, "ValidationException", "Value '2024' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)".into()),
        (body("a", "1", Some(serde_json::json!({"2": 0.5, "3": 0.1}))), 400, "InvalidParameterValueException", "Number of items in AdditionalVersionWeights cannot be greater than 1".into()),
        (body("a", "1", Some(serde_json::json!({"2": 2.0}))), 400, "ValidationException", "Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0, Member must not be null]".into()),
        (body("a", "1", Some(serde_json::json!({"$LATEST": 0.5}))), 400, "ValidationException", "Value '{$LATEST=0.5}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint".into()),
        (body("a", "1", Some(serde_json::json!({"1": 0.5}))), 400, "InvalidParameterValueException", "Invalid function version 1. Function version 1 is already included in routing configuration.".into()),
        (body("a", "$LATEST", Some(serde_json::json!({"1": 0.5}))), 400, "InvalidParameterValueException", "$LATEST is not supported for an alias pointing to more than 1 version".into()),
        (body("a", "10", None), 404, "ResourceNotFoundException", format!("Function not found: {arn}:10")),
        (body("a", "1", Some(serde_json::json!({"10": 0.5}))), 404, "ResourceNotFoundException", format!("Function not found: {arn}:10")),
    ];
    for (payload, status, code, message) in cases {
        server
            .raw(
                "POST",
                path,
                &[("content-type", "application/json")],
                &payload,
            )
            .assert_error(status, code, &message);
    }
    server
        .raw(
            "POST",
            "/2015-03-31/functions/al-unknown/aliases",
            &[("content-type", "application/json")],
            &body("a", "1", None),
        )
        .assert_error(
            404,
            "ResourceNotFoundException",
            "Function not found: arn:aws:lambda:us-east-1:123456789012:function:al-unknown:1",
        );

    client
        .create_alias()
        .function_name("al")
        .name("prod")
        .function_version("1")
        .send()
        .await
        .unwrap();
    let (status, code, message) = service_error(
        client
            .create_alias()
            .function_name("al")
            .name("prod")
            .function_version("2")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "ResourceConflictException"));
    assert_eq!(message, format!("Alias already exists: {arn}:prod"));

    let (status, _, message) = service_error(
        client
            .get_alias()
            .function_name("al")
            .name("nope")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message),
        (404, format!("Cannot find alias arn: {arn}:nope"))
    );
    let (status, _, message) = service_error(
        client
            .update_alias()
            .function_name("al")
            .name("nope")
            .function_version("1")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message),
        (404, format!("Alias not found: {arn}:nope"))
    );
    let (status, _, message) = service_error(
        client
            .get_function()
            .function_name("al")
            .qualifier("nope")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message),
        (404, format!("Function not found: {arn}:nope"))
    );
    let (status, code, _) = service_error(
        client
            .invoke()
            .function_name("al:nope")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (404, "ResourceNotFoundException"));

    let (status, code, message) = service_error(
        client
            .delete_function()
            .function_name("al")
            .qualifier("1")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "ResourceConflictException"));
    assert!(message.contains("[prod]"), "{message}");
    let (status, code, message) = service_error(
        client
            .delete_function()
            .function_name("al")
            .qualifier("prod")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            400,
            "InvalidParameterValueException",
            "Deletion of aliases is not currently supported."
        )
    );

    client
        .delete_alias()
        .function_name("al")
        .name("prod")
        .send()
        .await
        .unwrap();
    client
        .delete_alias()
        .function_name("al")
        .name("prod")
        .send()
        .await
        .expect("deleting a missing alias succeeds, as on Lambda");
    client
        .delete_function()
        .function_name("al")
        .qualifier("1")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_are_stored_and_returned() {
    let server = Server::start();
    let client = server.client();
    client
        .create_function()
        .function_name("tagged")
        .runtime(Runtime::from("python3.12"))
        .handler("app.handler")
        .role(ROLE)
        .tags("team", "core")
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(versioned_source("t")))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:tagged";
    let got = client
        .get_function()
        .function_name("tagged")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.tags().unwrap().get("team").map(String::as_str),
        Some("core")
    );

    client
        .tag_resource()
        .resource(arn)
        .tags("a", "1")
        .tags("b", "2")
        .send()
        .await
        .unwrap();
    client
        .tag_resource()
        .resource(arn)
        .tags("b", "3")
        .send()
        .await
        .unwrap();
    let tags = client.list_tags().resource(arn).send().await.unwrap();
    let tags = tags.tags().unwrap();
    assert_eq!(tags.len(), 3);
    assert_eq!(tags.get("b").map(String::as_str), Some("3"));
    client
        .untag_resource()
        .resource(arn)
        .tag_keys("a")
        .tag_keys("team")
        .tag_keys("missing")
        .send()
        .await
        .unwrap();
    let tags = client.list_tags().resource(arn).send().await.unwrap();
    assert_eq!(tags.tags().unwrap().keys().collect::<Vec<_>>(), vec!["b"]);

    let (status, code, message) = service_error(
        client
            .list_tags()
            .resource(format!("{arn}:1"))
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str(), message.as_str()),
        (
            400,
            "InvalidParameterValueException",
            "Tags on function aliases and versions are not supported. Please specify a function ARN."
        )
    );
    let (status, _, message) = service_error(
        client
            .tag_resource()
            .resource("arn:aws:lambda:us-east-1:123456789012:function:ghost")
            .tags("a", "b")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            404,
            "Function not found: arn:aws:lambda:us-east-1:123456789012:function:ghost"
        )
    );
    let (status, code, message) = service_error(
        client
            .list_tags()
            .resource("arn:aws:something")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "ValidationException"));
    assert!(message.starts_with("1 validation error detected: Value 'arn:aws:something' at 'resource' failed to satisfy constraint"));

    let encoded =
        "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Atagged";
    server
        .raw(
            "POST",
            encoded,
            &[("content-type", "application/json")],
            br#"{"Tags": {}}"#,
        )
        .assert_error(
            400,
            "InvalidParameterValueException",
            "An error occurred and the request cannot be processed.",
        );
    server.raw("DELETE", encoded, &[], b"").assert_error(
        400,
        "ValidationException",
        "Value null at 'tagKeys' failed to satisfy constraint: Member must not be null",
    );
    let many: serde_json::Map<String, serde_json::Value> = (0..51)
        .map(|i| (format!("k{i}"), serde_json::json!("v")))
        .collect();
    server
        .raw(
            "POST",
            encoded,
            &[("content-type", "application/json")],
            &serde_json::to_vec(&serde_json::json!({"Tags": many})).unwrap(),
        )
        .assert_error(
            400,
            "InvalidParameterValueException",
            "Number of tags exceeds resource tag limit.",
        );
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_policies_are_stored_exactly() {
    let server = Server::start();
    let client = server.client();
    create(
        &client,
        "guarded",
        Runtime::from("python3.12"),
        "app.handler",
        versioned_source("p"),
    )
    .await;
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:guarded";

    let added = client
        .add_permission()
        .function_name("guarded")
        .statement_id("s3")
        .action("lambda:InvokeFunction")
        .principal("s3.amazonaws.com")
        .source_arn("arn:aws:s3:::bucket")
        .source_account("123456789012")
        .send()
        .await
        .unwrap();
    assert_eq!(
        added.statement().unwrap(),
        format!(
            r#"{{"Sid":"s3","Effect":"Allow","Principal":{{"Service":"s3.amazonaws.com"}},"Action":"lambda:InvokeFunction","Resource":"{arn}","Condition":{{"StringEquals":{{"AWS:SourceAccount":"123456789012"}},"ArnLike":{{"AWS:SourceArn":"arn:aws:s3:::bucket"}}}}}}"#
        )
    );
    client
        .add_permission()
        .function_name("guarded")
        .statement_id("url")
        .action("lambda:InvokeFunctionUrl")
        .principal("*")
        .function_url_auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .send()
        .await
        .unwrap();
    let policy = client
        .get_policy()
        .function_name("guarded")
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    assert_eq!(doc["Version"], "2012-10-17");
    assert_eq!(doc["Id"], "default");
    assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
    assert_eq!(doc["Statement"][1]["Principal"], "*");
    assert_eq!(
        doc["Statement"][1]["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"],
        "NONE"
    );
    let revision = policy.revision_id().unwrap().to_string();

    let (status, code, message) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .statement_id("s3")
            .action("lambda:InvokeFunction")
            .principal("sns.amazonaws.com")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (409, "ResourceConflictException"));
    assert_eq!(
        message,
        "The statement id (s3) provided already exists. Please provide a new statement id, or remove the existing statement."
    );
    let (status, _, message) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .qualifier("$LATEST")
            .statement_id("x")
            .action("lambda:InvokeFunction")
            .principal("*")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            400,
            "We currently do not support adding policies for $LATEST."
        )
    );
    let (status, _, message) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .statement_id("x")
            .action("lambda:InvokeFunction")
            .principal("not a principal")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 400, "{message}");
    let (status, _, message) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .statement_id("x")
            .action("lambda:InvokeFunction")
            .principal("nobody")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            400,
            "The provided principal was invalid. Please check the principal and try again."
        )
    );
    let (status, code, _) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .statement_id("example.com")
            .action("lambda:InvokeFunction")
            .principal("*")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!((status, code.as_str()), (400, "ValidationException"));
    let (status, code, _) = service_error(
        client
            .remove_permission()
            .function_name("guarded")
            .statement_id("s3")
            .revision_id("stale")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, code.as_str()),
        (412, "PreconditionFailedException")
    );

    // Versions and aliases have policies of their own.
    client
        .publish_version()
        .function_name("guarded")
        .send()
        .await
        .unwrap();
    let (status, _, message) = service_error(
        client
            .get_policy()
            .function_name("guarded")
            .qualifier("1")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "The resource you requested does not exist.")
    );
    let v1 = client
        .add_permission()
        .function_name("guarded")
        .qualifier("1")
        .statement_id("v1")
        .action("lambda:InvokeFunction")
        .principal("123456789012")
        .send()
        .await
        .unwrap();
    let v1: serde_json::Value = serde_json::from_str(v1.statement().unwrap()).unwrap();
    assert_eq!(v1["Resource"], format!("{arn}:1"));
    assert_eq!(v1["Principal"]["AWS"], "arn:aws:iam::123456789012:root");
    let (status, _, message) = service_error(
        client
            .add_permission()
            .function_name("guarded")
            .qualifier("ghost")
            .statement_id("x")
            .action("lambda:InvokeFunction")
            .principal("*")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message),
        (404, format!("Cannot find alias arn: {arn}:ghost"))
    );

    let (status, _, message) = service_error(
        client
            .remove_permission()
            .function_name("guarded")
            .statement_id("nope")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "Statement nope is not found in resource policy.")
    );
    client
        .remove_permission()
        .function_name("guarded")
        .statement_id("s3")
        .revision_id(&revision)
        .send()
        .await
        .unwrap();
    client
        .remove_permission()
        .function_name("guarded")
        .statement_id("url")
        .send()
        .await
        .unwrap();
    let (status, _, message) = service_error(
        client
            .get_policy()
            .function_name("guarded")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "The resource you requested does not exist.")
    );
    let (status, _, message) = service_error(
        client
            .remove_permission()
            .function_name("guarded")
            .statement_id("s3")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (404, "No policy is associated with the given resource.")
    );
    let (status, _, message) = service_error(
        client
            .remove_permission()
            .function_name("ghost")
            .statement_id("s3")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (status, message.as_str()),
        (
            404,
            "No policy found for: arn:aws:lambda:us-east-1:123456789012:function:ghost"
        )
    );
}
