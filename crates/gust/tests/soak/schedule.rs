//! A `rate(1 minute)` schedule firing three times, in real time, against a function that
//! stays warm in between.
//!
//! Ticks a minute apart leave the function idle far longer than its timeout, which is where a
//! deadline measured from the wrong instant bites. The target allows no retries, so each
//! tick's outcome is final at once; its destination record in the mailbox carries the
//! function's answer, which names the environment that ran it. Expected: three ticks, three
//! successes on the first attempt, one environment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::calls;
use crate::common::Server;
use crate::functions::{self, Kind};
use crate::report::Report;

const MAILBOX: &str = "tick-mailbox";
const FUNCTION: &str = "ticker";
const RULE: &str = "soak-every-minute";
const TICKS: usize = 3;
/// Rates count from the rule's creation: three ticks come 60, 120 and 180 s after it.
const OUTCOME_LIMIT: Duration = Duration::from_secs(60 * TICKS as u64 + 45);

pub async fn run(server: Arc<Server>, report: Report) {
    let admin = server.client();
    functions::create_mailbox(&admin, MAILBOX).await;
    functions::create(&admin, FUNCTION, Kind::Python).await;
    functions::report_to(&admin, FUNCTION, MAILBOX, 0).await;
    let client = calls::client(&server);
    // The mailbox's environment before the first tick: it must hold every record to the end.
    let mut mailbox = calls::MailboxWatch::start(&client, MAILBOX, &report).await;

    calls::events(
        &server,
        "PutRule",
        json!({"Name": RULE, "ScheduleExpression": "rate(1 minute)", "State": "ENABLED"}),
    )
    .await;
    let created = Instant::now();
    let targets = calls::events(
        &server,
        "PutTargets",
        json!({"Rule": RULE, "Targets": [{"Id": "ticker", "Arn": functions::arn(FUNCTION)}]}),
    )
    .await;
    assert_eq!(targets["FailedEntryCount"], 0, "{targets}");
    report.note("rule created; waiting for three ticks");

    tokio::time::sleep(Duration::from_secs(60)).await;
    let mut seen = 0;
    let ticks: Vec<Value> = loop {
        let Some(mail) = mailbox.look(&report).await else {
            return;
        };
        let ticks: Vec<Value> = mail
            .records
            .iter()
            .filter(|r| {
                r["functionArn"]
                    .as_str()
                    .is_some_and(|a| a.contains(&format!(":{FUNCTION}")))
            })
            .cloned()
            .collect();
        if ticks.len() > seen {
            seen = ticks.len();
            report.note(format!("{seen} tick(s) delivered"));
        }
        if ticks.len() >= TICKS {
            break ticks;
        }
        if created.elapsed() > OUTCOME_LIMIT {
            report.fail(format!(
                "only {} of {TICKS} ticks reached the mailbox {} s after the rule was created",
                ticks.len(),
                created.elapsed().as_secs()
            ));
            break ticks;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    // Stop the schedule; the server outlives this scenario.
    calls::events(&server, "DeleteRule", json!({"Name": RULE, "Force": true})).await;

    let mut environment: Option<String> = None;
    let mut times = Vec::new();
    for (i, tick) in ticks.iter().enumerate() {
        let condition = tick["condition"].as_str().unwrap_or("?");
        let attempts = tick["approximateInvokeCount"].as_u64().unwrap_or(0);
        let response = &tick["responsePayload"];
        let time = tick["requestPayload"]["time"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        if condition != "Success" || attempts != 1 {
            report.fail(format!(
                "tick {} ({time}): {condition} after {attempts} attempt(s): {}: {}",
                i + 1,
                response["errorType"].as_str().unwrap_or("-"),
                response["errorMessage"]
                    .as_str()
                    .map_or_else(|| response.to_string(), str::to_string)
            ));
            continue;
        }
        let served_by = response["environment"].as_str().map(str::to_string);
        match (&environment, &served_by) {
            (None, _) => environment = served_by,
            (Some(warm), Some(now)) if warm != now => report.fail(format!(
                "tick {} ({time}) ran in environment {now}, not the warm {warm}",
                i + 1
            )),
            _ => {}
        }
        times.push(time);
    }
    times.sort();
    times.dedup();
    if times.len() != ticks.iter().filter(|t| t["condition"] == "Success").count() {
        report.fail(format!("ticks repeat a scheduled time: {ticks:?}"));
    }
    if ticks.len() > TICKS {
        report.fail(format!("{} deliveries for {TICKS} ticks", ticks.len()));
    }
    report.note(format!(
        "ticks at {times:?}, environment {}",
        environment.as_deref().unwrap_or("?")
    ));
}
