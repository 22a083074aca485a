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

pub mod admission;
pub mod audit;
pub mod entities;
pub mod error;
pub mod page;
pub mod ports;
pub mod services;
pub mod token;
pub mod values;

pub use error::{DomainError, StoreError, ValueError};
