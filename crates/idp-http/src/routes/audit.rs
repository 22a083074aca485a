use actix_web::{HttpRequest, HttpResponse, web};

use super::resource;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{path, query};
use crate::requests::{EventPath, ListAuditEvents, NoQuery};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/audit", "GET").route(web::get().to(list)))
        .service(resource("/audit/{eventId}", "GET").route(web::get().to(get)));
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    let (page, filter) = query::<ListAuditEvents>(&req)?.into_parts()?;
    let page = state.audit.list(&caller, filter, page).await?;
    Ok(HttpResponse::Ok().json(page.envelope()))
}

async fn get(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    query::<NoQuery>(&req)?;
    let id = path::<EventPath>(&req)?.event();
    let event = state.audit.get(&caller, id).await?;
    Ok(HttpResponse::Ok().json(&event))
}
