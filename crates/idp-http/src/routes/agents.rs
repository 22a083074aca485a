use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{resource, signed_jwt};
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{json_body, path, query, read_body, request_context};
use crate::requests::{AgentPath, CreateAgent, ListAgents, NoQuery, UpdateAgent};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/agents", "GET, POST")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/agents/{agentId}", "GET, PATCH, DELETE")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(decommission)),
    )
    .service(resource("/agents/{agentId}/card", "GET").route(web::get().to(card)));
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let body = read_body(&req, payload).await?;
    let new = json_body::<CreateAgent>(&req, &body)?
        .ok_or_else(|| ApiError::bad_body("a JSON object is required"))?
        .into_new_agent()?;
    let ctx = request_context(&req, Some(caller.client_id));
    let agent = state.agents.register(&caller, new, &ctx).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/agents/{}", agent.agent_id),
        ))
        .json(&agent))
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:read")?;
    let (page, filter) = query::<ListAgents>(&req)?.into_parts()?;
    let page = state.agents.list(&caller, &filter, page).await?;
    Ok(HttpResponse::Ok().json(page.envelope()))
}

async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:read")?;
    query::<NoQuery>(&req)?;
    let id = path::<AgentPath>(&req)?.agent();
    let agent = state.agents.get(&caller, id).await?;
    Ok(HttpResponse::Ok().json(&agent))
}

async fn update(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let body = read_body(&req, payload).await?;
    let id = path::<AgentPath>(&req)?.agent();
    let patch = json_body::<UpdateAgent>(&req, &body)?
        .ok_or_else(|| ApiError::bad_body("must change at least one field"))?
        .into_patch()?;
    let ctx = request_context(&req, Some(caller.client_id));
    let agent = state.agents.update(&caller, id, patch, &ctx).await?;
    Ok(HttpResponse::Ok().json(&agent))
}

async fn decommission(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    query::<NoQuery>(&req)?;
    let id = path::<AgentPath>(&req)?.agent();
    let ctx = request_context(&req, Some(caller.client_id));
    state.agents.decommission(&caller, id, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/agents/{agentId}/card`: the agent's A2A Agent Card as a
/// compact JWS signed with the active key (`application/jwt`, like the signed
/// audit head), readable exactly when `GET /api/v1/agents/{agentId}` is.
async fn card(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:read")?;
    query::<NoQuery>(&req)?;
    let id = path::<AgentPath>(&req)?.agent();
    let jws = state
        .agents
        .signed_card(
            &caller,
            id,
            &state.settings.issuer,
            state.codec.as_ref(),
            state.clock.now(),
        )
        .await?;
    Ok(signed_jwt(jws))
}
