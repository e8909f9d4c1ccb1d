//! Gust's soak tests: real servers under real time, looking for what only shows over minutes —
//! a warm environment that breaks after an idle gap, a retry or a schedule tick a real minute
//! later, errors and memory growth under long mixed traffic, environments and host resources
//! that outlive their keep-alive.
//!
//! Outcomes are asserted, never timings: every call succeeds, every event runs, warm calls
//! land on the same environment, the host is back to its baseline.
//!
//! The long waits are shared: there is one test per isolation mode (`soak_linux`,
//! `soak_process`), each starting its own servers and running every scenario concurrently
//! against them, so the whole binary takes about as long as its longest scenario (the three
//! schedule ticks, a little over three minutes), the two modes in parallel. Each scenario
//! records its failures and carries on; the test fails at the end with all of them, so one
//! run shows everything that went wrong. The scenarios:
//!
//! - [`idle_gaps`]: warm invocations after idle gaps of 5, 15, 45 and 75 s, for Python,
//!   Node.js and custom-runtime functions, a provisioned environment and a SnapStart one;
//! - [`async_retry`]: an event that fails its first attempt and succeeds on the retry after
//!   Lambda's real one-minute backoff;
//! - [`schedule`]: a `rate(1 minute)` rule firing three times at a function that stays warm;
//! - [`mixed`]: about three minutes of bursts and quiet spells, synchronous and asynchronous,
//!   three runtimes, up to 8 concurrent callers: no unexpected error, every event run, the
//!   server's memory bounded;
//! - [`keep_alive`]: on a second server with a 15 s keep-alive, everything retires and
//!   nothing is left on the host.
//!
//! Functions under Linux isolation can neither write host files nor reach the host, so they
//! report through a *mailbox* function that keeps what it receives in memory (see
//! [`functions::MAILBOX`]).

#[allow(dead_code)]
#[path = "../e2e/common.rs"]
mod common;

mod async_retry;
mod calls;
mod functions;
mod host;
mod idle_gaps;
mod keep_alive;
mod mixed;
mod report;
mod schedule;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use common::Server;
use functions::Kind;
use idle_gaps::Subject;
use report::Report;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_linux() {
    soak("linux").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_process() {
    soak("process").await;
}

/// Runs every scenario against servers with `--isolation <isolation>` and fails with all of
/// their failures.
async fn soak(isolation: &'static str) {
    let started = Instant::now();
    let linux = isolation == "linux";
    // The main server keeps the default keep-alive (300 s), longer than the longest idle gap.
    let main = Arc::new(Server::start_with(&["--isolation", isolation]));
    let keep_alive = keep_alive::KEEP_ALIVE.to_string();
    let brief = Arc::new(Server::start_with(&[
        "--isolation",
        isolation,
        "--keep-alive",
        &keep_alive,
    ]));

    let mut scenarios: Vec<(Report, tokio::task::JoinHandle<()>)> = Vec::new();
    let mut start = |name: String, run: &dyn Fn(Report) -> ScenarioFuture| {
        let report = Report::new(isolation, &name, started);
        let handle = tokio::spawn(run(report.clone()));
        scenarios.push((report, handle));
    };
    // The longest first: the schedule needs three real minutes from its rule's creation.
    start("schedule".into(), &|r| {
        Box::pin(schedule::run(main.clone(), r))
    });
    start("async retry".into(), &|r| {
        Box::pin(async_retry::run(main.clone(), r))
    });
    start("mixed traffic".into(), &|r| {
        Box::pin(mixed::run(main.clone(), r))
    });
    for subject in [
        Subject::OnDemand(Kind::Python),
        Subject::OnDemand(Kind::Node),
        Subject::OnDemand(Kind::Custom),
        Subject::Provisioned,
        Subject::SnapStart,
    ] {
        start(subject.label(), &|r| {
            Box::pin(idle_gaps::run(main.clone(), subject, linux, r))
        });
    }
    start("keep-alive".into(), &|r| {
        Box::pin(keep_alive::run(brief.clone(), linux, r))
    });

    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for (report, handle) in scenarios {
        if let Err(e) = handle.await {
            report.fail(format!("the scenario panicked: {}", panic_message(e)));
        }
        let findings = report.findings();
        summary.push(format!(
            "  {:<45} {}",
            report.scenario,
            if findings.failures.is_empty() {
                "ok".to_string()
            } else {
                format!("{} failure(s)", findings.failures.len())
            }
        ));
        for failure in findings.failures {
            failures.push(format!("{}: {failure}", report.scenario));
        }
    }
    println!(
        "[{isolation}] soak finished in {} s:\n{}",
        started.elapsed().as_secs(),
        summary.join("\n")
    );
    if !failures.is_empty() {
        for (label, server) in [("main", &main), ("keep-alive", &brief)] {
            println!(
                "[{isolation}] the {label} server's log, warnings and errors:\n{}",
                notable_log_lines(&server.log())
            );
        }
        panic!(
            "soak ({isolation} isolation): {} failure(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

type ScenarioFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a non-string panic)".into()),
        Err(e) => e.to_string(),
    }
}

/// The server log's warnings and errors (the last 40), for a failing run.
fn notable_log_lines(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
