use std::fmt;

/// A client secret in memory. Its `Debug` is redacted, and it has no `Display`
/// and no `Serialize`, so it cannot slip into a log line or an audit event.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The prefix of every secret AgentIdP generates.
    pub const PREFIX: &'static str = "sk_live_";

    /// Wraps a secret received from a client or made by a generator.
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    /// The secret itself, for hashing or for the one response that returns it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// A stored slow, salted hash of a secret in PHC string form (Argon2id) or
/// modular crypt form (bcrypt), together with a short lookup hint that narrows
/// which of an agent's credentials a presented secret can belong to.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    /// The PHC / MCF hash string.
    pub hash: String,
    /// A few hex characters derived from the secret (see
    /// [`crate::ports::SecretHasher::lookup_hint`]), too short to test guesses
    /// offline; `None` for imported hashes, which then match any presented secret.
    pub hint: Option<String>,
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ClientSecret::new("sk_live_abc".into());
        assert!(!format!("{s:?}").contains("abc"));
        let h = SecretHash {
            hash: "$argon2id$v=19$xyz".into(),
            hint: Some("abcd".into()),
        };
        assert!(!format!("{h:?}").contains("xyz"));
    }
}
