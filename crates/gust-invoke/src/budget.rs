//! The host's memory budget, as environments claim and return it.
//!
//! Every live environment (and runtime started ahead, and snapshot process) holds a claim of
//! its `MemorySize`. A new one that would take the total past the budget first retires idle
//! ones, in the order the caller gives; running work is never stopped: when nothing idle is
//! left, the budget is exceeded rather than an invocation refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an idle environment counts for against the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryPolicy {
    /// What its sandbox really uses (its cgroup's working set), measured after it ran;
    /// `MemorySize` while it runs. Many more idle environments fit; if many wake at once,
    /// the host may briefly hold more than the budget (each stays within its own limit), and
    /// idle ones retire, least recently used first, until the total is back under it.
    #[default]
    Measured,
    /// Its full `MemorySize`, always: the budget is never exceeded by environments waking.
    Reserved,
}

/// The budget and what live environments have claimed of it.
pub struct MemoryBudget {
    limit_mb: u64,
    committed: Arc<AtomicU64>,
}

impl MemoryBudget {
    pub fn new(limit_mb: u64) -> Self {
        Self {
            limit_mb,
            committed: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn limit_mb(&self) -> u64 {
        self.limit_mb
    }

    /// Total of the live claims (MB).
    pub fn committed_mb(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Whether `mb` more fits without retiring anything (what speculative starts ask).
    pub fn has_room(&self, mb: u64) -> bool {
        self.committed_mb() + mb <= self.limit_mb
    }

    /// Claims `mb` now; returned when the claim is dropped.
    pub fn claim(&self, mb: u64) -> MemoryClaim {
        self.committed.fetch_add(mb, Ordering::AcqRel);
        MemoryClaim {
            mb,
            committed: self.committed.clone(),
        }
    }

    /// What must retire for `mb` more to fit: takes from `next` (the retirement order) until
    /// the rest fits or `next` has nothing more. The caller tears down what it gets, and
    /// their claims return with them.
    pub fn make_room<T>(
        &self,
        mb: u64,
        mut next: impl FnMut() -> Option<T>,
        size_mb: impl Fn(&T) -> u64,
    ) -> Vec<T> {
        let mut freed = 0;
        let mut retired = Vec::new();
        while self.committed_mb().saturating_sub(freed) + mb > self.limit_mb {
            let Some(retiree) = next() else {
                break;
            };
            freed += size_mb(&retiree);
            retired.push(retiree);
        }
        retired
    }
}

/// An environment's share of the host's memory budget, returned when it is dropped.
pub struct MemoryClaim {
    mb: u64,
    committed: Arc<AtomicU64>,
}

impl MemoryClaim {
    /// Changes the share to `mb` (an idle environment counted at what it really uses, or a
    /// busy one at its `MemorySize` again).
    pub fn resize(&mut self, mb: u64) {
        if mb >= self.mb {
            self.committed.fetch_add(mb - self.mb, Ordering::AcqRel);
        } else {
            self.committed.fetch_sub(self.mb - mb, Ordering::AcqRel);
        }
        self.mb = mb;
    }

    pub fn mb(&self) -> u64 {
        self.mb
    }
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        self.committed.fetch_sub(self.mb, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_count_while_they_live() {
        let budget = MemoryBudget::new(1024);
        let a = budget.claim(512);
        let b = budget.claim(256);
        assert_eq!(budget.committed_mb(), 768);
        assert!(budget.has_room(256));
        assert!(!budget.has_room(257));
        drop(a);
        assert_eq!(budget.committed_mb(), 256);
        drop(b);
        assert_eq!(budget.committed_mb(), 0);
    }

    #[test]
    fn a_resized_claim_counts_its_new_size_and_returns_it() {
        let budget = MemoryBudget::new(1024);
        let mut idle = budget.claim(512);
        idle.resize(12);
        assert_eq!(budget.committed_mb(), 12);
        idle.resize(512);
        assert_eq!((budget.committed_mb(), idle.mb()), (512, 512));
        idle.resize(7);
        drop(idle);
        assert_eq!(budget.committed_mb(), 0);
    }

    #[test]
    fn nothing_retires_when_the_new_environment_fits() {
        let budget = MemoryBudget::new(1024);
        let _held = budget.claim(512);
        let mut asked = 0;
        let retired = budget.make_room(
            512,
            || {
                asked += 1;
                Some(128)
            },
            |mb| *mb,
        );
        assert!(retired.is_empty());
        assert_eq!(asked, 0, "the retirement order is not even consulted");
    }

    #[test]
    fn idle_ones_retire_in_the_given_order_until_the_new_one_fits() {
        let budget = MemoryBudget::new(1024);
        let _held = budget.claim(1000);
        let mut idle = vec![("c", 512), ("b", 128), ("a", 128)];
        let retired = budget.make_room(300, || idle.pop(), |(_, mb)| *mb);
        // 1000 - 128 + 300 > 1024; 1000 - 256 + 300 = 1044 > 1024; 1000 - 768 + 300 fits.
        assert_eq!(retired, [("a", 128), ("b", 128), ("c", 512)]);

        let mut idle = vec![("c", 512), ("b", 128), ("a", 256)];
        let retired = budget.make_room(300, || idle.pop(), |(_, mb)| *mb);
        assert_eq!(
            retired,
            [("a", 256), ("b", 128)],
            "stops as soon as it fits"
        );
        assert_eq!(idle, [("c", 512)]);
    }

    #[test]
    fn the_budget_is_exceeded_rather_than_the_invocation_refused() {
        let budget = MemoryBudget::new(1024);
        let _busy = budget.claim(1024);
        let mut idle = vec![128];
        let retired = budget.make_room(512, || idle.pop(), |mb| *mb);
        assert_eq!(retired, [128], "everything idle goes, and that is all");
        let _new = budget.claim(512);
        assert_eq!(budget.committed_mb(), 1536);
    }
}
