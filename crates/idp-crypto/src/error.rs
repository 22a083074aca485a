use std::path::PathBuf;

use crate::SigningAlgorithm;

/// Why a signing key or a crypto adapter could not be set up.
///
/// Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The algorithm name is not one AgentIdP signs with.
    #[error("unsupported signing algorithm {0:?}: expected RS256, ES256 or EdDSA")]
    UnsupportedAlgorithm(String),
    /// The PEM does not hold a private key usable with the algorithm (wrong
    /// type, wrong curve, RSA shorter than 2048 bits, not PEM at all).
    #[error("not a usable {algorithm} private key: {reason}")]
    InvalidKey {
        /// The algorithm the key was meant for.
        algorithm: SigningAlgorithm,
        /// What is wrong, without key material.
        reason: String,
    },
    /// The stored key id is empty.
    #[error("the signing key has an empty kid")]
    EmptyKeyId,
    /// A key file could not be read.
    #[error("cannot read key file {path}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The key-encryption key file does not hold 32 bytes as standard base64.
    #[error("invalid key-encryption key file {path}: {reason}")]
    KeyEncryptionKey {
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's content.
        reason: String,
    },
    /// A stored private key could not be opened: sealed while no
    /// key-encryption key is configured, sealed under another key-encryption
    /// key, or sealed for another kid, or altered.
    #[error("cannot open the private key {kid}: {reason}")]
    SealedKey {
        /// The key's id.
        kid: String,
        /// Why, without key material.
        reason: String,
    },
    /// OpenSSL could not generate a key or hash a secret.
    #[error("crypto operation failed: {0}")]
    Operation(String),
}
