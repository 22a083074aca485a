use idp_domain::ports::SecretGenerator;
use idp_domain::values::ClientSecret;

/// Client secrets from the operating system's CSPRNG (`getrandom`):
/// `sk_live_` + 64 lowercase hex characters (256 bits).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSecretGenerator;

impl SecretGenerator for OsSecretGenerator {
    // The port cannot report an error, and a secret from anything but the OS
    // CSPRNG must never be handed out: failing the request (the worker's
    // panic) is the only safe answer. getrandom(2) does not fail once the
    // kernel's pool is initialised, which it is long before a request.
    #[expect(clippy::panic, reason = "no secret without the OS CSPRNG; see comment")]
    fn generate(&self) -> ClientSecret {
        let mut bytes = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut bytes) {
            panic!("the OS CSPRNG failed: {e}");
        }
        ClientSecret::new(format!("{}{}", ClientSecret::PREFIX, hex::encode(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_well_formed(s: &str) -> bool {
        s.strip_prefix("sk_live_").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }

    #[test]
    fn secret_format_is_sk_live_and_64_lowercase_hex() {
        for _ in 0..100 {
            let secret = OsSecretGenerator.generate();
            assert!(is_well_formed(secret.expose()), "{}", secret.expose());
        }
        assert!(!is_well_formed("sk_live_ABCDEF"));
        assert!(!is_well_formed(&format!("sk_test_{}", "a".repeat(64))));
    }

    #[test]
    fn two_secrets_differ() {
        let a = OsSecretGenerator.generate();
        let b = OsSecretGenerator.generate();
        assert_ne!(a.expose(), b.expose());
    }
}
