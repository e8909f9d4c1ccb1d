use std::io::{Cursor, Write};

use base64::Engine;
use gust_model::ErrorCode;
use gust_model::names::NameShape;

use crate::requests::{
    CreateAlias, CreateFunction, PublishVersion, UpdateAlias, UpdateFunctionConfiguration,
};

use super::*;

fn zip_b64(source: &str) -> String {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("app.py", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(source.as_bytes()).unwrap();
    let bytes = w.finish().unwrap().into_inner();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn settings() -> Settings {
    Settings {
        arns: Arns::new("us-east-1", "123456789012"),
        concurrent_executions: 1000,
    }
}

fn create_request(name: &str) -> CreateFunction {
    serde_json::from_value(serde_json::json!({
        "FunctionName": name,
        "Runtime": "python3.12",
        "Role": "arn:aws:iam::123456789012:role/r",
        "Handler": "app.handler",
        "Code": {"ZipFile": zip_b64("def handler(e, c):\n    return e\n")},
    }))
    .unwrap()
}

fn fref(s: &str) -> FunctionRef {
    FunctionRef::parse(s, NameShape::Namespaced).unwrap()
}

/// Lambda publishes a new version when $LATEST's configuration changed since the newest
/// version, its description alone included; a description given to PublishVersion itself
/// does not count as a change of $LATEST.
#[tokio::test]
async fn a_changed_description_publishes_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), settings()).unwrap();
    control.create(create_request("f")).await.unwrap();
    let control = &control;
    let publish = |description: Option<&str>| {
        let request: PublishVersion = serde_json::from_value(match description {
            Some(d) => serde_json::json!({ "Description": d }),
            None => serde_json::json!({}),
        })
        .unwrap();
        async move { control.publish_version(&fref("f"), request).await }
    };
    let v1 = publish(Some("first release")).await.unwrap();
    assert_eq!(v1.version, "1");
    assert_eq!(v1.description, "first release");
    assert_eq!(publish(None).await.unwrap().version, "1");
    let update: UpdateFunctionConfiguration =
        serde_json::from_value(serde_json::json!({"Description": "changed"})).unwrap();
    control
        .update_configuration(&fref("f"), update)
        .await
        .unwrap();
    let v2 = publish(None).await.unwrap();
    assert_eq!(v2.version, "2");
    assert_eq!(v2.description, "changed");
    assert_eq!(publish(None).await.unwrap().version, "2");
}

#[tokio::test]
async fn create_get_update_publish_delete() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), settings()).unwrap();
    let created = control.create(create_request("f")).await.unwrap();
    assert_eq!(created.latest.timeout, 3);
    assert_eq!(created.latest.memory_size, 128);
    assert_eq!(created.latest.code.sha256.len(), 44);

    let dup = control.create(create_request("f")).await.unwrap_err();
    assert_eq!(dup.code, ErrorCode::ResourceConflict);
    assert_eq!(dup.message, "Function already exist: f");

    let stale: UpdateFunctionConfiguration =
        serde_json::from_value(serde_json::json!({"Timeout": 10, "RevisionId": "nope"})).unwrap();
    let err = control
        .update_configuration(&fref("f"), stale)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PreconditionFailed);

    // Becoming Active is a transition of its own, with a new revision.
    let active = control.resolve(&fref("f")).unwrap();
    assert_ne!(active.revision_id, created.latest.revision_id);
    let err = control
        .update_configuration(
            &fref("f"),
            serde_json::from_value(serde_json::json!({
                "Timeout": 10, "RevisionId": created.latest.revision_id
            }))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PreconditionFailed);
    let update: UpdateFunctionConfiguration = serde_json::from_value(serde_json::json!({
        "Timeout": 10, "RevisionId": active.revision_id
    }))
    .unwrap();
    let updated = control
        .update_configuration(&fref("f"), update)
        .await
        .unwrap();
    assert_eq!(updated.timeout, 10);
    assert_ne!(updated.revision_id, created.latest.revision_id);
    assert!(!control.is_current(&created.latest));
    // The answer shows the update in progress; completing it is another revision, of the
    // same configuration (environments made from either are the same).
    assert!(control.is_current(&updated));
    let settled = control.resolve(&fref("f")).unwrap();
    assert_eq!(settled.timeout, 10);
    assert_ne!(settled.revision_id, updated.revision_id);
    assert!(control.is_current(&settled));

    let v1 = control
        .publish_version(&fref("f"), PublishVersion::default())
        .await
        .unwrap();
    assert_eq!(v1.version, "1");
    let again = control
        .publish_version(&fref("f"), PublishVersion::default())
        .await
        .unwrap();
    assert_eq!(again.version, "1", "unchanged $LATEST republishes nothing");
    assert_eq!(control.resolve(&fref("f:1")).unwrap().timeout, 10);
    assert_eq!(
        control.resolve(&fref("f:2")).unwrap_err().message,
        "Function not found: arn:aws:lambda:us-east-1:123456789012:function:f:2"
    );

    let err = control.delete(&fref("f:$LATEST")).await.unwrap_err();
    assert_eq!(
        err.message,
        "$LATEST version cannot be deleted without deleting the function."
    );
    control.delete(&fref("f:1")).await.unwrap();
    control.delete(&fref("f")).await.unwrap();
    assert_eq!(
        control.get(&fref("f")).unwrap_err().code,
        ErrorCode::ResourceNotFound
    );
}

#[tokio::test]
async fn validation_errors_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), settings()).unwrap();
    let mut bad = create_request("g");
    bad.config.memory_size = Some(64);
    bad.config.role = Some("r1".into());
    let err = control.create(bad).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    assert!(err.message.starts_with("2 validation errors detected"));

    let mut bad = create_request("g");
    bad.config.runtime = Some("python9".into());
    assert_eq!(
        control.create(bad).await.unwrap_err().code,
        ErrorCode::InvalidParameterValue
    );

    let mut bad = create_request("g");
    bad.code = Some(requests::FunctionCode {
        zip_file: Some(base64::engine::general_purpose::STANDARD.encode(b"not a zip")),
        ..Default::default()
    });
    let err = control.create(bad).await.unwrap_err();
    assert_eq!(
        err.message,
        "Could not unzip uploaded file. Please check your file, then try to upload again."
    );
    assert_eq!(control.account_usage().function_count, 0);
    assert!(control.referenced_code().is_empty());
}

#[tokio::test]
async fn functions_survive_a_restart_and_paginate() {
    let dir = tempfile::tempdir().unwrap();
    {
        let control = Control::open(dir.path(), settings()).unwrap();
        for i in 0..7 {
            control
                .create(create_request(&format!("fn-{i}")))
                .await
                .unwrap();
        }
    }
    let control = Control::open(dir.path(), settings()).unwrap();
    let mut names = Vec::new();
    let mut marker = None;
    loop {
        let page = control.list(marker.as_deref(), 3, false);
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|c| c.name.clone()));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|i| format!("fn-{i}")).collect::<Vec<_>>());
    assert_eq!(control.account_usage().function_count, 7);
}

#[tokio::test]
async fn aliases_route_between_versions() {
    let dir = tempfile::tempdir().unwrap();
    let control = Control::open(dir.path(), settings()).unwrap();
    control.create(create_request("f")).await.unwrap();
    control
        .publish_version(&fref("f"), PublishVersion::default())
        .await
        .unwrap();
    let update: UpdateFunctionConfiguration =
        serde_json::from_value(serde_json::json!({"Timeout": 11})).unwrap();
    control
        .update_configuration(&fref("f"), update)
        .await
        .unwrap();
    control
        .publish_version(&fref("f"), PublishVersion::default())
        .await
        .unwrap();

    let alias: CreateAlias = serde_json::from_value(serde_json::json!({
        "Name": "live", "FunctionVersion": "1",
        "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.3}}
    }))
    .unwrap();
    let alias = control.create_alias(&fref("f"), alias).await.unwrap();
    assert_eq!(alias.function_version, "1");
    assert_eq!(control.resolve(&fref("f:live")).unwrap().version, "1");
    let mut v2 = 0;
    for _ in 0..2000 {
        if control.resolve_for_invoke(&fref("f:live")).unwrap().version == "2" {
            v2 += 1;
        }
    }
    assert!((540..=660).contains(&v2), "{v2} of 2000 went to version 2");

    // A version an alias routes to cannot be deleted.
    let err = control.delete(&fref("f:2")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::ResourceConflict);

    let stale: UpdateAlias =
        serde_json::from_value(serde_json::json!({"RevisionId": "x"})).unwrap();
    assert_eq!(
        control
            .update_alias(&fref("f"), "live", stale)
            .await
            .unwrap_err()
            .code,
        ErrorCode::PreconditionFailed
    );
    let clear: UpdateAlias =
        serde_json::from_value(serde_json::json!({"RoutingConfig": {}})).unwrap();
    let cleared = control
        .update_alias(&fref("f"), "live", clear)
        .await
        .unwrap();
    assert!(cleared.additional_version_weights.is_empty());
    control.delete(&fref("f:2")).await.unwrap();

    // Aliases survive a restart.
    drop(control);
    let control = Control::open(dir.path(), settings()).unwrap();
    assert_eq!(
        control
            .get_alias(&fref("f"), "live")
            .unwrap()
            .function_version,
        "1"
    );
    control.delete_alias(&fref("f"), "live").await.unwrap();
    control.delete_alias(&fref("f"), "live").await.unwrap();
    assert_eq!(
        control.get_alias(&fref("f"), "live").unwrap_err().message,
        "Cannot find alias arn: arn:aws:lambda:us-east-1:123456789012:function:f:live"
    );
}
