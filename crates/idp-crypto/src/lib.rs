//! # idp-crypto
//!
//! The crypto adapters of AgentIdP:
//!
//! * [`JoseTokenCodec`]: the [`TokenCodec`](idp_domain::ports::TokenCodec) port with
//!   josekit (OpenSSL): RS256, ES256 or EdDSA access tokens whose verification is
//!   pinned to one algorithm and one key; plus [`generate_signing_key`] and
//!   [`load_pem_file`] to obtain that key.
//! * [`Argon2SecretHasher`]: the [`SecretHasher`](idp_domain::ports::SecretHasher)
//!   port: Argon2id for new hashes, Argon2 and bcrypt accepted when verifying, all
//!   on a few threads of its own behind a semaphore, each reusing one Argon2
//!   buffer, so hashing memory stays bounded by the concurrency.
//! * [`OsSecretGenerator`]: the [`SecretGenerator`](idp_domain::ports::SecretGenerator)
//!   port from the operating system's CSPRNG.
//!
//! Error policy: start-up failures (a bad key, an unknown algorithm name, an
//! unreadable key file) are [`CryptoError`], meant for a one-line message before
//! the server exits. At run time the ports answer the domain's own types
//! (`StoreError`, `TokenDecodeError`); causes go to the log, never to a client.

mod algorithm;
mod codec;
mod error;
mod hasher;
mod secret;
mod verified;
mod workers;

pub use algorithm::SigningAlgorithm;
pub use codec::{JoseTokenCodec, MAX_TOKEN_LEN, generate_signing_key, load_pem_file};
pub use error::CryptoError;
pub use hasher::Argon2SecretHasher;
pub use secret::OsSecretGenerator;
