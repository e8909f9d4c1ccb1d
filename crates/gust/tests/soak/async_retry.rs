//! An asynchronous event whose first attempt fails and whose retry, after Lambda's real
//! one-minute backoff (no `--async-time-scale`), succeeds.
//!
//! The function fails while the wall clock is before a time carried in the event (30 s after
//! it was sent), whatever environment runs it: the first attempt fails for that reason alone,
//! and a retry a minute later succeeds unless something else goes wrong. No in-memory attempt
//! counter decides the outcome, so a retry that lands on a new environment (because the warm
//! one was lost) cannot make the test fail or pass for the wrong reason. At most one retry is
//! allowed, so the event ends after about a minute either way, and its destination record in
//! the mailbox says how: `condition` `Success` with `approximateInvokeCount` 2 is the only
//! expected outcome.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::calls;
use crate::common::Server;
use crate::functions::{self, Kind};
use crate::report::Report;

const MAILBOX: &str = "retry-mailbox";
const FUNCTION: &str = "retry-flaky";
/// How long after sending the event its first attempt keeps failing.
const FAILING_FOR: f64 = 30.0;
/// When to give up waiting for the outcome: one retry after Lambda's one-minute backoff, with
/// room for a loaded host.
const OUTCOME_LIMIT: Duration = Duration::from_secs(150);

pub async fn run(server: Arc<Server>, report: Report) {
    let admin = server.client();
    functions::create_mailbox(&admin, MAILBOX).await;
    functions::create(&admin, FUNCTION, Kind::Python).await;
    functions::report_to(&admin, FUNCTION, MAILBOX, 1).await;
    let client = calls::client(&server);
    // The mailbox's environment before the event: it must keep the record to the end.
    let mut mailbox = calls::MailboxWatch::start(&client, MAILBOX, &report).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let event = json!({"fail_until": now + FAILING_FOR});
    let request_id = match calls::send_event(&client, FUNCTION, &event).await {
        Ok(id) => id,
        Err(e) => {
            report.fail(format!("the event was not accepted: {e}"));
            return;
        }
    };
    let sent = Instant::now();
    report.note(format!(
        "event {request_id} accepted; its first attempt fails on purpose"
    ));

    // Nothing can be decided before the retry's one-minute backoff.
    tokio::time::sleep(Duration::from_secs(55)).await;
    let records = loop {
        let Some(mail) = mailbox.look(&report).await else {
            return;
        };
        let about: Vec<serde_json::Value> = mail.about(&request_id).into_iter().cloned().collect();
        if !about.is_empty() {
            break about;
        }
        if sent.elapsed() > OUTCOME_LIMIT {
            report.fail(format!(
                "no destination record for the event {} s after it was accepted (the mailbox holds {} record(s))",
                sent.elapsed().as_secs(),
                mail.records.len()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let record = &records[0];
    let condition = record["condition"].as_str().unwrap_or("?");
    let attempts = record["approximateInvokeCount"].as_u64().unwrap_or(0);
    if condition == "Success" && attempts == 2 {
        let same = record["responsePayload"]["invocations"] == 2;
        report.note(format!(
            "succeeded on the retry after the backoff (approximateInvokeCount 2); the retry ran in {} environment",
            if same { "the same warm" } else { "a new" }
        ));
    } else {
        let response = &record["responsePayload"];
        report.fail(format!(
            "expected condition Success after 2 attempts, got {condition} after {attempts}: {}: {}",
            response["errorType"].as_str().unwrap_or("-"),
            response["errorMessage"]
                .as_str()
                .map_or_else(|| response.to_string(), str::to_string)
        ));
    }
    // Give a duplicate delivery a moment to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Ok(mail) = calls::mailbox(&client, MAILBOX).await {
        let count = mail.about(&request_id).len();
        if count > 1 {
            report.fail(format!(
                "{count} destination records for one event: {:?}",
                mail.about(&request_id)
            ));
        }
    }
}
