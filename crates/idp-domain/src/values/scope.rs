use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValueError;

/// The scopes that guard the management API. Granting one of them needs a caller
/// that holds it (no escalation).
pub const MANAGEMENT_SCOPES: [&str; 4] = [
    "agents:read",
    "agents:write",
    "audit:read",
    "tokens:introspect",
];

/// One scope token: `^[a-z][a-z0-9_.-]*(:[a-z0-9_.*-]+)*$`, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    /// The longest scope accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates `raw` as a scope token.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() <= Self::MAX_LEN && is_scope(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::new(
                "scope",
                format!(
                    "'{}' must match ^[a-z][a-z0-9_.-]*(:[a-z0-9_.*-]+)*$ and be at most 64 characters",
                    truncate(raw, 80)
                ),
            ))
        }
    }

    /// The scope token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the [`MANAGEMENT_SCOPES`].
    pub fn is_management(&self) -> bool {
        MANAGEMENT_SCOPES.contains(&self.0.as_str())
    }
}

fn truncate(raw: &str, max_chars: usize) -> String {
    raw.chars().take(max_chars).collect()
}

fn is_scope(raw: &str) -> bool {
    let mut segments = raw.split(':');
    let head = segments.next().unwrap_or_default();
    let head_ok = head.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && head
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    head_ok
        && segments.all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.*-".contains(&b))
        })
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Scope::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An agent's capabilities: 1 to 50 distinct scopes, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Capabilities(Vec<Scope>);

impl Capabilities {
    /// The most capabilities an agent may hold.
    pub const MAX: usize = 50;

    /// Validates a list of raw scope strings.
    ///
    /// ```
    /// use idp_domain::values::Capabilities;
    ///
    /// let capabilities = Capabilities::parse(&["agents:read", "reports:write"])?;
    /// assert_eq!(capabilities.management().count(), 1); // agents:read
    /// assert!(Capabilities::parse::<&str>(&[]).is_err()); // 1 to 50 scopes
    /// assert!(Capabilities::parse(&["a:b", "a:b"]).is_err()); // no repeats
    /// # Ok::<(), idp_domain::ValueError>(())
    /// ```
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValueError> {
        let scopes = raw
            .iter()
            .map(|s| Scope::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ValueError::new("capabilities", e.reason))?;
        Self::new(scopes)
    }

    /// Checks count and distinctness of already valid scopes.
    pub fn new(scopes: Vec<Scope>) -> Result<Self, ValueError> {
        if scopes.is_empty() || scopes.len() > Self::MAX {
            return Err(ValueError::new("capabilities", "must hold 1 to 50 scopes"));
        }
        let distinct: BTreeSet<&Scope> = scopes.iter().collect();
        if distinct.len() != scopes.len() {
            return Err(ValueError::new("capabilities", "must not repeat a scope"));
        }
        Ok(Self(scopes))
    }

    /// The scopes, in the order given.
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// Whether `scope` is one of them.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// The management scopes among them.
    pub fn management(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter().filter(|s| s.is_management())
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<Scope>::deserialize(d)?;
        Capabilities::new(raw).map_err(serde::de::Error::custom)
    }
}

/// The scopes a token carries or a client asks for: a set, written space-separated
/// on the wire (RFC 6749 section 3.3).
///
/// ```
/// use idp_domain::values::{Capabilities, ScopeSet};
///
/// let capabilities = Capabilities::parse(&["reports:write", "agents:read"])?;
/// // Without a `scope` parameter a client gets all of its agent's capabilities.
/// let all = ScopeSet::from(&capabilities);
/// assert_eq!(all.to_space_separated(), "agents:read reports:write"); // sorted
///
/// let asked = ScopeSet::parse_space_separated("reports:write")?;
/// assert!(asked.contains("reports:write"));
/// assert!(asked.is_subset_of(&capabilities));
/// assert!(!ScopeSet::parse_space_separated("audit:read")?.is_subset_of(&capabilities));
///
/// // One space between scopes, as RFC 6749 section 3.3 writes them.
/// assert!(ScopeSet::parse_space_separated("agents:read  reports:write").is_err());
/// # Ok::<(), idp_domain::ValueError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Parses a space-separated scope string (RFC 6749 section 3.3). Empty entries
    /// from repeated spaces are refused, as the RFC's grammar allows one space only.
    pub fn parse_space_separated(raw: &str) -> Result<Self, ValueError> {
        if raw.is_empty() {
            return Err(ValueError::new("scope", "must not be empty"));
        }
        raw.split(' ')
            .map(Scope::parse)
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// Whether `scope` (a raw string) is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.as_str() == scope)
    }

    /// Whether every element is in `capabilities`.
    pub fn is_subset_of(&self, capabilities: &Capabilities) -> bool {
        self.0.iter().all(|s| capabilities.contains(s))
    }

    /// Whether every element is in `other`.
    pub fn is_subset_of_set(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The scopes in both `self` and `capabilities`.
    pub fn within(&self, capabilities: &Capabilities) -> ScopeSet {
        Self(
            self.0
                .iter()
                .filter(|s| capabilities.contains(s))
                .cloned()
                .collect(),
        )
    }

    /// The scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The space-separated wire form, sorted.
    pub fn to_space_separated(&self) -> String {
        self.0
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl From<&Capabilities> for ScopeSet {
    fn from(caps: &Capabilities) -> Self {
        Self(caps.as_slice().iter().cloned().collect())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_grammar() {
        for ok in [
            "agents:read",
            "resume:read",
            "a",
            "files.v2:read:*",
            "x_y-z",
            "a:b:c",
        ] {
            assert!(Scope::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Agents:read",
            "1abc",
            "a:",
            ":a",
            "a::b",
            "a b",
            "a:B",
            "a*",
            &"a".repeat(65),
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capabilities_count_and_distinct() {
        assert!(Capabilities::parse::<&str>(&[]).is_err());
        assert!(Capabilities::parse(&["a:b", "a:b"]).is_err());
        let fifty: Vec<String> = (0..50).map(|i| format!("s{i}")).collect();
        assert!(Capabilities::parse(&fifty).is_ok());
        let fifty_one: Vec<String> = (0..51).map(|i| format!("s{i}")).collect();
        assert!(Capabilities::parse(&fifty_one).is_err());
    }

    #[test]
    fn management_scopes_are_recognized() {
        let caps = Capabilities::parse(&["agents:read", "resume:read", "audit:read"]).unwrap();
        let mgmt: Vec<&str> = caps.management().map(Scope::as_str).collect();
        assert_eq!(mgmt, ["agents:read", "audit:read"]);
    }

    #[test]
    fn scope_set_parses_space_separated() {
        let set = ScopeSet::parse_space_separated("b:x a:y b:x").unwrap();
        assert_eq!(set.to_space_separated(), "a:y b:x");
        assert!(ScopeSet::parse_space_separated("a  b").is_err());
        assert!(ScopeSet::parse_space_separated("").is_err());
        let caps = Capabilities::parse(&["a:y", "b:x", "c"]).unwrap();
        assert!(set.is_subset_of(&caps));
        assert!(
            !ScopeSet::parse_space_separated("d")
                .unwrap()
                .is_subset_of(&caps)
        );
    }
}
