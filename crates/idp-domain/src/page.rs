//! Pagination of list endpoints.

use serde::Serialize;

use crate::ValueError;

/// A validated page request: `page >= 1`, `1 <= limit <= 100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    limit: u32,
}

impl PageRequest {
    /// The largest page size.
    pub const MAX_LIMIT: u32 = 100;
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 20;
    /// The highest page number accepted, so offsets always fit the stores' integers.
    pub const MAX_PAGE: u32 = 10_000_000;

    /// Validates the query parameters, applying the defaults.
    pub fn new(page: Option<u32>, limit: Option<u32>) -> Result<Self, ValueError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_PAGE).contains(&page) {
            return Err(ValueError::new(
                "page",
                "must be an integer from 1 to 10000000",
            ));
        }
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ValueError::new("limit", "must be an integer from 1 to 100"));
        }
        Ok(Self { page, limit })
    }

    /// The page number, from 1.
    pub fn page(&self) -> u32 {
        self.page
    }

    /// The page size.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Rows to skip.
    pub fn offset(&self) -> u64 {
        u64::from(self.page - 1) * u64::from(self.limit)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

/// One page of results with the total count of matching rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// The request that produced it.
    pub request: PageRequest,
    /// All matching rows.
    pub total: u64,
}

impl<T> Page<T> {
    /// Maps the rows, keeping the counts.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            request: self.request,
            total: self.total,
        }
    }

    /// The contract's envelope: `{ data, pagination: { page, limit, total, totalPages } }`.
    pub fn envelope(&self) -> PageEnvelope<'_, T> {
        let limit = u64::from(self.request.limit());
        PageEnvelope {
            data: &self.items,
            pagination: Pagination {
                page: self.request.page(),
                limit: self.request.limit(),
                total: self.total,
                total_pages: self.total.div_ceil(limit),
            },
        }
    }
}

/// The wire form of a page.
#[derive(Debug, Serialize)]
pub struct PageEnvelope<'a, T> {
    /// The rows.
    pub data: &'a [T],
    /// The counts.
    pub pagination: Pagination,
}

/// The `pagination` object of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// Matching rows.
    pub total: u64,
    /// `ceil(total / limit)`.
    pub total_pages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            PageRequest::new(None, None).unwrap(),
            PageRequest::default()
        );
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
        assert!(PageRequest::new(None, Some(101)).is_err());
        assert_eq!(PageRequest::new(Some(3), Some(20)).unwrap().offset(), 40);
    }

    #[test]
    fn envelope_counts_pages() {
        let page = Page {
            items: vec![1, 2],
            request: PageRequest::new(Some(1), Some(20)).unwrap(),
            total: 57,
        };
        let env = serde_json::to_value(page.envelope()).unwrap();
        assert_eq!(
            env["pagination"],
            serde_json::json!({"page":1,"limit":20,"total":57,"totalPages":3})
        );
        let empty: Page<u8> = Page {
            items: vec![],
            request: PageRequest::default(),
            total: 0,
        };
        assert_eq!(empty.envelope().pagination.total_pages, 0);
    }
}
