//! The ceilings of the token endpoint on this machine: what one core does per
//! second when it signs or verifies an access token, or verifies a client
//! secret. `just bench` runs this first and prints the figures next to the
//! server's (bench/README.md); on its own: `cargo bench -p idp-crypto`.
//!
//! Benchmark ids (read back by `idp-bench` from `target/criterion`):
//! `jws/sign/{RS256,ES256,EdDSA}`, `jws/verify/{..}`, `secret/argon2id-verify`,
//! `secret/bcrypt10-verify`, `secret/hmac-sha256-32B` (what checking a secret
//! against the verified-secret memory costs instead of Argon2id).

// A benchmark whose set-up fails has nothing to measure: stopping with the
// reason is the right answer, and criterion's closures cannot return errors.
#![expect(clippy::expect_used, reason = "benchmark set-up aborts on failure")]

use std::hint::black_box;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use idp_crypto::{JoseKeyRing, SigningAlgorithm, generate_signing_key};
use idp_domain::ports::{Clock, TokenCodec};
use idp_domain::token::AccessTokenClaims;
use sha2::Sha256;

/// Claims of the size the server issues (a UUID per id, two scopes).
fn claims() -> AccessTokenClaims {
    AccessTokenClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "0194a3c2-7d2c-7c55-9d0e-6c1f2b3a4d5e".into(),
        aud: idp_domain::token::Audience::One("http://127.0.0.1:8080".into()),
        client_id: "0194a3c2-7d2c-7c55-9d0e-6c1f2b3a4d5e".into(),
        scope: "agents:read tokens:introspect".into(),
        jti: "0194a3c2-1111-7c55-9d0e-6c1f2b3a4d5e".into(),
        iat: 1_790_000_000,
        nbf: 1_790_000_000,
        exp: 1_790_003_600,
        owner: "acme".into(),
        agent_type: "screener".into(),
        deployment_env: "production".into(),
        cid: "0194a3c2-2222-7c55-9d0e-6c1f2b3a4d5e".into(),
        cnf: None,
        act: None,
        dlg: Vec::new(),
    }
}

/// A clock stopped at the claims' `iat`.
#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default()
    }
}

/// A client secret of the real shape: `sk_live_` + 64 hex.
const SECRET: &[u8] = b"sk_live_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn jws(c: &mut Criterion) {
    let mut group = c.benchmark_group("jws");
    let claims = claims();
    for algorithm in SigningAlgorithm::ALL {
        let key = generate_signing_key(algorithm).expect("generate a signing key");
        // A ring of one always-active key: the path every token takes.
        let codec = JoseKeyRing::from_key(&key, Arc::new(FixedClock), chrono::Duration::hours(1))
            .expect("build the key ring");
        let token = codec.sign(&claims).expect("sign");
        group.bench_function(BenchmarkId::new("sign", algorithm), |b| {
            b.iter(|| codec.sign(black_box(&claims)).expect("sign"));
        });
        group.bench_function(BenchmarkId::new("verify", algorithm), |b| {
            b.iter(|| codec.decode(black_box(&token)).expect("verify"));
        });
    }
    group.finish();
}

fn secret_hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("secret");

    // HMAC-SHA256 of a 32-byte input under a 32-byte key, key set-up included:
    // one look-up in the verified-secret memory.
    let key = [7u8; 32];
    let input = [42u8; 32];
    group.bench_function("hmac-sha256-32B", |b| {
        b.iter(|| {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC key");
            mac.update(black_box(&input));
            mac.finalize().into_bytes()
        });
    });

    // The slow hashes take tens of milliseconds per iteration: ten samples of
    // a fixed count, not criterion's default hundred samples of a growing count.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));

    // What the server stores for a new secret: Argon2id m=9216 KiB, t=4, p=1.
    let argon2 = Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        idp_crypto::NEW_HASH_PARAMS,
    );
    let argon2_hash = argon2
        .hash_password(SECRET)
        .expect("argon2 hash")
        .to_string();
    group.bench_function("argon2id-verify", |b| {
        b.iter(|| {
            let parsed = PasswordHash::new(&argon2_hash).expect("parse the PHC string");
            argon2
                .verify_password(black_box(SECRET), &parsed)
                .expect("argon2 verify")
        });
    });

    // Older credentials may carry bcrypt hashes; cost 10 is the common default.
    let bcrypt_hash = bcrypt::hash(SECRET, 10).expect("bcrypt hash");
    group.bench_function("bcrypt10-verify", |b| {
        b.iter(|| bcrypt::verify(black_box(SECRET), &bcrypt_hash).expect("bcrypt verify"));
    });
    group.finish();
}

criterion_group!(benches, jws, secret_hashing);
criterion_main!(benches);
