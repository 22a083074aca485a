//! The open-connection count behind `IDP_MAX_CONNECTIONS`.
//!
//! actix enforces the cap itself (per worker: a full worker stops accepting,
//! and new connections wait in the listen backlog). What it does not do is say
//! so; a server at its cap looks merely slow. [`ConnectionCount`] counts open
//! connections across the workers, so the first time the cap is reached it is
//! logged, once per process: the log must not turn into a flood exactly when
//! the server is busiest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix_web::dev::Extensions;

/// Open connections of one server, shared by its workers.
#[derive(Debug)]
pub struct ConnectionCount {
    open: AtomicUsize,
    cap: usize,
    reported: AtomicBool,
}

/// One open connection: counted until dropped, which actix does when the
/// connection closes (it holds the connection's extensions until then).
#[derive(Debug)]
pub struct OpenConnection(Arc<ConnectionCount>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionCount {
    /// A count whose cap, over all workers, is `cap`.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            cap,
            reported: AtomicBool::new(false),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Counts a new connection. The flag is true for the one call, in the
    /// process's life, that brought the count to the cap.
    pub fn opened(self: &Arc<Self>) -> (OpenConnection, bool) {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let first_time_at_cap = open >= self.cap && !self.reported.swap(true, Ordering::AcqRel);
        (OpenConnection(Arc::clone(self)), first_time_at_cap)
    }

    /// For `HttpServer::on_connect`: counts the connection for as long as it
    /// is open, and logs the first time the cap is reached.
    pub fn on_connect(self: &Arc<Self>, extensions: &mut Extensions) {
        let (connection, first_time_at_cap) = self.opened();
        extensions.insert(connection);
        if first_time_at_cap {
            tracing::warn!(
                max_connections = self.cap,
                "connection cap reached: further connections wait until one closes (IDP_MAX_CONNECTIONS; logged once)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_open_connections_and_reports_the_cap_once() {
        let count = ConnectionCount::new(2);
        let (first, at_cap) = count.opened();
        assert!(!at_cap);
        let (second, at_cap) = count.opened();
        assert!(at_cap, "the second connection reaches a cap of 2");
        assert_eq!(count.open(), 2);
        drop(second);
        assert_eq!(count.open(), 1);
        let (again, at_cap) = count.opened();
        assert!(!at_cap, "the cap is reported once per process");
        drop((first, again));
        assert_eq!(count.open(), 0);
    }

    #[test]
    fn a_connection_is_counted_until_its_extensions_are_dropped() {
        let count = ConnectionCount::new(10);
        let mut extensions = Extensions::new();
        count.on_connect(&mut extensions);
        assert_eq!(count.open(), 1);
        drop(extensions);
        assert_eq!(count.open(), 0);
    }
}
