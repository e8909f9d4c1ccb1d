//! What each scenario found, kept as it goes (so that a scenario that panics half-way still
//! reports what it saw before) and printed as it happens (to follow a run with
//! `--nocapture`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

/// A scenario's findings, shared with the task running it.
#[derive(Clone)]
pub struct Report {
    pub isolation: &'static str,
    pub scenario: String,
    started: Instant,
    findings: Arc<Mutex<Findings>>,
}

impl Report {
    /// `started`: when the suite started, which each line's time counts from.
    pub fn new(isolation: &'static str, scenario: &str, started: Instant) -> Self {
        Self {
            isolation,
            scenario: scenario.to_string(),
            started,
            findings: Arc::default(),
        }
    }

    fn line(&self, message: &str) -> String {
        format!("[+{:>3}s] {message}", self.started.elapsed().as_secs())
    }

    /// Records an unexpected outcome.
    pub fn fail(&self, message: impl AsRef<str>) {
        let line = self.line(message.as_ref());
        println!("[{}] {}: FAIL {line}", self.isolation, self.scenario);
        self.findings.lock().unwrap().failures.push(line);
    }

    /// Records what went as expected (or facts worth knowing that are not failures).
    pub fn note(&self, message: impl AsRef<str>) {
        let line = self.line(message.as_ref());
        println!("[{}] {}: {line}", self.isolation, self.scenario);
        self.findings.lock().unwrap().notes.push(line);
    }

    pub fn findings(&self) -> Findings {
        self.findings.lock().unwrap().clone()
    }
}
