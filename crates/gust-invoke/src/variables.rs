//! The environment variables a runtime starts with, as Lambda sets them, and the log stream
//! and trace header names an environment and an invocation get.

use std::time::SystemTime;

use gust_model::FunctionConfig;
use gust_model::timefmt::log_stream_date;
use gust_sandbox::Sandbox;

use crate::platform::Platform;

/// `AWS_LAMBDA_LOG_STREAM_NAME` of environment `id`.
pub(crate) fn log_stream(config: &FunctionConfig, id: &str) -> String {
    format!(
        "{}/[{}]{}",
        log_stream_date(SystemTime::now()),
        config.version,
        id
    )
}

/// Variables that depend on the sandbox, not on the function: a runtime started ahead gets
/// exactly these when it starts, and [`variables`] includes them, so that what an interpreter
/// reads as it starts is the same either way.
fn sandbox_variables(sandbox: &dyn Sandbox) -> Vec<(String, String)> {
    let task_root = sandbox.task_root().display().to_string();
    vec![
        (
            "AWS_LAMBDA_RUNTIME_API".into(),
            sandbox.runtime_api_address().to_string(),
        ),
        ("LAMBDA_TASK_ROOT".into(), task_root.clone()),
        (
            "LAMBDA_RUNTIME_DIR".into(),
            sandbox.runtime_dir().display().to_string(),
        ),
        ("TZ".into(), ":UTC".into()),
        ("LANG".into(), "en_US.UTF-8".into()),
        ("LC_CTYPE".into(), "C.UTF-8".into()),
        ("PWD".into(), task_root),
        ("TMPDIR".into(), sandbox.tmp_dir().display().to_string()),
    ]
}

/// Variables a runtime started ahead of demand starts with: the sandbox's and its command's,
/// and the flag that makes Gust's bootstrap wait for its function's environment.
pub(crate) fn standby_variables(
    sandbox: &dyn Sandbox,
    command: &gust_runtimes::RuntimeCommand,
) -> Vec<(String, String)> {
    started_ahead(sandbox, command, "_GUST_STANDBY")
}

/// Variables a runtime template starts with: the sandbox's and its command's, and the flag
/// that makes Gust's bootstrap fork environments rather than serve one.
pub(crate) fn template_variables(
    sandbox: &dyn Sandbox,
    command: &gust_runtimes::RuntimeCommand,
) -> Vec<(String, String)> {
    started_ahead(sandbox, command, "_GUST_TEMPLATE")
}

fn started_ahead(
    sandbox: &dyn Sandbox,
    command: &gust_runtimes::RuntimeCommand,
    flag: &str,
) -> Vec<(String, String)> {
    let mut vars = sandbox_variables(sandbox);
    vars.push((flag.into(), "1".into()));
    for (k, v) in &command.env {
        set(&mut vars, k, v);
    }
    vars
}

/// An X-Ray trace header for one invocation.
pub(crate) fn trace_id() -> String {
    let epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let root = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=0;Lineage=1:{}:0",
        &root[..24],
        &parent[..16],
        &parent[16..24]
    )
}

/// The runtime's environment variables, as Lambda sets them.
pub(crate) fn variables(
    platform: &Platform,
    config: &FunctionConfig,
    sandbox: &dyn Sandbox,
    log_stream: &str,
    command: Option<&gust_runtimes::RuntimeCommand>,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = vec![
        ("AWS_LAMBDA_FUNCTION_NAME".into(), config.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), config.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            config.memory_size.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            config.logging.log_group.clone(),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), log_stream.to_string()),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
    ];
    vars.extend(sandbox_variables(sandbox));
    vars.extend([
        ("AWS_REGION".into(), platform.region.clone()),
        ("AWS_DEFAULT_REGION".into(), platform.region.clone()),
        ("AWS_XRAY_CONTEXT_MISSING".into(), "LOG_ERROR".into()),
        // Gust has no IAM yet: SDKs inside functions get placeholder credentials so that they
        // initialise as they do on Lambda.
        ("AWS_ACCESS_KEY_ID".into(), "GUSTFUNCTIONKEYID0000".into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            "gust-function-placeholder-secret".into(),
        ),
        (
            "AWS_SESSION_TOKEN".into(),
            "gust-function-placeholder-token".into(),
        ),
    ]);
    if let Some(handler) = &config.handler {
        vars.push(("_HANDLER".into(), handler.clone()));
    }
    if config.logging.log_format == "JSON" {
        vars.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
        if let Some(level) = &config.logging.application_log_level {
            vars.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.clone()));
        }
    }
    if let Some(command) = command {
        for (k, v) in &command.env {
            set(&mut vars, k, v);
        }
    }
    for (k, v) in config.environment.iter().flatten() {
        set(&mut vars, k, v);
    }
    vars
}

pub(crate) fn set(vars: &mut Vec<(String, String)>, key: &str, value: &str) {
    match vars.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => vars.push((key.to_string(), value.to_string())),
    }
}
