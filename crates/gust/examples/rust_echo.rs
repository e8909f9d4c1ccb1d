//! A custom-runtime function written with the official `lambda_runtime` crate, unmodified: the
//! end-to-end tests zip this program as `bootstrap` and run it as a `provided.al2023` function.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if let Some(message) = payload.get("fail").and_then(Value::as_str) {
        return Err(message.to_string().into());
    }
    if payload.get("exit").is_some() {
        std::process::exit(3);
    }
    Ok(json!({
        "echo": payload,
        "requestId": context.request_id,
        "invokedFunctionArn": context.invoked_function_arn,
        "deadlineMs": context.deadline,
        "functionName": context.env_config.function_name,
        "functionVersion": context.env_config.version,
        "memoryMb": context.env_config.memory,
        "clientContext": context.client_context.map(|c| json!({"custom": c.custom, "env": c.environment})),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
