//! Conversions between the domain's page requests and counts and SQL integers.

use idp_domain::StoreError;
use idp_domain::page::{Page, PageRequest};

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

/// The page of `request` from its rows, selected with the total as a scalar
/// subquery (one statement, so the two agree), each row converted to the
/// domain's item. A page with no rows carries no total (nothing matches, or it
/// lies past the end): then `count_alone` answers it.
pub(crate) async fn page_from_rows<R, T>(
    rows: Vec<(R, Option<i64>)>,
    count_alone: impl Future<Output = Result<i64, StoreError>>,
    request: PageRequest,
) -> Result<Page<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    let count = match rows.as_slice().first() {
        Some((_, total)) => total.unwrap_or_default(),
        None => count_alone.await?,
    };
    Ok(Page {
        items: rows
            .into_iter()
            .map(|(row, _)| T::try_from(row))
            .collect::<Result<_, _>>()?,
        request,
        total: total(count)?,
    })
}
