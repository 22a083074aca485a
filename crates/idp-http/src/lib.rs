//! # idp-http
//!
//! The actix-web layer of AgentIdP: routes, input parsing, authentication and
//! rate-limit middleware, and the single mapping from domain errors to the
//! contract's error bodies. [`Application`] builds the application; the server
//! binary and the tests both use it.

pub mod auth;
pub mod client_ip;
pub mod error;
pub mod input;
pub mod metrics;
pub mod middleware;
pub mod requests;
pub mod routes;
pub mod state;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, web};

pub use metrics::Metrics;
pub use routes::{Readiness, ReadinessReport};
pub use state::{AppState, HttpSettings};

/// One server's application, built once and cloned into each worker: the
/// state and the readiness answer are shared by all workers (one round of
/// health checks in flight per server, not per worker).
#[derive(Debug, Clone)]
pub struct Application {
    state: web::Data<AppState>,
    readiness: web::Data<Readiness>,
    metrics_here: bool,
}

impl Application {
    /// Every route of the contract on one listener, `/metrics` included.
    pub fn new(state: AppState) -> Self {
        let readiness = Readiness::new(state.health_checks.clone(), state.clock.clone());
        Self::with_readiness(state, readiness)
    }

    /// The same, answering readiness with `readiness`.
    pub fn with_readiness(state: AppState, readiness: Readiness) -> Self {
        Self {
            state: web::Data::new(state),
            readiness: web::Data::new(readiness),
            metrics_here: true,
        }
    }

    /// `/metrics` is served by [`Application::metrics_app`] on a listener of
    /// its own (`IDP_METRICS_BIND`), so the main one answers it `404`: the
    /// public port then reveals nothing of the server's internals.
    pub fn with_metrics_elsewhere(mut self) -> Self {
        self.metrics_here = false;
        self
    }

    /// The main listener's application: every route behind the request-id,
    /// logging, metrics and security-header middleware; `/api/v1` behind
    /// authentication and rate limiting; CORS where the contract allows it.
    pub fn app(
        self,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody>,
            Error = actix_web::Error,
            InitError = (),
        >,
    > {
        let metrics_here = self.metrics_here;
        App::new()
            .app_data(self.state)
            .app_data(self.readiness)
            .configure(|cfg| routes::configure(cfg, metrics_here))
            .default_service(web::to(routes::not_found))
            .wrap(from_fn(middleware::security_headers))
            .wrap(from_fn(middleware::observe))
    }

    /// The metrics listener's application: `/metrics` and nothing else, with
    /// the same request ids, logs and headers as the main listener.
    pub fn metrics_app(
        self,
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
            .app_data(self.state)
            .app_data(self.readiness)
            .configure(routes::configure_metrics)
            .default_service(web::to(routes::not_found))
            .wrap(from_fn(middleware::security_headers))
            .wrap(from_fn(middleware::observe))
    }
}

/// The application of a server with one listener ([`Application::new`]).
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
    Application::new(state).app()
}

#[cfg(test)]
mod tests;
