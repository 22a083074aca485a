//! Map keys. Callers' keys (client ids, IP addresses) are kept as they are
//! when short and printable; anything longer or odd is replaced by its
//! SHA-256, so a hostile claimed `client_id` cannot make huge entries.
//!
//! The same rule as the Redis adapter's key naming (its `keys` module), so the
//! two adapters treat every caller key alike.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// Longest caller key kept verbatim.
const MAX_VERBATIM: usize = 128;

/// The caller's `key` as stored: verbatim when at most [`MAX_VERBATIM`]
/// printable ASCII bytes not starting with `#`, otherwise `#` and the hex
/// SHA-256 (the `#` keeps the two forms apart).
pub(crate) fn key_part(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_VERBATIM
        && !key.starts_with('#')
        && key.bytes().all(|b| b.is_ascii_graphic())
    {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("#{}", hex::encode(Sha256::digest(key.as_bytes()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_keys_are_verbatim() {
        assert_eq!(key_part("client:0b7c2a3e"), "client:0b7c2a3e");
        assert_eq!(key_part("ip:2001:db8::1"), "ip:2001:db8::1");
        assert_eq!(key_part(&"x".repeat(128)).len(), 128);
    }

    #[test]
    fn long_odd_or_hash_like_keys_are_hashed() {
        for key in [
            "x".repeat(129),
            "with space".to_owned(),
            "nul\0".to_owned(),
            "é".to_owned(),
            "#abc".to_owned(),
        ] {
            let part = key_part(&key);
            assert!(
                part.starts_with('#') && part.len() == 65,
                "{key:?} -> {part}"
            );
        }
        assert_ne!(key_part(&"x".repeat(200)), key_part(&"y".repeat(200)));
    }
}
