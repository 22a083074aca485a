use std::fmt;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::{self, Script};
use idp_domain::StoreError;
use idp_domain::ports::{RevocationList, RevokedToken, RevokedTokenStore};
use idp_domain::values::TokenId;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::connections::{Connections, failed, settle};

/// How long the "loaded" marker lives. Its expiry makes one node reload now
/// and then, which bounds how long a Redis restored from an old RDB/AOF
/// snapshot (marker present, later revocations missing) can stay stale.
const MARKER_TTL: StdDuration = StdDuration::from_secs(60);
/// Upper bound on one reload; the claim key expires after it.
const LOADING_TTL: StdDuration = StdDuration::from_secs(60);
/// Entries written per pipeline during a reload.
const RELOAD_CHUNK: usize = 500;

/// Sets the marker only if this reload's claim is still there: a flush (or a
/// restart) since the reload began deleted the claim, and then the snapshot
/// may miss revocations written to Redis only, so the marker is not set and
/// the next `contains` reloads again. A later reload that took over the claim
/// sets the marker itself.
///
/// KEYS[1] the claim, KEYS[2] the marker; ARGV nonce, marker TTL (ms).
const FINISH_RELOAD_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// [`RevocationList`] on Redis, backed by the durable [`RevokedTokenStore`].
///
/// Keys: `<prefix>revoked:<jti>` holds the token's expiry (unix ms) and
/// expires with the token; `<prefix>revoked:loaded` says the entries were
/// loaded from the durable store since Redis last lost its data.
///
/// `contains` reads the entry and the marker in one `MGET`. Without the
/// marker (Redis restarted or was flushed, or the marker's minute ran out) it
/// reloads every unexpired revocation from the durable store, then answers.
/// Reloads of one process are serialised, and a reload sets the marker only
/// when no flush overlapped it (see the claim protocol in `reload`).
///
/// A token is reported revoked only while `now` is before its expiry; an entry
/// that cannot be parsed counts as revoked (fail closed).
pub struct RedisRevocationList {
    connections: Connections,
    prefix: Arc<str>,
    durable: Arc<dyn RevokedTokenStore>,
    finish_reload: Script,
    reload_lock: Mutex<()>,
}

impl fmt::Debug for RedisRevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationList")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn ms(d: StdDuration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl RedisRevocationList {
    /// A list keeping its keys under `prefix`, reloading from `durable`.
    pub fn new(
        connections: Connections,
        prefix: impl AsRef<str>,
        durable: Arc<dyn RevokedTokenStore>,
    ) -> Self {
        Self {
            connections,
            prefix: prefix.as_ref().into(),
            durable,
            finish_reload: Script::new(FINISH_RELOAD_SCRIPT),
            reload_lock: Mutex::new(()),
        }
    }

    /// Loads every unexpired revocation from the durable store into Redis and
    /// sets the marker. Call once at start-up, so the first requests do not
    /// pay for it.
    pub async fn warm(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let _serialised = self.reload_lock.lock().await;
        self.reload(now).await.map(|_| ())
    }

    fn entry_key(&self, token_id: TokenId) -> String {
        format!("{}revoked:{}", self.prefix, token_id)
    }

    fn marker_key(&self) -> String {
        format!("{}revoked:loaded", self.prefix)
    }

    fn claim_key(&self) -> String {
        format!("{}revoked:loading", self.prefix)
    }

    /// The entry of `token_id` and whether the marker is set, in one round trip.
    async fn lookup(&self, token_id: TokenId) -> Result<(Option<String>, bool), StoreError> {
        let mut conn = self.connections.get().await?;
        let result = redis::cmd("MGET")
            .arg(self.entry_key(token_id))
            .arg(self.marker_key())
            .query_async(&mut *conn)
            .await;
        let (entry, marker): (Option<String>, Option<String>) = settle(conn, result)?;
        Ok((entry, marker.is_some()))
    }

    /// Copies the durable store's unexpired revocations into Redis and sets
    /// the marker, unless a flush overlapped. Answers what it loaded.
    ///
    /// The claim (a random nonce) is written before the durable store is read.
    /// Any revocation lost in a flush before the claim was committed durably
    /// before it, so the snapshot read after the claim holds it. A flush after
    /// the claim deletes the claim, so the marker is not set.
    async fn reload(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError> {
        let nonce = Uuid::new_v4().simple().to_string();
        {
            let mut conn = self.connections.get().await?;
            let result = redis::cmd("SET")
                .arg(self.claim_key())
                .arg(&nonce)
                .arg("PX")
                .arg(ms(LOADING_TTL))
                .query_async(&mut *conn)
                .await;
            let () = settle(conn, result)?;
        }
        let tokens = self.durable.unexpired(now).await?;
        let mut conn = self.connections.get().await?;
        for chunk in tokens.chunks(RELOAD_CHUNK) {
            let mut pipe = redis::pipe();
            for token in chunk.iter().filter(|t| t.expires_at > now) {
                let ttl_ms = (token.expires_at - now).num_milliseconds().max(1);
                pipe.cmd("SET")
                    .arg(self.entry_key(token.token_id))
                    .arg(token.expires_at.timestamp_millis())
                    .arg("PX")
                    .arg(ttl_ms)
                    .ignore();
            }
            if let Err(err) = pipe.query_async::<()>(&mut *conn).await {
                return Err(failed(conn, err));
            }
        }
        let result = self
            .finish_reload
            .key(self.claim_key())
            .key(self.marker_key())
            .arg(&nonce)
            .arg(ms(MARKER_TTL))
            .invoke_async(&mut *conn)
            .await;
        let marked: i64 = settle(conn, result)?;
        tracing::info!(
            revocations = tokens.len(),
            marked = marked == 1,
            "revocation list reloaded from the durable store"
        );
        Ok(tokens)
    }
}

/// Whether a stored entry (the token's expiry in unix ms) still counts at `now`.
fn entry_counts(entry: &str, now: DateTime<Utc>) -> bool {
    match entry.parse::<i64>() {
        Ok(expires_ms) => expires_ms > now.timestamp_millis(),
        Err(_) => {
            tracing::warn!("unparsable revocation entry in Redis; treated as revoked");
            true
        }
    }
}

#[async_trait]
impl RevocationList for RedisRevocationList {
    async fn insert(&self, token: &RevokedToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        if token.expires_at <= now {
            // Expired tokens are refused anyway; nothing to remember.
            return Ok(());
        }
        let ttl_ms = (token.expires_at - now).num_milliseconds().max(1);
        let mut conn = self.connections.get().await?;
        let result = redis::cmd("SET")
            .arg(self.entry_key(token.token_id))
            .arg(token.expires_at.timestamp_millis())
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut *conn)
            .await;
        settle(conn, result)
    }

    async fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let (entry, loaded) = self.lookup(token_id).await?;
        if loaded {
            return Ok(entry.is_some_and(|e| entry_counts(&e, now)));
        }
        let _serialised = self.reload_lock.lock().await;
        // Another task of this process may have reloaded while this one waited.
        let (entry, loaded) = self.lookup(token_id).await?;
        let in_redis = entry.is_some_and(|e| entry_counts(&e, now));
        if loaded {
            return Ok(in_redis);
        }
        let tokens = self.reload(now).await?;
        Ok(in_redis
            || tokens
                .iter()
                .any(|t| t.token_id == token_id && t.expires_at > now))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn entries_count_until_expiry_and_fail_closed() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let ms = now.timestamp_millis();
        assert!(entry_counts(&(ms + 1).to_string(), now));
        assert!(!entry_counts(&ms.to_string(), now));
        assert!(!entry_counts(&(ms - 1).to_string(), now));
        assert!(entry_counts("1", now) == (1 > ms));
        assert!(entry_counts("garbage", now));
    }
}
