//! Reading who calls: `Authorization: Bearer` and `Authorization: DPoP`
//! access tokens (RFC 6750, RFC 9449) and `Authorization: Basic` client
//! credentials (RFC 6749 section 2.3.1).

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idp_domain::services::ClientCredentials;
use idp_domain::token::Principal;
use idp_domain::values::ClientSecret;

use crate::error::ApiError;

/// What the `Authorization` header says, decided once per request by the
/// rate-limit middleware and kept in the request's extensions.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A Bearer token that authenticated.
    Bearer(Principal),
    /// A Bearer token that did not.
    InvalidBearer,
    /// A token that failed under the DPoP scheme's rules (a DPoP-bound token
    /// sent as Bearer included): the `error` of its `DPoP` challenge.
    InvalidDpop(&'static str),
    /// Basic client credentials that authenticated: the client holds its
    /// agent's capabilities as scopes.
    Client(Principal),
    /// Basic client credentials that did not authenticate.
    InvalidClient,
    /// A Basic header that does not decode.
    MalformedBasic,
    /// No usable `Authorization` header.
    Anonymous,
}

/// The `Authorization` header, split by scheme.
#[derive(Debug)]
pub enum Presented {
    /// `Bearer <token>`.
    Bearer(String),
    /// `DPoP <token>`.
    Dpop(String),
    /// `Basic <credentials>`, decoded.
    Basic(Result<ClientCredentials, ()>),
    /// Nothing, or a scheme we do not take.
    None,
}

/// Reads the `Authorization` header. Scheme names are case-insensitive (RFC 9110
/// section 11.1).
pub fn presented(req: &HttpRequest) -> Presented {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Presented::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Presented::Bearer(rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("dpop") && !rest.is_empty() {
        Presented::Dpop(rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        Presented::Basic(decode_basic(rest))
    } else {
        Presented::None
    }
}

/// RFC 6749 section 2.3.1: `base64(urlencode(id) ":" urlencode(secret))`.
fn decode_basic(encoded: &str) -> Result<ClientCredentials, ()> {
    let decoded = STANDARD.decode(encoded).map_err(drop)?;
    let decoded = String::from_utf8(decoded).map_err(drop)?;
    let (id, secret) = decoded.split_once(':').ok_or(())?;
    let id = form_urldecode(id)?;
    let secret = form_urldecode(secret)?;
    if id.is_empty() {
        return Err(());
    }
    Ok(ClientCredentials {
        client_id: id,
        client_secret: ClientSecret::new(secret),
    })
}

fn form_urldecode(raw: &str) -> Result<String, ()> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(&format!("v={raw}")).map_err(drop)?;
    match pairs.as_slice() {
        [(_, value)] => Ok(value.clone()),
        _ => Err(()),
    }
}

/// The caller the middleware recorded.
pub fn caller(req: &HttpRequest) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

/// The caller authenticated by an access token (Bearer or DPoP), or `401
/// AUTHENTICATION_ERROR` with the challenge of the scheme that failed.
pub fn bearer(req: &HttpRequest) -> Result<Principal, ApiError> {
    match caller(req) {
        Caller::Bearer(principal) => Ok(principal),
        Caller::InvalidBearer => Err(ApiError::authentication(true)),
        Caller::InvalidDpop(error) => Err(ApiError::dpop_authentication(error)),
        _ => Err(ApiError::authentication(false)),
    }
}

/// A request whose `DPoP` header cannot be a proof: sent more than once
/// (RFC 9449 section 4.3), or not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnusableDpopHeader;

/// The request's single `DPoP` header: `Ok(None)` without one.
pub fn dpop_header(req: &HttpRequest) -> Result<Option<&str>, UnusableDpopHeader> {
    let mut values = req.headers().get_all("dpop");
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(UnusableDpopHeader);
    }
    first.to_str().map(Some).map_err(|_| UnusableDpopHeader)
}

/// The URL a client addressed for this request, as a DPoP proof's `htu`
/// names it: the issuer's origin and path prefix, then the request's path.
pub fn request_url(issuer: &str, req: &HttpRequest) -> String {
    format!("{}{}", issuer.trim_end_matches('/'), req.uri().path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_form_urlencoded() {
        let header = STANDARD.encode("my%20id:p%3Ass+w");
        let creds = decode_basic(&header).unwrap();
        assert_eq!(creds.client_id, "my id");
        assert_eq!(creds.client_secret.expose(), "p:ss w");
    }

    #[test]
    fn malformed_basic_is_refused() {
        assert!(decode_basic("***").is_err());
        assert!(decode_basic(&STANDARD.encode("no-colon")).is_err());
        assert!(decode_basic(&STANDARD.encode(":secret")).is_err());
    }
}
