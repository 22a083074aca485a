//! The OAuth 2.0 endpoints: token (RFC 6749 section 4.4), introspection
//! (RFC 7662) and revocation (RFC 7009).

use actix_web::{HttpRequest, HttpResponse, web};
use idp_domain::DomainError;
use idp_domain::admission::agent_key;
use idp_domain::admission::seconds_to_next_month;
use idp_domain::ports::RateDecision;
use idp_domain::services::{
    ACCESS_TOKEN_TYPE, ClientAssertion, ClientAuthError, ClientAuthentication, ClientCredentials,
    DpopRequest, ExchangeRequest, JWT_BEARER_ASSERTION_TYPE, PresentedExchangeToken,
    TOKEN_EXCHANGE_GRANT, TokenRequest, TokenRequestError,
};
use idp_domain::token::Principal;
use idp_domain::values::{ClientSecret, ResourceUri};
use serde_json::json;

use super::{no_store, resource};
use crate::auth::{Caller, Presented, caller, dpop_header, presented, request_url};
use crate::error::{ApiError, OAuthError, OAuthErrorCode};
use crate::input::{BodyError, FormError, FormParams, media_type, read_body, request_context};
use crate::metrics::TokenRefusal;
use crate::middleware::{apply_rate_headers, check_rate_limit, ip_key};
use crate::requests::TokenForm;
use crate::requests::{CredentialsInQuery, TokenRequestForm};
use crate::state::AppState;

/// The endpoints inside the gated `/api/v1` scope. `POST /token` is served
/// by [`token_endpoint`]; this `/token` answers its other methods (`405`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/token", "POST"))
        .service(resource("/token/introspect", "POST").route(web::post().to(introspect)))
        .service(resource("/token/revoke", "POST").route(web::post().to(revoke)));
}

/// `POST /api/v1/token`, outside the gate: it counts a request in the window
/// its client authentication decides (see [`grant`]). Only `POST` matches here, so
/// any other method falls through to the gated `/token` of [`configure`].
pub fn token_endpoint() -> actix_web::Resource {
    web::resource("/api/v1/token")
        .guard(actix_web::guard::Post())
        .route(web::post().to(token))
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

/// Picks the one client authentication method used (RFC 6749 section 2.3.1,
/// RFC 7521 section 4.2): `Ok(None)` when the request carries none.
fn client_authentication(
    req: &HttpRequest,
    form: FormClient<'_>,
) -> Result<Option<ClientAuthentication>, Refusal> {
    let assertion = (form.client_assertion_type, form.client_assertion);
    if assertion != (None, None) {
        if matches!(presented(req), Presented::Basic(_)) || form.client_secret.is_some() {
            return Err(invalid_request(
                "use one client authentication method, not both",
            ));
        }
        return match assertion {
            (Some(JWT_BEARER_ASSERTION_TYPE), Some(jwt)) => {
                Ok(Some(ClientAuthentication::PrivateKeyJwt(ClientAssertion {
                    client_id: form.client_id.map(str::to_owned),
                    assertion: jwt.to_owned(),
                })))
            }
            (Some(_), Some(_)) => Err(Refusal::new(
                TokenRefusal::InvalidClientAssertion,
                OAuthErrorCode::InvalidClient,
                "unsupported client_assertion_type",
            )),
            _ => Err(invalid_request(
                "client_assertion and client_assertion_type go together",
            )),
        };
    }
    let in_body = (form.client_id, form.client_secret);
    match (presented(req), in_body) {
        (Presented::Basic(_), (_, Some(_))) => Err(invalid_request(
            "use one client authentication method, not both",
        )),
        (Presented::Basic(Ok(basic)), (Some(id), None)) if id != basic.client_id => Err(
            invalid_request("client_id in the body differs from the Basic credentials"),
        ),
        (Presented::Basic(Ok(basic)), _) => Ok(Some(ClientAuthentication::SecretBasic(basic))),
        (Presented::Basic(Err(())), _) => Err(Refusal::new(
            TokenRefusal::MalformedClientAuthentication,
            OAuthErrorCode::InvalidClient,
            "malformed Basic credentials",
        )),
        (_, (Some(id), Some(secret))) => {
            Ok(Some(ClientAuthentication::SecretPost(ClientCredentials {
                client_id: id.to_owned(),
                client_secret: ClientSecret::new(secret.to_owned()),
            })))
        }
        (_, (None, Some(_))) => Err(invalid_request("client_secret without client_id")),
        (_, (Some(_), None)) | (_, (None, None)) => Ok(None),
    }
}

/// The client authentication parameters of a form (RFC 6749 section
/// 2.3.1, RFC 7521 section 4.2), empty values counting as absent.
#[derive(Debug, Clone, Copy)]
struct FormClient<'a> {
    client_id: Option<&'a str>,
    client_secret: Option<&'a str>,
    client_assertion_type: Option<&'a str>,
    client_assertion: Option<&'a str>,
}

impl<'a> FormClient<'a> {
    fn of_token_request(form: &'a TokenRequestForm) -> Self {
        Self {
            client_id: form.client_id.as_deref(),
            client_secret: form.client_secret.as_deref(),
            client_assertion_type: form.client_assertion_type.as_deref(),
            client_assertion: form.client_assertion.as_deref(),
        }
    }

    fn of_params(params: &'a FormParams) -> Self {
        Self {
            client_id: params.get("client_id"),
            client_secret: params.get("client_secret"),
            client_assertion_type: params.get("client_assertion_type"),
            client_assertion: params.get("client_assertion"),
        }
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
    let body = read_body(&req, payload).await.map_err(|e| match e {
        BodyError::TooLarge => invalid_request("the body exceeds 64 KiB"),
        BodyError::Incomplete => invalid_request("the body could not be read"),
    });
    // The grant runs in a task of its own, so a client that goes away does not
    // cancel it between taking a quota unit and committing the token's audit
    // event (or giving the unit back): only an issued token spends a unit.
    let task = {
        let (req, state) = (req.clone(), state.clone());
        actix_web::rt::spawn(async move { grant(&req, body, &state).await })
    };
    let (rate, result) = match task.await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::error!(error = %err, "token grant task failed");
            (
                None,
                Err(Refusal::new(
                    TokenRefusal::ServerError,
                    OAuthErrorCode::ServerError,
                    "internal error",
                )),
            )
        }
    };
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

/// A parsed token request.
struct TokenRequestParts {
    form: TokenRequestForm,
    resources: Vec<String>,
    client: Option<ClientAuthentication>,
}

/// Parses the form and picks the client authentication method.
fn read_token_request(
    req: &HttpRequest,
    body: Result<actix_web::web::Bytes, Refusal>,
) -> Result<TokenRequestParts, Refusal> {
    let body = body?;
    let params =
        FormParams::parse_with_repeatable(req, &body, &["resource"]).map_err(form_error)?;
    let resources = params.all("resource").to_vec();
    let form: TokenRequestForm = params.typed().map_err(|e| invalid_request(e.message))?;
    let client = client_authentication(req, FormClient::of_token_request(&form))?;
    Ok(TokenRequestParts {
        form,
        resources,
        client,
    })
}

/// The grant a token request asks for.
#[derive(Debug)]
enum GrantType {
    ClientCredentials,
    /// RFC 8693, with its required parameters, taken from the form.
    TokenExchange(ExchangeTokens),
}

/// A token exchange's tokens and their types (RFC 8693 section 2.1).
#[derive(Debug)]
struct ExchangeTokens {
    subject: (String, String),
    actor: Option<(String, String)>,
}

impl ExchangeTokens {
    fn presented(token: &(String, String)) -> PresentedExchangeToken<'_> {
        PresentedExchangeToken {
            token: &token.0,
            token_type: &token.1,
        }
    }
}

/// The grant type of `form`, and for a token exchange its tokens (moved out
/// of the form): the subject token and its type are required, an actor token
/// comes with its type.
fn grant_type(form: &mut TokenRequestForm) -> Result<GrantType, Refusal> {
    let grant_type = form
        .grant_type
        .as_deref()
        .ok_or_else(|| invalid_request("grant_type is required"))?;
    match grant_type {
        "client_credentials" => Ok(GrantType::ClientCredentials),
        TOKEN_EXCHANGE_GRANT => {
            let subject = match (form.subject_token.take(), form.subject_token_type.take()) {
                (Some(token), Some(token_type)) => (token, token_type),
                _ => {
                    return Err(invalid_request(
                        "subject_token and subject_token_type are required",
                    ));
                }
            };
            let actor = match (form.actor_token.take(), form.actor_token_type.take()) {
                (Some(token), Some(token_type)) => Some((token, token_type)),
                (None, None) => None,
                _ => {
                    return Err(invalid_request(
                        "actor_token and actor_token_type go together",
                    ));
                }
            };
            Ok(GrantType::TokenExchange(ExchangeTokens { subject, actor }))
        }
        _ => Err(Refusal::new(
            TokenRefusal::UnsupportedGrantType,
            OAuthErrorCode::UnsupportedGrantType,
            "the supported grant types are client_credentials and token exchange",
        )),
    }
}

/// A token request that follows RFC 6749 as far as the form tells: credentials
/// only in the body or the header, a supported grant type with its
/// parameters, a client that presents credentials. The checks run in this
/// order.
fn well_formed<'r>(
    req: &'r HttpRequest,
    parsed: Result<TokenRequestParts, Refusal>,
) -> Result<WellFormed<'r>, Refusal> {
    let TokenRequestParts {
        mut form,
        resources,
        client,
    } = parsed?;
    if CredentialsInQuery::in_query(req.query_string()) {
        return Err(invalid_request(
            "client credentials must not be sent in the query string",
        ));
    }
    let grant_type = grant_type(&mut form)?;
    let client = client.ok_or_else(|| {
        Refusal::new(
            TokenRefusal::NoClientAuthentication,
            OAuthErrorCode::InvalidClient,
            "client authentication is required",
        )
    })?;
    if let Some(bad) = resources
        .iter()
        .find(|resource| ResourceUri::parse("resource", resource).is_err())
    {
        tracing::info!(resource = %bad.chars().take(100).collect::<String>(), "malformed resource");
        return Err(Refusal::new(
            TokenRefusal::InvalidTarget,
            OAuthErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment",
        ));
    }
    let dpop = dpop_header(req).map_err(|_| invalid_dpop_proof("send exactly one DPoP header"))?;
    Ok(WellFormed {
        grant_type,
        form,
        resources,
        client,
        dpop,
    })
}

/// A token request [`well_formed`] accepted.
struct WellFormed<'r> {
    grant_type: GrantType,
    form: TokenRequestForm,
    resources: Vec<String>,
    client: ClientAuthentication,
    /// The `DPoP` header, when the request has one.
    dpop: Option<&'r str>,
}

/// The token endpoint under contract section 7. A request refused before its
/// client authenticates is counted by its address; a failed authentication by
/// the failure windows of the claimed client at this address (never in the
/// agent's own window, and refused before any hash once spent); an
/// authenticated request in its agent's window, with the monthly quota unit
/// taken in the same step. Every answer carries the `X-RateLimit-*` headers of
/// the window it was counted in (the first value).
async fn grant(
    req: &HttpRequest,
    body: Result<actix_web::web::Bytes, Refusal>,
    state: &AppState,
) -> (Option<RateDecision>, Result<serde_json::Value, Refusal>) {
    let request = well_formed(req, read_token_request(req, body));
    let ctx = request_context(req, None);
    let WellFormed {
        grant_type,
        form,
        resources,
        client,
        dpop,
    } = match request {
        Ok(request) => request,
        Err(refusal) => {
            let decision = match check_rate_limit(state, &ip_key(state, req)).await {
                Ok(decision) => decision,
                Err(err) => return (None, Err(unavailable(err.message))),
            };
            if !decision.allowed {
                return (Some(decision), Err(rate_limited(decision.retry_after)));
            }
            return (Some(decision), Err(refusal));
        }
    };
    let authenticated = match state.tokens.authenticate_client(&client, &ctx).await {
        Ok(authenticated) => authenticated,
        Err(ClientAuthError::Throttled(decision)) => {
            state.metrics.rate_limited();
            return (
                Some(decision),
                Err(Refusal::new(
                    TokenRefusal::AuthFailuresExceeded,
                    OAuthErrorCode::AccessDenied,
                    "too many failed client authentications: try again later",
                )
                .retry_after(decision.retry_after)),
            );
        }
        Err(ClientAuthError::Failed { reason, rate }) => {
            tracing::info!(reason = reason.as_str(), "client authentication failed");
            return (
                rate,
                Err(Refusal::new(
                    TokenRefusal::from_client_failure(reason),
                    OAuthErrorCode::InvalidClient,
                    "client authentication failed",
                )),
            );
        }
        Err(ClientAuthError::Unavailable(cause)) => {
            tracing::warn!(error = %format!("{cause:#}"), "client authentication unavailable");
            return (None, Err(unavailable("a backing store is unavailable")));
        }
        Err(ClientAuthError::Unknown(cause)) => {
            tracing::error!(error = %format!("{cause:#}"), "client authentication failed");
            return (None, Err(server_error()));
        }
    };
    let url = request_url(&state.settings.issuer, req);
    let dpop = dpop.map(|proof| DpopRequest {
        proof,
        method: "POST",
        url: &url,
    });
    let (rate, outcome) = match &grant_type {
        GrantType::ClientCredentials => {
            let request = TokenRequest {
                scope: form.scope.as_deref(),
                resources: &resources,
                dpop,
            };
            state.tokens.issue(&authenticated, request, &ctx).await
        }
        GrantType::TokenExchange(tokens) => {
            let request = ExchangeRequest {
                subject: ExchangeTokens::presented(&tokens.subject),
                actor: tokens.actor.as_ref().map(ExchangeTokens::presented),
                scope: form.scope.as_deref(),
                resources: &resources,
                dpop,
            };
            state.tokens.exchange(&authenticated, request, &ctx).await
        }
    };
    let outcome = match outcome {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token,
                "token_type": issued.token_type,
                "expires_in": issued.expires_in,
                "scope": issued.scope,
            });
            if matches!(grant_type, GrantType::TokenExchange(_))
                && let Some(map) = body.as_object_mut()
            {
                map.insert("issued_token_type".to_owned(), json!(ACCESS_TOKEN_TYPE));
            }
            Ok(body)
        }
        Err(err) => Err(token_refusal(state, err)),
    };
    (rate, outcome)
}

fn unavailable(description: impl Into<String>) -> Refusal {
    Refusal::new(
        TokenRefusal::Unavailable,
        OAuthErrorCode::TemporarilyUnavailable,
        description,
    )
    .retry_after(5)
}

fn invalid_dpop_proof(description: impl Into<String>) -> Refusal {
    Refusal::new(
        TokenRefusal::InvalidDpopProof,
        OAuthErrorCode::InvalidDpopProof,
        description,
    )
}

fn server_error() -> Refusal {
    Refusal::new(
        TokenRefusal::ServerError,
        OAuthErrorCode::ServerError,
        "internal error",
    )
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
        TokenRequestError::InvalidRequest(description) => invalid_request(description),
        TokenRequestError::InvalidScope => Refusal::new(
            TokenRefusal::InvalidScope,
            OAuthErrorCode::InvalidScope,
            "the requested scope is malformed or not among the scopes the client may be granted",
        ),
        TokenRequestError::InvalidTarget => Refusal::new(
            TokenRefusal::InvalidTarget,
            OAuthErrorCode::InvalidTarget,
            "a requested resource is not among the resources of the token's subject, \
             or the requested resources are too long together for one token",
        ),
        TokenRequestError::InvalidDpopProof(reason) => {
            tracing::info!(reason = %reason, "DPoP proof refused");
            invalid_dpop_proof(reason.to_string())
        }
        TokenRequestError::DpopRequired => {
            invalid_request("this client must send a DPoP proof with its token requests")
        }
        TokenRequestError::QuotaExceeded => Refusal::new(
            TokenRefusal::MonthlyQuotaExceeded,
            OAuthErrorCode::AccessDenied,
            "monthly token quota exceeded",
        )
        .retry_after(seconds_to_next_month(state.clock.now())),
        TokenRequestError::Unavailable(cause) => {
            tracing::warn!(error = %format!("{cause:#}"), "backing store unavailable");
            unavailable("a backing store is unavailable")
        }
        TokenRequestError::Unknown(cause) => {
            tracing::error!(error = %format!("{cause:#}"), "token request failed");
            server_error()
        }
    }
}

/// The caller of introspection or revocation: the one the gate authenticated
/// (a Bearer or DPoP token, or Basic client credentials), or a client that
/// authenticates in the form (`client_secret_post`, `private_key_jwt`), which
/// is then counted in its agent's window.
async fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    form: Option<&FormParams>,
) -> Result<Principal, ApiError> {
    let basic_challenge = || {
        ApiError::authentication(false).with_header(
            actix_web::http::header::WWW_AUTHENTICATE,
            r#"Basic realm="agentidp""#,
        )
    };
    match caller(req) {
        Caller::Bearer(principal) | Caller::Client(principal) => return Ok(principal),
        Caller::InvalidClient => return Err(basic_challenge()),
        Caller::InvalidBearer => return Err(ApiError::authentication(true)),
        Caller::InvalidDpop(error) => return Err(ApiError::dpop_authentication(error)),
        Caller::MalformedBasic => return Err(ApiError::authentication(false)),
        Caller::Anonymous => {}
    }
    // The gate took any Authorization header: only the form is left. A
    // form whose client authentication is incomplete or mixed is none.
    let client = form.and_then(|form| {
        client_authentication(req, FormClient::of_params(form))
            .ok()
            .flatten()
    });
    let Some(client) = client else {
        return Err(ApiError::authentication(false));
    };
    let ctx = request_context(req, None);
    match state.tokens.authenticate_client(&client, &ctx).await {
        Ok(authenticated) => {
            let decision =
                check_rate_limit(state, &agent_key(authenticated.agent.agent_id)).await?;
            if !decision.allowed {
                return Err(ApiError::rate_limited(decision.retry_after));
            }
            Ok(authenticated.principal())
        }
        Err(ClientAuthError::Failed { reason, .. }) => {
            tracing::info!(reason = reason.as_str(), "client authentication failed");
            Err(basic_challenge())
        }
        Err(ClientAuthError::Throttled(decision)) => {
            state.metrics.rate_limited();
            Err(ApiError::rate_limited(decision.retry_after))
        }
        Err(other) => Err(ApiError::from(DomainError::from(other))),
    }
}

/// Reads the form of an introspection or revocation request.
fn token_form(req: &HttpRequest, body: &[u8]) -> Result<FormParams, ApiError> {
    if media_type(req).is_some_and(|m| m != "application/x-www-form-urlencoded")
        || (!body.is_empty() && media_type(req).is_none())
    {
        return Err(ApiError::unsupported_media_type(
            "application/x-www-form-urlencoded",
        ));
    }
    FormParams::parse(req, body).map_err(|e| match e {
        FormError::WrongMediaType => {
            ApiError::unsupported_media_type("application/x-www-form-urlencoded")
        }
        FormError::Malformed => ApiError::bad_body("the body is not a valid form"),
        FormError::Repeated(name) => ApiError::validation(&name, "must not be repeated"),
    })
}

async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload).await?;
    let form = token_form(&req, &body);
    let caller = authenticate(&req, &state, form.as_ref().ok()).await?;
    caller.require_scope("tokens:introspect")?;
    let token = form?.typed::<TokenForm>()?.token;
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
    let body = read_body(&req, payload).await?;
    let form = token_form(&req, &body);
    let caller = authenticate(&req, &state, form.as_ref().ok()).await?;
    let token = form?.typed::<TokenForm>()?.token;
    let ctx = request_context(&req, Some(caller.client_id));
    state.tokens.revoke(&caller, &token, &ctx).await?;
    Ok(HttpResponse::Ok().finish())
}
