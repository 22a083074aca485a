//! # idp-http
//!
//! The actix-web layer of AgentIdP: routes, input parsing, authentication and
//! rate-limit middleware, and the single mapping from domain errors to the
//! contract's error bodies. [`app`] builds the application; the server binary and
//! the tests both call it.

pub mod auth;
pub mod error;
pub mod input;
pub mod metrics;
pub mod middleware;
pub mod routes;
pub mod state;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, web};

pub use metrics::Metrics;
pub use state::{AppState, HttpSettings};

/// The application: every route of the contract behind the request-id, logging,
/// metrics, authentication and rate-limit middleware.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .configure(routes::configure)
        .default_service(web::to(routes::not_found))
        .wrap(actix_web::middleware::from_fn(middleware::gate))
        .wrap(actix_web::middleware::from_fn(middleware::observe))
}

#[cfg(test)]
mod tests;
