//! Resource indicators (RFC 8707): the audiences an agent may ask tokens for.

use std::fmt;

use serde::{Serialize, Serializer};

use super::absolute_uri::{self, Refusal};
use crate::ValueError;

/// Most resources an agent may list (contract section 11).
pub const MAX_RESOURCES: usize = 20;

/// Longest resource URI accepted.
pub const MAX_RESOURCE_LENGTH: usize = 2048;

/// An absolute URI without a fragment (`https://api.example/mcp`,
/// `urn:example:inventory`), compared as the exact string given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ResourceUri(String);

impl ResourceUri {
    /// Checks `raw` (RFC 8707 section 2: an absolute URI, RFC 3986 section
    /// 4.3, with no fragment). `field` names it in the error.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValueError> {
        let refuse = |reason: &str| ValueError::new(field, reason);
        if raw.is_empty() || raw.len() > MAX_RESOURCE_LENGTH {
            return Err(refuse(&format!(
                "must be an absolute URI of 1 to {MAX_RESOURCE_LENGTH} characters"
            )));
        }
        let uri = absolute_uri::parse(raw).map_err(|refusal| match refusal {
            Refusal::Fragment => refuse("must not have a fragment"),
            Refusal::Syntax => refuse("must be an absolute URI (RFC 3986)"),
        })?;
        let is_http = ["http", "https"]
            .iter()
            .any(|http| uri.scheme.eq_ignore_ascii_case(http));
        if is_http && uri.host.is_none_or(str::is_empty) {
            return Err(refuse("an http(s) URI must name a host"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's resources: 0 to [`MAX_RESOURCES`] distinct URIs, in the order
/// given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources(Vec<ResourceUri>);

impl Resources {
    /// Checks a list as a client sent it.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, ValueError> {
        if raw.len() > MAX_RESOURCES {
            return Err(ValueError::new(
                "resources",
                format!("at most {MAX_RESOURCES} resources"),
            ));
        }
        let mut uris: Vec<ResourceUri> = Vec::with_capacity(raw.len());
        for (i, item) in raw.iter().enumerate() {
            let uri = ResourceUri::parse(&format!("resources[{i}]"), item.as_ref())?;
            if uris.contains(&uri) {
                return Err(ValueError::new(
                    format!("resources[{i}]"),
                    "resources must be distinct",
                ));
            }
            uris.push(uri);
        }
        Ok(Self(uris))
    }

    /// The URIs.
    pub fn iter(&self) -> impl Iterator<Item = &ResourceUri> {
        self.0.iter()
    }

    /// Whether `uri` is one of them (exact string comparison).
    pub fn contains(&self, uri: &str) -> bool {
        self.0.iter().any(|r| r.as_str() == uri)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The URIs as strings, for storage.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|r| r.0.clone()).collect()
    }
}

impl Serialize for Resources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_are_accepted() {
        for ok in [
            "https://api.example/mcp",
            "http://localhost:8931/mcp",
            "urn:example:inventory",
            "https://api.example/path?query=1",
        ] {
            assert!(ResourceUri::parse("resource", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn relative_fragmented_or_odd_uris_are_refused() {
        for bad in [
            "",
            "/relative",
            "api.example",
            "https://api.example/#frag",
            "https://api.example/ space",
            "https://",
            "https:///path",
            "https://api.example/\\x",
        ] {
            assert!(ResourceUri::parse("resource", bad).is_err(), "{bad:?}");
        }
        assert!(ResourceUri::parse("resource", &format!("urn:{}", "a".repeat(2048))).is_err());
    }

    #[test]
    fn lists_are_bounded_and_distinct() {
        let many: Vec<String> = (0..21).map(|i| format!("urn:r:{i}")).collect();
        assert!(Resources::parse(&many).is_err());
        assert!(Resources::parse(&many[..20]).is_ok());
        let err = Resources::parse(&["urn:a", "urn:a"]).unwrap_err();
        assert_eq!(err.field, "resources[1]");
        assert!(Resources::parse::<&str>(&[]).unwrap().is_empty());
    }
}
