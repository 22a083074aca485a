use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::stream;
use idp_domain::audit_chain::{Verification, next_page_start};
use idp_domain::values::Owner;
use serde_json::json;

use super::{resource, signed_jwt};
use crate::auth::bearer;
use crate::error::ApiError;
use crate::input::{path, query};
use crate::requests::{EventPath, ExportAuditEvents, ListAuditEvents, NoQuery};
use crate::state::AppState;

/// Events read per store call while streaming an export: memory stays flat
/// however long the chain.
const EXPORT_PAGE: usize = 500;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The fixed paths before `{eventId}`, which would otherwise match them.
    cfg.service(resource("/audit", "GET").route(web::get().to(list)))
        .service(resource("/audit/verify", "GET").route(web::get().to(verify)))
        .service(resource("/audit/head", "GET").route(web::get().to(head)))
        .service(resource("/audit/export", "GET").route(web::get().to(export)))
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

/// `GET /api/v1/audit/verify`: the caller's owner's whole chain, checked.
async fn verify(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    query::<NoQuery>(&req)?;
    let body = match state
        .audit
        .verify(&caller.owner)
        .await
        .map_err(idp_domain::DomainError::from)?
    {
        Verification::Verified { events, head } => json!({
            "verified": true,
            "events": events,
            "head": {"sequence": head.sequence, "hash": head.hash},
        }),
        Verification::Broken { events, bad } => json!({
            "verified": false,
            "events": events,
            "firstBadSequence": bad.first_bad_sequence,
            "eventId": bad.event_id,
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/v1/audit/head`: the chain's head as a signed receipt.
async fn head(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    query::<NoQuery>(&req)?;
    let jws = state
        .audit
        .signed_head(&caller.owner, state.codec.as_ref())
        .await
        .map_err(idp_domain::DomainError::from)?;
    Ok(signed_jwt(jws))
}

/// `GET /api/v1/audit/export`: the owner's events from `fromSequence` on, as
/// NDJSON, streamed a page at a time.
async fn export(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let caller = bearer(&req)?;
    caller.require_scope("audit:read")?;
    let from = query::<ExportAuditEvents>(&req)?.from_sequence.unwrap_or(1);
    let audit = state.audit.clone();
    let owner: Owner = caller.owner.clone();
    // The first page is read before the status is sent, so an unreachable
    // store is a 503, not a truncated 200.
    let first = audit
        .chain_page(&owner, from, EXPORT_PAGE)
        .await
        .map_err(idp_domain::DomainError::from)?;
    let pages = stream::unfold(Some(first), move |page| {
        let audit = audit.clone();
        let owner = owner.clone();
        async move {
            let page = page?;
            let next_from = next_page_start(&page, EXPORT_PAGE);
            let mut body = Vec::with_capacity(page.len() * 512);
            for event in &page {
                if let Err(e) = serde_json::to_writer(&mut body, event) {
                    tracing::error!(error = %e, "audit export: an event did not serialize");
                    return Some((Err(std::io::Error::other("audit export failed")), None));
                }
                body.push(b'\n');
            }
            let next = match next_from {
                None => None,
                Some(from) => match audit.chain_page(&owner, from, EXPORT_PAGE).await {
                    Ok(next) => Some(next),
                    Err(e) => {
                        // Headers are gone; the only honest signal left is to
                        // cut the stream so the client sees an error.
                        tracing::error!(error = %e, "audit export: the store failed mid-stream");
                        return Some((Err(std::io::Error::other("audit export failed")), None));
                    }
                },
            };
            if body.is_empty() {
                return None;
            }
            Some((Ok::<_, std::io::Error>(web::Bytes::from(body)), next))
        }
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/x-ndjson")
        .streaming(pages))
}
