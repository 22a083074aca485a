//! Test helpers: a clock the test moves.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use idp_domain::ports::Clock;

/// A clock that stays where the test puts it.
#[derive(Debug)]
pub(crate) struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    /// A clock at `T0 + seconds`.
    pub(crate) fn at(seconds: i64) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t(seconds))))
    }

    /// Moves the clock to `T0 + seconds`.
    pub(crate) fn set(&self, seconds: i64) {
        *self.0.lock().unwrap() = t(seconds);
    }

    /// Moves the clock to `at`.
    pub(crate) fn set_to(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The tests' origin of time (2026-09-21), a whole second.
pub(crate) const T0: i64 = 1_790_000_000;

/// `T0 + seconds`.
pub(crate) fn t(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(T0 + seconds, 0).unwrap()
}

/// One hour, the tests' token lifetime.
pub(crate) fn ttl() -> Duration {
    Duration::seconds(3600)
}
