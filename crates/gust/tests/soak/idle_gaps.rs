//! Warm invocations after idle gaps of 5, 15, 45 and 75 seconds.
//!
//! Quiet spells are where real-time bugs live: a deadline measured from the wrong instant, a
//! connection or timer that dies while nothing happens, a sweep that retires an environment
//! before its keep-alive. Every call must succeed, and every call after the first must be
//! served by the same warm environment: the function answers with an id made once per
//! environment, and the call's REPORT line must show neither `Init Duration` nor
//! `Restore Duration`. Only outcomes are asserted, never how long a call took.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::calls;
use crate::common::Server;
use crate::functions::{self, Kind, environment_of};
use crate::report::Report;

/// The idle gaps, in seconds, one after the other (140 s in all). The longest stays under the
/// main server's keep-alive (300 s), so the environment must survive them all.
pub const GAPS: [u64; 4] = [5, 15, 45, 75];

/// Which environment the calls go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `$LATEST` of a function of this kind: an on-demand environment.
    OnDemand(Kind),
    /// Version 1 of a Python function with one provisioned environment, which must serve every
    /// call (`AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`).
    Provisioned,
    /// Version 1 of a Python function with SnapStart: an environment restored from the
    /// version's snapshot (under `--isolation process`, which has no snapshots, an on-demand
    /// one).
    SnapStart,
}

impl Subject {
    pub fn label(self) -> String {
        match self {
            Subject::OnDemand(kind) => format!("idle gaps, {}", kind.label()),
            Subject::Provisioned => "idle gaps, provisioned concurrency (Python)".into(),
            Subject::SnapStart => "idle gaps, SnapStart (Python)".into(),
        }
    }

    fn function_name(self) -> &'static str {
        match self {
            Subject::OnDemand(Kind::Python) => "gap-python",
            Subject::OnDemand(Kind::Node) => "gap-node",
            Subject::OnDemand(Kind::Custom) => "gap-custom",
            Subject::Provisioned => "gap-provisioned",
            Subject::SnapStart => "gap-snapstart",
        }
    }
}

pub async fn run(server: Arc<Server>, subject: Subject, linux: bool, report: Report) {
    let admin = server.client();
    let name = subject.function_name();
    let kind = match subject {
        Subject::OnDemand(kind) => kind,
        Subject::Provisioned | Subject::SnapStart => Kind::Python,
    };
    functions::create(&admin, name, kind).await;
    let target = match subject {
        Subject::OnDemand(_) => name.to_string(),
        Subject::Provisioned => functions::provision(&admin, name).await,
        Subject::SnapStart => functions::publish_snapstart(&admin, name).await,
    };
    let client = calls::client(&server);

    // The first call: a cold start, a restore, or the provisioned environment.
    let mut previous: Option<String> = None;
    let mut previous_failed = false;
    match calls::invoke(&client, &target, &json!({})).await {
        Err(e) => {
            report.fail(format!("the first call failed: {e}"));
            previous_failed = true;
        }
        Ok(call) if call.function_error.is_some() => {
            report.fail(format!("the first call failed: {}", call.error_summary()));
            previous_failed = true;
        }
        Ok(call) => {
            previous = environment_of(&call.payload).map(str::to_string);
            if previous.is_none() {
                report.fail(format!("no environment id in {}", call.payload));
            }
            if subject == Subject::Provisioned {
                if call.payload["init"] != "provisioned-concurrency" || call.started_environment() {
                    report.fail(format!(
                        "the first call was not served by the provisioned environment: init type {}, {}",
                        call.payload["init"],
                        call.report_line()
                    ));
                }
            } else if subject == Subject::SnapStart
                && linux
                && !call.log.contains("Restore Duration")
            {
                report.fail(format!(
                    "the first call was not a SnapStart restore: {}",
                    call.report_line()
                ));
            }
            report.note(format!(
                "first call served by environment {}",
                previous.as_deref().unwrap_or("?")
            ));
        }
    }

    for gap in GAPS {
        tokio::time::sleep(Duration::from_secs(gap)).await;
        let what = format!("after an idle gap of {gap} s");
        let after_failure = if previous_failed {
            " (the previous call failed)"
        } else {
            ""
        };
        let call = match calls::invoke(&client, &target, &json!({"gap": gap})).await {
            Err(e) => {
                report.fail(format!("{what}: the call failed: {e}"));
                previous_failed = true;
                continue;
            }
            Ok(call) if call.function_error.is_some() => {
                report.fail(format!(
                    "{what}: the call failed: {} [{}] output: {}",
                    call.error_summary(),
                    call.report_line(),
                    call.output()
                ));
                previous_failed = true;
                continue;
            }
            Ok(call) => call,
        };
        previous_failed = false;
        let served_by = environment_of(&call.payload).map(str::to_string);
        let mut problems = Vec::new();
        if call.started_environment() {
            problems.push(format!(
                "a new environment served it{after_failure}: {}",
                call.report_line()
            ));
        }
        match (&previous, &served_by) {
            (Some(warm), Some(now)) if warm != now => problems.push(format!(
                "served by environment {now}, not the warm {warm}{after_failure}"
            )),
            (_, None) => problems.push(format!("no environment id in {}", call.payload)),
            _ => {}
        }
        if subject == Subject::Provisioned && call.payload["init"] != "provisioned-concurrency" {
            problems.push(format!(
                "served by an environment of init type {}, not the provisioned one",
                call.payload["init"]
            ));
        }
        if problems.is_empty() {
            report.note(format!("{what}: ok, the same warm environment"));
        } else {
            report.fail(format!("{what}: {}", problems.join("; ")));
        }
        if served_by.is_some() {
            previous = served_by;
        }
    }
}
