//! The system adapters of the `Clock` and `IdGenerator` ports.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use idp_domain::ports::{Clock, IdGenerator};
use uuid::Uuid;

/// The operating system's clock, truncated to milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the one adapter allowed to read the system clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        now.duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(now)
    }
}

/// Time-ordered UUIDv7 identifiers (index-friendly; random in their low bits).
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_has_millisecond_precision() {
        let now = SystemClock.now();
        assert_eq!(now.timestamp_subsec_nanos() % 1_000_000, 0);
    }

    #[test]
    fn ids_are_v7_and_distinct() {
        let (a, b) = (UuidV7Ids.new_id(), UuidV7Ids.new_id());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
    }
}
