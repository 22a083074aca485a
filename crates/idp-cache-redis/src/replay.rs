use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use deadpool_redis::redis;
use idp_domain::StoreError;
use idp_domain::ports::{FirstUse, ReplayGuard};

use crate::connections::{Connections, settle};
use crate::error::unexpected;

/// [`ReplayGuard`] on Redis, shared by every node.
///
/// Keys: `<prefix>replay:used:<key>` exists while a use of `key` counts;
/// `<prefix>replay:since` holds the `now` (unix ms) of the first call after
/// Redis last lost this prefix's data, and never expires. The entries live in
/// their own `used:` namespace so no key can collide with `since`.
///
/// One round trip, a pipeline of two commands, in this order:
///
/// 1. `SET <used> 1 NX PX <expires_at - now>`: `OK` when the key was new
///    (`Yes`), nil when a use still counts (`Replayed`). `SET NX` is atomic
///    in Redis, so two nodes never both get `OK`.
/// 2. `SET <since> <now> NX GET` (Redis 7 or later): the previous value, or
///    nil when this call set it; `remembered_since` is that value, or `now`.
///
/// The order is what makes `remembered_since` true without `MULTI`: `since`
/// is read after the entry was written, so a flush (or a restart without
/// persistence) between the two deletes `since` too, and this call then
/// answers its own `now`, later than needed but never earlier. The other
/// order could read an old `since`, lose the data, and then set the entry on
/// an empty Redis while vouching for the old `since`.
///
/// Expiry is a duration computed from `now`, never an absolute `PXAT` on
/// Redis's clock (this crate's rule). Besides keeping time an input, it is
/// what keeps the guard safe when Redis's clock runs ahead of the nodes':
/// with `PXAT`, a lead longer than the remaining lifetime would make the
/// entry expire at once and let every replay through. Redis counts the
/// duration from when it receives the command, so an entry lives at least
/// until `expires_at` on the caller's clock (rounded up to whole ms).
///
/// What `since` cannot see: a Redis restored from an older RDB/AOF snapshot,
/// or a replica promoted after missing the last writes, keeps an old `since`
/// while the entries written after that snapshot are gone. Run the replay
/// keys on a Redis whose data is either kept or lost whole.
///
/// An `expires_at` at or before `now` answers `Replayed` without storing
/// anything: the domain never asks with an expired expiry, an entry that
/// would already be gone guards nothing, so refusing is the safe answer.
/// (The memory adapter does the same.)
///
/// A `since` value that is not a unix-ms integer is an error
/// (`StoreError::Unknown`), not a guess.
#[derive(Clone)]
pub struct RedisReplayGuard {
    connections: Connections,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayGuard")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisReplayGuard {
    /// A guard keeping its keys under `prefix`.
    pub fn new(connections: Connections, prefix: impl AsRef<str>) -> Self {
        Self {
            connections,
            prefix: prefix.as_ref().into(),
        }
    }

    /// Records `now` as the start of the guard's memory unless Redis already
    /// holds one: a node calls it as it starts, so the assertions and proofs
    /// clients make once a fresh deployment is up are not taken for ones
    /// made before the guard remembered anything.
    pub async fn start(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.connections.get().await?;
        let result = redis::cmd("SET")
            .arg(self.since_key())
            .arg(now.timestamp_millis())
            .arg("NX")
            .query_async::<Option<String>>(&mut *conn)
            .await;
        settle(conn, result).map(drop)
    }

    fn used_key(&self, key: &str) -> String {
        format!("{}replay:used:{key}", self.prefix)
    }

    fn since_key(&self) -> String {
        format!("{}replay:since", self.prefix)
    }
}

/// Milliseconds from `now` to `expires_at` (which is later), rounded up so
/// the entry never expires before `expires_at`.
fn ttl_ms(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let ttl = expires_at - now;
    let whole = ttl.num_milliseconds();
    if TimeDelta::milliseconds(whole) < ttl {
        whole.saturating_add(1)
    } else {
        whole.max(1)
    }
}

/// `remembered_since` from the previous `since` value (nil: this call set it).
fn remembered_since(
    previous: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, StoreError> {
    let Some(previous) = previous else {
        return Ok(now);
    };
    previous
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| unexpected("replay:since is not a unix-ms time"))
}

#[async_trait]
impl ReplayGuard for RedisReplayGuard {
    async fn first_use(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<FirstUse, StoreError> {
        if expires_at <= now {
            return Ok(FirstUse::Replayed);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.used_key(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(expires_at, now))
            .cmd("SET")
            .arg(self.since_key())
            .arg(now.timestamp_millis())
            .arg("NX")
            .arg("GET");
        let mut conn = self.connections.get().await?;
        let result = pipe.query_async(&mut *conn).await;
        let (set, since): (Option<String>, Option<String>) = settle(conn, result)?;
        if set.is_none() {
            return Ok(FirstUse::Replayed);
        }
        Ok(FirstUse::Yes {
            remembered_since: remembered_since(since.as_deref(), now)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn ttl_is_rounded_up_to_whole_milliseconds() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let ttl = |d: TimeDelta| ttl_ms(now + d, now);
        assert_eq!(ttl(TimeDelta::seconds(60)), 60_000);
        assert_eq!(ttl(TimeDelta::microseconds(1_999_001)), 2_000);
        assert_eq!(ttl(TimeDelta::nanoseconds(1)), 1);
    }

    #[test]
    fn since_is_the_previous_value_or_now() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(remembered_since(None, now).unwrap(), now);
        let earlier = now - TimeDelta::hours(3);
        assert_eq!(
            remembered_since(Some(&earlier.timestamp_millis().to_string()), now).unwrap(),
            earlier
        );
        assert!(matches!(
            remembered_since(Some("garbage"), now),
            Err(StoreError::Unknown(_))
        ));
    }
}
