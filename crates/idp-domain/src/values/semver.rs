use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValueError;

/// A semantic version (`MAJOR.MINOR.PATCH`, optional `-pre.release` and
/// `+build`), per semver.org 2.0.0, at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SemVer(String);

impl SemVer {
    /// The longest version string accepted.
    pub const MAX_LEN: usize = 128;

    /// Validates `raw` as a semantic version.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() <= Self::MAX_LEN && is_semver(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::new(
                "version",
                "must be a semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], at most 128 characters",
            ))
        }
    }

    /// The version string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_numeric_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

fn is_alnum_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_semver(raw: &str) -> bool {
    let (rest, build) = match raw.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (raw, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_numeric_identifier(p)) {
        return false;
    }
    let pre_ok = pre.is_none_or(|pre| {
        pre.split('.').all(|id| {
            is_alnum_identifier(id)
                && (!id.bytes().all(|b| b.is_ascii_digit()) || is_numeric_identifier(id))
        })
    });
    let build_ok = build.is_none_or(|build| build.split('.').all(is_alnum_identifier));
    pre_ok && build_ok
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SemVer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        SemVer::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_semver() {
        for ok in [
            "0.0.0",
            "1.4.2",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0+20130313144700",
            "1.0.0-beta+exp.sha.5114f85",
            "1.0.0-rc-1",
        ] {
            assert!(SemVer::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_non_semver() {
        let long = format!("1.0.0-{}", "a".repeat(130));
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.02.3",
            "v1.2.3",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-01",
            "1.2.3-a..b",
            "1.2.3-a_b",
            " 1.2.3",
            "1.2.-3",
            &long,
        ] {
            assert!(SemVer::parse(bad).is_err(), "{bad}");
        }
    }
}
