//! The platform's lines in an invocation's log: START, END and REPORT.

use std::time::Duration;

use base64::Engine;
use gust_model::limits::LOG_TAIL_BYTES;

/// How an invocation ended, for REPORT's `Status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Error,
    Timeout,
}

/// The measurements of one invocation.
#[derive(Debug, Clone)]
pub struct Report {
    pub request_id: String,
    pub version: String,
    pub duration: Duration,
    pub init_duration: Option<Duration>,
    /// The first invocation of an environment restored from a SnapStart snapshot: how long
    /// the restore took (billed on its own line, as Lambda does).
    pub restore_duration: Option<Duration>,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    pub status: Status,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    /// Billed time: the invoke phase plus, on a cold start, the init phase, rounded up to the
    /// millisecond (Lambda bills init for every runtime since August 2025).
    pub fn billed_ms(&self) -> u64 {
        let total = millis(self.duration) + self.init_duration.map(millis).unwrap_or(0.0);
        (total.ceil() as u64).max(1)
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
            self.request_id,
            millis(self.duration),
            self.billed_ms(),
            self.memory_size_mb,
            self.max_memory_used_mb,
        );
        if let Some(init) = self.init_duration {
            line.push_str(&format!("Init Duration: {:.2} ms\t", millis(init)));
        }
        if let Some(restore) = self.restore_duration {
            line.push_str(&format!(
                "Restore Duration: {:.2} ms\tBilled Restore Duration: {} ms\t",
                millis(restore),
                (millis(restore).ceil() as u64).max(1)
            ));
        }
        match self.status {
            Status::Success => {}
            Status::Error => line.push_str("Status: error\t"),
            Status::Timeout => line.push_str("Status: timeout\t"),
        }
        line
    }
}

/// Assembles an invocation's log: output from before the invocation started (init output on a
/// cold start), START, the invocation's output, END, REPORT.
pub fn assemble(before: &[u8], during: &[u8], extra: Option<&str>, report: &Report) -> Vec<u8> {
    let mut log = Vec::with_capacity(before.len() + during.len() + 256);
    log.extend_from_slice(before);
    ensure_newline(&mut log);
    log.extend_from_slice(
        format!(
            "START RequestId: {} Version: {}\n",
            report.request_id, report.version
        )
        .as_bytes(),
    );
    log.extend_from_slice(during);
    ensure_newline(&mut log);
    if let Some(extra) = extra {
        log.extend_from_slice(extra.as_bytes());
        ensure_newline(&mut log);
    }
    log.extend_from_slice(format!("END RequestId: {}\n", report.request_id).as_bytes());
    log.extend_from_slice(report.line().as_bytes());
    log.push(b'\n');
    log
}

fn ensure_newline(log: &mut Vec<u8>) {
    if log.last().is_some_and(|b| *b != b'\n') {
        log.push(b'\n');
    }
}

/// `X-Amz-Log-Result`: base64 of the last 4 KB of the log.
pub fn tail(log: &[u8]) -> String {
    let start = log.len().saturating_sub(LOG_TAIL_BYTES);
    base64::engine::general_purpose::STANDARD.encode(&log[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            request_id: "r1".into(),
            version: "$LATEST".into(),
            duration: Duration::from_micros(2430),
            init_duration: Some(Duration::from_micros(120_330)),
            restore_duration: None,
            memory_size_mb: 128,
            max_memory_used_mb: 39,
            status: Status::Success,
        }
    }

    #[test]
    fn report_line_matches_lambda() {
        assert_eq!(
            report().line(),
            "REPORT RequestId: r1\tDuration: 2.43 ms\tBilled Duration: 123 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB\tInit Duration: 120.33 ms\t"
        );
        let warm = Report {
            init_duration: None,
            restore_duration: None,
            status: Status::Timeout,
            ..report()
        };
        assert!(warm.line().ends_with(
            "Billed Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB\tStatus: timeout\t"
        ));
        let restored = Report {
            init_duration: None,
            restore_duration: Some(Duration::from_micros(4_160)),
            ..report()
        };
        assert_eq!(
            restored.line(),
            "REPORT RequestId: r1\tDuration: 2.43 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\tMax Memory Used: 39 MB\tRestore Duration: 4.16 ms\tBilled Restore Duration: 5 ms\t"
        );
    }

    #[test]
    fn log_and_tail() {
        let log = assemble(b"init\n", b"hello", None, &report());
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.starts_with("init\nSTART RequestId: r1 Version: $LATEST\nhello\nEND RequestId: r1\nREPORT RequestId: r1\t"));
        let big = vec![b'x'; 10_000];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(tail(&big))
            .unwrap();
        assert_eq!(decoded.len(), LOG_TAIL_BYTES);
    }
}
