//! The handful of time formats Lambda uses on the wire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn utc(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// `FunctionConfiguration.LastModified`: `2020-04-10T19:06:32.563+0000`.
pub fn last_modified(t: SystemTime) -> String {
    let format = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    utc(t).format(&format).unwrap_or_default()
}

/// The date prefix of a log stream name: `2021/12/17`.
pub fn log_stream_date(t: SystemTime) -> String {
    let format = format_description!("[year]/[month]/[day]");
    utc(t).format(&format).unwrap_or_default()
}

/// ISO-8601 with milliseconds and `Z`, as runtimes print it in log lines.
pub fn iso_millis(t: SystemTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    utc(t).format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_lambda() {
        let t = UNIX_EPOCH + Duration::from_millis(1_586_545_592_563);
        assert_eq!(last_modified(t), "2020-04-10T19:06:32.563+0000");
        assert_eq!(log_stream_date(t), "2020/04/10");
        assert_eq!(iso_millis(t), "2020-04-10T19:06:32.563Z");
        assert_eq!(epoch_ms(t), 1_586_545_592_563);
    }
}
