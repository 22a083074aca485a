//! Conversions between the domain's page requests and counts and SQL integers.

use idp_domain::StoreError;
use idp_domain::page::PageRequest;

/// `LIMIT` and `OFFSET` of a page. [`PageRequest`] bounds both far below `i64::MAX`.
pub(crate) fn limit_offset(page: PageRequest) -> Result<(i64, i64), StoreError> {
    let offset = i64::try_from(page.offset())
        .map_err(|_| StoreError::Unknown(anyhow::anyhow!("page offset out of range")))?;
    Ok((i64::from(page.limit()), offset))
}

/// A `count(*)` as the domain's total.
pub(crate) fn total(count: i64) -> Result<u64, StoreError> {
    u64::try_from(count).map_err(|_| StoreError::Unknown(anyhow::anyhow!("negative count {count}")))
}
