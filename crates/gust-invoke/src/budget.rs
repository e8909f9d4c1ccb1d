//! The host's memory budget, as environments claim and return it.

use std::sync::Arc;

/// An environment's share of the host's memory budget, returned when it is dropped.
pub struct MemoryClaim {
    mb: u64,
    committed: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryClaim {
    pub fn new(mb: u64, committed: Arc<std::sync::atomic::AtomicU64>) -> Self {
        committed.fetch_add(mb, std::sync::atomic::Ordering::AcqRel);
        Self { mb, committed }
    }
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        self.committed
            .fetch_sub(self.mb, std::sync::atomic::Ordering::AcqRel);
    }
}
