//! Keyset pagination: `?limit=&after=`, where `after` is the last key of the
//! previous page, and pages fetched one item long to know if another follows.

use serde::Deserialize;

/// The query parameters of a paginated list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageParams {
    /// Page size (default and bounds depend on the list).
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

impl PageRequest {
    /// Rows to fetch: one more than the page, to learn if there is a next.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts `items` (fetched with [`PageRequest::fetch`]) to the page, and
    /// gives the key to pass as `after` for the next one.
    pub fn split<T>(
        &self,
        mut items: Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Option<String>) {
        if items.len() <= self.limit as usize {
            return (items, None);
        }
        items.truncate(self.limit as usize);
        let next = items.last().map(|last| key(last).to_owned());
        (items, next)
    }
}

impl PageParams {
    /// Checks `limit` against `1..=max`, defaulting to `default`.
    pub fn validate(self, default: u32, max: u32) -> Result<PageRequest, String> {
        let limit = self.limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(format!("`limit` must be between 1 and {max}"));
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
    fn bounds_and_split() {
        let params = |limit| PageParams { limit, after: None };
        assert!(params(Some(0)).validate(10, 100).is_err());
        assert!(params(Some(101)).validate(10, 100).is_err());
        let page = params(None).validate(2, 100).unwrap();
        assert_eq!(page.fetch(), 3);
        let (items, next) = page.split(vec!["a", "b", "c"], |s| s);
        assert_eq!((items, next.as_deref()), (vec!["a", "b"], Some("b")));
        let (items, next) = page.split(vec!["a", "b"], |s| s);
        assert_eq!((items, next), (vec!["a", "b"], None));
    }
}
