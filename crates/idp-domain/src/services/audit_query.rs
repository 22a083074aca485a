use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::audit::{AuditEvent, AuditFilter};
use crate::page::{Page, PageRequest};
use crate::ports::AuditLog;
use crate::token::Principal;
use crate::values::EventId;
use crate::{DomainError, ValueError};

use super::{Ambient, Limits};

/// Reading the audit log within the retention window.
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
}
