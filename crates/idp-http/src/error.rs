//! Error policy of the HTTP layer.
//!
//! Two wire shapes, each built in exactly one place:
//! * [`ApiError`]: the contract's body `{code, message, details?}` for every
//!   non-OAuth error, built from [`DomainError`] by one mapping (`From`).
//! * [`OAuthError`]: RFC 6749 section 5.2 `{error, error_description}` for the
//!   token endpoint, whose `Display` is the RFC wire code.
//!
//! Internal causes (`Unknown`, `Unavailable`) are logged under the request's span
//! and never put in a body: an identity provider must not be an oracle.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use idp_domain::{DomainError, ValueError};
use serde_json::{Value, json};

/// Seconds a client should wait after a 503.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// A non-OAuth error response of the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The contract's `code`.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Optional details (`field`, `reason`, ...); boxed to keep `Result`s small.
    pub details: Option<Box<Value>>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    /// An error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            headers: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: header::HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `400 VALIDATION_ERROR` about `field`.
    pub fn validation(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            details: Some(Box::new(json!({ "field": field, "reason": reason }))),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                format!("{field} is invalid"),
            )
        }
    }

    /// `400 VALIDATION_ERROR` about the body as a whole.
    pub fn bad_body(reason: impl Into<String>) -> Self {
        Self::validation("body", reason)
    }

    /// `401 AUTHENTICATION_ERROR`. `token_presented` selects the RFC 6750 section 3.1
    /// challenge: with `error="invalid_token"` only when a token was sent.
    pub fn authentication(token_presented: bool) -> Self {
        let challenge = if token_presented {
            r#"Bearer realm="agentidp", error="invalid_token", error_description="the access token is invalid""#
        } else {
            r#"Bearer realm="agentidp""#
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_ERROR",
            "authentication required",
        )
        .with_header(header::WWW_AUTHENTICATE, challenge)
    }

    /// `401 AUTHENTICATION_ERROR` under the DPoP scheme (RFC 9449 section
    /// 7.1): `error` is `invalid_token` or `invalid_dpop_proof`.
    pub fn dpop_authentication(error: &'static str) -> Self {
        let algs = idp_domain::values::JwsAlgorithm::names().join(" ");
        let challenge = format!(r#"DPoP algs="{algs}", error="{error}""#);
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_ERROR",
            "authentication required",
        )
        .with_header(header::WWW_AUTHENTICATE, challenge)
    }

    /// `413 PAYLOAD_TOO_LARGE`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// `415 UNSUPPORTED_MEDIA_TYPE`.
    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("content type must be {expected}"),
        )
    }

    /// `429 RATE_LIMIT_EXCEEDED`.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            "rate limit exceeded",
        )
        .with_header(header::RETRY_AFTER, retry_after.to_string())
    }

    /// `503 SERVICE_UNAVAILABLE`.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "a backing store is unavailable; retry later",
        )
        .with_header(
            header::RETRY_AFTER,
            UNAVAILABLE_RETRY_AFTER_SECS.to_string(),
        )
    }

    /// `500 INTERNAL_ERROR`: a bug.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error",
        )
    }

    fn body(&self) -> Value {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(details) = &self.details {
            body["details"] = (**details).clone();
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                // Appended: a 401 may carry a Bearer and a Basic challenge.
                response.append_header((name.clone(), value));
            }
        }
        response.json(self.body())
    }
}

impl From<ValueError> for ApiError {
    fn from(err: ValueError) -> Self {
        Self::validation(&err.field, err.reason)
    }
}

impl From<DomainError> for ApiError {
    /// The contract's error table, in one place.
    fn from(err: DomainError) -> Self {
        use StatusCode as S;
        match err {
            DomainError::Validation(e) => e.into(),
            DomainError::Authentication(reason) => {
                tracing::info!(reason, "authentication failed");
                Self::authentication(true)
            }
            DomainError::InsufficientScope(scope) => Self::new(
                S::FORBIDDEN,
                "INSUFFICIENT_SCOPE",
                format!("the token lacks the scope {scope}"),
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="agentidp", error="insufficient_scope", scope="{scope}""#),
            ),
            DomainError::Authorization(message) => {
                Self::new(S::FORBIDDEN, "AUTHORIZATION_ERROR", message)
            }
            DomainError::FreeTierLimitExceeded(message) => {
                Self::new(S::FORBIDDEN, "FREE_TIER_LIMIT_EXCEEDED", message)
            }
            DomainError::AgentNotFound => {
                Self::new(S::NOT_FOUND, "AGENT_NOT_FOUND", "agent not found")
            }
            DomainError::CredentialNotFound => {
                Self::new(S::NOT_FOUND, "CREDENTIAL_NOT_FOUND", "credential not found")
            }
            DomainError::AuditEventNotFound => Self::new(
                S::NOT_FOUND,
                "AUDIT_EVENT_NOT_FOUND",
                "audit event not found",
            ),
            DomainError::AgentAlreadyExists => Self::new(
                S::CONFLICT,
                "AGENT_ALREADY_EXISTS",
                "an agent with this email already exists",
            ),
            DomainError::AgentNotActive => {
                Self::new(S::CONFLICT, "AGENT_NOT_ACTIVE", "the agent is not active")
            }
            DomainError::AgentDecommissioned => Self::new(
                S::CONFLICT,
                "AGENT_DECOMMISSIONED",
                "the agent is decommissioned",
            ),
            DomainError::CredentialRevoked => Self::new(
                S::CONFLICT,
                "CREDENTIAL_REVOKED",
                "the credential is revoked",
            ),
            DomainError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "backing store unavailable");
                Self::unavailable()
            }
            DomainError::Unknown(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "internal error");
                Self::internal()
            }
        }
    }
}

/// RFC 6749 section 5.2 errors of the token endpoint. `Display` is the wire code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthErrorCode {
    /// RFC 6749 section 5.2: missing or repeated parameter, two authentication
    /// methods, credentials in the query, malformed request.
    #[error("invalid_request")]
    InvalidRequest,
    /// RFC 6749 section 5.2: client authentication failed.
    #[error("invalid_client")]
    InvalidClient,
    /// RFC 6749 section 5.2: the grant type is not supported.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// RFC 6749 section 5.2: the requested scope is invalid, unknown or malformed.
    #[error("invalid_scope")]
    InvalidScope,
    /// RFC 8707 section 2: a requested resource is invalid or not allowed.
    #[error("invalid_target")]
    InvalidTarget,
    /// RFC 9449 section 5: the DPoP proof is invalid.
    #[error("invalid_dpop_proof")]
    InvalidDpopProof,
    /// RFC 6749 section 4.1.2.1, used by the contract for a spent rate limit or quota.
    #[error("access_denied")]
    AccessDenied,
    /// RFC 6749 section 4.1.2.1: a backing store is unavailable.
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
    /// RFC 6749 section 4.1.2.1: a bug.
    #[error("server_error")]
    ServerError,
}

/// An OAuth error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// The RFC code.
    pub code: OAuthErrorCode,
    /// `error_description`.
    pub description: String,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl OAuthError {
    /// An error with a description.
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after: None,
        }
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn status(&self) -> StatusCode {
        match self.code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::AccessDenied => StatusCode::TOO_MANY_REQUESTS,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if self.code == OAuthErrorCode::InvalidClient {
            response.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="agentidp""#));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response
            .json(json!({ "error": self.code.to_string(), "error_description": self.description }))
    }
}
