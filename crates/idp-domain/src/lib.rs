//! # idp-domain
//!
//! The pure core of AgentIdP: the entities and value objects of the HTTP
//! contract, the port traits that adapters implement, and the services that hold
//! every business rule (lifecycle, tenancy by owner, no scope escalation,
//! free-tier limits, the audit window, one audit event per write).
//!
//! This crate performs no I/O and depends on no web, database, cache or crypto
//! library, so it can be embedded in other services. Time, identifiers,
//! randomness, hashing and signing all enter through ports ([`ports`]).
//!
//! Value objects validate on construction: an invalid [`values::Email`],
//! [`values::Owner`], [`values::Scope`], [`values::SemVer`] or
//! [`values::AgentType`] cannot exist.
//!
//! # What the crate offers
//!
//! - [`entities`] holds [`entities::Agent`] and [`entities::Credential`], as
//!   the store keeps them.
//! - [`values`] holds the value objects (e-mail, owner, scopes, capabilities,
//!   identifiers, client secrets, the wire enums).
//! - [`services`] holds the rules: [`services::AgentService`],
//!   [`services::CredentialService`], [`services::TokenService`] (client
//!   authentication, the client credentials grant, token verification,
//!   introspection, revocation), [`services::AuditService`], and
//!   [`services::bootstrap_agent`] for an owner's first agent.
//! - [`ports`] holds the traits the host implements, or takes from the
//!   workspace's adapter crates.
//! - [`admission`] names the rate-limit windows and the quota month; [`token`]
//!   holds the access token's claims and the authenticated caller
//!   ([`token::Principal`]); then [`audit`], [`page`] and [`error`].
//!
//! # What a host implements
//!
//! Every service takes an [`services::Ambient`]: a [`ports::Clock`] and a
//! [`ports::IdGenerator`]. Beyond those:
//!
//! | Service | Ports |
//! |---|---|
//! | [`services::AgentService`] | [`ports::AgentRepository`] |
//! | [`services::CredentialService`] | [`ports::AgentRepository`], [`ports::CredentialRepository`], [`ports::SecretHasher`], [`ports::SecretGenerator`], [`ports::JwsVerifier`] |
//! | [`services::TokenService`] | the twelve of [`services::TokenPorts`]: the two repositories, [`ports::SecretHasher`], [`ports::TokenCodec`], [`ports::RevokedTokenStore`], [`ports::RevocationList`], [`ports::UsageCounter`], [`ports::AdmissionControl`], [`ports::RateLimiter`], [`ports::AuditLog`], [`ports::JwsVerifier`], [`ports::ReplayGuard`] |
//! | [`services::AuditService`] | [`ports::AuditLog`] |
//! | [`services::bootstrap_agent`] | the two repositories, [`ports::SecretHasher`], [`ports::SecretGenerator`] |
//!
//! Each trait's documentation is its contract. The workspace's adapters
//! implement them all: `idp-store-sqlite` or `idp-store-postgres` (the
//! repositories, the audit log, revoked tokens, the signing key),
//! `idp-crypto` (hashing, secrets, signing, client signature checks) and
//! `idp-cache-memory` or `idp-cache-redis` (limits, quotas, the revocation
//! list, single-use `jti`s). The guide
//! `docs/guides/embed-the-domain.md` walks through wiring them, and the
//! workspace member `examples/embedded-registry` is the program it describes.
//!
//! # Example
//!
//! Value objects refuse what the contract refuses, so a service never sees an
//! invalid one:
//!
//! ```
//! use idp_domain::values::{Capabilities, Email, Owner, ScopeSet};
//!
//! let owner = Owner::parse("acme")?;
//! let email = Email::parse("screener-01@acme.example")?;
//! let capabilities = Capabilities::parse(&["agents:read", "reports:write"])?;
//! assert_eq!((owner.as_str(), email.as_str()), ("acme", "screener-01@acme.example"));
//!
//! // A client may ask for a subset of its agent's capabilities, never more.
//! let requested = ScopeSet::parse_space_separated("reports:write")?;
//! assert!(requested.is_subset_of(&capabilities));
//! let escalation = ScopeSet::parse_space_separated("reports:write agents:write")?;
//! assert!(!escalation.is_subset_of(&capabilities));
//!
//! assert!(Owner::parse("Acme Corp").is_err());
//! # Ok::<(), idp_domain::ValueError>(())
//! ```

#![deny(missing_docs)]

pub mod admission;
pub mod audit;
pub mod audit_chain;
pub mod entities;
pub mod error;
pub mod keys;
pub mod page;
pub mod ports;
pub mod services;
pub mod token;
pub mod values;

pub use error::{DomainError, StoreError, ValueError};
