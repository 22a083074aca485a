use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValueError;

/// An agent's e-mail address: at most 254 characters, a dot-atom local part of at
/// most 64 characters and a domain of valid DNS labels. Stored as given; compared
/// case-insensitively through [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";

impl Email {
    /// The longest address accepted (RFC 5321 path limit minus the brackets).
    pub const MAX_LEN: usize = 254;

    /// Validates `raw` and wraps it unchanged.
    ///
    /// ```
    /// use idp_domain::values::Email;
    ///
    /// let email = Email::parse("Screener-01@ACME.example")?;
    /// assert_eq!(email.as_str(), "Screener-01@ACME.example");
    /// assert_eq!(email.normalized(), "screener-01@acme.example");
    ///
    /// let refused = Email::parse("screener-01").unwrap_err();
    /// assert_eq!((refused.field.as_str(), refused.reason.as_str()), ("email", "must contain '@'"));
    /// # Ok::<(), idp_domain::ValueError>(())
    /// ```
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let err = |reason: &str| ValueError::new("email", reason);
        if raw.is_empty() {
            return Err(err("must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(err("must be at most 254 characters"));
        }
        let (local, domain) = raw
            .rsplit_once('@')
            .ok_or_else(|| err("must contain '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(err("local part must be 1 to 64 characters"));
        }
        let local_ok = local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(c))
        });
        if !local_ok {
            return Err(err("local part is not a valid dot-atom"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(err("domain must have at least two labels"));
        }
        let domain_ok = labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !domain_ok {
            return Err(err("domain is not a valid host name"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased form under which uniqueness is enforced.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Email::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_addresses() {
        for ok in [
            "a@b.co",
            "screener-01@acme.example",
            "First.Last+tag@Sub.Example.ORG",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_invalid_addresses() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a..b@example.com",
            ".a@example.com",
            "a@-b.com",
            "a@b_c.com",
            "a b@example.com",
            "a@b..com",
            &long,
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_case_only() {
        let e = Email::parse("Bot@Acme.Example").unwrap();
        assert_eq!(e.as_str(), "Bot@Acme.Example");
        assert_eq!(e.normalized(), "bot@acme.example");
    }
}
