//! Middleware: request ids, logging and metrics ([`observe`]); authentication and
//! rate limiting of `/api/v1` ([`gate`]).

mod gate;
mod observe;

pub use gate::{RATE_WINDOW, apply_rate_headers, check_rate_limit, client_key, gate, ip_key};
pub use observe::observe;
