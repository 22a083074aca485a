//! Until when a node's copies may answer, as its change feed vouches
//! ([`ChangeListener::caught_up_until`]).
//!
//! A node that missed an announcement (its subscription died without
//! closing, or the process was paused) cannot know it did. The feed can only
//! prove the opposite, now and then: "every change made up to this moment was
//! heard here", and other nodes' announcements wait for this node until a
//! deadline. The copies answer only before that deadline, checked on every
//! read against the monotonic clock: a timer would not fire before a paused
//! process serves its first request on waking, a comparison on the read does.
//!
//! [`ChangeListener::caught_up_until`]: idp_domain::ports::ChangeListener::caught_up_until

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The deadline of a node that hears every change itself.
const ALWAYS: u64 = u64::MAX;

/// A deadline, in nanoseconds after `origin`, readable without a lock (one
/// atomic load and one monotonic clock read per check).
pub(crate) struct Vouched {
    origin: Instant,
    /// 0 until first vouched for (so never before), [`ALWAYS`] for a single node.
    until: AtomicU64,
}

impl std::fmt::Debug for Vouched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vouched")
            .field("now", &self.holds())
            .finish_non_exhaustive()
    }
}

impl Vouched {
    /// Holds forever: every change goes through this process.
    pub(crate) fn always() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(ALWAYS),
        }
    }

    /// Holds only once a feed vouched for it, until the deadline it gave.
    pub(crate) fn by_feed() -> Self {
        Self {
            origin: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Moves the deadline to `until`, never backwards (a late call carrying
    /// an older deadline must not shorten a newer one, nor extend a node that
    /// is forever fresh into a deadline).
    pub(crate) fn extend(&self, until: Instant) {
        let nanos = u64::try_from(until.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(ALWAYS - 1);
        self.until.fetch_max(nanos, Ordering::AcqRel);
    }

    /// Whether the copies may answer now.
    pub(crate) fn holds(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        if until == ALWAYS {
            return true;
        }
        u64::try_from(self.origin.elapsed().as_nanos()).is_ok_and(|now| now < until)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fed_deadline_holds_only_once_given_and_until_it_passes() {
        let vouched = Vouched::by_feed();
        assert!(!vouched.holds(), "nothing vouched for yet");
        vouched.extend(Instant::now() + Duration::from_millis(40));
        assert!(vouched.holds());
        // An older deadline arriving late does not shorten it.
        vouched.extend(Instant::now());
        assert!(vouched.holds());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!vouched.holds(), "the deadline passed");
    }

    #[test]
    fn a_single_node_always_holds() {
        let vouched = Vouched::always();
        vouched.extend(Instant::now());
        assert!(vouched.holds());
    }
}
