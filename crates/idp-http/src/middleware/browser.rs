//! What a browser is told about every response (contract section 8, v2):
//! security headers on all of them, and CORS where the contract allows it.
//!
//! CORS is written here rather than taken from `actix-cors` because the
//! contract wants two fixed policies and one property that crate does not give
//! by itself: a preflight is answered before the rate-limit gate, so it spends
//! no budget. Each policy wraps the routes it covers ([`cors_listed`] the
//! `/api/v1` scope and the token endpoint, [`cors_public`] `/.well-known`), so
//! which policy applies follows from the matched route, never from comparing
//! path strings. No policy sends `Access-Control-Allow-Credentials`: clients
//! authenticate with the `Authorization` header, never with cookies.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};

use crate::state::AppState;

/// One year, and subdomains too: the issuer's host serves tokens only, so
/// nothing under it should ever be reached over plain HTTP. (No `preload`:
/// that is a promise about the whole domain only its operator can make.)
const HSTS: &str = "max-age=31536000; includeSubDomains";
/// The API answers JSON only; nothing it serves may load, run or be framed.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// Every method of the `/api/v1` resources; a browser asks one at a time and
/// checks the answer itself, so a fixed list says nothing a `405` would not.
const ALLOW_METHODS: &str = "GET, POST, PATCH, DELETE";
/// Request headers a browser client needs beyond the safelisted ones.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, DPoP, X-Request-Id";
/// Response headers a browser client may read beyond the safelisted ones.
const EXPOSE_HEADERS: &str = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After, X-Request-Id, WWW-Authenticate";
/// How long a browser may reuse a preflight answer: ten minutes, so an origin
/// removed from `IDP_CORS_ORIGINS` stops working soon after a restart.
const MAX_AGE_SECS: &str = "600";

/// Adds `X-Content-Type-Options`, `Referrer-Policy`, `Content-Security-Policy`
/// and, when the issuer is `https`, `Strict-Transport-Security` to every
/// response. (Handlers' and the gate's errors are responses by the time they
/// get here; only an error no middleware of ours returns would pass bare.)
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let https = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.settings.issuer.starts_with("https://"));
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    Ok(res)
}

/// A CORS preflight (Fetch standard): `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. Any other `OPTIONS` is an ordinary request.
fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// The preflight answer's allowances, for `origin` (`*` or an echoed origin).
fn allow_preflight(headers: &mut HeaderMap, origin: HeaderValue, methods: &'static str) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    insert(headers, header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    insert(headers, header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    insert(headers, header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECS);
}

/// CORS of `/api/v1` and the token endpoint: only for the origins of
/// `IDP_CORS_ORIGINS` (compared case-insensitively, echoed as sent).
///
/// A preflight is answered here, so it never reaches the gate (not counted,
/// no `X-RateLimit-*`). For an origin not on the list it is a bare `204`
/// without any `Access-Control-*` header: the browser then refuses the actual
/// request itself. `204` rather than `403`: the server refuses nothing here
/// (the browser enforces CORS), and a bare `204` needs no error body with a
/// code the contract does not define.
/// Every answer carries `Vary: Origin`, as its CORS headers depend on it.
pub async fn cors_listed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let allowed_origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| {
            let listed = req
                .app_data::<web::Data<AppState>>()
                .map(|state| state.settings.cors_origins.as_slice())
                .unwrap_or_default();
            origin.to_str().is_ok_and(|origin| {
                listed
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(origin))
            })
        })
        .cloned();
    let mut res = if is_preflight(&req) {
        let mut res = HttpResponse::new(StatusCode::NO_CONTENT);
        if let Some(origin) = allowed_origin.clone() {
            allow_preflight(res.headers_mut(), origin, ALLOW_METHODS);
        }
        req.into_response(res)
    } else {
        let mut res = next.call(req).await?.map_into_boxed_body();
        if let Some(origin) = allowed_origin {
            let headers = res.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            insert(
                headers,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                EXPOSE_HEADERS,
            );
        }
        res
    };
    res.headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(res)
}

/// CORS of the server metadata and the JWKS: public documents, readable from
/// any origin (`Access-Control-Allow-Origin: *`), preflight included.
pub async fn cors_public(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let wildcard = HeaderValue::from_static("*");
    if is_preflight(&req) {
        let mut res = HttpResponse::new(StatusCode::NO_CONTENT);
        allow_preflight(res.headers_mut(), wildcard, "GET");
        return Ok(req.into_response(res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    res.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, wildcard);
    Ok(res)
}
