//! How values are laid out in SQLite's few storage classes (see the comment at
//! the top of `migrations/sqlite/.../up.sql`):
//!
//! * a UUID is TEXT, lowercase and hyphenated, whose text order is the UUID's
//!   byte order, so `ORDER BY ... DESC` agrees with the domain's `Ord`;
//! * an instant is INTEGER milliseconds since the Unix epoch (UTC). The
//!   program's clock already truncates to milliseconds; an instant with a finer
//!   part (a client's `expiresAt`) is stored rounded down to its millisecond,
//!   as PostgreSQL rounds to its microsecond.
//!
//! Comparing a stored instant with a bound is exact whatever the bound's
//! precision: the bound is converted to the integer that makes the integer
//! comparison equal to the comparison of instants ([`at_or_after`],
//! [`at_or_before`], [`after`]).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The TEXT form of a UUID.
pub(crate) fn uuid_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// Parses a stored UUID.
pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, uuid::Error> {
    Uuid::try_parse(text)
}

/// The stored form of an instant: whole milliseconds, rounded down.
pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Reads a stored instant; `None` when it is out of chrono's range.
pub(crate) fn instant(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(millis)
}

/// Whether `at` has a part finer than a millisecond.
fn has_sub_millis(at: DateTime<Utc>) -> bool {
    !at.timestamp_subsec_nanos().is_multiple_of(1_000_000)
}

/// The bound `b` such that `stored >= b` holds exactly when the stored instant
/// is at or after `at`.
pub(crate) fn at_or_after(at: DateTime<Utc>) -> i64 {
    millis(at).saturating_add(i64::from(has_sub_millis(at)))
}

/// The bound `b` such that `stored <= b` holds exactly when the stored instant
/// is at or before `at`.
pub(crate) fn at_or_before(at: DateTime<Utc>) -> i64 {
    millis(at)
}

/// The bound `b` such that `stored > b` holds exactly when the stored instant
/// is after `at`.
pub(crate) fn after(at: DateTime<Utc>) -> i64 {
    millis(at)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
    }

    #[test]
    fn uuid_text_order_is_uuid_order() {
        let mut ids: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
        ids.extend([Uuid::nil(), Uuid::max()]);
        let mut by_text = ids.clone();
        by_text.sort_by_key(|id| uuid_text(*id));
        ids.sort();
        assert_eq!(by_text, ids);
        for id in ids {
            assert_eq!(parse_uuid(&uuid_text(id)).unwrap(), id);
        }
    }

    #[test]
    fn instants_round_trip_at_millisecond_precision() {
        for at in [
            base(),
            base() + Duration::milliseconds(123),
            Utc.timestamp_millis_opt(0).unwrap(),
            Utc.timestamp_millis_opt(-1).unwrap(),
        ] {
            assert_eq!(instant(millis(at)), Some(at));
        }
        let fine = base() + Duration::microseconds(1_500);
        assert_eq!(millis(fine), millis(base()) + 1, "rounded down");
        let before_epoch = Utc.timestamp_millis_opt(0).unwrap() - Duration::microseconds(500);
        assert_eq!(millis(before_epoch), -1, "rounded down, not toward zero");
        assert_eq!(instant(i64::MAX), None);
    }

    #[test]
    fn bounds_compare_exactly_whatever_their_precision() {
        let stored = [0_i64, 1, 2].map(|ms| millis(base()) + ms);
        let at = |ms: i64| instant(ms).unwrap();
        for bound in [
            base(),
            base() + Duration::microseconds(500),
            base() + Duration::microseconds(1_000),
            base() + Duration::nanoseconds(1_999_999),
        ] {
            for s in stored {
                assert_eq!(s >= at_or_after(bound), at(s) >= bound, "{s} >= {bound}");
                assert_eq!(s <= at_or_before(bound), at(s) <= bound, "{s} <= {bound}");
                assert_eq!(s > after(bound), at(s) > bound, "{s} > {bound}");
            }
        }
    }
}
