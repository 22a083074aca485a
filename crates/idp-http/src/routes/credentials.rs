use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use idp_domain::services::{IssuedCredential, NewKey};
use serde_json::json;

use super::{no_store, resource};
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{json_body, path, query, read_body, request_context};
use crate::requests::{
    AgentPath, CredentialPath, GenerateCredential, ListCredentials, NoQuery, RotateCredential,
};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/agents/{agentId}/credentials", "GET, POST")
            .route(web::post().to(generate))
            .route(web::get().to(list)),
    )
    .service(
        resource(
            "/agents/{agentId}/credentials/{credentialId}/rotate",
            "POST",
        )
        .route(web::post().to(rotate)),
    )
    .service(
        resource("/agents/{agentId}/credentials/{credentialId}", "DELETE")
            .route(web::delete().to(revoke)),
    );
}

/// The answer of generate and rotate, with the secret of a `secret`
/// credential: never cached.
fn with_secret(
    status: actix_web::http::StatusCode,
    issued: &IssuedCredential,
) -> Result<HttpResponse, ApiError> {
    let mut body = serde_json::to_value(&issued.credential).map_err(|e| {
        tracing::error!(error = %e, "credential serialization failed");
        ApiError::internal()
    })?;
    if let Some(secret) = &issued.client_secret {
        body["clientSecret"] = json!(secret.expose());
    }
    let mut res = HttpResponse::build(status).json(body);
    no_store(&mut res);
    Ok(res)
}

async fn generate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let body = read_body(&req, payload).await?;
    let agent = path::<AgentPath>(&req)?.agent();
    let body = json_body::<GenerateCredential>(&req, &body)?;
    let new_key = match &body {
        Some(body) => body.new_key()?,
        None => NewKey::Secret,
    };
    let expires_at = body.and_then(|body| body.expires_at).map(|at| at.0);
    let ctx = request_context(&req, Some(caller.client_id));
    let issued = state
        .credentials
        .generate(&caller, agent, new_key, expires_at, &ctx)
        .await?;
    let mut res = with_secret(actix_web::http::StatusCode::CREATED, &issued)?;
    if let Ok(location) = header::HeaderValue::from_str(&format!(
        "/api/v1/agents/{agent}/credentials/{}",
        issued.credential.credential_id
    )) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    // The listing's own scope is agents:read (agents:write also lists); a
    // caller with neither is told the one it needs.
    if !caller.has_scope("agents:write") {
        caller.require_scope("agents:read")?;
    }
    let (page, status) = query::<ListCredentials>(&req)?.into_parts()?;
    let agent = path::<AgentPath>(&req)?.agent();
    let page = state.credentials.list(&caller, agent, status, page).await?;
    Ok(HttpResponse::Ok().json(page.envelope()))
}

async fn rotate(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let body = read_body(&req, payload).await?;
    let new_key = RotateCredential::new_key(json_body::<RotateCredential>(&req, &body)?.as_ref())?;
    let (agent, credential) = path::<CredentialPath>(&req)?.ids();
    let ctx = request_context(&req, Some(caller.client_id));
    let issued = state
        .credentials
        .rotate(&caller, agent, credential, new_key, &ctx)
        .await?;
    with_secret(actix_web::http::StatusCode::OK, &issued)
}

async fn revoke(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let (agent, credential) = path::<CredentialPath>(&req)?.ids();
    let ctx = request_context(&req, Some(caller.client_id));
    state
        .credentials
        .revoke(&caller, agent, credential, &ctx)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
