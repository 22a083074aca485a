//! Mock-driven unit tests of the services.
//!
//! Each service gets only the mocks of the ports it talks to; every expected
//! call says how often it happens and with what arguments, so a write with the
//! wrong owner, limit or audit event fails the test. Any call no test expected
//! fails too (mockall refuses it).

mod agent_card;
mod agents;
mod assertion;
mod audit;
mod bootstrap;
mod client_auth;
mod credentials;
mod dpop;
mod exchange;
mod fixtures;
mod keys;
mod principal;
mod resources;
mod token_checks;
mod token_issue;
mod token_revocation;
