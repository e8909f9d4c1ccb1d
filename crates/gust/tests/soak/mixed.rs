//! Mixed traffic for about three minutes: bursts of up to 8 concurrent callers and quiet
//! spells of up to 30 s, synchronous and asynchronous invocations of a Python, a Node.js and a
//! custom-runtime function.
//!
//! Expected: no unexpected error at all (every synchronous call answers its own event; every
//! asynchronous event runs at least once, successfully, as its destination record in the
//! mailbox shows), and the server's resident memory stays bounded. The pattern is fixed (no
//! randomness), so that two runs put the same load on the server.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::calls;
use crate::common::Server;
use crate::functions::{self, Kind, echoed_id};
use crate::host;
use crate::report::Report;

const MAILBOX: &str = "mixed-mailbox";
const TARGETS: [(&str, Kind); 3] = [
    ("mixed-python", Kind::Python),
    ("mixed-node", Kind::Node),
    ("mixed-custom", Kind::Custom),
];

/// One step of the traffic pattern.
#[derive(Clone, Copy)]
enum Phase {
    /// `callers` concurrent callers for `seconds`.
    Burst { callers: usize, seconds: u64 },
    /// No traffic for this many seconds.
    Quiet(u64),
}

use Phase::{Burst, Quiet};

/// 53 s of bursts, 110 s of quiet: about 2¾ minutes, plus the time the last events take.
const PATTERN: [Phase; 13] = [
    Burst {
        callers: 8,
        seconds: 10,
    },
    Quiet(20),
    Burst {
        callers: 3,
        seconds: 6,
    },
    Quiet(30),
    Burst {
        callers: 8,
        seconds: 8,
    },
    Quiet(5),
    Burst {
        callers: 5,
        seconds: 6,
    },
    Quiet(15),
    Burst {
        callers: 8,
        seconds: 10,
    },
    Quiet(30),
    Burst {
        callers: 2,
        seconds: 5,
    },
    Quiet(10),
    Burst {
        callers: 8,
        seconds: 8,
    },
];

/// One in this many calls is asynchronous. The mailbox takes its deliveries one at a time and
/// at most ten a second (Lambda's rate quota for a reservation of 1), which this keeps well
/// within.
const ASYNC_ONE_IN: u64 = 10;

/// How long the last events may take to reach the mailbox after the traffic stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Generous: the point is to catch what grows with traffic (a leak per invocation or per
/// environment), not to measure the server's footprint.
const RSS_GROWTH_LIMIT_KIB: u64 = 100 * 1024;

/// At most this many examples of each kind of unexpected error are kept (all are counted), so
/// that a rare kind is not crowded out by a frequent one.
const EXAMPLES: usize = 4;

#[derive(Default)]
struct Tally {
    sync_ok: u64,
    /// Accepted events: request id → (event id, function).
    accepted: HashMap<String, (u64, &'static str)>,
    /// Unexpected errors by kind: how many, and the first few.
    errors: BTreeMap<String, (u64, Vec<String>)>,
}

impl Tally {
    fn error(&mut self, kind: String, example: String) {
        let (count, examples) = self.errors.entry(kind).or_default();
        *count += 1;
        if examples.len() < EXAMPLES {
            examples.push(example);
        }
    }
}

pub async fn run(server: Arc<Server>, report: Report) {
    let admin = server.client();
    functions::create_mailbox(&admin, MAILBOX).await;
    for (name, kind) in TARGETS {
        functions::create(&admin, name, kind).await;
        // No retries: a failure is an unexpected error, and its record should come at once.
        functions::report_to(&admin, name, MAILBOX, 0).await;
    }
    let client = calls::client(&server);
    // The mailbox's environment before the traffic: it must hold every record to the end.
    let mut mailbox = calls::MailboxWatch::start(&client, MAILBOX, &report).await;
    let pid = server.pid();
    let rss_before = host::rss_kib(pid);

    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    for phase in PATTERN {
        match phase {
            Quiet(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            Burst { callers, seconds } => {
                let until = Instant::now() + Duration::from_secs(seconds);
                let workers: Vec<_> = (0..callers)
                    .map(|caller| {
                        let (client, tally, next_id) =
                            (client.clone(), tally.clone(), next_id.clone());
                        tokio::spawn(async move {
                            let mut k = 0;
                            while Instant::now() < until {
                                let id = next_id.fetch_add(1, Ordering::SeqCst);
                                call(&client, &tally, id, (caller + k) % TARGETS.len()).await;
                                k += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        })
                    })
                    .collect();
                for worker in workers {
                    if let Err(e) = worker.await {
                        report.fail(format!("a caller panicked: {e}"));
                    }
                }
            }
        }
    }
    let traffic = started.elapsed();

    // Every accepted event must reach the mailbox.
    let accepted = tally.lock().unwrap().accepted.clone();
    let drain_started = Instant::now();
    let mail = loop {
        let Some(mail) = mailbox.look(&report).await else {
            return;
        };
        let missing = accepted
            .keys()
            .filter(|id| mail.about(id).is_empty())
            .count();
        if missing == 0 || drain_started.elapsed() > DRAIN_LIMIT {
            break mail;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let rss_after = host::rss_kib(pid);

    let mut tally = Arc::try_unwrap(tally)
        .ok()
        .expect("callers are done")
        .into_inner()
        .unwrap();
    let mut never_ran = Vec::new();
    let mut ran_twice = 0;
    for (request_id, (id, function)) in &accepted {
        let records = mail.about(request_id);
        if records.is_empty() {
            never_ran.push(format!("{function} event {id} ({request_id})"));
            continue;
        }
        if records.len() > 1 {
            ran_twice += 1;
        }
        for record in records {
            if record["condition"] != "Success" {
                let response = &record["responsePayload"];
                tally.error(
                    format!(
                        "async {}",
                        response["errorType"]
                            .as_str()
                            .or(record["condition"].as_str())
                            .unwrap_or("?")
                    ),
                    format!(
                        "async {function} event {id}: {} after {} attempt(s): {}",
                        record["condition"],
                        record["approximateInvokeCount"],
                        response["errorMessage"]
                            .as_str()
                            .map_or_else(|| response.to_string(), str::to_string)
                    ),
                );
            } else if echoed_id(&record["responsePayload"]) != Some(*id) {
                tally.error(
                    "async wrong answer".into(),
                    format!(
                        "async {function} event {id} answered {}",
                        record["responsePayload"]
                    ),
                );
            }
        }
    }

    let calls = next_id.load(Ordering::SeqCst);
    report.note(format!(
        "{calls} calls in {} s ({} synchronous ok, {} events accepted, {ran_twice} delivered more than once)",
        traffic.as_secs(),
        tally.sync_ok,
        accepted.len()
    ));
    if !tally.errors.is_empty() {
        let total: u64 = tally.errors.values().map(|(count, _)| count).sum();
        let kinds: Vec<String> = tally
            .errors
            .iter()
            .map(|(kind, (count, examples))| {
                format!(
                    "{count} × {kind}, e.g.\n        {}",
                    examples.join("\n        ")
                )
            })
            .collect();
        report.fail(format!(
            "{total} unexpected error(s):\n      {}",
            kinds.join("\n      ")
        ));
    }
    if !never_ran.is_empty() {
        report.fail(format!(
            "{} accepted event(s) never reached their destination {} s after the traffic stopped: {}",
            never_ran.len(),
            drain_started.elapsed().as_secs(),
            never_ran
                .iter()
                .take(EXAMPLES)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match (rss_before, rss_after) {
        (Some(before), Some(after)) => {
            let growth = after.saturating_sub(before);
            let line = format!(
                "server RSS {} MiB before the traffic, {} MiB after",
                before / 1024,
                after / 1024
            );
            if growth > RSS_GROWTH_LIMIT_KIB {
                report.fail(format!(
                    "{line}: grew by {} MiB (limit {} MiB)",
                    growth / 1024,
                    RSS_GROWTH_LIMIT_KIB / 1024
                ));
            } else {
                report.note(line);
            }
        }
        _ => report.fail(format!("cannot read the server's VmRSS (pid {pid})")),
    }
}

/// One call of the pattern: the `id`-th, to target `target`.
async fn call(client: &aws_sdk_lambda::Client, tally: &Mutex<Tally>, id: u64, target: usize) {
    let (function, kind) = TARGETS[target];
    // 0 to 250 ms of work (the custom runtime only echoes).
    let payload = if kind == Kind::Custom {
        json!({"id": id})
    } else {
        json!({"id": id, "sleep": (id * 7 % 6) as f64 * 0.05})
    };
    if id % ASYNC_ONE_IN == 3 {
        match calls::send_event(client, function, &payload).await {
            Ok(request_id) => {
                tally
                    .lock()
                    .unwrap()
                    .accepted
                    .insert(request_id, (id, function));
            }
            Err(e) => tally.lock().unwrap().error(
                format!("event refused: {}", e.code),
                format!("event {id} to {function}: {e}"),
            ),
        }
        return;
    }
    match calls::invoke(client, function, &payload).await {
        Err(e) => tally.lock().unwrap().error(
            format!("sync {}", e.code),
            format!("sync {function} call {id}: {e}"),
        ),
        Ok(call) if call.function_error.is_some() => tally.lock().unwrap().error(
            format!(
                "sync {}",
                call.payload["errorType"]
                    .as_str()
                    .unwrap_or("function error")
            ),
            format!(
                "sync {function} call {id}: {} [{}] output: {}",
                call.error_summary(),
                call.report_line(),
                call.output()
            ),
        ),
        Ok(call) if echoed_id(&call.payload) != Some(id) => tally.lock().unwrap().error(
            "sync wrong answer".into(),
            format!("sync {function} call {id} answered {}", call.payload),
        ),
        Ok(_) => tally.lock().unwrap().sync_ok += 1,
    }
}
