//! The scheduler's clock: the system clock, optionally shifted so that tests (and operators
//! replaying a day) can drive schedules without waiting for real minutes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
    adjustable: bool,
}

fn system_ms() -> i64 {
    gust_model::timefmt::epoch_ms(SystemTime::now()) as i64
}

impl Clock {
    /// The system clock, fixed.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that reads `start_ms` now and then runs at real speed; it can be set again.
    pub fn starting_at(start_ms: i64) -> Self {
        Self {
            offset_ms: AtomicI64::new(start_ms.saturating_sub(system_ms())),
            adjustable: true,
        }
    }

    pub fn is_adjustable(&self) -> bool {
        self.adjustable
    }

    pub fn now_ms(&self) -> i64 {
        system_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Sets the time; refused (false) on the fixed system clock.
    pub fn set_ms(&self, now_ms: i64) -> bool {
        if !self.adjustable {
            return false;
        }
        self.offset_ms
            .store(now_ms.saturating_sub(system_ms()), Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_clock_runs_from_its_start() {
        let clock = Clock::starting_at(1_000_000);
        let now = clock.now_ms();
        assert!((1_000_000..1_010_000).contains(&now), "{now}");
        assert!(clock.set_ms(5_000_000));
        assert!(clock.now_ms() >= 5_000_000);
        assert!(!Clock::system().set_ms(0));
        // Absurd times from the network saturate instead of overflowing.
        assert!(clock.set_ms(i64::MIN));
        assert!(clock.now_ms() < 0);
        assert!(clock.set_ms(i64::MAX));
        assert!(clock.now_secs() > 0);
    }
}
