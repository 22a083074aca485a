//! Mock-driven tests of the HTTP layer: the ports are mockall mocks, the app is
//! the real one, driven with actix's test server.

mod agent_card;
mod audit_chain;
mod browser;
mod fixtures;
mod gate;
mod metrics;
mod oauth;
mod readiness;
mod routing;
mod sender_constraints;
mod validation;
