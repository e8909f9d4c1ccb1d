//! When an asynchronous event runs again, as Lambda times it.
//!
//! A function error uses up one of the event's retries (0–2): the first retry comes about a
//! minute later, the second two minutes after that. A platform error (throttled, no
//! environment) backs off from a second, doubling, up to five minutes, without using up a
//! retry. An event older than its maximum age is not run at all.

/// Delay before the first retry after a function error (Lambda: about a minute); the second
/// waits twice as long.
const RETRY_BASE_MS: f64 = 60_000.0;
/// Backoff after a platform error: from 1 s, doubling, up to 5 min.
const BACKOFF_START_MS: f64 = 1_000.0;
const BACKOFF_MAX_MS: f64 = 300_000.0;

/// The retry timing, scaled (1.0 is Lambda's; tests run it faster).
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    pub(super) time_scale: f64,
}

impl RetryPolicy {
    fn scaled(self, ms: f64) -> u64 {
        (ms * self.time_scale).max(0.0) as u64
    }

    /// After the `attempts`-th attempt ended in a function error: the delay before the next,
    /// or `None` when the `retries` allowed are used up.
    pub(super) fn after_function_error(self, attempts: u32, retries: u32) -> Option<u64> {
        (attempts <= retries).then(|| self.scaled(RETRY_BASE_MS * f64::from(attempts)))
    }

    /// The delay after the `failures`-th platform error in a row (counting from 0).
    pub(super) fn platform_backoff(self, failures: u32) -> u64 {
        let ms = (BACKOFF_START_MS * 2f64.powi(failures.min(16) as i32)).min(BACKOFF_MAX_MS);
        self.scaled(ms)
    }

    /// Whether an event received at `received_ms` is past `max_age_seconds` at `now_ms`.
    pub(super) fn too_old(self, received_ms: u64, max_age_seconds: u32, now_ms: u64) -> bool {
        now_ms.saturating_sub(received_ms) > self.scaled(f64::from(max_age_seconds) * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAMBDA: RetryPolicy = RetryPolicy { time_scale: 1.0 };

    #[test]
    fn function_errors_retry_after_one_then_two_minutes() {
        assert_eq!(LAMBDA.after_function_error(1, 2), Some(60_000));
        assert_eq!(LAMBDA.after_function_error(2, 2), Some(120_000));
        assert_eq!(LAMBDA.after_function_error(3, 2), None, "retries used up");
        assert_eq!(LAMBDA.after_function_error(1, 0), None, "no retries asked");
        assert_eq!(LAMBDA.after_function_error(1, 1), Some(60_000));
    }

    #[test]
    fn platform_errors_back_off_doubling_up_to_five_minutes() {
        let delays: Vec<u64> = (0..12).map(|n| LAMBDA.platform_backoff(n)).collect();
        assert_eq!(
            delays,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000, 300_000
            ]
        );
        assert_eq!(LAMBDA.platform_backoff(u32::MAX), 300_000);
    }

    #[test]
    fn an_event_past_its_maximum_age_is_too_old() {
        let received = 1_000_000;
        assert!(!LAMBDA.too_old(received, 60, received + 60_000));
        assert!(LAMBDA.too_old(received, 60, received + 60_001));
        assert!(
            !LAMBDA.too_old(received, 60, received - 5),
            "a clock stepped back is not age"
        );
    }

    #[test]
    fn the_time_scale_shrinks_every_delay_alike() {
        let fast = RetryPolicy { time_scale: 0.01 };
        assert_eq!(fast.after_function_error(2, 2), Some(1_200));
        assert_eq!(fast.platform_backoff(0), 10);
        assert!(fast.too_old(0, 60, 601));
    }
}
