//! Operational endpoints: health, readiness, metrics and the OpenAPI document.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use idp_domain::ports::{Clock, HealthCheck};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use super::resource;
use crate::state::AppState;

/// The project's OpenAPI document, as written.
pub const OPENAPI_YAML: &str = include_str!("../../../../openapi/openapi.yaml");

/// How long one readiness answer is reused. Probes and scrapes are
/// unauthenticated: without reuse, each would cost a database and a cache
/// round trip, so anyone could turn them into load on both.
pub const READINESS_FRESH_FOR: Duration = Duration::from_secs(1);
/// How long one health check may take: a hung dependency reads as down
/// instead of stalling the probe (and every probe queued behind it).
pub const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi_json)))
        .service(resource("/openapi.yaml", "GET").route(web::get().to(openapi_yaml)));
}

pub fn configure_metrics(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics", "GET").route(web::get().to(metrics)));
}

/// Whether each dependency answered, as of [`ReadinessReport::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessReport {
    /// When the checks finished.
    pub at: DateTime<Utc>,
    /// Each check's name and whether it passed within the timeout.
    pub checks: Vec<(&'static str, bool)>,
}

impl ReadinessReport {
    /// Every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|(_, up)| *up)
    }
}

/// The readiness of one server, shared by its workers: at most one round of
/// checks in flight, each check bounded by a timeout, and its answer reused
/// for [`READINESS_FRESH_FOR`] by `/readyz` and `/metrics` alike.
pub struct Readiness {
    checks: Vec<Arc<dyn HealthCheck>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    fresh_for: chrono::Duration,
    /// The last answer. The lock is held while checking, so callers arriving
    /// meanwhile wait for that round instead of starting their own.
    last: Mutex<Option<ReadinessReport>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "checks",
                &self.checks.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Readiness {
    /// Runs `checks`, timing answers by `clock`, with the default timeout and
    /// reuse period.
    pub fn new(checks: Vec<Arc<dyn HealthCheck>>, clock: Arc<dyn Clock>) -> Self {
        Self {
            checks,
            clock,
            timeout: READINESS_CHECK_TIMEOUT,
            fresh_for: chrono::Duration::from_std(READINESS_FRESH_FOR)
                .unwrap_or_else(|_| chrono::Duration::seconds(1)),
            last: Mutex::new(None),
        }
    }

    /// The same, each check bounded by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The current answer: the last one if it is fresh, else a new round of
    /// checks (concurrent, each bounded).
    pub async fn report(&self) -> ReadinessReport {
        let mut last = self.last.lock().await;
        let now = self.clock.now();
        // A clock that went back makes an answer from the "future" stale too.
        if let Some(report) = last
            .as_ref()
            .filter(|r| r.at <= now && now - r.at < self.fresh_for)
        {
            return report.clone();
        }
        let rounds = self.checks.iter().map(|check| async move {
            let up = match tokio::time::timeout(self.timeout, check.check()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(check = check.name(), error = %e, "readiness check failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(
                        check = check.name(),
                        timeout_ms = self.timeout.as_millis(),
                        "readiness check timed out"
                    );
                    false
                }
            };
            (check.name(), up)
        });
        let report = ReadinessReport {
            checks: join_all(rounds).await,
            at: self.clock.now(),
        };
        *last = Some(report.clone());
        report
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    let checks: Map<String, Value> = report
        .checks
        .iter()
        .map(|(name, up)| {
            (
                (*name).to_owned(),
                json!(if *up { "ok" } else { "unavailable" }),
            )
        })
        .collect();
    let ready = report.ready();
    let body = json!({ "status": if ready { "ready" } else { "unavailable" }, "checks": checks });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// Sets `agentidp_dependency_up` from the readiness answer, then renders.
async fn metrics(state: web::Data<AppState>, readiness: web::Data<Readiness>) -> HttpResponse {
    for (name, up) in readiness.report().await.checks {
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
