//! `AuditService`: the retention window and the date filters.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use super::fixtures::*;
use crate::DomainError;
use crate::audit::{AuditEvent, AuditFilter};
use crate::page::{Page, PageRequest};
use crate::ports::MockAuditLog;
use crate::services::{AuditService, Limits};
use crate::values::{AuditAction, EventId, Outcome};

fn service(audit: MockAuditLog) -> AuditService {
    AuditService::new(Arc::new(audit), ambient(), limits())
}

/// Now minus the fixture's 30-day retention.
fn window_start() -> chrono::DateTime<chrono::Utc> {
    now() - Duration::days(30)
}

fn event() -> AuditEvent {
    AuditEvent {
        event_id: EventId(generated_id(50)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(CALLER),
        action: AuditAction::AgentUpdated,
        outcome: Outcome::Success,
        ip_address: None,
        user_agent: None,
        metadata: json!({}),
        timestamp: now() - Duration::days(2),
        sequence: None,
        hash: None,
    }
}

/// The log is listed once for the caller's owner with exactly `expected`.
fn lists(audit: &mut MockAuditLog, expected: AuditFilter, page: PageRequest) {
    audit
        .expect_list()
        .withf(move |o, filter, p| *o == owner() && *filter == expected && *p == page)
        .times(1)
        .returning(|_, _, p| {
            Ok(Page {
                items: vec![event()],
                request: p,
                total: 1,
            })
        });
}

async fn list(audit: MockAuditLog, filter: AuditFilter) -> Result<Page<AuditEvent>, DomainError> {
    service(audit)
        .list(&caller(&["audit:read"]), filter, PageRequest::default())
        .await
}

#[tokio::test]
async fn list_refuses_from_after_to_without_reading() {
    let mut audit = MockAuditLog::new();
    audit.expect_list().never();
    let filter = AuditFilter {
        from: Some(now() - Duration::days(1)),
        to: Some(now() - Duration::days(1) - Duration::milliseconds(1)),
        ..AuditFilter::default()
    };

    let err = list(audit, filter).await.unwrap_err();

    match err {
        DomainError::Validation(e) => assert_eq!(e.field, "fromDate"),
        other => panic!("expected Validation, got {other:?}"),
    }
}

#[tokio::test]
async fn list_accepts_from_equal_to_to() {
    let at = now() - Duration::days(1);
    let filter = AuditFilter {
        from: Some(at),
        to: Some(at),
        ..AuditFilter::default()
    };
    let mut audit = MockAuditLog::new();
    lists(&mut audit, filter.clone(), PageRequest::default());

    list(audit, filter).await.unwrap();
}

#[tokio::test]
async fn list_without_from_starts_at_the_retention_window() {
    let filter = AuditFilter {
        agent_id: Some(TARGET),
        action: Some(AuditAction::TokenIssued),
        outcome: Some(Outcome::Failure),
        from: None,
        to: Some(now() - Duration::hours(1)),
    };
    let page = PageRequest::new(Some(4), Some(25)).unwrap();
    let mut audit = MockAuditLog::new();
    lists(
        &mut audit,
        AuditFilter {
            from: Some(window_start()),
            ..filter.clone()
        },
        page,
    );

    let listed = service(audit)
        .list(&caller(&["audit:read"]), filter, page)
        .await
        .unwrap();

    assert_eq!(listed.items, vec![event()]);
    assert_eq!(listed.request, page);
}

#[tokio::test]
async fn list_clamps_an_earlier_from_to_the_window() {
    for from in [
        now() - Duration::days(400),
        window_start() - Duration::milliseconds(1),
    ] {
        let mut audit = MockAuditLog::new();
        lists(
            &mut audit,
            AuditFilter {
                from: Some(window_start()),
                ..AuditFilter::default()
            },
            PageRequest::default(),
        );

        list(
            audit,
            AuditFilter {
                from: Some(from),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn list_keeps_a_from_inside_the_window() {
    for from in [window_start(), now() - Duration::days(3), now()] {
        let filter = AuditFilter {
            from: Some(from),
            ..AuditFilter::default()
        };
        let mut audit = MockAuditLog::new();
        lists(&mut audit, filter.clone(), PageRequest::default());

        list(audit, filter).await.unwrap();
    }
}

#[tokio::test]
async fn list_uses_the_configured_retention() {
    let mut audit = MockAuditLog::new();
    audit
        .expect_list()
        .withf(|_, filter, _| filter.from == Some(now() - Duration::days(90)))
        .times(1)
        .returning(|_, _, p| {
            Ok(Page {
                items: vec![],
                request: p,
                total: 0,
            })
        });
    let service = AuditService::new(
        Arc::new(audit),
        ambient(),
        Limits {
            audit_retention_days: 90,
            ..limits()
        },
    );

    service
        .list(
            &caller(&["audit:read"]),
            AuditFilter::default(),
            PageRequest::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn get_asks_for_the_callers_owner_inside_the_window() {
    let id = event().event_id;
    let mut audit = MockAuditLog::new();
    audit
        .expect_find()
        .withf(move |o, i, not_before| *o == owner() && *i == id && *not_before == window_start())
        .times(1)
        .returning(|_, _, _| Ok(Some(event())));

    let found = service(audit)
        .get(&caller(&["audit:read"]), id)
        .await
        .unwrap();

    assert_eq!(found, event());
}

#[tokio::test]
async fn get_of_a_missing_old_or_foreign_event_is_audit_event_not_found() {
    let mut audit = MockAuditLog::new();
    audit.expect_find().times(1).returning(|_, _, _| Ok(None));

    let err = service(audit)
        .get(&caller(&["audit:read"]), event().event_id)
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AuditEventNotFound), "{err:?}");
}

#[tokio::test]
async fn get_reports_an_unreachable_log_as_unavailable() {
    let mut audit = MockAuditLog::new();
    audit
        .expect_find()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));

    let err = service(audit)
        .get(&caller(&["audit:read"]), event().event_id)
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- AuditLog::append_all's default ---------------------------------------

/// A log that implements only the required methods, so `append_all` is the
/// port's default; `append` refuses the event ids in `refused`.
#[derive(Default)]
struct OneByOne {
    appended: std::sync::Mutex<Vec<EventId>>,
    refused: Vec<EventId>,
}

#[async_trait::async_trait]
impl crate::ports::AuditLog for OneByOne {
    async fn append(&self, event: &AuditEvent) -> Result<(), crate::StoreError> {
        if self.refused.contains(&event.event_id) {
            return Err(crate::StoreError::Duplicate);
        }
        self.appended.lock().unwrap().push(event.event_id);
        Ok(())
    }

    async fn list(
        &self,
        _owner: &crate::values::Owner,
        _filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, crate::StoreError> {
        Ok(Page {
            items: Vec::new(),
            request: page,
            total: 0,
        })
    }

    async fn find(
        &self,
        _owner: &crate::values::Owner,
        _id: EventId,
        _not_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<AuditEvent>, crate::StoreError> {
        Ok(None)
    }

    async fn tokens_issued_since(
        &self,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(crate::values::AgentId, u64)>, crate::StoreError> {
        Ok(Vec::new())
    }

    async fn chain_page(
        &self,
        _owner: &crate::values::Owner,
        _from_sequence: u64,
        _limit: usize,
    ) -> Result<Vec<AuditEvent>, crate::StoreError> {
        Ok(Vec::new())
    }

    async fn chain_head(
        &self,
        _owner: &crate::values::Owner,
    ) -> Result<Option<crate::audit_chain::ChainHead>, crate::StoreError> {
        Ok(None)
    }

    async fn chain_owners(&self) -> Result<Vec<crate::values::Owner>, crate::StoreError> {
        Ok(Vec::new())
    }

    async fn tokens_issued_by(
        &self,
        _owner: &crate::values::Owner,
        _agent: crate::values::AgentId,
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, crate::StoreError> {
        Ok(0)
    }
}

fn numbered(n: u64) -> AuditEvent {
    AuditEvent {
        event_id: EventId(generated_id(n)),
        ..event()
    }
}

#[tokio::test]
async fn append_all_by_default_appends_in_order() {
    use crate::ports::AuditLog;
    let log = OneByOne::default();

    log.append_all(&[]).await.unwrap();
    log.append_all(&[numbered(3), numbered(1), numbered(2)])
        .await
        .unwrap();

    assert_eq!(
        *log.appended.lock().unwrap(),
        vec![
            EventId(generated_id(3)),
            EventId(generated_id(1)),
            EventId(generated_id(2))
        ]
    );
}

#[tokio::test]
async fn append_all_by_default_stops_at_the_first_refusal() {
    use crate::ports::AuditLog;
    let log = OneByOne {
        refused: vec![EventId(generated_id(2))],
        ..OneByOne::default()
    };

    let err = log
        .append_all(&[numbered(1), numbered(2), numbered(3)])
        .await
        .unwrap_err();

    assert!(matches!(err, crate::StoreError::Duplicate), "{err:?}");
    assert_eq!(
        *log.appended.lock().unwrap(),
        vec![EventId(generated_id(1))]
    );
}

// ----- whole chains: verification and signed heads --------------------------

/// A linked chain of `n` events of the fixture's owner.
fn linked(n: u64) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = (1..=n).map(numbered).collect();
    crate::audit_chain::link(&crate::audit_chain::ChainHead::genesis(), &mut events).unwrap();
    events
}

fn paging(audit: &mut MockAuditLog, events: Vec<AuditEvent>) {
    audit
        .expect_chain_page()
        .withf(|o, _, limit| *o == owner() && *limit == crate::services::CHAIN_PAGE)
        .returning(move |_, from, limit| {
            Ok(events
                .iter()
                .filter(|e| e.sequence.unwrap() >= from)
                .take(limit)
                .cloned()
                .collect())
        });
}

#[tokio::test]
async fn verify_walks_every_page_of_a_long_chain() {
    let events = linked(2_345);
    let head = crate::audit_chain::ChainHead {
        sequence: 2_345,
        hash: events[2_344].hash.clone().unwrap(),
    };
    let mut audit = MockAuditLog::new();
    paging(&mut audit, events.clone());
    let recorded = head.clone();
    audit
        .expect_chain_head()
        .returning(move |_| Ok(Some(recorded.clone())));
    let verdict = service(audit).verify(&owner()).await.unwrap();
    assert_eq!(
        verdict,
        crate::audit_chain::Verification::Verified {
            events: 2_345,
            head
        }
    );
}

#[tokio::test]
async fn verify_names_a_change_on_a_later_page() {
    let mut events = linked(1_500);
    events[1_200].outcome = Outcome::Failure;
    let mut audit = MockAuditLog::new();
    paging(&mut audit, events);
    audit.expect_chain_head().returning(|_| Ok(None));
    let verdict = service(audit).verify(&owner()).await.unwrap();
    let crate::audit_chain::Verification::Broken { events, bad } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!((events, bad.first_bad_sequence), (1_500, 1_201));
}

#[tokio::test]
async fn the_signed_head_covers_owner_sequence_hash_and_iat() {
    let mut audit = MockAuditLog::new();
    audit.expect_chain_head().returning(|_| {
        Ok(Some(crate::audit_chain::ChainHead {
            sequence: 42,
            hash: "ab".repeat(32),
        }))
    });
    let mut codec = crate::ports::MockTokenCodec::new();
    codec
        .expect_sign_jwt()
        .withf(|typ, claims, at| {
            typ == "audit-head+jwt"
                && *claims
                    == json!({"owner": "acme", "sequence": 42, "hash": "ab".repeat(32), "iat": now().timestamp()})
                && *at == now()
        })
        .times(1)
        .returning(|_, _, _| Ok("h.p.s".into()));
    let jws = service(audit).signed_head(&owner(), &codec).await.unwrap();
    assert_eq!(jws, "h.p.s");
}
