use actix_web::{HttpRequest, HttpResponse, web};
use idp_domain::audit::AuditFilter;
use idp_domain::page::PageRequest;
use idp_domain::values::{AgentId, EventId};

use super::resource;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{QueryParams, parse_time, parse_uuid};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/audit", "GET").route(web::get().to(list)))
        .service(resource("/audit/{eventId}", "GET").route(web::get().to(get)));
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    let mut query = QueryParams::parse(&req)?;
    let page = PageRequest::new(query.take_u32("page")?, query.take_u32("limit")?)?;
    let filter = AuditFilter {
        agent_id: query.take("agentId", |raw| {
            parse_uuid("agentId", raw)
                .map(AgentId)
                .map_err(|_| "must be a UUID")
        })?,
        action: query.take("action", str::parse)?,
        outcome: query.take("outcome", str::parse)?,
        from: query.take("fromDate", |raw| {
            parse_time("fromDate", raw).map_err(|_| "must be an RFC 3339 timestamp")
        })?,
        to: query.take("toDate", |raw| {
            parse_time("toDate", raw).map_err(|_| "must be an RFC 3339 timestamp")
        })?,
    };
    query.finish()?;
    let page = state.audit.list(&caller, filter, page).await?;
    Ok(HttpResponse::Ok().json(page.envelope()))
}

async fn get(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    QueryParams::parse(&req)?.finish()?;
    let id = parse_uuid("eventId", &path).map(EventId)?;
    let event = state.audit.get(&caller, id).await?;
    Ok(HttpResponse::Ok().json(&event))
}
