//! What linking one audit event costs: the SHA-256 of the previous hash and
//! the event's RFC 8785 form (contract section 15). Every audit append waits
//! for its batch to be linked, and `GET /api/v1/audit/verify` links every
//! stored event again. `cargo bench -p idp-domain`.
//!
//! Benchmark ids: `audit-chain/link/token.issued` ([`chain_hash`] as the
//! stores call it) and `audit-chain/generic/token.issued` (the same bytes
//! through a `serde_json::Value` and the canonicalizer as a whole, which is
//! how the hash was computed before `chain_hash` wrote the members itself).

#![expect(clippy::expect_used, reason = "benchmark set-up aborts on failure")]

use std::hint::black_box;

use chrono::DateTime;
use criterion::{Criterion, criterion_group, criterion_main};
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{GENESIS_HASH, chain_hash};
use idp_domain::values::{AgentId, AuditAction, EventId, Outcome, Owner};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A `token.issued` event as the token endpoint writes it.
fn token_issued() -> AuditEvent {
    let id = |n: u128| Uuid::from_u128(0x0194_a3c2_7d2c_7c55_9d0e_6c1f_2b3a_0000 + n);
    AuditEvent {
        event_id: EventId(id(1)),
        owner: Some(Owner::parse("acme").expect("owner")),
        agent_id: Some(AgentId(id(2))),
        actor_id: Some(AgentId(id(2))),
        action: AuditAction::TokenIssued,
        outcome: Outcome::Success,
        ip_address: Some("127.0.0.1".into()),
        user_agent: Some("agent-sdk/1.4.2".into()),
        metadata: serde_json::json!({
            "jti": id(3).to_string(),
            "credentialId": id(4).to_string(),
            "authMethod": "client_secret_basic",
            "scope": "agents:read tokens:introspect",
            "expiresAt": 1_790_003_600,
        }),
        timestamp: DateTime::from_timestamp_millis(1_790_000_000_123).expect("time"),
        sequence: Some(123_456),
        hash: None,
    }
}

fn generic_hash(previous_hash: &str, event: &AuditEvent) -> String {
    let value = serde_json::to_value(event).expect("event as JSON");
    let canonical = serde_json_canonicalizer::to_vec(&value).expect("canonical form");
    let mut digest = Sha256::new();
    digest.update(previous_hash.as_bytes());
    digest.update(&canonical);
    hex::encode(digest.finalize())
}

fn audit_chain(c: &mut Criterion) {
    let event = token_issued();
    assert_eq!(
        chain_hash(GENESIS_HASH, &event).expect("link"),
        generic_hash(GENESIS_HASH, &event),
        "both forms hash the same bytes"
    );
    let mut group = c.benchmark_group("audit-chain");
    group.bench_function("link/token.issued", |b| {
        b.iter(|| chain_hash(black_box(GENESIS_HASH), black_box(&event)))
    });
    group.bench_function("generic/token.issued", |b| {
        b.iter(|| generic_hash(black_box(GENESIS_HASH), black_box(&event)))
    });
    group.finish();
}

criterion_group!(benches, audit_chain);
criterion_main!(benches);
