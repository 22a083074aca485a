//! Admission (contract section 7): the names of the windows a request is
//! counted in, the window's length and the quota month. The HTTP layer, the
//! services and both cache adapters use these, so a key or a month is
//! computed in exactly one place.
//!
//! Three kinds of sliding window, each [`RATE_WINDOW`] long:
//! - [`agent_key`]: every request of an authenticated agent, however the
//!   request spelled its id (a UUID in upper case or without hyphens names the
//!   same agent, so it is the same window);
//! - [`address_key`]: every unauthenticated request, by client address
//!   (IPv6 clients by their /64, which one host usually holds whole);
//! - [`auth_failure_key`]: failed client authentications, per claimed client
//!   per client address, so guessing at an agent's secret never spends the
//!   agent's own window, and one address cannot lock the agent out for others.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::values::AgentId;

/// The length of every rate-limit window: limits are per minute.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Claimed client ids that name no agent are clipped to this many characters
/// in a key, so a caller cannot grow keys without bound.
const MAX_CLAIMED_ID_CHARS: usize = 64;

/// The window of an authenticated agent's requests.
///
/// ```
/// use idp_domain::admission::agent_key;
/// use idp_domain::values::AgentId;
/// let id: uuid::Uuid = "0b7c2a3e-1f00-4a5b-8c9d-0123456789ab".parse().unwrap();
/// assert_eq!(agent_key(AgentId(id)), "agent:0b7c2a3e-1f00-4a5b-8c9d-0123456789ab");
/// ```
pub fn agent_key(agent: AgentId) -> String {
    format!("agent:{}", agent.0.hyphenated())
}

/// The window of the unauthenticated requests from `address` (unknown: one
/// shared window).
///
/// ```
/// use idp_domain::admission::address_key;
///
/// assert_eq!(address_key(Some("203.0.113.7".parse()?)), "ip:203.0.113.7");
/// // An IPv6 client counts by its /64.
/// assert_eq!(address_key(Some("2001:db8:1:2:3:4:5:6".parse()?)), "ip:2001:db8:1:2::/64");
/// assert_eq!(address_key(None), "ip:unknown");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn address_key(address: Option<IpAddr>) -> String {
    format!("ip:{}", address_bucket(address))
}

/// The window of failed authentications of `claimed_client` from `address`.
///
/// ```
/// use idp_domain::admission::auth_failure_key;
///
/// let address = Some("203.0.113.7".parse()?);
/// // Every spelling of one UUID is one client, so one window.
/// assert_eq!(
///     auth_failure_key("0B7C2A3E1F004A5B8C9D0123456789AB", address),
///     "authfail:0b7c2a3e-1f00-4a5b-8c9d-0123456789ab@203.0.113.7"
/// );
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn auth_failure_key(claimed_client: &str, address: Option<IpAddr>) -> String {
    format!(
        "authfail:{}@{}",
        canonical_client_id(claimed_client),
        address_bucket(address)
    )
}

/// A claimed client id as one spelling: a UUID in its hyphenated lower-case
/// form (whatever form [`Uuid::parse_str`] read), anything else clipped.
pub fn canonical_client_id(claimed: &str) -> String {
    match Uuid::parse_str(claimed) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => claimed.chars().take(MAX_CLAIMED_ID_CHARS).collect(),
    }
}

/// Addresses as limits count them: an IPv4 address (also when written as an
/// IPv4-mapped IPv6 address) on its own, an IPv6 address by its /64.
pub fn address_bucket(address: Option<IpAddr>) -> String {
    match address {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let segments = v6.segments();
                let network = std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                );
                format!("{network}/64")
            }
        },
    }
}

/// A sliding window's decision, as every limiter reports it (contract
/// section 7's headers): whether this request was counted, `remaining` after
/// it, `reset_at` the unix second (rounded up) at which the oldest counted
/// request leaves the window (a full window from now when nothing is
/// counted), and `retry_after`, when refused, the whole seconds until then
/// (at least 1; 0 when allowed). `counted` is the requests in the window
/// after this one, `oldest_ms` the time of the oldest of them.
///
/// ```
/// use idp_domain::admission::rate_decision;
/// let d = rate_decision(false, 3, Some(1_000), 3, 60_000, 30_500);
/// assert_eq!((d.allowed, d.remaining, d.reset_at, d.retry_after), (false, 0, 61, 31));
/// ```
pub fn rate_decision(
    allowed: bool,
    counted: u32,
    oldest_ms: Option<i64>,
    limit: u32,
    window_ms: i64,
    now_ms: i64,
) -> crate::ports::RateDecision {
    let frees_at_ms = oldest_ms.unwrap_or(now_ms).saturating_add(window_ms);
    let retry_after = if allowed {
        0
    } else {
        u64::try_from(ceil_secs(frees_at_ms.saturating_sub(now_ms)))
            .unwrap_or(0)
            .max(1)
    };
    crate::ports::RateDecision {
        allowed,
        limit,
        remaining: limit.saturating_sub(counted),
        reset_at: ceil_secs(frees_at_ms),
        retry_after,
    }
}

/// `ms` rounded up to whole seconds.
fn ceil_secs(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

/// Longest key a limiter or counter keeps as it is.
const MAX_VERBATIM_KEY: usize = 128;

/// A key as a limiter or usage counter stores it: verbatim when at most 128
/// printable ASCII bytes not starting with `#`, otherwise `#` and its hex
/// SHA-256 (the `#` keeps the two forms apart). The keys above are short,
/// but an adapter takes any key its port is given, and a caller must not be
/// able to grow its storage; every adapter stores keys this one way.
///
/// ```
/// use idp_domain::admission::stored_key;
/// assert_eq!(stored_key("ip:192.0.2.1"), "ip:192.0.2.1");
/// assert_eq!(stored_key(&"x".repeat(500)).len(), 65);
/// ```
pub fn stored_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_VERBATIM_KEY
        && !key.starts_with('#')
        && key.bytes().all(|b| b.is_ascii_graphic())
    {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("#{}", hex::encode(Sha256::digest(key.as_bytes()))))
    }
}

/// The first instant of the UTC calendar month of `now`: monthly quotas count
/// from it.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use idp_domain::admission::{month_start, next_month_start, seconds_to_next_month};
///
/// let now = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap();
/// assert_eq!(month_start(now), Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
/// assert_eq!(next_month_start(now), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single());
/// assert_eq!(seconds_to_next_month(now), 60);
/// ```
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// The first instant of the UTC calendar month after `now`'s: when a monthly
/// quota starts over. `None` only past the end of chrono's calendar.
pub fn next_month_start(now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (year, month) = if now.month() == 12 {
        (now.year().checked_add(1)?, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).single()
}

/// Whole seconds from `now` until the quota month after it starts, at least 1:
/// the `Retry-After` of a spent monthly quota.
pub fn seconds_to_next_month(now: DateTime<Utc>) -> u64 {
    next_month_start(now).map_or(1, |next| {
        u64::try_from((next - now).num_seconds())
            .unwrap_or(1)
            .max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).single().unwrap()
    }

    #[test]
    fn every_spelling_of_an_agent_id_is_one_client() {
        let canonical = "0b7c2a3e-1f00-4a5b-8c9d-0123456789ab";
        for spelling in [
            canonical,
            "0B7C2A3E-1F00-4A5B-8C9D-0123456789AB",
            "0b7c2a3e1f004a5b8c9d0123456789ab",
            "{0b7c2a3e-1f00-4a5b-8c9d-0123456789ab}",
            "urn:uuid:0b7c2a3e-1f00-4a5b-8c9d-0123456789AB",
            "0B7c2a3E-1f00-4A5b-8c9D-0123456789aB",
        ] {
            assert_eq!(canonical_client_id(spelling), canonical, "{spelling}");
            assert_eq!(
                auth_failure_key(spelling, None),
                format!("authfail:{canonical}@unknown")
            );
        }
        assert_eq!(canonical_client_id(&"x".repeat(500)).len(), 64);
    }

    #[test]
    fn ipv6_clients_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(Some(a)), "ip:2001:db8:1:2::/64");
        assert_eq!(address_key(Some(a)), address_key(Some(b)));
        assert_ne!(address_key(Some(a)), address_key(Some(other)));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(address_key(Some(mapped)), "ip:203.0.113.7");
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_key(Some(v4)), "ip:203.0.113.7");
        assert_eq!(address_key(None), "ip:unknown");
    }

    #[test]
    fn failures_are_per_client_and_per_address() {
        let here: IpAddr = "198.51.100.1".parse().unwrap();
        let there: IpAddr = "198.51.100.2".parse().unwrap();
        assert_ne!(
            auth_failure_key("client", Some(here)),
            auth_failure_key("client", Some(there))
        );
        assert_ne!(
            auth_failure_key("a", Some(here)),
            auth_failure_key("b", Some(here))
        );
    }

    #[test]
    fn short_printable_keys_are_stored_as_they_are_and_others_hashed() {
        assert_eq!(stored_key("agent:0b7c2a3e"), "agent:0b7c2a3e");
        assert_eq!(stored_key("ip:2001:db8::/64"), "ip:2001:db8::/64");
        for key in [
            "x".repeat(129),
            "with space".to_owned(),
            "nul\0".to_owned(),
            "é".to_owned(),
            "#abc".to_owned(),
        ] {
            let stored = stored_key(&key);
            assert!(
                stored.starts_with('#') && stored.len() == 65,
                "{key:?} -> {stored}"
            );
        }
        assert_ne!(stored_key(&"x".repeat(200)), stored_key(&"y".repeat(200)));
        assert_eq!(stored_key(&"x".repeat(128)).len(), 128);
    }

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(999), 1);
        assert_eq!(ceil_secs(1000), 1);
        assert_eq!(ceil_secs(1001), 2);
        assert_eq!(ceil_secs(-1), 0);
        assert_eq!(ceil_secs(-1000), -1);
    }

    #[test]
    fn decisions_count_down_and_refusals_wait_for_the_oldest() {
        let allowed = rate_decision(true, 1, Some(5_000), 3, 60_000, 5_000);
        assert_eq!(
            (allowed.remaining, allowed.reset_at, allowed.retry_after),
            (2, 65, 0)
        );
        // Nothing counted (limit 0): a full window from now.
        let empty = rate_decision(false, 0, None, 0, 1_000, 5_000);
        assert_eq!((empty.reset_at, empty.retry_after), (6, 1));
        // No overflow at the ends of time.
        let late = rate_decision(false, 1, Some(i64::MAX - 1), 1, i64::MAX, i64::MAX - 1);
        assert!(late.retry_after >= 1);
    }

    #[test]
    fn months_roll_over_at_utc_boundaries() {
        assert_eq!(
            month_start(at(2030, 3, 31, 23, 59, 59)),
            at(2030, 3, 1, 0, 0, 0)
        );
        assert_eq!(
            next_month_start(at(2030, 1, 31, 23, 59, 59)),
            Some(at(2030, 2, 1, 0, 0, 0))
        );
        assert_eq!(
            next_month_start(at(2030, 12, 31, 23, 59, 59)),
            Some(at(2031, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next_month_start(at(2028, 2, 29, 12, 0, 0)),
            Some(at(2028, 3, 1, 0, 0, 0))
        );
        assert_eq!(seconds_to_next_month(at(2030, 1, 31, 23, 59, 59)), 1);
        assert_eq!(seconds_to_next_month(at(2030, 1, 31, 23, 0, 0)), 3600);
    }
}
