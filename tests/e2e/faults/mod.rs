//! The fault suite (`cargo nextest run -p idp-e2e -E 'test(/^faults::/)'`):
//! the server under load while a process dies or a backing service goes away.

mod dead_subscription;
mod kill9;
mod postgres_outage;
mod redis_restart;
