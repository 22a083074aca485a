use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValueError;

/// A tenant slug: `^[a-z0-9][a-z0-9-]{1,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// The operators' own audit chain (`_system`): key events and events no
    /// tenant owns. [`Owner::parse`] refuses this name, so no tenant can be it.
    pub const SYSTEM: &'static str = "_system";

    /// The operators' owner, [`Owner::SYSTEM`].
    pub fn system() -> Self {
        Self(Self::SYSTEM.to_owned())
    }

    /// Whether this is [`Owner::system`].
    pub fn is_system(&self) -> bool {
        self.0 == Self::SYSTEM
    }

    /// An owner as given by an operator on the command line: a tenant slug
    /// or [`Owner::SYSTEM`].
    pub fn parse_operator(raw: &str) -> Result<Self, ValueError> {
        if raw == Self::SYSTEM {
            Ok(Self::system())
        } else {
            Self::parse(raw)
        }
    }

    /// Validates `raw` as a tenant slug.
    ///
    /// ```
    /// use idp_domain::values::Owner;
    ///
    /// assert_eq!(Owner::parse("acme-eu")?.as_str(), "acme-eu");
    /// assert!(Owner::parse("Acme").is_err()); // upper case
    /// assert!(Owner::parse("a").is_err()); // too short
    /// assert!(Owner::parse("-acme").is_err()); // must start with a letter or digit
    /// # Ok::<(), idp_domain::ValueError>(())
    /// ```
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let bytes = raw.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .skip(1)
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if first_ok && rest_ok && (2..=63).contains(&bytes.len()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::new(
                "owner",
                "must match ^[a-z0-9][a-z0-9-]{1,62}$",
            ))
        }
    }

    /// The slug.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Owner::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs() {
        for ok in ["acme", "a1", "0-team", &"a".repeat(63)] {
            assert!(Owner::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_non_slugs() {
        for bad in [
            "",
            "a",
            "-acme",
            "Acme",
            "ac me",
            "acme_",
            &"a".repeat(64),
            "ácme",
        ] {
            assert!(Owner::parse(bad).is_err(), "{bad}");
        }
    }
}
