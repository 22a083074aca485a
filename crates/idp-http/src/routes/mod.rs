//! Routes, one module per resource of the contract.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;

mod agents;
mod audit;
mod credentials;
mod oauth;
mod operations;
mod well_known;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    agents::configure(cfg);
    credentials::configure(cfg);
    audit::configure(cfg);
    oauth::configure(cfg);
    well_known::configure(cfg);
    operations::configure(cfg);
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
fn no_store(res: &mut HttpResponse) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
