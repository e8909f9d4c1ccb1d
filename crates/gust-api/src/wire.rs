//! Response documents in Lambda's shapes.

use gust_model::{Arns, FunctionConfig};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Which operation a configuration is shown by: the lifecycle members differ.
///
/// Lambda's sequence is what deployment tools wait on: CreateFunction answers `Pending`
/// (reason `Creating`) and the function then becomes `Active`; an update answers
/// `LastUpdateStatus: InProgress` and then becomes `Successful`; each transition changes the
/// `RevisionId`. Gust completes each transition before it answers (see the control plane's
/// `accepted`), so the answer shows the state the change was accepted in and every later
/// read the settled one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// CreateFunction (and a version published by a create or a code update).
    Create,
    /// UpdateFunctionConfiguration, UpdateFunctionCode.
    Update,
    /// GetFunction, GetFunctionConfiguration, PublishVersion.
    Get,
    /// List items carry no lifecycle members.
    List,
}

/// StateReason and LastUpdateStatusReason while a change is being made, as Lambda words them
/// (for updates too).
const CREATING_REASON: &str = "The function is being created.";

/// `RuntimeVersionConfig.RuntimeVersionArn`: a stable identifier per runtime id.
fn runtime_version_arn(region: &str, runtime: &str) -> String {
    let digest = Sha256::digest(format!("gust:{runtime}:1").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("arn:aws:lambda:{region}::runtime:{hex}")
}

/// A FunctionConfiguration document. `arn` is the ARN to show (qualified or not, depending on
/// how the function was addressed).
pub fn function_configuration(
    config: &FunctionConfig,
    arn: &str,
    arns: &Arns,
    view: View,
) -> Value {
    let mut doc = Map::new();
    doc.insert("FunctionName".into(), json!(config.name));
    doc.insert("FunctionArn".into(), json!(arn));
    if let Some(runtime) = &config.runtime {
        doc.insert("Runtime".into(), json!(runtime));
    }
    doc.insert("Role".into(), json!(config.role));
    if let Some(handler) = &config.handler {
        doc.insert("Handler".into(), json!(handler));
    }
    doc.insert("CodeSize".into(), json!(config.code.size));
    doc.insert("Description".into(), json!(config.description));
    doc.insert("Timeout".into(), json!(config.timeout));
    doc.insert("MemorySize".into(), json!(config.memory_size));
    doc.insert("LastModified".into(), json!(config.last_modified));
    doc.insert("CodeSha256".into(), json!(config.code.sha256));
    doc.insert("Version".into(), json!(config.version));
    if let Some(vpc) = &config.vpc_config {
        let mut v = json!({
            "SubnetIds": vpc.subnet_ids,
            "SecurityGroupIds": vpc.security_group_ids,
            "VpcId": "",
        });
        if let Some(ipv6) = vpc.ipv6_allowed_for_dual_stack {
            v["Ipv6AllowedForDualStack"] = json!(ipv6);
        }
        doc.insert("VpcConfig".into(), v);
    }
    if let Some(target) = &config.dead_letter_target {
        doc.insert("DeadLetterConfig".into(), json!({ "TargetArn": target }));
    }
    if let Some(vars) = &config.environment {
        doc.insert("Environment".into(), json!({ "Variables": vars }));
    }
    if let Some(kms) = &config.kms_key_arn {
        doc.insert("KMSKeyArn".into(), json!(kms));
    }
    doc.insert(
        "TracingConfig".into(),
        json!({ "Mode": config.tracing_mode }),
    );
    doc.insert("RevisionId".into(), json!(config.revision_id));
    if let Some(fs) = &config.file_system_configs {
        doc.insert("FileSystemConfigs".into(), fs.clone());
    }
    match view {
        View::List => {}
        View::Create => {
            doc.insert("State".into(), json!("Pending"));
            doc.insert("StateReason".into(), json!(CREATING_REASON));
            doc.insert("StateReasonCode".into(), json!("Creating"));
        }
        View::Update => {
            doc.insert("State".into(), json!("Active"));
            doc.insert("LastUpdateStatus".into(), json!("InProgress"));
            doc.insert("LastUpdateStatusReason".into(), json!(CREATING_REASON));
            doc.insert("LastUpdateStatusReasonCode".into(), json!("Creating"));
        }
        View::Get => {
            doc.insert("State".into(), json!("Active"));
            doc.insert("LastUpdateStatus".into(), json!("Successful"));
        }
    }
    doc.insert("PackageType".into(), json!("Zip"));
    doc.insert("Architectures".into(), json!([config.architecture]));
    doc.insert(
        "EphemeralStorage".into(),
        json!({ "Size": config.ephemeral_storage }),
    );
    doc.insert(
        "SnapStart".into(),
        json!({
            "ApplyOn": config.snap_start_apply_on,
            "OptimizationStatus": if config.snap_start_on() { "On" } else { "Off" },
        }),
    );
    // List items carry no RuntimeVersionConfig on Lambda.
    if let Some(runtime) = config.runtime.as_ref().filter(|_| view != View::List) {
        doc.insert(
            "RuntimeVersionConfig".into(),
            json!({ "RuntimeVersionArn": runtime_version_arn(&arns.region, runtime) }),
        );
    }
    let mut logging = json!({
        "LogFormat": config.logging.log_format,
        "LogGroup": config.logging.log_group,
    });
    if let Some(level) = &config.logging.application_log_level {
        logging["ApplicationLogLevel"] = json!(level);
    }
    if let Some(level) = &config.logging.system_log_level {
        logging["SystemLogLevel"] = json!(level);
    }
    doc.insert("LoggingConfig".into(), logging);
    Value::Object(doc)
}
