//! Cold starts at scale (issue 20): many distinct functions, each invoked once, on a server of
//! its own with default settings (as `gust serve` starts, plus the harness's usual flags).
//!
//! 1. N Python functions invoked once each, one after another: every call is a cold start.
//! 2. The same N again, in the same order: how many found their environment still warm.
//! 3. N other Python functions, then N Node.js functions, 32 calls at once: cold starts/s.
//! 4. The idle environments the server then holds, its committed memory against its budget,
//!    and what the environments' processes really take (PSS).
//!
//! Then (`--scale-idle M`, 0 to skip) a fresh server gets M functions invoked once each, and
//! the idle environments it keeps are counted.
//!
//! Cold or warm is read from each invocation's REPORT line (`LogType: Tail`): Lambda, and
//! Gust, write `Init Duration` there only when the invocation started its environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use hyper::Method;

use crate::http::{Answer, Connection};
use crate::measure::{create_with, interpreter, invoke_path, report_duration, zip_of};
use crate::report::{Figure, Report, Stats, Target};
use crate::server::Server;

/// Calls at once in the concurrent scenarios (the figure).
const CONCURRENCY: usize = 32;
/// `CreateFunction` calls at once while deploying (the control plane serialises its writes:
/// a few at once only overlap the requests' transfer and decoding).
const CREATE_CONCURRENCY: usize = 4;
/// The Python handler: one line that returns.
const PYTHON_CODE: &[u8] = b"def handler(event, context):\n    return {'hello': 'world'}\n";
const NODE_CODE: &[u8] = b"exports.handler = async () => ({ hello: 'world' });\n";

const PYTHON_FLOOR: &str = "python3 -c pass";
const NODE_FLOOR: &str = "node -e 0";

/// What these scenarios measure and the targets, for the report.
const PARAGRAPH: &str = "Issue 20's scenarios, on a `gust serve` of their own with default settings (memory budget, keep-alive, runtimes started ahead; the harness's `--concurrency-limit 10000` as everywhere here). \
Every function is distinct (128 MB, a one-line handler, all deployed from one zip package) and each is invoked once per scenario; latencies are the client's whole Invoke round trip. \
Cold or warm is read from each invocation's REPORT line (`LogType: Tail`), which has `Init Duration` only on a cold start. \
(1) N Python functions invoked once each, one after another: p50/p99 per cold start (target: p50 ≤ 10 ms). \
(2) The same N again, in the same order: how many were warm, and p50/p99 (target: all warm). \
(3) N other Python functions, 32 calls at once: cold starts per second over the whole burst, p50/p99 (targets: ≥ 200/s, p99 ≤ 250 ms); the same for N Node.js functions (target: ≥ 100/s). Their floors are the interpreter started and reaped N times, 32 at once, with nothing else. \
(4) The idle environments the server then holds, the memory they count for against its budget (under the default policy an idle environment counts what it really uses), its /tmp storage against the /tmp budget, and what those environments' processes really take (PSS) (target: ≥ 1,000 idle Python environments on a 24 GiB host with default settings). \
(5) With `--scale-idle M` (default 1,000): M more Python functions on a fresh server, each invoked once, 32 at once, and how many idle environments it then keeps (same target).";

/// Options of these scenarios.
pub struct Options {
    /// N: functions per scenario.
    pub functions: usize,
    /// M: functions for the separate idle-environment count (0: skip it).
    pub idle: usize,
}

/// One invocation as the client saw it.
struct Outcome {
    elapsed: Duration,
    /// What went wrong (status and error type, or the connection's error), if anything did.
    failure: Option<String>,
    /// Whether REPORT had `Init Duration` (`None`: no REPORT line found).
    cold: Option<bool>,
    init: Option<Duration>,
}

impl Outcome {
    fn of(elapsed: Duration, answer: &Answer) -> Self {
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let failure = if answer.status != 200 {
            Some(format!("{} {}", answer.status, header("x-amzn-errortype")))
        } else if answer.headers.contains_key("x-amz-function-error") {
            Some(format!(
                "function error {}",
                String::from_utf8_lossy(&answer.body)
            ))
        } else {
            None
        };
        let log = answer.headers.get("x-amz-log-result");
        let cold = log
            .and_then(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .ok()
            })
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .filter(|l| l.contains("REPORT RequestId"))
            .map(|l| l.contains("Init Duration"));
        Self {
            elapsed,
            failure,
            cold,
            init: report_duration(log, "Init Duration"),
        }
    }
}

/// The outcomes of one scenario.
struct Run {
    outcomes: Vec<Outcome>,
    wall: Duration,
}

impl Run {
    fn succeeded(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| o.failure.is_none())
    }

    fn latencies(&self) -> Stats {
        Stats::new(self.succeeded().map(|o| o.elapsed).collect())
    }

    fn inits(&self) -> Stats {
        Stats::new(self.succeeded().filter_map(|o| o.init).collect())
    }

    fn count(&self, cold: bool) -> u64 {
        self.succeeded().filter(|o| o.cold == Some(cold)).count() as u64
    }

    /// Successful cold starts per second over the whole run.
    fn cold_rate(&self) -> f64 {
        self.count(true) as f64 / self.wall.as_secs_f64()
    }

    /// Failures by kind.
    fn failures(&self) -> BTreeMap<String, usize> {
        let mut kinds = BTreeMap::new();
        for failure in self.outcomes.iter().filter_map(|o| o.failure.as_ref()) {
            *kinds.entry(failure.clone()).or_insert(0) += 1;
        }
        kinds
    }

    /// Says on stderr (and as a row) what failed, and how the run went.
    fn tell(&self, report: &mut Report, label: &str) {
        let failures = self.failures();
        eprintln!(
            "  {label}: {} calls in {:.2} s, {} cold, {} warm, {} without REPORT, {} failed",
            self.outcomes.len(),
            self.wall.as_secs_f64(),
            self.count(true),
            self.count(false),
            self.succeeded().filter(|o| o.cold.is_none()).count(),
            failures.values().sum::<usize>(),
        );
        if !failures.is_empty() {
            let kinds = failures
                .iter()
                .map(|(kind, n)| format!("{n} × {kind}"))
                .collect::<Vec<_>>()
                .join("; ");
            eprintln!("    failures: {kinds}");
            report.row(
                &format!("{label}: failed invocations"),
                Figure::Count(
                    failures.values().sum::<usize>() as u64,
                    Some(self.outcomes.len() as u64),
                    format!("({kinds})"),
                ),
                None,
                None,
            );
        }
    }
}

/// Invokes each of `names` once, `concurrency` at a time (each caller on its own keep-alive
/// connection, opened before the clock starts), asking for the log tail.
async fn invoke_each(address: &str, names: &[String], concurrency: usize) -> anyhow::Result<Run> {
    let next = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(names.to_vec());
    let mut connections = Vec::new();
    for _ in 0..concurrency.min(names.len()) {
        connections.push(Connection::open(address).await?);
    }
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .map(|conn| {
            let (next, names, address) = (next.clone(), names.clone(), address.to_string());
            tokio::spawn(async move {
                let mut conn = Some(conn);
                let mut outcomes = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    if conn.is_none() {
                        conn = Some(Connection::open(&address).await?);
                    }
                    let Some(c) = conn.as_mut() else { break };
                    let started = Instant::now();
                    let answer = c
                        .send(
                            Method::POST,
                            &invoke_path(name),
                            &[("x-amz-log-type", "Tail")],
                            Bytes::from_static(b"{}"),
                        )
                        .await;
                    let elapsed = started.elapsed();
                    match answer {
                        Ok(answer) => outcomes.push(Outcome::of(elapsed, &answer)),
                        Err(e) => {
                            outcomes.push(Outcome {
                                elapsed,
                                failure: Some(format!("connection: {e}")),
                                cold: None,
                                init: None,
                            });
                            conn = None;
                        }
                    }
                }
                anyhow::Ok(outcomes)
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(names.len());
    for worker in workers {
        outcomes.extend(worker.await??);
    }
    Ok(Run {
        outcomes,
        wall: started.elapsed(),
    })
}

/// Deploys `names` from one package, a few at a time; returns how long it took.
async fn create_all(
    address: &str,
    names: &[String],
    runtime: &'static str,
    handler: &'static str,
    zip: &[u8],
) -> anyhow::Result<Duration> {
    let next = Arc::new(AtomicUsize::new(0));
    let names = Arc::new(names.to_vec());
    let zip = Arc::new(zip.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = (0..CREATE_CONCURRENCY)
        .map(|_| {
            let (next, names, zip, address) = (
                next.clone(),
                names.clone(),
                zip.clone(),
                address.to_string(),
            );
            tokio::spawn(async move {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    create_with(
                        &address,
                        name,
                        runtime,
                        handler,
                        zip.to_vec(),
                        serde_json::json!({}),
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

/// `program args` run `runs` times, `concurrency` at once: processes started and reaped/s.
fn process_rate(program: &Path, args: &[&str], runs: usize, concurrency: usize) -> f64 {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..concurrency.min(runs) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < runs {
                    let _ = std::process::Command::new(program)
                        .args(args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            });
        }
    });
    runs as f64 / started.elapsed().as_secs_f64()
}

/// What `/gust/status` says about environments and memory.
struct Status {
    idle: u64,
    committed_mb: u64,
    budget_mb: u64,
    tmp_mb: u64,
    tmp_budget_mb: u64,
    started_ahead: u64,
}

async fn status(address: &str) -> anyhow::Result<Status> {
    let mut conn = Connection::open(address).await?;
    let answer = conn
        .send(Method::GET, "/gust/status", &[], Bytes::new())
        .await?;
    let doc: serde_json::Value = serde_json::from_slice(&answer.body)?;
    Ok(Status {
        idle: doc["IdleEnvironments"].as_u64().unwrap_or(0),
        committed_mb: doc["EnvironmentMemoryMB"].as_u64().unwrap_or(0),
        budget_mb: doc["MemoryBudgetMB"].as_u64().unwrap_or(0),
        tmp_mb: doc["EnvironmentTmpMB"].as_u64().unwrap_or(0),
        tmp_budget_mb: doc["TmpBudgetMB"].as_u64().unwrap_or(0),
        started_ahead: doc["RuntimesStartedAhead"]
            .as_array()
            .map(|rs| rs.iter().filter_map(|r| r["Ready"].as_u64()).sum())
            .unwrap_or(0),
    })
}

/// The processes descended from `root` (its environments and their runtimes).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command may hold spaces and parentheses: the fields start after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            todo.push(child);
        }
    }
    found
}

/// Proportional set size (KiB): each process's share of the pages it maps.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The PSS of everything `server` started (MiB), and how many processes that is.
fn environments_pss_mib(server: &Server) -> (f64, usize) {
    let pids = descendants(server.pid());
    let kib: u64 = pids.iter().filter_map(|&p| pss_kib(p)).sum();
    (kib as f64 / 1024.0, pids.len())
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Scenarios 1–4 (and the optional idle count) into their section of `report`. The floors
/// they stand beside (`python3 -c pass`, `node -e 0`, the bare HTTP round trip) are measured
/// by [`crate::measure::floors`] beforehand; the concurrent floors are measured here.
pub async fn run(
    report: &mut Report,
    gust: &Path,
    serve_args: &[String],
    options: &Options,
) -> anyhow::Result<()> {
    let n = options.functions;
    if n == 0 {
        return Ok(());
    }
    let began = Instant::now();
    report.section(&format!("Cold starts at scale (N = {n})"), PARAGRAPH);
    let server =
        Server::start(gust, serve_args).context("starting gust serve for the scale scenarios")?;
    let address = server.address.clone();
    let python = interpreter(&address, "python3.12").await?;
    let node = interpreter(&address, "nodejs20.x").await?;

    eprintln!("  deploying {n} × 3 functions…");
    let python_zip = zip_of(&[("app.py", PYTHON_CODE, 0o644)])?;
    let node_zip = zip_of(&[("index.js", NODE_CODE, 0o644)])?;
    let sequential = names("scale-py", n);
    let burst = names("scale-burst-py", n);
    let node_burst = names("scale-burst-node", n);
    let mut creating = Duration::ZERO;
    creating += create_all(
        &address,
        &sequential,
        "python3.12",
        "app.handler",
        &python_zip,
    )
    .await?;
    creating += create_all(&address, &burst, "python3.12", "app.handler", &python_zip).await?;
    creating += create_all(
        &address,
        &node_burst,
        "nodejs20.x",
        "index.handler",
        &node_zip,
    )
    .await?;
    report.row(
        &format!(
            "functions deployed/s (CreateFunction, {CREATE_CONCURRENCY} at once, one package)"
        ),
        Figure::Rate((3 * n) as f64 / creating.as_secs_f64()),
        None,
        None,
    );
    // Let the runtimes started ahead settle after the deployments.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Every function once, one after another: all cold.
    eprintln!("  {n} Python functions, one after another…");
    let first = invoke_each(&address, &sequential, 1).await?;
    first.tell(report, "first pass");
    let stats = first.latencies();
    let met = stats.p50() <= 10.0;
    report.row(
        &format!("{n} Python functions invoked once each, one after another (client round trip)"),
        Figure::Latency(stats),
        Some(PYTHON_FLOOR),
        Some(Target::new("p50 ≤ 10 ms", met)),
    );
    report.row(
        "… REPORT Init Duration of those cold starts",
        Figure::Latency(first.inits()),
        Some(PYTHON_FLOOR),
        None,
    );
    report.row(
        "… first-pass calls that were cold (REPORT has Init Duration)",
        Figure::Count(first.count(true), Some(n as u64), "cold".into()),
        None,
        None,
    );
    let after_first = status(&address).await?;
    let (pss_mib, processes) = environments_pss_mib(&server);
    let kept = after_first.idle;
    if kept > 0 {
        report.row(
            "memory (PSS) of the server's child processes per idle Python environment (upper bound: all its children ÷ idle environments)",
            Figure::Value(pss_mib / kept as f64, "MiB"),
            None,
            None,
        );
    }
    report.note(
        "scale: after the first pass",
        format!(
            "{kept} idle environments, {} runtimes started ahead, {processes} child processes of gust serve with {pss_mib:.0} MiB PSS, {} of {} MB committed",
            after_first.started_ahead, after_first.committed_mb, after_first.budget_mb
        ),
    );

    // 2. The same functions again, in the same order: warm if their environment was kept.
    eprintln!("  the same {n} again…");
    let second = invoke_each(&address, &sequential, 1).await?;
    second.tell(report, "second pass");
    let warm = second.count(false);
    report.row(
        &format!("the same {n} again, one after another (client round trip)"),
        Figure::Latency(second.latencies()),
        Some("bare HTTP round trip"),
        None,
    );
    report.row(
        "… second-pass calls that were warm (REPORT without Init Duration)",
        Figure::Count(warm, Some(n as u64), "warm".into()),
        None,
        Some(Target::new("all warm", warm == n as u64)),
    );
    let after_second = status(&address).await?;
    report.note(
        "scale: idle environments around the second pass",
        format!("{} before, {} after", after_first.idle, after_second.idle),
    );

    // 3. N fresh functions, 32 at once, Python then Node.js, each beside its interpreter
    //    started N times 32 at once.
    for (label, functions, program, args, floor, target) in [
        (
            "Python",
            &burst,
            python.as_ref(),
            &["-c", "pass"][..],
            PYTHON_FLOOR,
            200.0,
        ),
        (
            "Node.js",
            &node_burst,
            node.as_ref(),
            &["-e", "0"][..],
            NODE_FLOOR,
            100.0,
        ),
    ] {
        let rate_floor = format!("{floor}, {n} started and reaped, {CONCURRENCY} at once");
        if let Some(program) = program {
            let program: PathBuf = program.clone();
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let rate = tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                process_rate(&program, &args, n, CONCURRENCY)
            })
            .await?;
            report.floor_rate(&rate_floor, rate);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        eprintln!("  {n} {label} functions, {CONCURRENCY} at once…");
        let run = invoke_each(&address, functions, CONCURRENCY).await?;
        run.tell(report, &format!("{label} burst"));
        let rate = run.cold_rate();
        report.row(
            &format!("{n} {label} functions cold at once ({CONCURRENCY} at a time): cold starts/s"),
            Figure::Rate(rate),
            Some(&rate_floor),
            Some(Target::new(format!("≥ {target:.0}/s"), rate >= target)),
        );
        let stats = run.latencies();
        let p99 = stats.p99();
        report.row(
            &format!("… client round trip of those {label} cold starts"),
            Figure::Latency(stats),
            Some(floor),
            (label == "Python").then(|| Target::new("p99 ≤ 250 ms", p99 <= 250.0)),
        );
        report.row(
            &format!("… REPORT Init Duration of those {label} cold starts"),
            Figure::Latency(run.inits()),
            Some(floor),
            None,
        );
        report.row(
            &format!("… {label} calls that were cold (REPORT has Init Duration)"),
            Figure::Count(run.count(true), Some(n as u64), "cold".into()),
            None,
            None,
        );
    }

    // 4. What the server keeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = status(&address).await?;
    report_kept(
        report,
        &end,
        &format!("after scenarios 1–3 ({} functions invoked)", 3 * n),
        None,
    );
    drop(server);

    if options.idle > 0 {
        idle_count(report, gust, serve_args, options.idle).await?;
    }
    report.end_section();
    report.note(
        "scale scenarios took",
        format!(
            "{:.0} s (N = {n}, --scale-idle {})",
            began.elapsed().as_secs_f64(),
            options.idle
        ),
    );
    Ok(())
}

/// The rows about idle environments and memory from a `/gust/status`.
fn report_kept(report: &mut Report, status: &Status, when: &str, of: Option<u64>) {
    report.row(
        &format!("idle environments kept {when}"),
        Figure::Count(status.idle, of, "idle".into()),
        None,
        Some(Target::new(
            "≥ 1,000 idle Python environments (24 GiB host, default settings)",
            status.idle >= 1000,
        )),
    );
    report.row(
        "… environment memory counted against the memory budget (default policy: what idle environments really use, MemorySize while running)",
        Figure::Count(status.committed_mb, Some(status.budget_mb), "MB".into()),
        None,
        None,
    );
    report.row(
        "… /tmp counted against the /tmp budget (default policy: what idle environments hold on the disk, EphemeralStorage while running)",
        Figure::Count(status.tmp_mb, Some(status.tmp_budget_mb), "MB".into()),
        None,
        None,
    );
}

/// M Python functions on a fresh server, each invoked once (32 at once): how many stay warm.
async fn idle_count(
    report: &mut Report,
    gust: &Path,
    serve_args: &[String],
    m: usize,
) -> anyhow::Result<()> {
    let server =
        Server::start(gust, serve_args).context("starting gust serve for the idle count")?;
    let address = server.address.clone();
    eprintln!("  idle count: deploying {m} Python functions…");
    let functions = names("scale-idle-py", m);
    let zip = zip_of(&[("app.py", PYTHON_CODE, 0o644)])?;
    create_all(&address, &functions, "python3.12", "app.handler", &zip).await?;
    eprintln!("  idle count: invoking each once, {CONCURRENCY} at once…");
    let run = invoke_each(&address, &functions, CONCURRENCY).await?;
    run.tell(report, &format!("idle count ({m} functions)"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = status(&address).await?;
    let (pss_mib, processes) = environments_pss_mib(&server);
    report_kept(
        report,
        &kept,
        &format!("of {m} Python functions each invoked once (a fresh server)"),
        Some(m as u64),
    );
    report.note(
        &format!("scale: idle count of {m} functions"),
        format!(
            "{} idle environments, {processes} child processes of gust serve with {pss_mib:.0} MiB PSS, {} of {} MB committed",
            kept.idle, kept.committed_mb, kept.budget_mb
        ),
    );
    Ok(())
}
