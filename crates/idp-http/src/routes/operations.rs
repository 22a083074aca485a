//! Operational endpoints: health, readiness, metrics and the OpenAPI document.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use futures_util::future::join_all;
use serde_json::{Map, Value, json};

use super::resource;
use crate::state::AppState;

/// The project's OpenAPI document, as written.
pub const OPENAPI_YAML: &str = include_str!("../../../../openapi/openapi.yaml");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(resource("/openapi.yaml", "GET").route(web::get().to(openapi_yaml)));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = Map::new();
    let mut ready = true;
    for check in &state.health_checks {
        let status = match check.check().await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(check = check.name(), error = %e, "readiness check failed");
                ready = false;
                "unavailable"
            }
        };
        checks.insert(check.name().to_owned(), json!(status));
    }
    let body = json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// How long a scrape waits for one health check: a hung dependency reads as
/// down instead of stalling the scrape.
const SCRAPE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs every health check (concurrently, each bounded) to set
/// `agentidp_dependency_up`, then renders.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let checks = state.health_checks.iter().map(|check| async move {
        let up = matches!(
            tokio::time::timeout(SCRAPE_CHECK_TIMEOUT, check.check()).await,
            Ok(Ok(()))
        );
        (check.name(), up)
    });
    for (name, up) in join_all(checks).await {
        state.metrics.dependency_up(name, up);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// The document as JSON, converted once: a pure function of a compile-time
/// constant, so a process-wide cell holds no state that tests could share.
fn openapi_value() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_yaml_ng::from_str::<Value>(OPENAPI_YAML).unwrap_or_else(|e| {
            tracing::error!(error = %e, "openapi.yaml does not parse");
            Value::Null
        })
    })
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(openapi_value())
}

async fn openapi_yaml() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(OPENAPI_YAML)
}
