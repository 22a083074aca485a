//! Discovery: RFC 8414 server metadata and the JWK Set.

use actix_web::{HttpResponse, web};
use idp_domain::services::TOKEN_EXCHANGE_GRANT;
use idp_domain::values::{JwsAlgorithm, MANAGEMENT_SCOPES};
use serde_json::json;

use super::resource;
use crate::state::AppState;

/// The documents of the `/.well-known` scope.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/oauth-authorization-server", "GET").route(web::get().to(metadata)))
        .service(resource("/jwks.json", "GET").route(web::get().to(jwks)));
}

/// The client authentication methods of every endpoint that authenticates
/// clients (contract section 10).
const CLIENT_AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.settings.issuer.trim_end_matches('/');
    HttpResponse::Ok().json(json!({
        "issuer": state.settings.issuer,
        "token_endpoint": format!("{issuer}/api/v1/token"),
        "introspection_endpoint": format!("{issuer}/api/v1/token/introspect"),
        "revocation_endpoint": format!("{issuer}/api/v1/token/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials", TOKEN_EXCHANGE_GRANT],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": JwsAlgorithm::names(),
        // Registered client authentication methods only (RFC 8414 section 2); a
        // Bearer or DPoP access token is accepted too.
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_signing_alg_values_supported": JwsAlgorithm::names(),
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": JwsAlgorithm::names(),
        "scopes_supported": MANAGEMENT_SCOPES,
        "access_token_signing_alg_values_supported": state.codec.algorithms(),
        "dpop_signing_alg_values_supported": JwsAlgorithm::names(),
    }))
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            "Cache-Control",
            format!("public, max-age={}", state.settings.jwks_max_age),
        ))
        .content_type("application/jwk-set+json")
        .json(state.codec.jwks())
}
