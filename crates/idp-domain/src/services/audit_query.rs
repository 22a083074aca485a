use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::audit::{AuditEvent, AuditFilter};
use crate::audit_chain::{ChainHead, ChainVerifier, Verification, next_page_start};
use crate::page::{Page, PageRequest};
use crate::ports::{AuditLog, TokenCodec};
use crate::token::Principal;
use crate::values::{EventId, Owner};
use crate::{DomainError, StoreError, ValueError};

use super::{Ambient, Limits};

/// The `typ` of a signed audit head (contract section 15).
pub const AUDIT_HEAD_TYP: &str = "audit-head+jwt";

/// Events read per store call when walking a whole chain.
pub const CHAIN_PAGE: usize = 1_000;

/// Reading the audit log: pages within the retention window, and whole
/// chains (verification, export, signed heads) whatever their age.
#[derive(Clone)]
pub struct AuditService {
    audit: Arc<dyn AuditLog>,
    ambient: Ambient,
    limits: Limits,
}

impl std::fmt::Debug for AuditService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl AuditService {
    /// Builds the service.
    pub fn new(audit: Arc<dyn AuditLog>, ambient: Ambient, limits: Limits) -> Self {
        Self {
            audit,
            ambient,
            limits,
        }
    }

    /// The oldest visible instant: now minus the retention window.
    fn window_start(&self) -> DateTime<Utc> {
        self.ambient.now() - Duration::days(i64::from(self.limits.audit_retention_days))
    }

    /// A page of the caller's owner's events. `from` earlier than the window is
    /// clamped to it; `from > to` is a validation error.
    pub async fn list(
        &self,
        caller: &Principal,
        mut filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, DomainError> {
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            return Err(ValueError::new("fromDate", "must not be after toDate").into());
        }
        let window_start = self.window_start();
        filter.from = Some(
            filter
                .from
                .map_or(window_start, |from| from.max(window_start)),
        );
        Ok(self.audit.list(&caller.owner, &filter, page).await?)
    }

    /// One event of the caller's owner inside the window.
    pub async fn get(&self, caller: &Principal, id: EventId) -> Result<AuditEvent, DomainError> {
        self.audit
            .find(&caller.owner, id, self.window_start())
            .await?
            .ok_or(DomainError::AuditEventNotFound)
    }

    /// Walks `owner`'s whole chain in pages of [`CHAIN_PAGE`] events and
    /// checks every link, then that the chain ends at the recorded head.
    pub async fn verify(&self, owner: &Owner) -> Result<Verification, StoreError> {
        let recorded = self.audit.chain_head(owner).await?;
        let mut verifier = ChainVerifier::new(recorded);
        let mut from = 1;
        loop {
            let page = self.audit.chain_page(owner, from, CHAIN_PAGE).await?;
            for event in &page {
                verifier.feed(event);
            }
            match next_page_start(&page, CHAIN_PAGE) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(verifier.finish())
    }

    /// Up to `limit` events of `owner` from `from_sequence` on, in sequence
    /// order, whatever their age: one page of an export.
    pub async fn chain_page(
        &self,
        owner: &Owner,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit.chain_page(owner, from_sequence, limit).await
    }

    /// `owner`'s recorded head (sequence 0 and the genesis hash before its
    /// first event).
    pub async fn head(&self, owner: &Owner) -> Result<ChainHead, StoreError> {
        Ok(self.audit.chain_head(owner).await?.unwrap_or_default())
    }

    /// `owner`'s head as a compact JWS (`typ` [`AUDIT_HEAD_TYP`]) signed with
    /// the active key, over `owner`, `sequence`, `hash` and `iat`: a receipt
    /// the owner keeps to prove later that history was rewritten or cut.
    pub async fn signed_head(
        &self,
        owner: &Owner,
        codec: &dyn TokenCodec,
    ) -> Result<String, StoreError> {
        let head = self.head(owner).await?;
        let now = self.ambient.now();
        let claims = serde_json::json!({
            "owner": owner.as_str(),
            "sequence": head.sequence,
            "hash": head.hash,
            "iat": now.timestamp(),
        });
        codec.sign_jwt(AUDIT_HEAD_TYP, &claims, now)
    }

    /// Every owner with a chain, `_system` included.
    pub async fn owners(&self) -> Result<Vec<Owner>, StoreError> {
        self.audit.chain_owners().await
    }
}
