//! # idp-crypto
//!
//! The crypto adapters of AgentIdP:
//!
//! * [`JoseKeyRing`]: the [`TokenCodec`](idp_domain::ports::TokenCodec) port with
//!   josekit (OpenSSL; ES256 signatures by *ring* behind josekit's signer
//!   interface): a ring of RS256, ES256 and EdDSA keys, the one active at
//!   an instant signing, every published one verifying the tokens that name it,
//!   each pinned to its own algorithm; plus [`generate_signing_key`] and
//!   [`load_pem_file`] for one key as PEM.
//! * [`KeyVault`]: how private keys are stored, as PEM or sealed under a
//!   key-encryption key (AES-256-GCM); [`VaultKeyGenerator`] is the
//!   [`KeyGenerator`](idp_domain::ports::KeyGenerator) port storing fresh keys
//!   through it.
//! * [`Argon2SecretHasher`]: the [`SecretHasher`](idp_domain::ports::SecretHasher)
//!   port: Argon2id for new hashes, Argon2 and bcrypt accepted when verifying, all
//!   on a few threads of its own behind a semaphore, each reusing one Argon2
//!   buffer, so hashing memory stays bounded by the concurrency.
//! * [`JoseJwsVerifier`]: the [`JwsVerifier`](idp_domain::ports::JwsVerifier) port
//!   (client assertions, DPoP proofs) with josekit, the algorithm pinned by the
//!   caller and the key; with feature `test-keys`, `client_keys::ClientKey` signs as a client.
//! * [`OsSecretGenerator`]: the [`SecretGenerator`](idp_domain::ports::SecretGenerator)
//!   port from the operating system's CSPRNG.
//!
//! Error policy: start-up failures (a bad key, an unknown algorithm name, an
//! unreadable key file) are [`CryptoError`], meant for a one-line message before
//! the server exits. At run time the ports answer the domain's own types
//! (`StoreError`, `TokenDecodeError`); causes go to the log, never to a client.

mod algorithm;
#[cfg(any(test, feature = "test-keys"))]
pub mod client_keys;
mod codec;
mod error;
mod es256_signer;
mod hasher;
mod jws;
mod ring;
mod secret;
#[cfg(test)]
mod test_support;
mod vault;
mod verified;
mod verified_tokens;
mod workers;

pub use algorithm::SigningAlgorithm;
pub use codec::{MAX_TOKEN_LEN, PemSigningKey, generate_signing_key, load_pem_file};
pub use error::CryptoError;
pub use hasher::{Argon2SecretHasher, NEW_HASH_MEMORY_KIB, NEW_HASH_PARAMS, NEW_HASH_PASSES};
pub use jws::{JoseJwsVerifier, MAX_CLIENT_JWS_LEN};
pub use ring::JoseKeyRing;
pub use secret::OsSecretGenerator;
pub use vault::{KEY_ENCRYPTION_KEY_LEN, KeyVault, SEALED_PREFIX, VaultKeyGenerator};
pub use workers::IDLE_RELEASE;
/// What [`KeyVault::open`] answers: a string wiped when dropped.
pub use zeroize::Zeroizing;
