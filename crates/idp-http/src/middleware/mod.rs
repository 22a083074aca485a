//! Middleware: request ids, logging and metrics ([`observe`]); authentication and
//! rate limiting of `/api/v1` ([`gate`]); security headers and CORS
//! ([`security_headers`], [`cors_listed`], [`cors_public`]); and the count of
//! open connections behind the connection cap ([`ConnectionCount`]).

mod browser;
mod connections;
mod gate;
mod observe;

pub use browser::{cors_listed, cors_public, security_headers};
pub use connections::{ConnectionCount, OpenConnection};
pub use gate::{apply_rate_headers, check_rate_limit, gate, ip_key};
pub use observe::observe;
