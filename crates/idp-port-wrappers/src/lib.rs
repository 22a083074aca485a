//! # idp-port-wrappers
//!
//! Wrappers around the ports of `idp-domain`: each implements a port by
//! wrapping another implementation of it, adding what a serving node needs
//! and no adapter should know about. The server wires them in front of the
//! adapters; each has its own contract tests, and the store contract suite
//! runs through the store caches in front of a real store.
//!
//! * [`CachedAgents`] and [`CachedCredentials`], sharing an
//!   [`AuthStateCache`] (module `auth_cache`): the rows authentication reads
//!   (agents, credentials by hint, token subjects), kept in memory in front
//!   of any store, forgotten on every change on every node, and not answered
//!   from while this node cannot prove it heard every change (see the
//!   `ChangeListener` port). [`SingleNode`] is the one-node
//!   [`ChangeNotifier`](idp_domain::ports::ChangeNotifier).
//! * [`MirroredRevocationList`] over a [`RevocationMirror`]: a node's own
//!   copy of a shared revocation list, kept current by the change feed, so
//!   checking a Bearer token costs no round trip.
//! * [`GroupCommitAuditLog`]: an [`AuditLog`](idp_domain::ports::AuditLog)
//!   whose concurrent appends share commits, every caller still waiting for
//!   the commit of its own event.
//! * [`HashQueue`]: a [`SecretHasher`](idp_domain::ports::SecretHasher) that
//!   counts the hashes waiting or running inside the one it wraps, for the
//!   `agentidp_hash_queue_depth` metric.

mod auth_cache;
mod group_commit;
mod hash_queue;
mod revocation_mirror;
mod vouched;

pub use auth_cache::{AuthStateCache, CachedAgents, CachedCredentials, SingleNode};
pub use group_commit::{CommitObserver, GroupCommitAuditLog};
pub use hash_queue::HashQueue;
pub use revocation_mirror::{MirroredRevocationList, RevocationMirror};
