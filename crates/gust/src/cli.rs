//! The client subcommands: deploy, invoke, ls, rm, runtimes, status, dlq, route.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{Client, Endpoint};

/// Lambda requires a role; Gust has no IAM yet, so any well-formed role ARN will do.
const DEFAULT_ROLE: &str = "arn:aws:iam::123456789012:role/gust-function";

#[derive(clap::Args)]
pub struct DeployArgs {
    /// A directory to zip, or a ready .zip file.
    path: PathBuf,
    /// Function name.
    #[arg(long)]
    name: String,
    /// Runtime id, e.g. python3.12, nodejs20.x, provided.al2023 (see `gust runtimes`).
    #[arg(long)]
    runtime: Option<String>,
    /// Handler, e.g. app.handler (Python) or index.handler (Node.js).
    #[arg(long)]
    handler: Option<String>,
    /// Memory in MB (128–10240).
    #[arg(long)]
    memory: Option<u32>,
    /// Timeout in seconds (1–900).
    #[arg(long)]
    timeout: Option<u32>,
    /// Environment variable KEY=VALUE (repeatable; replaces all variables when given).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Execution role ARN.
    #[arg(long)]
    role: Option<String>,
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print the function configuration as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct InvokeArgs {
    /// Function name or ARN.
    name: String,
    /// The event: JSON text, or @FILE to read it from a file (- for stdin).
    #[arg(long, default_value = "{}")]
    payload: String,
    /// Version or alias to invoke.
    #[arg(long)]
    qualifier: Option<String>,
    /// Print the invocation's log (the last 4 KB) to stderr.
    #[arg(long)]
    log: bool,
    #[command(flatten)]
    endpoint: Endpoint,
    /// Print status, version, error, log and payload as one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// Function name or ARN.
    name: String,
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct RuntimesArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    json: bool,
}

/// Path segment for a function name (ARNs contain `:`, which must be encoded).
fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn parse_env(pairs: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut vars = serde_json::Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--env takes KEY=VALUE, got '{pair}'");
        };
        vars.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(vars)
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let zip = crate::package::package(&args.path)?;
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);
    let fn_path = format!("/2015-03-31/functions/{}", segment(&args.name));

    let mut config = serde_json::Map::new();
    if let Some(runtime) = &args.runtime {
        config.insert("Runtime".into(), json!(runtime));
    }
    if let Some(handler) = &args.handler {
        config.insert("Handler".into(), json!(handler));
    }
    if let Some(memory) = args.memory {
        config.insert("MemorySize".into(), json!(memory));
    }
    if let Some(timeout) = args.timeout {
        config.insert("Timeout".into(), json!(timeout));
    }
    if let Some(role) = &args.role {
        config.insert("Role".into(), json!(role));
    }
    if !args.env.is_empty() {
        config.insert(
            "Environment".into(),
            json!({ "Variables": parse_env(&args.env)? }),
        );
    }

    let existing = client.send(Method::GET, &fn_path, &[], Vec::new()).await?;
    let (result, action) = if existing.status == 404 {
        if args.runtime.is_none() {
            bail!(
                "{} does not exist yet: give --runtime (and --handler) to create it",
                args.name
            );
        }
        let mut body = config.clone();
        body.insert("FunctionName".into(), json!(args.name));
        body.entry("Role").or_insert(json!(DEFAULT_ROLE));
        body.insert("Code".into(), json!({ "ZipFile": zip_b64 }));
        let created = client
            .send(
                Method::POST,
                "/2015-03-31/functions",
                &[],
                serde_json::to_vec(&body)?,
            )
            .await?
            .into_result()?;
        (created.json()?, "created")
    } else {
        existing.into_result()?;
        let updated = client
            .send(
                Method::PUT,
                &format!("{fn_path}/code"),
                &[],
                serde_json::to_vec(&json!({ "ZipFile": zip_b64 }))?,
            )
            .await?
            .into_result()?;
        let mut result = updated.json()?;
        if !config.is_empty() {
            result = client
                .send(
                    Method::PUT,
                    &format!("{fn_path}/configuration"),
                    &[],
                    serde_json::to_vec(&config)?,
                )
                .await?
                .into_result()?
                .json()?;
        }
        (result, "updated")
    };
    if args.json {
        print_json(&result);
    } else {
        println!(
            "{action} {} ({}, handler {}) — {} bytes, CodeSha256 {}",
            result["FunctionName"].as_str().unwrap_or(&args.name),
            result["Runtime"].as_str().unwrap_or("-"),
            result["Handler"].as_str().unwrap_or("-"),
            result["CodeSize"],
            result["CodeSha256"].as_str().unwrap_or("-"),
        );
        println!("invoke it with: gust invoke {}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_payload(spec: &str) -> anyhow::Result<Vec<u8>> {
    if let Some(file) = spec.strip_prefix('@') {
        if file == "-" {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)?;
            return Ok(data);
        }
        return std::fs::read(file).with_context(|| format!("cannot read the payload file {file}"));
    }
    Ok(spec.as_bytes().to_vec())
}

pub async fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let payload = read_payload(&args.payload)?;
    let mut path = format!("/2015-03-31/functions/{}/invocations", segment(&args.name));
    if let Some(q) = &args.qualifier {
        path.push_str(&format!("?Qualifier={}", segment(q)));
    }
    let wants_log = args.log || args.json;
    let headers: Vec<(&str, &str)> = if wants_log {
        vec![("x-amz-log-type", "Tail")]
    } else {
        Vec::new()
    };
    let response = client
        .send(Method::POST, &path, &headers, payload)
        .await?
        .into_result()?;
    let function_error = response.header("x-amz-function-error").map(str::to_string);
    let log = response
        .header("x-amz-log-result")
        .and_then(|l| base64::engine::general_purpose::STANDARD.decode(l).ok())
        .map(|l| String::from_utf8_lossy(&l).into_owned());
    if args.json {
        let payload = serde_json::from_slice::<Value>(&response.body).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&response.body).into_owned())
        });
        let mut doc = json!({
            "StatusCode": response.status,
            "ExecutedVersion": response.header("x-amz-executed-version"),
            "Payload": payload,
        });
        if let Some(e) = &function_error {
            doc["FunctionError"] = json!(e);
        }
        if let Some(l) = &log {
            doc["Log"] = json!(l);
        }
        print_json(&doc);
    } else {
        if let Some(l) = &log
            && args.log
        {
            eprint!("{l}");
        }
        if let Some(e) = &function_error {
            eprintln!("function error ({e}):");
        }
        let mut out = std::io::stdout();
        out.write_all(&response.body)?;
        if !response.body.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
    }
    Ok(if function_error.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let mut functions = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut path = "/2015-03-31/functions?MaxItems=50".to_string();
        if let Some(m) = &marker {
            path.push_str(&format!("&Marker={}", segment(m)));
        }
        let page = client
            .send(Method::GET, &path, &[], Vec::new())
            .await?
            .into_result()?
            .json()?;
        if let Some(items) = page["Functions"].as_array() {
            functions.extend(items.iter().cloned());
        }
        match page["NextMarker"].as_str() {
            Some(m) if !m.is_empty() => marker = Some(m.to_string()),
            _ => break,
        }
    }
    if args.json {
        print_json(&json!({ "Functions": functions }));
        return Ok(ExitCode::SUCCESS);
    }
    if functions.is_empty() {
        println!(
            "no functions yet: create one with `gust deploy DIR --name NAME --runtime RUNTIME --handler HANDLER`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<32} {:<16} {:<24} {:>7} {:>8}  LAST MODIFIED",
        "NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT"
    );
    for f in &functions {
        println!(
            "{:<32} {:<16} {:<24} {:>7} {:>8}  {}",
            f["FunctionName"].as_str().unwrap_or("-"),
            f["Runtime"].as_str().unwrap_or("-"),
            f["Handler"].as_str().unwrap_or("-"),
            format!("{} MB", f["MemorySize"]),
            format!("{} s", f["Timeout"]),
            f["LastModified"].as_str().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    client
        .send(
            Method::DELETE,
            &format!("/2015-03-31/functions/{}", segment(&args.name)),
            &[],
            Vec::new(),
        )
        .await?
        .into_result()?;
    if args.json {
        print_json(&json!({ "Deleted": args.name }));
    } else {
        println!("deleted {}", args.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn runtimes(args: RuntimesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    // The server's own table when it runs; otherwise what a server started here would choose.
    let doc = match client
        .send(Method::GET, "/gust/runtimes", &[], Vec::new())
        .await
    {
        Ok(response) => response.into_result()?.json()?,
        Err(_) => {
            let table = gust_runtimes::RuntimeTable::discover(
                &crate::default_data_dir().join("runtime"),
                &Default::default(),
            );
            let mut doc = table.describe();
            doc["Note"] = format!(
                "no server at {}: this is what `gust serve` would choose on this host",
                args.endpoint.endpoint
            )
            .into();
            doc
        }
    };
    if args.json {
        print_json(&doc);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<18} {:<10} {:<52} NOTE",
        "RUNTIME", "VERSION", "SERVED BY"
    );
    for r in doc["Runtimes"].as_array().into_iter().flatten() {
        let note = if let Some(missing) = r["Missing"].as_str() {
            missing.to_string()
        } else if r["Configured"].as_bool() == Some(true) {
            "configured with --interpreter".to_string()
        } else if r["Exact"].as_bool() == Some(false) {
            "nearest version installed".to_string()
        } else {
            String::new()
        };
        println!(
            "{:<18} {:<10} {:<52} {}",
            r["Runtime"].as_str().unwrap_or("-"),
            r["Version"].as_str().unwrap_or("-"),
            r["Interpreter"].as_str().unwrap_or("-"),
            note
        );
    }
    if let Some(isolation) = doc["Isolation"].as_str() {
        println!("isolation: {isolation}");
    }
    if let Some(note) = doc["Note"].as_str() {
        println!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long)]
    json: bool,
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let doc = client
        .send(Method::GET, "/gust/status", &[], Vec::new())
        .await?
        .into_result()?
        .json()?;
    if args.json {
        print_json(&doc);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "isolation:          {}",
        doc["Isolation"].as_str().unwrap_or("-")
    );
    if let Some(warning) = doc["IsolationWarning"].as_str() {
        println!("WARNING:            {warning}");
    }
    println!("functions:          {}", doc["FunctionCount"]);
    println!("idle environments:  {}", doc["IdleEnvironments"]);
    println!("running:            {}", doc["RunningInvocations"]);
    println!(
        "environment memory: {} of {} MB",
        doc["EnvironmentMemoryMB"], doc["MemoryBudgetMB"]
    );
    if let (Some(used), Some(budget)) = (
        doc["EnvironmentTmpMB"].as_u64(),
        doc["TmpBudgetMB"].as_u64(),
    ) {
        println!("environment /tmp:   {used} of {budget} MB (on disk)");
    }
    let ahead: Vec<String> = doc["RuntimesStartedAhead"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} {}", r["Runtime"].as_str().unwrap_or("-"), r["Ready"]))
        .collect();
    if !ahead.is_empty() {
        println!("started ahead:      {}", ahead.join(", "));
    }
    let templates: Vec<&str> = doc["RuntimeTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    if !templates.is_empty() {
        println!("runtime templates:  {}", templates.join(", "));
    }
    let snapshots: Vec<String> = doc["SnapStartSnapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}:{}",
                s["FunctionName"].as_str().unwrap_or("-"),
                s["Version"].as_str().unwrap_or("-")
            )
        })
        .collect();
    if !snapshots.is_empty() {
        println!("SnapStart snapshots: {}", snapshots.join(", "));
    }
    let queues = doc["AsyncQueues"].as_array().cloned().unwrap_or_default();
    if queues.is_empty() {
        println!("asynchronous queues: empty");
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    println!(
        "{:<32} {:>8} {:>9} {:>12} {:>13}",
        "FUNCTION", "QUEUED", "RUNNING", "OLDEST (s)", "DEAD LETTERS"
    );
    for q in queues {
        let oldest = q["OldestEventAgeSeconds"]
            .as_f64()
            .map(|s| format!("{s:.1}"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<32} {:>8} {:>9} {:>12} {:>13}",
            q["FunctionName"].as_str().unwrap_or("-"),
            q["Depth"],
            q["InFlight"],
            oldest,
            q["DeadLettered"],
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum DlqCommand {
    /// List dead letters.
    Ls {
        /// Only this function's.
        #[arg(long)]
        function: Option<String>,
    },
    /// Show one dead letter with its event and last response.
    Show { id: i64 },
    /// Queue dead letters again, with fresh retries.
    Redrive {
        /// The dead letter to redrive.
        id: Option<i64>,
        /// Redrive every dead letter of this function.
        #[arg(long, conflicts_with = "id")]
        function: Option<String>,
        /// Redrive every dead letter.
        #[arg(long, conflicts_with_all = ["id", "function"])]
        all: bool,
    },
    /// Delete a dead letter for good.
    Rm { id: i64 },
}

pub async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let doc = match &args.command {
        DlqCommand::Ls { function } => {
            let path = match function {
                Some(f) => format!("/gust/dead-letters?function={}", segment(f)),
                None => "/gust/dead-letters".to_string(),
            };
            let doc = client
                .send(Method::GET, &path, &[], Vec::new())
                .await?
                .into_result()?
                .json()?;
            if !args.json {
                let letters = doc["DeadLetters"].as_array().cloned().unwrap_or_default();
                if letters.is_empty() {
                    println!("no dead letters");
                } else {
                    println!(
                        "{:>6}  {:<24} {:<18} {:>8}  {:<24}  REQUEST ID",
                        "ID", "FUNCTION", "CONDITION", "ATTEMPTS", "FAILED AT"
                    );
                    for l in letters {
                        println!(
                            "{:>6}  {:<24} {:<18} {:>8}  {:<24}  {}",
                            l["Id"],
                            l["FunctionName"].as_str().unwrap_or("-"),
                            l["Condition"].as_str().unwrap_or("-"),
                            l["Attempts"],
                            l["FailedAt"].as_str().unwrap_or("-"),
                            l["RequestId"].as_str().unwrap_or("-"),
                        );
                    }
                }
            }
            doc
        }
        DlqCommand::Show { id } => {
            let doc = client
                .send(
                    Method::GET,
                    &format!("/gust/dead-letters/{id}"),
                    &[],
                    Vec::new(),
                )
                .await?
                .into_result()?
                .json()?;
            if !args.json {
                print_json(&doc);
            }
            doc
        }
        DlqCommand::Redrive { id, function, all } => {
            let path = match (id, function, all) {
                (Some(id), _, _) => format!("/gust/dead-letters/{id}/redrive"),
                (None, Some(f), _) => format!("/gust/dead-letters/redrive?function={}", segment(f)),
                (None, None, true) => "/gust/dead-letters/redrive".to_string(),
                (None, None, false) => {
                    bail!("name a dead letter id, or give --function F or --all")
                }
            };
            let doc = client
                .send(Method::POST, &path, &[], Vec::new())
                .await?
                .into_result()?
                .json()?;
            if !args.json {
                let n = doc["Redriven"].as_array().map_or(0, Vec::len);
                println!("redrove {n} event{}", if n == 1 { "" } else { "s" });
            }
            doc
        }
        DlqCommand::Rm { id } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/gust/dead-letters/{id}"),
                    &[],
                    Vec::new(),
                )
                .await?
                .into_result()?;
            if !args.json {
                println!("deleted dead letter {id}");
            }
            json!({ "Deleted": id })
        }
    };
    if args.json {
        print_json(&doc);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    command: RouteCommand,
    #[command(flatten)]
    endpoint: Endpoint,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum RouteCommand {
    /// List the routes and the gateway's address.
    Ls,
    /// Route requests to a function: `gust route add 'GET /items/{id}' items[:alias]`.
    Add {
        /// `METHOD /path` (METHOD may be ANY; `{name}` and a final `{name+}` capture path
        /// segments) or `$default`.
        route_key: String,
        /// Function name, `name:alias`, or ARN.
        target: String,
    },
    /// Remove a route.
    Rm { route_key: String },
}

/// Percent-encodes a query value.
fn query_value(value: &str) -> String {
    segment(value)
}

pub async fn route(args: RouteArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.endpoint)?;
    let doc = match &args.command {
        RouteCommand::Ls => {
            let doc = client
                .send(Method::GET, "/gust/routes", &[], Vec::new())
                .await?
                .into_result()?
                .json()?;
            if !args.json {
                match doc["Endpoint"].as_str() {
                    Some(endpoint) => println!("gateway: {endpoint}"),
                    None => println!("gateway: off (start gust serve with --gateway-listen)"),
                }
                let routes = doc["Routes"].as_array().cloned().unwrap_or_default();
                if routes.is_empty() {
                    println!("no routes");
                } else {
                    println!("{:<40} TARGET", "ROUTE");
                    for r in routes {
                        println!(
                            "{:<40} {}",
                            r["RouteKey"].as_str().unwrap_or("-"),
                            r["Target"].as_str().unwrap_or("-")
                        );
                    }
                }
            }
            doc
        }
        RouteCommand::Add { route_key, target } => {
            let body = serde_json::to_vec(&json!({"RouteKey": route_key, "Target": target}))?;
            let doc = client
                .send(Method::PUT, "/gust/routes", &[], body)
                .await?
                .into_result()?
                .json()?;
            if !args.json {
                println!("{route_key} -> {target}");
            }
            doc
        }
        RouteCommand::Rm { route_key } => {
            client
                .send(
                    Method::DELETE,
                    &format!("/gust/routes?RouteKey={}", query_value(route_key)),
                    &[],
                    Vec::new(),
                )
                .await?
                .into_result()?;
            if !args.json {
                println!("removed {route_key}");
            }
            json!({ "Removed": route_key })
        }
    };
    if args.json {
        print_json(&doc);
    }
    Ok(ExitCode::SUCCESS)
}
