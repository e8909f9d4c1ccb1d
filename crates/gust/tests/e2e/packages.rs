//! Deployment packages are untrusted input: every hostile zip is refused with a clear error and
//! leaves nothing behind in the store.

use std::io::{Cursor, Write};
use std::path::Path;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use base64::Engine;
use zip::write::SimpleFileOptions;

use crate::common::*;

fn code_entries(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("code"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file("app.py", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"def handler(e, c):\n    return 1\n").unwrap();
    w.add_symlink(name, target, SimpleFileOptions::default())
        .unwrap();
    w.finish().unwrap().into_inner()
}

fn through_symlink() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_symlink("up", "..", SimpleFileOptions::default())
        .unwrap();
    w.start_file("up/escaped.txt", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"x").unwrap();
    w.finish().unwrap().into_inner()
}

/// 251 MiB of zeros, deflated to a few hundred KiB.
fn zip_bomb() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    w.start_file("zeros.bin", opts).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..251 {
        w.write_all(&chunk).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A stored (uncompressed) zip just over 50 MB of incompressible bytes.
fn oversized_zip() -> Vec<u8> {
    let mut data = vec![0u8; 52_428_800];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("noise.bin", opts).unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_packages_are_refused_and_leave_nothing_behind() {
    let server = Server::start();
    let client = server.client();
    // One good function, whose package must stay the only one in the store.
    create(
        &client,
        "good",
        Runtime::from("python3.12"),
        "app.handler",
        python_zip("def handler(e, c):\n    return 'good'\n"),
    )
    .await;
    let before = code_entries(&server.data_dir);
    assert_eq!(before.len(), 1);

    let unzip_error =
        "Could not unzip uploaded file. Please check your file, then try to upload again.";
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "corrupt",
            b"PK\x03\x04 definitely not a zip".to_vec(),
            400,
            "InvalidParameterValueException",
            unzip_error,
        ),
        (
            "dot-dot",
            zip_of(&[("../escaped.py", b"x", 0o644)]),
            400,
            "InvalidParameterValueException",
            "Entry '../escaped.py' would be written outside the package root.",
        ),
        (
            "absolute",
            zip_of(&[("/tmp/gust-escaped.py", b"x", 0o644)]),
            400,
            "InvalidParameterValueException",
            "Entry '/tmp/gust-escaped.py' is an absolute path.",
        ),
        (
            "link-absolute",
            with_symlink("passwd", "/etc/passwd"),
            400,
            "InvalidParameterValueException",
            "Entry 'passwd' is a symbolic link pointing outside the package.",
        ),
        (
            "link-relative",
            with_symlink("up", "../../.."),
            400,
            "InvalidParameterValueException",
            "Entry 'up' is a symbolic link pointing outside the package.",
        ),
        (
            "through-link",
            through_symlink(),
            400,
            "InvalidParameterValueException",
            "Entry 'up/escaped.txt' passes through a symbolic link.",
        ),
        (
            "bomb",
            zip_bomb(),
            400,
            "InvalidParameterValueException",
            "Unzipped size must be smaller than 262144000 bytes",
        ),
        (
            "oversized",
            oversized_zip(),
            413,
            "RequestEntityTooLargeException",
            "Zipped size must be smaller than 52428800 bytes",
        ),
    ];
    for (name, zip, status, code, message) in cases {
        let body = serde_json::to_vec(&serde_json::json!({
            "FunctionName": name, "Runtime": "python3.12", "Handler": "app.handler", "Role": ROLE,
            "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip)},
        }))
        .unwrap();
        let response = server.raw(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            &body,
        );
        response.assert_error(status, code, message);
        assert_eq!(
            code_entries(&server.data_dir),
            before,
            "{name} left something in the store"
        );
        let (status, _, _) = service_error(
            client
                .get_function()
                .function_name(name)
                .send()
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 404, "{name} must not exist");

        // The same package as a code update changes nothing either.
        let update = server.raw(
            "PUT",
            "/2015-03-31/functions/good/code",
            &[("content-type", "application/json")],
            &serde_json::to_vec(&serde_json::json!({
                "ZipFile": base64::engine::general_purpose::STANDARD.encode(&zip)
            }))
            .unwrap(),
        );
        update.assert_error(status_of(code), code, message);
    }
    assert_eq!(code_entries(&server.data_dir), before);
    assert!(!Path::new("/tmp/gust-escaped.py").exists());
    assert_eq!(
        invoke(&client, "good", serde_json::json!({})).await.payload,
        "good"
    );

    // A whole request over Lambda's limit is refused before it is parsed.
    let huge = vec![b' '; 70_167_300];
    server
        .raw(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            &huge,
        )
        .assert_error(
            413,
            "RequestEntityTooLargeException",
            "Request must be smaller than 70167211 bytes for the CreateFunction operation",
        );
}

fn status_of(code: &str) -> u16 {
    if code == "RequestEntityTooLargeException" {
        413
    } else {
        400
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unix_modes_survive_and_symlinks_inside_work() {
    let server = Server::start();
    let client = server.client();
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.start_file(
        "app.py",
        SimpleFileOptions::default().unix_permissions(0o644),
    )
    .unwrap();
    w.write_all(
        b"import os, stat\n\
          def handler(e, c):\n\
          \x20   mode = stat.S_IMODE(os.stat('tool.sh').st_mode)\n\
          \x20   return {'mode': oct(mode), 'link': open('data/current').read(), 'exec': os.access('tool.sh', os.X_OK)}\n",
    )
    .unwrap();
    w.start_file(
        "tool.sh",
        SimpleFileOptions::default().unix_permissions(0o755),
    )
    .unwrap();
    w.write_all(b"#!/bin/sh\necho tool\n").unwrap();
    w.add_directory("data/", SimpleFileOptions::default())
        .unwrap();
    w.start_file("data/v1.txt", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"version one").unwrap();
    w.add_symlink("data/current", "v1.txt", SimpleFileOptions::default())
        .unwrap();
    let zip = w.finish().unwrap().into_inner();
    client
        .create_function()
        .function_name("modes")
        .runtime(Runtime::from("python3.12"))
        .handler("app.handler")
        .role(ROLE)
        .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
        .send()
        .await
        .unwrap();
    let out = invoke(&client, "modes", serde_json::json!({})).await;
    assert_eq!(out.payload["mode"], "0o755", "{out:?}");
    assert_eq!(out.payload["exec"], true);
    assert_eq!(out.payload["link"], "version one");
}
