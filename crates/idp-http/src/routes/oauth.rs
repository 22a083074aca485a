//! The OAuth 2.0 endpoints: token (RFC 6749 section 4.4), introspection
//! (RFC 7662) and revocation (RFC 7009).

use actix_web::{HttpRequest, HttpResponse, web};
use idp_domain::DomainError;
use idp_domain::services::{ClientCredentials, TokenRequestError};
use idp_domain::token::Principal;
use idp_domain::values::ClientSecret;
use serde_json::json;

use super::{no_store, resource};
use crate::auth::{Caller, Presented, caller, presented};
use crate::error::{ApiError, OAuthError, OAuthErrorCode};
use crate::input::{BodyError, FormError, FormParams, media_type, read_body, request_context};
use crate::metrics::TokenRefusal;
use crate::middleware::{RATE_WINDOW, apply_rate_headers, check_rate_limit};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/v1/token", "POST").route(web::post().to(token)))
        .service(resource("/api/v1/token/introspect", "POST").route(web::post().to(introspect)))
        .service(resource("/api/v1/token/revoke", "POST").route(web::post().to(revoke)));
}

/// A refused token request: the answer, and the reason it is counted under.
#[derive(Debug)]
struct Refusal {
    reason: TokenRefusal,
    error: OAuthError,
}

impl Refusal {
    fn new(reason: TokenRefusal, code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            reason,
            error: OAuthError::new(code, description),
        }
    }

    fn retry_after(mut self, seconds: u64) -> Self {
        self.error = self.error.retry_after(seconds);
        self
    }
}

fn invalid_request(description: impl Into<String>) -> Refusal {
    Refusal::new(
        TokenRefusal::InvalidRequest,
        OAuthErrorCode::InvalidRequest,
        description,
    )
}

/// Picks the one client authentication method used (RFC 6749 section 2.3.1).
fn client_credentials(
    req: &HttpRequest,
    form: &FormParams,
) -> Result<Option<ClientCredentials>, Refusal> {
    let in_body = (form.get("client_id"), form.get("client_secret"));
    match (presented(req), in_body) {
        (Presented::Basic(_), (_, Some(_))) => Err(invalid_request(
            "use one client authentication method, not both",
        )),
        (Presented::Basic(Ok(basic)), (Some(id), None)) if id != basic.client_id => Err(
            invalid_request("client_id in the body differs from the Basic credentials"),
        ),
        (Presented::Basic(Ok(basic)), _) => Ok(Some(basic)),
        (Presented::Basic(Err(())), _) => Err(Refusal::new(
            TokenRefusal::MalformedClientAuthentication,
            OAuthErrorCode::InvalidClient,
            "malformed Basic credentials",
        )),
        (_, (Some(id), Some(secret))) => Ok(Some(ClientCredentials {
            client_id: id.to_owned(),
            client_secret: ClientSecret::new(secret.to_owned()),
        })),
        (_, (None, Some(_))) => Err(invalid_request("client_secret without client_id")),
        (_, (Some(_), None)) | (_, (None, None)) => Ok(None),
    }
}

fn form_error(err: FormError) -> Refusal {
    match err {
        FormError::WrongMediaType => {
            invalid_request("the body must be application/x-www-form-urlencoded")
        }
        FormError::Malformed => invalid_request("the body is not a valid form"),
        FormError::Repeated(name) => invalid_request(format!("parameter {name} is repeated")),
    }
}

async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut rate = None;
    let result = issue(&req, payload, &state, &mut rate).await;
    let mut res = match result {
        Ok(body) => {
            state.metrics.token_issued();
            let mut res = HttpResponse::Ok().json(body);
            no_store(&mut res);
            res
        }
        Err(refusal) => {
            state.metrics.token_refused(refusal.reason);
            actix_web::ResponseError::error_response(&refusal.error)
        }
    };
    if let Some(decision) = rate {
        apply_rate_headers(res.headers_mut(), &decision);
    }
    res
}

/// Reads the form and picks the client authentication method.
async fn read_token_request(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(FormParams, Option<ClientCredentials>), Refusal> {
    let body = read_body(req, payload).await.map_err(|e| match e {
        BodyError::TooLarge => invalid_request("the body exceeds 64 KiB"),
        BodyError::Incomplete => invalid_request("the body could not be read"),
    })?;
    let form = FormParams::parse(req, &body).map_err(form_error)?;
    let client = client_credentials(req, &form)?;
    Ok((form, client))
}

/// The limiter key of a token request: the claimed client id when the request
/// names one (in the body or a decodable Basic header, even if the request is
/// otherwise refused), else the caller's address.
fn token_limiter_key(
    req: &HttpRequest,
    parsed: &Result<(FormParams, Option<ClientCredentials>), Refusal>,
) -> String {
    match (parsed, presented(req)) {
        (Ok((_, Some(client))), _) => crate::middleware::client_key(&client.client_id),
        (_, Presented::Basic(Ok(basic))) => crate::middleware::client_key(&basic.client_id),
        _ => crate::middleware::ip_key(req),
    }
}

/// A token request that follows RFC 6749 as far as the form tells: credentials
/// only in the body or the header, grant type `client_credentials`, a client
/// that authenticates. The checks run in this order, and their refusal is
/// answered only after the request was counted against the rate limit.
fn well_formed(
    req: &HttpRequest,
    parsed: Result<(FormParams, Option<ClientCredentials>), Refusal>,
) -> Result<(FormParams, ClientCredentials), Refusal> {
    let (form, client) = parsed?;
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if query
        .iter()
        .any(|(name, _)| name == "client_secret" || name == "client_id")
    {
        return Err(invalid_request(
            "client credentials must not be sent in the query string",
        ));
    }
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    if grant_type != "client_credentials" {
        return Err(Refusal::new(
            TokenRefusal::UnsupportedGrantType,
            OAuthErrorCode::UnsupportedGrantType,
            "only client_credentials is supported",
        ));
    }
    let client = client.ok_or_else(|| {
        Refusal::new(
            TokenRefusal::NoClientAuthentication,
            OAuthErrorCode::InvalidClient,
            "client authentication is required",
        )
    })?;
    Ok((form, client))
}

/// Every token request counts against the limiter before any refusal, so a
/// client cannot send malformed requests uncounted, and every answer carries the
/// `X-RateLimit-*` headers.
///
/// A well-formed request whose client id names an agent (the hot path) is
/// counted by admission control together with the unit of its monthly quota:
/// one round trip to the cache instead of two. Any other request is counted by
/// the rate limiter alone; it cannot be issued a token.
async fn issue(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    rate: &mut Option<idp_domain::ports::RateDecision>,
) -> Result<serde_json::Value, Refusal> {
    let parsed = read_token_request(req, payload).await;
    let key = token_limiter_key(req, &parsed);
    let request = well_formed(req, parsed);
    let ctx = request_context(req, None);
    let outcome = match request {
        Ok((form, client)) if client.agent_id().is_some() => {
            let (decision, outcome) = state
                .tokens
                .issue_admitted(
                    &client,
                    form.get("scope"),
                    &key,
                    state.settings.rate_limit_per_minute,
                    RATE_WINDOW,
                    &ctx,
                )
                .await;
            *rate = decision;
            outcome
        }
        request => {
            let decision = check_rate_limit(state, &key).await.map_err(|e| {
                Refusal::new(
                    TokenRefusal::Unavailable,
                    OAuthErrorCode::TemporarilyUnavailable,
                    e.message,
                )
                .retry_after(5)
            })?;
            *rate = Some(decision);
            if !decision.allowed {
                // check_rate_limit counted it in the metrics already.
                return Err(rate_limited(decision.retry_after));
            }
            let (form, client) = request?;
            state.tokens.issue(&client, form.get("scope"), &ctx).await
        }
    };
    match outcome {
        Ok(issued) => Ok(json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": issued.scope,
        })),
        Err(err) => Err(token_refusal(state, err)),
    }
}

fn rate_limited(retry_after: u64) -> Refusal {
    Refusal::new(
        TokenRefusal::RateLimited,
        OAuthErrorCode::AccessDenied,
        "rate limit exceeded: too many requests per minute",
    )
    .retry_after(retry_after)
}

/// The answer to a refused grant; causes go to the log.
fn token_refusal(state: &AppState, err: TokenRequestError) -> Refusal {
    match err {
        TokenRequestError::RateLimited { retry_after } => {
            state.metrics.rate_limited();
            rate_limited(retry_after)
        }
        TokenRequestError::InvalidClient(reason) => {
            tracing::info!(reason, "client authentication failed");
            Refusal::new(
                TokenRefusal::from_client_failure(reason),
                OAuthErrorCode::InvalidClient,
                "client authentication failed",
            )
        }
        TokenRequestError::InvalidScope => Refusal::new(
            TokenRefusal::InvalidScope,
            OAuthErrorCode::InvalidScope,
            "the requested scope is malformed or not among the agent's capabilities",
        ),
        TokenRequestError::QuotaExceeded => Refusal::new(
            TokenRefusal::MonthlyQuotaExceeded,
            OAuthErrorCode::AccessDenied,
            "monthly token quota exceeded",
        )
        .retry_after(seconds_to_next_month(state)),
        TokenRequestError::Unavailable(cause) => {
            tracing::warn!(error = %format!("{cause:#}"), "backing store unavailable");
            Refusal::new(
                TokenRefusal::Unavailable,
                OAuthErrorCode::TemporarilyUnavailable,
                "a backing store is unavailable",
            )
            .retry_after(5)
        }
        TokenRequestError::Unknown(cause) => {
            tracing::error!(error = %format!("{cause:#}"), "token request failed");
            Refusal::new(
                TokenRefusal::ServerError,
                OAuthErrorCode::ServerError,
                "internal error",
            )
        }
    }
}

/// Seconds until the quota resets: the start of the next UTC month.
fn seconds_to_next_month(state: &AppState) -> u64 {
    use chrono::{Datelike, TimeZone, Utc};
    let now = state.clock.now();
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map_or(1, |next| {
            u64::try_from((next - now).num_seconds())
                .unwrap_or(1)
                .max(1)
        })
}

/// Authenticates the caller of introspection or revocation: a Bearer token, or
/// its own client credentials (Basic).
async fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    match caller(req) {
        Caller::Bearer(principal) => Ok(principal),
        Caller::Basic(client) => {
            let ctx = request_context(req, None);
            state
                .tokens
                .client_principal(&client, &ctx)
                .await
                .map_err(|e| match e {
                    DomainError::Authentication(_) => ApiError::authentication(false).with_header(
                        actix_web::http::header::WWW_AUTHENTICATE,
                        r#"Basic realm="agentidp""#,
                    ),
                    other => other.into(),
                })
        }
        Caller::InvalidBearer => Err(ApiError::authentication(true)),
        Caller::MalformedBasic | Caller::Anonymous => Err(ApiError::authentication(false)),
    }
}

/// Reads the `token` parameter of an introspection or revocation form.
async fn token_param(req: &HttpRequest, payload: web::Payload) -> Result<String, ApiError> {
    let body = read_body(req, payload).await?;
    if media_type(req).is_some_and(|m| m != "application/x-www-form-urlencoded")
        || (!body.is_empty() && media_type(req).is_none())
    {
        return Err(ApiError::unsupported_media_type(
            "application/x-www-form-urlencoded",
        ));
    }
    let form = FormParams::parse(req, &body).map_err(|e| match e {
        FormError::WrongMediaType => {
            ApiError::unsupported_media_type("application/x-www-form-urlencoded")
        }
        FormError::Malformed => ApiError::bad_body("the body is not a valid form"),
        FormError::Repeated(name) => ApiError::validation(&name, "must not be repeated"),
    })?;
    form.get("token")
        .map(str::to_owned)
        .ok_or_else(|| ApiError::validation("token", "is required"))
}

async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state).await?;
    caller.require_scope("tokens:introspect")?;
    let token = token_param(&req, payload).await?;
    let answer = state.tokens.introspect(&caller, &token).await?;
    let mut res = HttpResponse::Ok().json(answer);
    no_store(&mut res);
    Ok(res)
}

async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(&req, &state).await?;
    let token = token_param(&req, payload).await?;
    let ctx = request_context(&req, Some(caller.agent_id));
    state.tokens.revoke(&caller, &token, &ctx).await?;
    Ok(HttpResponse::Ok().finish())
}
