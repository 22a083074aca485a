use std::fmt;
use std::str::FromStr;

use crate::CryptoError;

/// The JWS algorithms AgentIdP signs access tokens with (`IDP_SIGNING_ALG`).
///
/// Names are the JWS registry's, compared case-sensitively as JOSE does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, RSA 2048-bit keys (the default).
    #[default]
    RS256,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// EdDSA with Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [SigningAlgorithm; 3] = [Self::RS256, Self::ES256, Self::EdDSA];

    /// The JWS `alg` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlgorithm {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| CryptoError::UnsupportedAlgorithm(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in SigningAlgorithm::ALL {
            assert_eq!(alg.to_string().parse::<SigningAlgorithm>().unwrap(), alg);
        }
        assert_eq!(SigningAlgorithm::default(), SigningAlgorithm::RS256);
    }

    #[test]
    fn refuses_other_names() {
        for name in ["HS256", "none", "rs256", "eddsa", "PS256", "ES384", ""] {
            assert!(
                matches!(
                    name.parse::<SigningAlgorithm>(),
                    Err(CryptoError::UnsupportedAlgorithm(_))
                ),
                "{name}"
            );
        }
    }
}
