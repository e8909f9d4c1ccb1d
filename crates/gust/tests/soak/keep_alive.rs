//! After `--keep-alive` passes with no traffic, every environment has retired and nothing is
//! left behind — as the host sees it, not as Gust's bookkeeping says.
//!
//! This runs on a server of its own with a short keep-alive (15 s) and the default sandboxes
//! started ahead. Before anything is deployed, the scenario takes a baseline of an idle fresh
//! server; then it runs Python, Node.js, custom-runtime and SnapStart functions on several
//! environments each, stays away, and checks from `/proc` and `/sys` that the server is back to
//! its baseline: no process descending from it, no cgroup of an environment, no namespace
//! (network, mount, …) held beyond its pools of ready ones, no more loop devices backed by
//! the data directory than those pools hold, no file under the data directory's
//! `environments/` that the baseline lacks (see [`HostView`]). Under `--isolation process`
//! only processes and files are compared (there are no cgroups, namespaces or loop devices).
//! Then every function must work again, on a new environment.
//!
//! Retirement is not instantaneous (a sweep runs periodically; sandboxes started ahead and a
//! SnapStart snapshot retire a keep-alive after *they* were last needed), so the scenario
//! polls for the clean state with a generous limit and reports what was left only if it never
//! comes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::calls;
use crate::common::Server;
use crate::functions::{self, Kind};
use crate::host::HostView;
use crate::report::Report;

/// The keep-alive the scenario's server runs with, in seconds.
pub const KEEP_ALIVE: u64 = 15;

/// How long after the last invocation the host must be back to the baseline.
const CLEAN_LIMIT: Duration = Duration::from_secs(100);

const FUNCTIONS: [(&str, Kind); 4] = [
    ("idle-python", Kind::Python),
    ("idle-node", Kind::Node),
    ("idle-custom", Kind::Custom),
    ("idle-snapstart", Kind::Python),
];

/// Concurrent calls per function, each holding its environment about a second, so that each
/// function scales to several environments.
const CONCURRENT: usize = 3;

pub async fn run(server: Arc<Server>, linux: bool, report: Report) {
    let pid = server.pid();
    let data_dir = server.data_dir.clone();
    let baseline = baseline(pid, &data_dir, linux).await;
    report.note(format!(
        "baseline of the idle fresh server: {}",
        describe(&baseline)
    ));
    if !baseline.processes.is_empty() {
        report.fail(format!(
            "an idle fresh server already has child processes: {:?}",
            baseline.processes
        ));
    }

    let admin = server.client();
    let mut targets = Vec::new();
    for (name, kind) in FUNCTIONS {
        functions::create(&admin, name, kind).await;
        targets.push(if name == "idle-snapstart" {
            functions::publish_snapstart(&admin, name).await
        } else {
            name.to_string()
        });
    }
    let client = calls::client(&server);

    // Several environments per function, then a few warm calls.
    let mut calls_made = Vec::new();
    for target in &targets {
        for _ in 0..CONCURRENT {
            let (client, target) = (client.clone(), target.clone());
            calls_made.push(tokio::spawn(async move {
                let outcome = calls::invoke(&client, &target, &json!({"sleep": 1})).await;
                (target, outcome)
            }));
        }
    }
    let mut outcomes = Vec::new();
    for call in calls_made {
        outcomes.push(call.await.expect("call task"));
    }
    for target in &targets {
        for _ in 0..2 {
            outcomes.push((
                target.clone(),
                calls::invoke(&client, target, &json!({})).await,
            ));
        }
    }
    let last_call = Instant::now();
    let mut ok = 0;
    for (target, outcome) in outcomes {
        match outcome {
            Ok(call) if call.function_error.is_none() => ok += 1,
            Ok(call) => report.fail(format!("{target}: {}", call.error_summary())),
            Err(e) => report.fail(format!("{target}: {e}")),
        }
    }
    report.note(format!(
        "{ok} calls succeeded; {} while busy",
        describe(&HostView::take(pid, &data_dir, linux))
    ));

    // Stay away for the keep-alive, then wait for the host to be back to the baseline.
    tokio::time::sleep(Duration::from_secs(KEEP_ALIVE)).await;
    loop {
        let view = HostView::take(pid, &data_dir, linux);
        let leftovers = view.leftovers(&baseline);
        if leftovers.is_empty() {
            report.note(format!(
                "back to the baseline {} s after the last call",
                last_call.elapsed().as_secs()
            ));
            break;
        }
        if last_call.elapsed() > CLEAN_LIMIT {
            report.fail(format!(
                "{} s after the last call (keep-alive {KEEP_ALIVE} s), left behind:\n      {}",
                last_call.elapsed().as_secs(),
                leftovers.join("\n      ")
            ));
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // The next call works, on a new environment.
    for target in &targets {
        match calls::invoke(&client, target, &json!({})).await {
            Ok(call) if call.function_error.is_none() => {
                if !call.started_environment() {
                    report.fail(format!(
                        "{target}: served by an environment that outlived the keep-alive ({})",
                        call.report_line()
                    ));
                }
            }
            Ok(call) => report.fail(format!(
                "{target}: the call after the keep-alive failed: {}",
                call.error_summary()
            )),
            Err(e) => report.fail(format!(
                "{target}: the call after the keep-alive failed: {e}"
            )),
        }
    }
}

/// The idle fresh server, once its pools of namespaces and /tmp volumes made ahead have filled
/// (their counts, and the processes it runs to make them, stay the same for two seconds).
async fn baseline(pid: u32, data_dir: &std::path::Path, linux: bool) -> HostView {
    let started = Instant::now();
    let mut view = HostView::take(pid, data_dir, linux);
    let mut steady = 0;
    while steady < 4 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let next = HostView::take(pid, data_dir, linux);
        let same = |v: &HostView| {
            (
                v.namespaces.clone(),
                v.loop_devices.len(),
                v.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
            )
        };
        if same(&next) == same(&view) {
            steady += 1;
        } else {
            steady = 0;
        }
        view = next;
    }
    view
}

fn describe(view: &HostView) -> String {
    format!(
        "{} descendant process(es), {} cgroup dir(s), namespaces held {:?}, {} path(s) under environments/, {} loop device(s)",
        view.processes.len(),
        view.cgroups.len(),
        view.namespaces,
        view.files.len(),
        view.loop_devices.len()
    )
}
