use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, ResponseError, web};
use idp_domain::DomainError;
use idp_domain::ports::RateDecision;

use crate::auth::{Caller, Presented, presented};
use crate::error::ApiError;
use crate::state::AppState;

/// The limit is per minute (`rate_limit_per_minute`); the token endpoint's
/// admission control counts in the same window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The token endpoint limits a `POST` by the claimed client id, which only its
/// body tells; it counts the request itself, with [`check_rate_limit`] or, for
/// a client id that names an agent, with admission control, which takes the
/// unit of the monthly quota in the same round trip. Other methods there
/// (`405`) go through the gate like any request.
const TOKEN_PATH: &str = "/api/v1/token";
/// Claimed client ids are clipped in limiter keys so a caller cannot grow them.
const MAX_KEY_ID_CHARS: usize = 64;

/// The limiter key of an unauthenticated request: its peer address.
pub fn ip_key(req: &HttpRequest) -> String {
    format!(
        "ip:{}",
        req.peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    )
}

/// The limiter key of a claimed or authenticated client.
pub fn client_key(client_id: &str) -> String {
    format!(
        "client:{}",
        client_id.chars().take(MAX_KEY_ID_CHARS).collect::<String>()
    )
}

/// Counts one request of `key`; a spent limit is `429` with `Retry-After`.
pub async fn check_rate_limit(state: &AppState, key: &str) -> Result<RateDecision, ApiError> {
    let now = state.clock.now();
    let decision = state
        .rate_limiter
        .hit(key, state.settings.rate_limit_per_minute, RATE_WINDOW, now)
        .await
        .map_err(|e| ApiError::from(DomainError::from(e)))?;
    if !decision.allowed {
        state.metrics.rate_limited();
    }
    Ok(decision)
}

/// Writes the `X-RateLimit-*` headers (and `Retry-After` when refused).
pub fn apply_rate_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    let pairs = [
        ("x-ratelimit-limit", decision.limit.to_string()),
        ("x-ratelimit-remaining", decision.remaining.to_string()),
        ("x-ratelimit-reset", decision.reset_at.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    if !decision.allowed
        && let Ok(value) = HeaderValue::from_str(&decision.retry_after.to_string())
    {
        headers.insert(actix_web::http::header::RETRY_AFTER, value);
    }
}

async fn identify(state: &AppState, req: &HttpRequest) -> Result<Caller, ApiError> {
    Ok(match presented(req) {
        Presented::Bearer(token) => match state.tokens.authenticate(&token).await {
            Ok(principal) => Caller::Bearer(principal),
            Err(DomainError::Authentication(reason)) => {
                tracing::info!(reason, "bearer token refused");
                Caller::InvalidBearer
            }
            Err(other) => return Err(other.into()),
        },
        Presented::Basic(Ok(client)) => Caller::Basic(client),
        Presented::Basic(Err(())) => Caller::MalformedBasic,
        Presented::None => Caller::Anonymous,
    })
}

fn limiter_key(caller: &Caller, req: &HttpRequest) -> String {
    match caller {
        Caller::Bearer(principal) => client_key(&principal.agent_id.to_string()),
        Caller::Basic(client) => client_key(&client.client_id),
        _ => ip_key(req),
    }
}

/// Authenticates `Authorization: Bearer` once and rate-limits every `/api/v1`
/// request (but a `POST` to the token endpoint, which limits itself) by its
/// client, or by address when anonymous. Every such response carries the
/// `X-RateLimit-*` headers.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let path = req.path();
    let token_post = path == TOKEN_PATH && req.method() == Method::POST;
    let guarded = (path == "/api/v1" || path.starts_with("/api/v1/")) && !token_post;
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (true, Some(state)) = (guarded, state) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let caller = match identify(&state, req.request()).await {
        Ok(caller) => caller,
        Err(err) => {
            return Ok(req
                .into_response(err.error_response())
                .map_into_right_body());
        }
    };
    let key = limiter_key(&caller, req.request());
    req.extensions_mut().insert(caller);
    let decision = match check_rate_limit(&state, &key).await {
        Ok(decision) => decision,
        Err(err) => {
            return Ok(req
                .into_response(err.error_response())
                .map_into_right_body());
        }
    };
    if !decision.allowed {
        let mut res = ApiError::rate_limited(decision.retry_after).error_response();
        apply_rate_headers(res.headers_mut(), &decision);
        return Ok(req.into_response(res).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    apply_rate_headers(res.headers_mut(), &decision);
    Ok(res.map_into_left_body())
}
