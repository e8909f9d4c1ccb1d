//! The measurements: floors first, then Gust's figures beside them.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use hyper::Method;

use crate::http::{Connection, bare_server};
use crate::report::{Report, Stats};

const ECHO: &str = "bench-echo";
const PYTHON: &str = "bench-py";
const NODE: &str = "bench-node";
const INVOKE: &str = "/2015-03-31/functions/{}/invocations";

pub(crate) fn invoke_path(function: &str) -> String {
    INVOKE.replace("{}", function)
}

pub(crate) fn time_command(program: &Path, args: &[&str], runs: usize) -> anyhow::Result<Stats> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running {}", program.display()))?;
        samples.push(started.elapsed());
        anyhow::ensure!(status.success(), "{} failed", program.display());
    }
    Ok(Stats::new(samples))
}

/// The interpreter `gust serve` uses for a runtime id (from `/gust/runtimes`).
pub(crate) async fn interpreter(address: &str, runtime: &str) -> anyhow::Result<Option<PathBuf>> {
    let mut conn = Connection::open(address).await?;
    let answer = conn
        .send(Method::GET, "/gust/runtimes", &[], Bytes::new())
        .await?;
    let doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
    Ok(doc["Runtimes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["Runtime"] == runtime))
        .and_then(|r| r["Interpreter"].as_str())
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from))
}

async fn latencies(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static [u8],
    samples: usize,
) -> anyhow::Result<Stats> {
    let mut conn = Connection::open(address).await?;
    for _ in 0..samples.min(200) {
        conn.send(Method::POST, path, headers, Bytes::from_static(body))
            .await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let answer = conn
            .send(Method::POST, path, headers, Bytes::from_static(body))
            .await?;
        times.push(started.elapsed());
        anyhow::ensure!(answer.status < 300, "request failed with {}", answer.status);
    }
    Ok(Stats::new(times))
}

/// Completed requests per second with `concurrency` keep-alive connections.
async fn throughput(
    address: &str,
    path: &str,
    headers: &'static [(&'static str, &'static str)],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let mut conn = Connection::open(address).await?;
        let (done, failed, stop, path) =
            (done.clone(), failed.clone(), stop.clone(), path.to_string());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match conn
                    .send(Method::POST, &path, headers, Bytes::from_static(b"{}"))
                    .await
                {
                    Ok(a) if a.status < 300 => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Let every connection get going before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        eprintln!("  ({failures} requests failed at concurrency {concurrency})");
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// The floors: process start, the interpreters Gust uses, and a bare HTTP round trip.
pub async fn floors(report: &mut Report, address: &str, samples: usize) -> anyhow::Result<()> {
    let fork = time_command(Path::new("/bin/true"), &[], 300)?;
    report.floor("fork+exec /bin/true", fork);
    if let Some(python) = interpreter(address, "python3.12").await? {
        let stats = time_command(&python, &["-c", "pass"], 30)?;
        report.floor("python3 -c pass", stats);
        report.note("python3.12 served by", python.display().to_string());
    }
    if let Some(node) = interpreter(address, "nodejs20.x").await? {
        let stats = time_command(&node, &["-e", "0"], 20)?;
        report.floor("node -e 0", stats);
        report.note("nodejs20.x served by", node.display().to_string());
    }
    let bare = bare_server().await?.to_string();
    let rtt = latencies(&bare, "/", &[], b"{}", samples).await?;
    report.floor("bare HTTP round trip", rtt);
    for c in [1, 8, 64] {
        let rate = throughput(&bare, "/", &[], c, Duration::from_secs(2)).await?;
        report.floor_rate(&format!("bare HTTP requests/s at concurrency {c}"), rate);
    }
    Ok(())
}

pub(crate) fn zip_of(entries: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default().unix_permissions(*mode),
        )?;
        w.write_all(data)?;
    }
    Ok(w.finish()?.into_inner())
}

async fn create(
    address: &str,
    name: &str,
    runtime: &str,
    handler: &str,
    zip: Vec<u8>,
) -> anyhow::Result<()> {
    create_with(address, name, runtime, handler, zip, serde_json::json!({})).await
}

/// [`create`] with more members for the request (such as `SnapStart`).
pub(crate) async fn create_with(
    address: &str,
    name: &str,
    runtime: &str,
    handler: &str,
    zip: Vec<u8>,
    more: serde_json::Value,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({
        "FunctionName": name, "Runtime": runtime, "Handler": handler,
        "Role": "arn:aws:iam::123456789012:role/bench", "MemorySize": 128, "Timeout": 30,
        "Code": {"ZipFile": base64::engine::general_purpose::STANDARD.encode(zip)},
    });
    if let (Some(body), Some(more)) = (body.as_object_mut(), more.as_object()) {
        body.extend(more.clone());
    }
    let mut conn = Connection::open(address).await?;
    let answer = conn
        .send(
            Method::POST,
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        )
        .await?;
    if answer.status != 201 {
        bail!(
            "creating {name}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

pub async fn deploy(address: &str, echo: &Path) -> anyhow::Result<()> {
    let binary = std::fs::read(echo)?;
    create(
        address,
        ECHO,
        "provided.al2023",
        "bootstrap",
        zip_of(&[("bootstrap", &binary, 0o755)])?,
    )
    .await?;
    create(
        address,
        PYTHON,
        "python3.12",
        "app.handler",
        zip_of(&[(
            "app.py",
            b"def handler(event, context):\n    return {'hello': 'world'}\n",
            0o644,
        )])?,
    )
    .await?;
    create(
        address,
        NODE,
        "nodejs20.x",
        "index.handler",
        zip_of(&[(
            "index.js",
            b"exports.handler = async () => ({ hello: 'world' });\n",
            0o644,
        )])?,
    )
    .await?;
    Ok(())
}

pub async fn warm(
    report: &mut Report,
    address: &str,
    samples: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    for (function, label) in [
        (ECHO, "custom runtime"),
        (PYTHON, "Python"),
        (NODE, "Node.js"),
    ] {
        let stats = latencies(address, &invoke_path(function), &[], b"{}", samples).await?;
        report.measure(
            &format!("warm invoke, {label}"),
            stats,
            "bare HTTP round trip",
        );
    }
    for c in [1, 8, 64] {
        let rate = throughput(address, &invoke_path(ECHO), &[], c, duration).await?;
        report.rate(
            &format!("warm invocations/s, custom runtime, concurrency {c}"),
            rate,
            &format!("bare HTTP requests/s at concurrency {c}"),
        );
    }
    Ok(())
}

/// A function URL in front of the custom-runtime echo, beside direct Invoke of the same
/// function measured in the same breath.
pub async fn function_url(
    report: &mut Report,
    address: &str,
    samples: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let mut conn = Connection::open(address).await?;
    let answer = conn
        .send(
            Method::POST,
            &format!("/2021-10-31/functions/{ECHO}/url"),
            &[],
            Bytes::from_static(br#"{"AuthType":"NONE"}"#),
        )
        .await?;
    anyhow::ensure!(answer.status == 201, "creating the function URL failed");
    let doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
    let url = doc["FunctionUrl"].as_str().unwrap_or_default();
    let path = url
        .find("/lambda-url/")
        .map(|i| url[i..].to_string())
        .context("the function URL has no /lambda-url/ path")?;
    let direct = latencies(address, &invoke_path(ECHO), &[], b"{}", samples).await?;
    let through_url = latencies(address, &path, &[], b"{}", samples).await?;
    report.floor("direct Invoke, custom runtime", direct);
    report.measure(
        "function URL request, custom runtime",
        through_url,
        "direct Invoke, custom runtime",
    );
    for c in [1, 64] {
        let direct = throughput(address, &invoke_path(ECHO), &[], c, duration).await?;
        let through_url = throughput(address, &path, &[], c, duration).await?;
        let floor = format!("direct Invokes/s, custom runtime, concurrency {c}");
        report.floor_rate(&floor, direct);
        report.rate(
            &format!("function URL requests/s, custom runtime, concurrency {c}"),
            through_url,
            &floor,
        );
    }
    Ok(())
}

/// The servers cold starts are measured on, by how they start environments.
pub struct ColdServers<'a> {
    /// Default settings: runtimes started ahead (and Python's templates when none is left).
    pub ahead: &'a str,
    /// `--standby-runtimes 0 --runtime-templates false`: every start is fresh.
    pub fresh: &'a str,
    /// `--standby-runtimes 0`: Python environments fork from their runtime's template.
    pub forking: &'a str,
}

/// Cold starts one at a time, 200 ms apart: sandboxes started ahead refill in between, as
/// they do between a function's cold starts in use. Each kind is measured from a sandbox
/// started ahead, fresh, and (Python) forked from its runtime's template; Python and Node.js
/// also with a variable their interpreter reads as it starts, which a sandbox started ahead
/// serves by starting the interpreter then.
pub async fn cold(
    report: &mut Report,
    servers: &ColdServers<'_>,
    runs: usize,
) -> anyhow::Result<()> {
    let ColdServers {
        ahead,
        fresh,
        forking,
    } = *servers;
    let pause = Duration::from_millis(200);
    let default = serde_json::json!({});
    let python_variable =
        serde_json::json!({ "Environment": { "Variables": { "PYTHONDONTWRITEBYTECODE": "1" } } });
    let node_variable =
        serde_json::json!({ "Environment": { "Variables": { "NODE_NO_WARNINGS": "1" } } });
    for (address, function, label, floor, config) in [
        (
            ahead,
            ECHO,
            "custom runtime, sandbox started ahead",
            "fork+exec /bin/true",
            &default,
        ),
        (
            fresh,
            ECHO,
            "custom runtime, fresh sandbox",
            "fork+exec /bin/true",
            &default,
        ),
        (
            ahead,
            PYTHON,
            "Python, runtime started ahead",
            "python3 -c pass",
            &default,
        ),
        (
            ahead,
            PYTHON,
            "Python with PYTHONDONTWRITEBYTECODE, sandbox started ahead",
            "python3 -c pass",
            &python_variable,
        ),
        (
            fresh,
            PYTHON,
            "Python, fresh start",
            "python3 -c pass",
            &default,
        ),
        (
            forking,
            PYTHON,
            "Python, forked from its runtime's template",
            "python3 -c pass",
            &default,
        ),
        (
            ahead,
            NODE,
            "Node.js, runtime started ahead",
            "node -e 0",
            &default,
        ),
        (
            ahead,
            NODE,
            "Node.js with NODE_NO_WARNINGS, sandbox started ahead",
            "node -e 0",
            &node_variable,
        ),
        (fresh, NODE, "Node.js, fresh start", "node -e 0", &default),
    ] {
        let mut conn = Connection::open(address).await?;
        let mut times = Vec::with_capacity(runs);
        let mut inits = Vec::with_capacity(runs);
        for i in 0..runs {
            // A configuration change retires the warm environments: the next call is cold.
            let mut body = config.clone();
            body["Description"] = format!("cold start {i}").into();
            let body = body.to_string();
            let update = conn
                .send(
                    Method::PUT,
                    &format!("/2015-03-31/functions/{function}/configuration"),
                    &[("content-type", "application/json")],
                    Bytes::from(body),
                )
                .await?;
            anyhow::ensure!(
                update.status == 200,
                "updating {function}: {}",
                update.status
            );
            tokio::time::sleep(pause).await;
            let started = Instant::now();
            let answer = conn
                .send(
                    Method::POST,
                    &invoke_path(function),
                    &[("x-amz-log-type", "Tail")],
                    Bytes::from_static(b"{}"),
                )
                .await?;
            times.push(started.elapsed());
            anyhow::ensure!(
                answer.status == 200 && !answer.headers.contains_key("x-amz-function-error"),
                "cold invoke of {function} failed"
            );
            if let Some(init) =
                report_duration(answer.headers.get("x-amz-log-result"), "Init Duration")
            {
                inits.push(init);
            }
        }
        report.measure(
            &format!("cold start, {label} (client round trip)"),
            Stats::new(times),
            floor,
        );
        if !inits.is_empty() {
            report.measure(
                &format!("cold start, {label} (REPORT Init Duration)"),
                Stats::new(inits),
                floor,
            );
        }
    }
    Ok(())
}

const SNAPSTART: &str = "bench-snap";

/// A duration from REPORT's `field` (`Init Duration`, `Restore Duration`), in a base64 log tail.
pub(crate) fn report_duration(
    log_result: Option<&hyper::header::HeaderValue>,
    field: &str,
) -> Option<Duration> {
    let log = base64::engine::general_purpose::STANDARD
        .decode(log_result?.as_bytes())
        .ok()?;
    let log = String::from_utf8_lossy(&log).into_owned();
    let at = log.find(field)? + field.len();
    let ms = log[at..]
        .trim_start_matches(": ")
        .split(' ')
        .next()?
        .parse::<f64>()
        .ok()?;
    Some(Duration::from_secs_f64(ms / 1000.0))
}

/// SnapStart: environments of a published Python version restored from its snapshot, one at
/// a time. Each round sends one more concurrent (sleeping) invocation than there are warm
/// environments, so exactly one is restored; its round trip and Restore Duration are kept.
pub async fn snapstart(report: &mut Report, address: &str, runs: usize) -> anyhow::Result<()> {
    create_with(
        address,
        SNAPSTART,
        "python3.12",
        "app.handler",
        zip_of(&[(
            "app.py",
            b"import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return {'hello': 'world'}\n",
            0o644,
        )])?,
        serde_json::json!({ "SnapStart": { "ApplyOn": "PublishedVersions" } }),
    )
    .await?;
    let mut conn = Connection::open(address).await?;
    let published = conn
        .send(
            Method::POST,
            &format!("/2015-03-31/functions/{SNAPSTART}/versions"),
            &[("content-type", "application/json")],
            Bytes::from_static(b"{}"),
        )
        .await?;
    anyhow::ensure!(
        published.status == 201,
        "publishing {SNAPSTART}: {}",
        published.status
    );
    let path = invoke_path(&format!("{SNAPSTART}:1"));
    // The snapshot's init (and the first environment) happen here.
    let first = conn
        .send(Method::POST, &path, &[], Bytes::from_static(b"{}"))
        .await?;
    anyhow::ensure!(first.status == 200, "the first SnapStart invoke failed");
    let mut times = Vec::with_capacity(runs);
    let mut restores = Vec::with_capacity(runs);
    for round in 0..runs {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let calls: Vec<_> = (0..round + 2)
            .map(|_| {
                let (address, path) = (address.to_string(), path.clone());
                tokio::spawn(async move {
                    let mut conn = Connection::open(&address).await?;
                    let started = Instant::now();
                    let answer = conn
                        .send(
                            Method::POST,
                            &path,
                            &[("x-amz-log-type", "Tail")],
                            Bytes::from_static(b"{\"sleep\": 0.3}"),
                        )
                        .await?;
                    anyhow::Ok((started.elapsed(), answer))
                })
            })
            .collect();
        for call in calls {
            let (elapsed, answer) = call.await??;
            anyhow::ensure!(answer.status == 200, "a SnapStart invoke failed");
            if let Some(restore) =
                report_duration(answer.headers.get("x-amz-log-result"), "Restore Duration")
            {
                // The invocation itself slept 300 ms.
                times.push(elapsed.saturating_sub(Duration::from_millis(300)));
                restores.push(restore);
            }
        }
    }
    report.measure(
        "cold start, Python SnapStart, restored from the snapshot (client round trip less the handler's 300 ms)",
        Stats::new(times),
        "python3 -c pass",
    );
    report.measure(
        "cold start, Python SnapStart, restored from the snapshot (REPORT Restore Duration)",
        Stats::new(restores),
        "python3 -c pass",
    );
    Ok(())
}

/// Each function's asynchronous queue, from `/gust/status`.
async fn queues(conn: &mut Connection) -> anyhow::Result<Vec<serde_json::Value>> {
    let answer = conn
        .send(Method::GET, "/gust/status", &[], Bytes::new())
        .await?;
    let mut doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
    Ok(match doc["AsyncQueues"].take() {
        serde_json::Value::Array(queues) => queues,
        _ => Vec::new(),
    })
}

async fn succeeded(conn: &mut Connection, function: &str) -> anyhow::Result<u64> {
    Ok(queues(conn)
        .await?
        .iter()
        .find(|q| q["FunctionName"] == function)
        .and_then(|q| q["Succeeded"].as_u64())
        .unwrap_or(0))
}

async fn queue_depth(conn: &mut Connection) -> anyhow::Result<u64> {
    Ok(queues(conn)
        .await?
        .iter()
        .filter_map(|q| q["Depth"].as_u64())
        .sum())
}

pub async fn asynchronous(
    report: &mut Report,
    address: &str,
    duration: Duration,
) -> anyhow::Result<()> {
    const EVENT: &[(&str, &str)] = &[("x-amz-invocation-type", "Event")];
    let rate = throughput(address, &invoke_path(ECHO), EVENT, 64, duration).await?;
    report.rate(
        "async events durably accepted/s, concurrency 64",
        rate,
        "bare HTTP requests/s at concurrency 64",
    );

    // Let the backlog drain, then time single events from request to completion.
    let mut status = Connection::open(address).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while queue_depth(&mut status).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the asynchronous backlog did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sender = Connection::open(address).await?;
    let mut times = Vec::new();
    for _ in 0..200 {
        let before = succeeded(&mut status, ECHO).await?;
        let started = Instant::now();
        let answer = sender
            .send(
                Method::POST,
                &invoke_path(ECHO),
                EVENT,
                Bytes::from_static(b"{}"),
            )
            .await?;
        anyhow::ensure!(
            answer.status == 202,
            "event not accepted: {}",
            answer.status
        );
        while succeeded(&mut status, ECHO).await? == before {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "an event did not complete"
            );
        }
        times.push(started.elapsed());
    }
    report.measure(
        "async end-to-end latency (202 to completion)",
        Stats::new(times),
        "bare HTTP round trip",
    );
    Ok(())
}

pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn memory(report: &mut Report, server: &crate::server::Server) -> anyhow::Result<()> {
    let mut conn = Connection::open(&server.address).await?;
    let answer = conn
        .send(Method::GET, "/gust/status", &[], Bytes::new())
        .await?;
    let doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
    let idle = doc["IdleEnvironments"].as_u64().unwrap_or(0);
    if let Some(rss) = rss_kib(server.pid())
        && idle > 0
    {
        report.note(
            "gust serve RSS",
            format!(
                "{:.1} MiB with {idle} idle environments",
                rss as f64 / 1024.0
            ),
        );
        report.value(
            "Gust RSS per idle environment (upper bound: whole server / environments)",
            rss as f64 / 1024.0 / idle as f64,
            "MiB",
        );
    }
    Ok(())
}
