use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use idp_domain::DomainError;
use idp_domain::admission::{address_key, agent_key};
use idp_domain::ports::RateDecision;
use idp_domain::services::{
    ClientAuthError, ClientAuthentication, DpopRequest, PresentedToken, TokenRefusal,
};

use crate::auth::{Caller, Presented, dpop_header, presented, request_url};
use crate::client_ip::client_ip;
use crate::error::ApiError;
use crate::input::request_context;
use crate::state::AppState;

/// The limiter key of an unauthenticated request: its client address
/// (contract section 7), behind the configured trusted proxies.
pub fn ip_key(state: &AppState, req: &HttpRequest) -> String {
    address_key(client_ip(req, &state.settings.trusted_proxies))
}

/// Counts one request of `key` (the domain decides: its window and limit);
/// a spent limit is counted in the metrics.
pub async fn check_rate_limit(state: &AppState, key: &str) -> Result<RateDecision, ApiError> {
    let decision = state
        .tokens
        .count_request(key)
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

/// Who the gate found, and the request's count when authenticating already
/// counted it.
struct Identified {
    caller: Caller,
    counted: Option<RateDecision>,
}

/// Reads and checks the `Authorization` header. Basic client credentials are
/// verified here, under the failed-authentication windows of contract section
/// 7: a client that fails is counted by its address, never in the agent's
/// window, and one whose failures are spent is refused before any hash.
async fn identify(state: &AppState, req: &HttpRequest) -> Result<Identified, HttpResponse> {
    let caller = match presented(req) {
        Presented::Bearer(token) => token_caller(state, PresentedToken::Bearer(&token)).await?,
        Presented::Dpop(token) => {
            let url = request_url(&state.settings.issuer, req);
            let proof = match dpop_header(req) {
                Ok(proof) => proof,
                Err(_) => {
                    tracing::info!("several or unreadable DPoP headers");
                    return Ok(Identified {
                        caller: Caller::InvalidDpop("invalid_dpop_proof"),
                        counted: None,
                    });
                }
            };
            let proof = proof.map(|proof| DpopRequest {
                proof,
                method: req.method().as_str(),
                url: &url,
            });
            token_caller(
                state,
                PresentedToken::Dpop {
                    token: &token,
                    proof,
                },
            )
            .await?
        }
        Presented::Basic(Ok(client)) => {
            let ctx = request_context(req, None);
            let client = ClientAuthentication::SecretBasic(client);
            match state.tokens.authenticate_client(&client, &ctx).await {
                Ok(authenticated) => Caller::Client(authenticated.principal()),
                Err(ClientAuthError::Failed { reason, rate }) => {
                    tracing::info!(reason = reason.as_str(), "client authentication failed");
                    return Ok(Identified {
                        caller: Caller::InvalidClient,
                        counted: rate,
                    });
                }
                Err(ClientAuthError::Throttled(decision)) => {
                    state.metrics.rate_limited();
                    let mut res = ApiError::rate_limited(decision.retry_after).error_response();
                    apply_rate_headers(res.headers_mut(), &decision);
                    return Err(res);
                }
                Err(other) => return Err(ApiError::from(DomainError::from(other)).error_response()),
            }
        }
        Presented::Basic(Err(())) => Caller::MalformedBasic,
        Presented::None => Caller::Anonymous,
    };
    Ok(Identified {
        caller,
        counted: None,
    })
}

/// The caller a presented access token makes.
async fn token_caller(
    state: &AppState,
    presented: PresentedToken<'_>,
) -> Result<Caller, HttpResponse> {
    let dpop_scheme = matches!(presented, PresentedToken::Dpop { .. });
    match state.tokens.authenticate_presented(presented).await {
        Ok(Ok(principal)) => Ok(Caller::Bearer(principal)),
        Ok(Err(refusal)) => {
            let caller = match refusal {
                TokenRefusal::InvalidToken(reason) => {
                    tracing::info!(reason, "access token refused");
                    if dpop_scheme {
                        Caller::InvalidDpop("invalid_token")
                    } else {
                        Caller::InvalidBearer
                    }
                }
                TokenRefusal::WrongScheme(reason) => {
                    tracing::info!(reason, "access token refused");
                    Caller::InvalidDpop("invalid_token")
                }
                TokenRefusal::InvalidProof(reason) => {
                    tracing::info!(reason = %reason, "DPoP proof refused");
                    Caller::InvalidDpop("invalid_dpop_proof")
                }
            };
            Ok(caller)
        }
        Err(other) => Err(ApiError::from(other).error_response()),
    }
}

/// The window a request is counted in: its client's once authenticated (for a
/// delegated token the actor's, not the subject's), whatever spelling of the
/// id it used; otherwise its address's.
fn limiter_key(state: &AppState, caller: &Caller, req: &HttpRequest) -> String {
    match caller {
        Caller::Bearer(principal) | Caller::Client(principal) => agent_key(principal.client_id),
        Caller::InvalidBearer
        | Caller::InvalidDpop(_)
        | Caller::InvalidClient
        | Caller::MalformedBasic
        | Caller::Anonymous => ip_key(state, req),
    }
}

/// Authenticates `Authorization: Bearer` once and rate-limits every request it
/// wraps by its client, or by address when anonymous. Every such response
/// carries the `X-RateLimit-*` headers.
///
/// It wraps the `/api/v1` scope (see `routes::configure`), so what it guards
/// is decided by the route the router matched, on the decoded path, and no
/// spelling of a path can reach an `/api/v1` handler around it. The one route
/// outside it is `POST /api/v1/token`: that endpoint limits a request by the
/// claimed client id, which only its body tells, counting it with
/// [`check_rate_limit`] or, for a client id that names an agent, with
/// admission control, which takes the unit of the monthly quota in the same
/// round trip. Other methods there (`405`) go through the gate like any request.
pub async fn gate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let identified = match identify(&state, req.request()).await {
        Ok(identified) => identified,
        Err(res) => return Ok(req.into_response(res).map_into_right_body()),
    };
    let key = limiter_key(&state, &identified.caller, req.request());
    req.extensions_mut().insert(identified.caller);
    let decision = match identified.counted {
        Some(decision) => decision,
        None => match check_rate_limit(&state, &key).await {
            Ok(decision) => decision,
            Err(err) => {
                return Ok(req
                    .into_response(err.error_response())
                    .map_into_right_body());
            }
        },
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
