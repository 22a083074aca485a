use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use idp_domain::page::PageRequest;
use idp_domain::ports::AgentFilter;
use idp_domain::services::{AgentPatch, NewAgent};
use idp_domain::values::{AgentId, AgentStatus, Capabilities, Email, Owner, SemVer};

use super::resource;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{JsonObject, QueryParams, json_object, parse_uuid, read_body, request_context};
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
    );
}

/// Fields the server sets; a client sending them is refused.
const SERVER_OWNED: [&str; 4] = ["agentId", "status", "createdAt", "updatedAt"];
/// Fields that never change after creation.
const IMMUTABLE: [&str; 4] = ["agentId", "owner", "createdAt", "updatedAt"];

pub(super) fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    parse_uuid("agentId", raw).map(AgentId)
}

fn capabilities(raw: &[String]) -> Result<Capabilities, ApiError> {
    Ok(Capabilities::parse(raw)?)
}

async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    QueryParams::parse(&req)?.finish()?;
    let body = read_body(&req, payload).await?;
    let mut obj =
        json_object(&req, &body)?.ok_or_else(|| ApiError::bad_body("a JSON object is required"))?;
    obj.refuse(&SERVER_OWNED, "is set by the server")?;
    let new = NewAgent {
        email: Email::parse(&obj.require_str("email")?)?,
        agent_type: obj.require_str("agentType")?.parse()?,
        version: SemVer::parse(&obj.require_str("version")?)?,
        capabilities: capabilities(&obj.require_str_array("capabilities")?)?,
        deployment_env: obj.require_str("deploymentEnv")?.parse()?,
        owner: obj
            .take_str("owner")?
            .map(|o| Owner::parse(&o))
            .transpose()?,
    };
    obj.finish()?;
    let ctx = request_context(&req, Some(caller.agent_id));
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
    let mut query = QueryParams::parse(&req)?;
    let page = PageRequest::new(query.take_u32("page")?, query.take_u32("limit")?)?;
    let filter = AgentFilter {
        status: query.take("status", str::parse)?,
        agent_type: query.take("agentType", str::parse)?,
        deployment_env: query.take("deploymentEnv", str::parse)?,
    };
    query.finish()?;
    let page = state.agents.list(&caller, &filter, page).await?;
    Ok(HttpResponse::Ok().json(page.envelope()))
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:read")?;
    QueryParams::parse(&req)?.finish()?;
    let id = agent_id(&path)?;
    let agent = state.agents.get(&caller, id).await?;
    Ok(HttpResponse::Ok().json(&agent))
}

fn patch_from(mut obj: JsonObject) -> Result<AgentPatch, ApiError> {
    obj.refuse(&IMMUTABLE, "is immutable")?;
    if obj.is_empty() {
        return Err(ApiError::bad_body("must change at least one field"));
    }
    let status = obj
        .take_str("status")?
        .map(|raw| match raw.parse::<AgentStatus>() {
            Ok(status @ (AgentStatus::Active | AgentStatus::Suspended)) => Ok(status),
            _ => Err(ApiError::validation(
                "status",
                "must be active or suspended",
            )),
        })
        .transpose()?;
    let patch = AgentPatch {
        email: obj
            .take_str("email")?
            .map(|e| Email::parse(&e))
            .transpose()?,
        agent_type: obj.take_str("agentType")?.map(|t| t.parse()).transpose()?,
        version: obj
            .take_str("version")?
            .map(|v| SemVer::parse(&v))
            .transpose()?,
        capabilities: obj
            .take_str_array("capabilities")?
            .map(|c| capabilities(&c))
            .transpose()?,
        deployment_env: obj
            .take_str("deploymentEnv")?
            .map(|d| d.parse())
            .transpose()?,
        status,
    };
    obj.finish()?;
    Ok(patch)
}

async fn update(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    QueryParams::parse(&req)?.finish()?;
    let body = read_body(&req, payload).await?;
    let id = agent_id(&path)?;
    let obj = json_object(&req, &body)?
        .ok_or_else(|| ApiError::bad_body("must change at least one field"))?;
    let patch = patch_from(obj)?;
    let ctx = request_context(&req, Some(caller.agent_id));
    let agent = state.agents.update(&caller, id, patch, &ctx).await?;
    Ok(HttpResponse::Ok().json(&agent))
}

async fn decommission(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("agents:write")?;
    QueryParams::parse(&req)?.finish()?;
    let id = agent_id(&path)?;
    let ctx = request_context(&req, Some(caller.agent_id));
    state.agents.decommission(&caller, id, &ctx).await?;
    Ok(HttpResponse::NoContent().finish())
}
