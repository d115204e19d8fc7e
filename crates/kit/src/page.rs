//! Keyset pagination: `?limit=&after=`, where `after` is the last key of the
//! previous page, and pages fetched one item long to know if another follows.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The largest page of any list.
pub const MAX_LIMIT: u32 = 1000;

/// The query parameters of a paginated list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size (its default depends on the list).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

/// A validated page request.
#[derive(Debug)]
pub struct PageRequest {
    pub limit: u32,
    pub after: String,
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl PageRequest {
    /// Rows to fetch: one more than the page, to learn if there is a next.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts `rows` (fetched with [`PageRequest::fetch`]) to the page, with
    /// the key to pass as `after` for the next one, and turns each row into
    /// what the API shows.
    pub fn page<R, T: From<R>>(&self, mut rows: Vec<R>, key: impl Fn(&R) -> &str) -> Page<T> {
        let mut next = None;
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            next = rows.last().map(|last| key(last).to_owned());
        }
        Page {
            items: rows.into_iter().map(T::from).collect(),
            next,
        }
    }
}

impl PageParams {
    /// Checks `limit` against `1..=MAX_LIMIT`, defaulting to `default`.
    pub fn validate(self, default: u32) -> Result<PageRequest, Error> {
        let limit = self.limit.unwrap_or(default);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::BadQuery(format!(
                "`limit` must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(PageRequest {
            limit,
            after: self.after.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_page() {
        let params = |limit| PageParams { limit, after: None };
        assert!(params(Some(0)).validate(10).is_err());
        assert!(params(Some(MAX_LIMIT + 1)).validate(10).is_err());
        assert!(params(Some(MAX_LIMIT)).validate(10).is_ok());
        let request = params(None).validate(2).unwrap();
        assert_eq!(request.fetch(), 3);
        let page: Page<&str> = request.page(vec!["a", "b", "c"], |s| s);
        assert_eq!(
            (page.items, page.next.as_deref()),
            (vec!["a", "b"], Some("b"))
        );
        let page: Page<&str> = request.page(vec!["a", "b"], |s| s);
        assert_eq!((page.items, page.next), (vec!["a", "b"], None));
    }
}
