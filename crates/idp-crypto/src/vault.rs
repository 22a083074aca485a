//! How private signing keys are stored: as PKCS#8 PEM, or sealed under a
//! key-encryption key with AES-256-GCM.
//!
//! A sealed key is `agentidp-sealed:v1:aes-256-gcm:` followed by the standard
//! base64 of a 12-byte random nonce, then the ciphertext and its 16-byte tag.
//! The key's `kid` is the associated data, so a sealed key copied under
//! another `kid` does not open.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idp_domain::StoreError;
use idp_domain::ports::{GeneratedKey, KeyGenerator};
use zeroize::Zeroizing;

use crate::{CryptoError, SigningAlgorithm, generate_signing_key};

/// What every sealed private key starts with.
pub const SEALED_PREFIX: &str = "agentidp-sealed:v1:aes-256-gcm:";

/// Length of a key-encryption key in bytes (AES-256).
pub const KEY_ENCRYPTION_KEY_LEN: usize = 32;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals and opens stored private keys.
///
/// [`KeyVault::plaintext`] stores PEM as it is; [`KeyVault::from_key_file`]
/// seals under a key-encryption key. Either opens plain PEM, so keys stored
/// before a key-encryption key was configured keep working (and can be sealed
/// with [`KeyVault::reseal`]).
pub struct KeyVault {
    cipher: Option<Aes256Gcm>,
    /// Where the key-encryption key came from, for messages.
    source: Option<PathBuf>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault")
            .field("seals", &self.cipher.is_some())
            .field("key_file", &self.source)
            .finish_non_exhaustive()
    }
}

impl KeyVault {
    /// A vault without a key-encryption key: private keys are stored as PEM.
    /// It cannot open sealed keys.
    pub fn plaintext() -> Self {
        Self {
            cipher: None,
            source: None,
        }
    }

    /// A vault sealing under `key` (32 bytes).
    pub fn from_key(key: &[u8; KEY_ENCRYPTION_KEY_LEN]) -> Self {
        Self {
            cipher: Some(Aes256Gcm::new(key.into())),
            source: None,
        }
    }

    /// A vault sealing under the key-encryption key in `path`: 32 random
    /// bytes as standard base64 (`openssl rand -base64 32`), surrounding
    /// whitespace allowed. The key itself never appears in an error.
    pub fn from_key_file(path: impl AsRef<Path>) -> Result<Self, CryptoError> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CryptoError::KeyFile {
                path: path.to_owned(),
                source,
            }
        })?);
        let invalid = |reason: &str| CryptoError::KeyEncryptionKey {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            invalid("expected 32 random bytes as standard base64 (openssl rand -base64 32)")
        })?);
        let key: &[u8; KEY_ENCRYPTION_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| invalid("expected exactly 32 bytes once base64-decoded"))?;
        let mut vault = Self::from_key(key);
        vault.source = Some(path.to_owned());
        Ok(vault)
    }

    /// Whether this vault seals (has a key-encryption key).
    pub fn seals(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether a stored private key is sealed (rather than PEM).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// The private key `pem` of `kid` as it is to be stored: sealed when the
    /// vault has a key-encryption key (a fresh random nonce each time), else
    /// the PEM itself.
    pub fn seal(&self, kid: &str, pem: &str) -> Result<String, CryptoError> {
        let Some(cipher) = &self.cipher else {
            return Ok(pem.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| CryptoError::Operation(format!("the OS CSPRNG failed: {e}")))?;
        let ciphertext = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: pem.as_bytes(),
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Operation("AES-256-GCM sealing failed".to_owned()))?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// The PEM of the stored private key of `kid`: a sealed one (starting
    /// with [`SEALED_PREFIX`]) opened, anything else (a stored PEM, starting
    /// with `-----BEGIN`) as it is, for the key parser to judge.
    /// [`CryptoError::SealedKey`] when it is sealed and this vault has no
    /// key-encryption key, or another one, or the value was sealed for
    /// another `kid` or altered.
    pub fn open(&self, kid: &str, stored: &str) -> Result<Zeroizing<String>, CryptoError> {
        let refuse = |reason: &str| CryptoError::SealedKey {
            kid: kid.to_owned(),
            reason: reason.to_owned(),
        };
        // Anything not sealed is taken as PEM; parsing it judges it.
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Zeroizing::new(stored.to_owned()));
        };
        let Some(cipher) = &self.cipher else {
            return Err(refuse(
                "it is sealed, and no key-encryption key is configured",
            ));
        };
        let sealed = STANDARD
            .decode(encoded)
            .map_err(|_| refuse("the sealed value is not valid base64"))?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(refuse("the sealed value is too short"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| refuse("the sealed value is too short"))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: kid.as_bytes(),
                    },
                )
                .map_err(|_| {
                    refuse(
                        "the key-encryption key is wrong (or the sealed value was altered, \
                         or sealed for another kid)",
                    )
                })?,
        );
        let pem = std::str::from_utf8(&plain).map_err(|_| refuse("the opened key is not text"))?;
        Ok(Zeroizing::new(pem.to_owned()))
    }

    /// The stored private key of `kid` opened with this vault and stored
    /// again as `to` stores it: to seal plain keys, change the key-encryption
    /// key, or unseal.
    pub fn reseal(&self, kid: &str, stored: &str, to: &KeyVault) -> Result<String, CryptoError> {
        let pem = self.open(kid, stored)?;
        to.seal(kid, &pem)
    }
}

/// [`KeyGenerator`]: fresh keys ([`generate_signing_key`]) stored as the
/// vault stores them (sealed when it has a key-encryption key).
#[derive(Debug, Clone)]
pub struct VaultKeyGenerator {
    vault: Arc<KeyVault>,
}

impl VaultKeyGenerator {
    /// A generator sealing with `vault`.
    pub fn new(vault: Arc<KeyVault>) -> Self {
        Self { vault }
    }
}

impl KeyGenerator for VaultKeyGenerator {
    fn generate(&self, algorithm: &str) -> Result<GeneratedKey, StoreError> {
        let algorithm: SigningAlgorithm = algorithm
            .parse()
            .map_err(|e: CryptoError| StoreError::Unknown(e.into()))?;
        let key = generate_signing_key(algorithm).map_err(|e| StoreError::Unknown(e.into()))?;
        let private_key = self
            .vault
            .seal(&key.kid, &key.pem)
            .map_err(|e| StoreError::Unknown(e.into()))?;
        Ok(GeneratedKey {
            kid: key.kid.clone(),
            private_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    fn vault(byte: u8) -> KeyVault {
        KeyVault::from_key(&[byte; 32])
    }

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("idp-crypto-vault-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn is_sealed_key_error(e: &CryptoError, kid: &str) -> bool {
        matches!(e, CryptoError::SealedKey { kid: k, .. } if k == kid)
    }

    #[test]
    fn seal_then_open_round_trips() {
        let v = vault(1);
        let sealed = v.seal("kid-1", PEM).unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(KeyVault::is_sealed(&sealed));
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(v.open("kid-1", &sealed).unwrap().as_str(), PEM);
        let raw = STANDARD.decode(&sealed[SEALED_PREFIX.len()..]).unwrap();
        assert_eq!(raw.len(), NONCE_LEN + PEM.len() + TAG_LEN);
    }

    #[test]
    fn two_seals_of_one_key_differ() {
        let v = vault(1);
        let a = v.seal("k", PEM).unwrap();
        let b = v.seal("k", PEM).unwrap();
        assert_ne!(a, b);
        assert_eq!(v.open("k", &a).unwrap(), v.open("k", &b).unwrap());
    }

    #[test]
    fn the_wrong_key_does_not_open() {
        let sealed = vault(1).seal("k", PEM).unwrap();
        let e = vault(2).open("k", &sealed).unwrap_err();
        assert!(is_sealed_key_error(&e, "k"), "{e:?}");
        assert!(e.to_string().contains("key-encryption key is wrong"), "{e}");
    }

    #[test]
    fn without_a_key_a_sealed_key_does_not_open() {
        let sealed = vault(1).seal("k", PEM).unwrap();
        let e = KeyVault::plaintext().open("k", &sealed).unwrap_err();
        assert!(is_sealed_key_error(&e, "k"), "{e:?}");
        assert!(e.to_string().contains("no key-encryption key"), "{e}");
    }

    #[test]
    fn a_sealed_key_moved_to_another_kid_does_not_open() {
        let v = vault(1);
        let sealed = v.seal("a", PEM).unwrap();
        assert!(is_sealed_key_error(&v.open("b", &sealed).unwrap_err(), "b"));
    }

    #[test]
    fn tampered_sealed_values_do_not_open() {
        let v = vault(1);
        let sealed = v.seal("k", PEM).unwrap();
        let mut raw = STANDARD.decode(&sealed[SEALED_PREFIX.len()..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = format!("{SEALED_PREFIX}{}", STANDARD.encode(&raw));
            assert!(is_sealed_key_error(&v.open("k", &bad).unwrap_err(), "k"));
            raw[i] ^= 1;
        }
        for bad in [
            SEALED_PREFIX.to_owned(),
            format!("{SEALED_PREFIX}AAAA"),
            format!("{SEALED_PREFIX}not base64!"),
            format!("{}x", &sealed),
        ] {
            assert!(
                is_sealed_key_error(&v.open("k", &bad).unwrap_err(), "k"),
                "{bad}"
            );
        }
    }

    #[test]
    fn plain_pem_opens_as_itself_with_or_without_a_key() {
        assert!(!KeyVault::is_sealed(PEM));
        assert_eq!(KeyVault::plaintext().open("k", PEM).unwrap().as_str(), PEM);
        assert_eq!(vault(1).open("k", PEM).unwrap().as_str(), PEM);
        assert_eq!(KeyVault::plaintext().seal("k", PEM).unwrap(), PEM);
        assert!(!KeyVault::plaintext().seals());
        assert!(vault(1).seals());
    }

    #[test]
    fn reseal_moves_between_vaults() {
        let (old, new, plain) = (vault(1), vault(2), KeyVault::plaintext());
        let sealed = plain.reseal("k", PEM, &old).unwrap();
        let moved = old.reseal("k", &sealed, &new).unwrap();
        assert!(old.open("k", &moved).is_err());
        assert_eq!(new.open("k", &moved).unwrap().as_str(), PEM);
        assert_eq!(new.reseal("k", &moved, &plain).unwrap(), PEM);
        assert!(plain.reseal("k", &moved, &new).is_err());
    }

    #[test]
    fn key_files_are_32_bytes_of_base64() {
        let key = [7u8; 32];
        let good = temp_file(
            "good.key",
            format!("  {}\n\n", STANDARD.encode(key)).as_bytes(),
        );
        let v = KeyVault::from_key_file(&good).unwrap();
        let sealed = v.seal("k", PEM).unwrap();
        assert_eq!(
            KeyVault::from_key(&key)
                .open("k", &sealed)
                .unwrap()
                .as_str(),
            PEM
        );
        assert!(format!("{v:?}").contains("good.key"));

        for (name, contents) in [
            ("short.key", STANDARD.encode([7u8; 16])),
            ("long.key", STANDARD.encode([7u8; 33])),
            ("notb64.key", "this is not base64 at all!".to_owned()),
            (
                "urlsafe.key",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]),
            ),
            ("empty.key", String::new()),
        ] {
            let path = temp_file(name, contents.as_bytes());
            let e = KeyVault::from_key_file(&path).unwrap_err();
            assert!(
                matches!(&e, CryptoError::KeyEncryptionKey { path: p, .. } if *p == path),
                "{name}: {e:?}"
            );
            assert!(e.to_string().contains(name), "{e}");
            if !contents.is_empty() {
                assert!(!e.to_string().contains(&contents), "{e}");
            }
        }
        let missing = std::env::temp_dir().join("idp-crypto-vault-absent.key");
        assert!(matches!(
            KeyVault::from_key_file(&missing),
            Err(CryptoError::KeyFile { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let v = vault(0x41);
        let debug = format!("{v:?}");
        assert!(debug.contains("seals: true"));
        assert!(!debug.contains("65") && !debug.contains("AAAA"), "{debug}");
    }

    #[test]
    fn the_generator_seals_with_the_thumbprint_as_kid() {
        let v = Arc::new(vault(3));
        let generated = VaultKeyGenerator::new(v.clone()).generate("EdDSA").unwrap();
        assert!(KeyVault::is_sealed(&generated.private_key));
        let pem = v.open(&generated.kid, &generated.private_key).unwrap();
        let key = crate::codec::PemSigningKey::parse(SigningAlgorithm::EdDSA, &pem).unwrap();
        assert_eq!(key.kid, generated.kid);
        let plain = VaultKeyGenerator::new(Arc::new(KeyVault::plaintext()))
            .generate("ES256")
            .unwrap();
        assert!(plain.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(VaultKeyGenerator::new(v).generate("HS256").is_err());
    }
}
