//! Routes, one module per resource of the contract.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::middleware;

mod agents;
mod audit;
mod credentials;
mod oauth;
mod operations;
mod well_known;

pub use operations::{READINESS_CHECK_TIMEOUT, READINESS_FRESH_FOR, Readiness, ReadinessReport};

/// Registers every route of the main listener; `/metrics` among them unless
/// `metrics_here` is false (it then has a listener of its own, see
/// [`configure_metrics`]).
///
/// Middleware is attached to the routes it covers rather than chosen by
/// comparing path strings, because the router matches the decoded path
/// (`/%61pi/v1/agents` is `/api/v1/agents` to it): the `/api/v1` scope is
/// wrapped by the gate (authentication and rate limit), its own default
/// service answering unknown `/api/v1` paths, so those are gated too; the
/// token endpoint, which limits itself, is the one resource outside it. CORS
/// wraps the gate, so a preflight is answered before it and spends nothing.
pub fn configure(cfg: &mut web::ServiceConfig, metrics_here: bool) {
    cfg.service(oauth::token_endpoint().wrap(from_fn(middleware::cors_listed)))
        .service(
            web::scope("/api/v1")
                .configure(agents::configure)
                .configure(credentials::configure)
                .configure(audit::configure)
                .configure(oauth::configure)
                .default_service(web::to(not_found))
                .wrap(from_fn(middleware::gate))
                .wrap(from_fn(middleware::cors_listed)),
        )
        .service(
            web::scope("/.well-known")
                .configure(well_known::configure)
                .wrap(from_fn(middleware::cors_public)),
        );
    operations::configure(cfg);
    if metrics_here {
        operations::configure_metrics(cfg);
    }
}

/// Registers `/metrics` alone, for a listener of its own (`IDP_METRICS_BIND`).
pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    operations::configure_metrics(cfg);
}

/// A resource whose unmatched methods answer `405` with `Allow`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed",
        )
        .with_header(header::ALLOW, allow);
        res.details = None;
        Err::<HttpResponse, ApiError>(res)
    }))
}

/// Unknown paths: `404` in the contract's shape.
pub async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such resource",
    ))
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1).
/// A signed document (the audit head, an Agent Card): `200`, the compact JWS
/// as `application/jwt`, not to be cached.
fn signed_jwt(jws: String) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/jwt")
        .body(jws)
}

fn no_store(res: &mut HttpResponse) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
