//! `/readyz` and `/metrics` share one readiness answer per server: reused for
//! a second, one round of checks in flight, each check bounded (issue 9, item 9).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::test::TestRequest;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{Clock, HealthCheck};

use super::fixtures::*;
use crate::{Application, Readiness};

/// A clock the test moves.
struct SteppedClock(Mutex<DateTime<Utc>>);

impl SteppedClock {
    fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for SteppedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// A check that counts its calls, takes `delay`, and answers `up`.
struct CountingCheck {
    calls: AtomicUsize,
    delay: Duration,
    up: bool,
}

impl CountingCheck {
    fn new(delay: Duration, up: bool) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            delay,
            up,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl HealthCheck for CountingCheck {
    fn name(&self) -> &'static str {
        "database"
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if self.up {
            Ok(())
        } else {
            Err(StoreError::Unavailable(anyhow::anyhow!("down")))
        }
    }
}

fn readiness(check: &Arc<CountingCheck>) -> (Readiness, Arc<SteppedClock>) {
    let clock = Arc::new(SteppedClock(Mutex::new(now())));
    let checks: Vec<Arc<dyn HealthCheck>> = vec![check.clone()];
    (Readiness::new(checks, clock.clone()), clock)
}

#[actix_web::test]
async fn an_answer_is_reused_for_one_second() {
    let check = CountingCheck::new(Duration::ZERO, true);
    let (readiness, clock) = readiness(&check);
    assert!(readiness.report().await.ready());
    clock.advance(chrono::Duration::milliseconds(999));
    assert!(readiness.report().await.ready());
    assert_eq!(check.calls(), 1, "reused within the second");
    clock.advance(chrono::Duration::milliseconds(1));
    readiness.report().await;
    assert_eq!(check.calls(), 2, "checked again once a second has passed");
}

#[actix_web::test]
async fn a_clock_that_went_back_does_not_keep_an_answer_forever() {
    let check = CountingCheck::new(Duration::ZERO, true);
    let (readiness, clock) = readiness(&check);
    readiness.report().await;
    clock.advance(chrono::Duration::seconds(-60));
    readiness.report().await;
    assert_eq!(check.calls(), 2);
}

#[actix_web::test]
async fn concurrent_callers_share_one_round_of_checks() {
    let check = CountingCheck::new(Duration::from_millis(50), true);
    let (readiness, _) = readiness(&check);
    let reports = futures_util::future::join_all((0..8).map(|_| readiness.report())).await;
    assert!(reports.iter().all(|r| r.ready()));
    assert_eq!(check.calls(), 1);
}

#[actix_web::test]
async fn a_check_that_hangs_is_not_ready_after_the_timeout() {
    let check = CountingCheck::new(Duration::from_secs(30), true);
    let (readiness, _) = readiness(&check);
    let readiness = readiness.with_timeout(Duration::from_millis(50));
    let started = std::time::Instant::now();
    let report = readiness.report().await;
    assert!(!report.ready());
    assert_eq!(report.checks, vec![("database", false)]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn readyz_and_metrics_share_the_answer() {
    let check = CountingCheck::new(Duration::ZERO, false);
    let (readiness, _) = readiness(&check);
    let app = actix_web::test::init_service(
        Application::with_readiness(Mocks::default().state(), readiness).app(),
    )
    .await;
    let res =
        actix_web::test::call_service(&app, TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").unwrap(), "5");
    let body: serde_json::Value = actix_web::test::read_body_json(res).await;
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["database"], "unavailable");
    let res =
        actix_web::test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    assert!(
        text.contains(r#"agentidp_dependency_up{dependency="database"} 0"#),
        "{text}"
    );
    assert_eq!(check.calls(), 1, "the scrape reused the probe's answer");
}

#[actix_web::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let application = Application::new(Mocks::default().state()).with_metrics_elsewhere();
    let main = actix_web::test::init_service(application.clone().app()).await;
    let res =
        actix_web::test::call_service(&main, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(res.status(), 404);
    let res =
        actix_web::test::call_service(&main, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), 200);

    let metrics = actix_web::test::init_service(application.metrics_app()).await;
    let res =
        actix_web::test::call_service(&metrics, TestRequest::get().uri("/metrics").to_request())
            .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for path in ["/healthz", "/api/v1/agents"] {
        let res =
            actix_web::test::call_service(&metrics, TestRequest::get().uri(path).to_request())
                .await;
        assert_eq!(res.status(), 404, "{path} on the metrics listener");
    }
}
