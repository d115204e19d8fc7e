//! The route table: which service answers a path, and which of its
//! instances comes next.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;

/// A service and the base URLs of its instances (`http://127.0.0.1:9001`).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub service: String,
    pub instances: Vec<String>,
}

pub(crate) struct Service {
    pub name: String,
    pub instances: Vec<Authority>,
    next: AtomicUsize,
}

impl Service {
    /// The next instance, round robin.
    pub fn pick(&self) -> Option<&Authority> {
        if self.instances.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.instances.get(n % self.instances.len())
    }
}

/// An immutable table; the gateway swaps in a new one to change routes.
pub struct RouteTable {
    pub(crate) services: Vec<Service>,
}

/// Where a request goes: the service, and where in the path its prefix ends.
pub(crate) struct Target<'a> {
    pub service: &'a Service,
    prefix_len: usize,
}

impl Target<'_> {
    /// The prefix the client used (`/users` or `/api/v1/users`).
    pub fn prefix<'p>(&self, path: &'p str) -> &'p str {
        &path[..self.prefix_len]
    }

    /// The path below the prefix, always starting with `/`.
    pub fn rest<'p>(&self, path: &'p str) -> &'p str {
        match &path[self.prefix_len..] {
            "" => "/",
            rest => rest,
        }
    }
}

impl RouteTable {
    pub fn new(upstreams: Vec<Upstream>) -> Self {
        let services = upstreams
            .into_iter()
            .map(|u| Service {
                instances: u
                    .instances
                    .iter()
                    .filter_map(|url| {
                        let authority = url.strip_prefix("http://").unwrap_or(url);
                        match authority.trim_end_matches('/').parse() {
                            Ok(a) => Some(a),
                            Err(_) => {
                                tracing::warn!(%url, service = %u.service, "ignoring an upstream that is not http://host:port");
                                None
                            }
                        }
                    })
                    .collect(),
                name: u.service,
                next: AtomicUsize::new(0),
            })
            .collect();
        Self { services }
    }

    /// The service for `path`: `/<service>/rest` or `/api/v1/<service>/rest`.
    pub(crate) fn resolve(&self, path: &str) -> Option<Target<'_>> {
        let below_alias = path.strip_prefix("/api/v1").filter(|p| p.starts_with('/'));
        let unaliased = below_alias.unwrap_or(path);
        let name_and_rest = unaliased.strip_prefix('/')?;
        let name = match name_and_rest.find('/') {
            Some(slash) => &name_and_rest[..slash],
            None => name_and_rest,
        };
        let service = self.services.iter().find(|s| s.name == name)?;
        Some(Target {
            service,
            prefix_len: path.len() - unaliased.len() + 1 + name.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::new(vec![Upstream {
            service: "users".into(),
            instances: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
        }])
    }

    #[test]
    fn resolves_prefix_and_alias() {
        let t = table();
        for (path, prefix, rest) in [
            ("/users", "/users", "/"),
            ("/users/", "/users", "/"),
            ("/users/abc", "/users", "/abc"),
            ("/api/v1/users/abc/d", "/api/v1/users", "/abc/d"),
            ("/api/v1/users", "/api/v1/users", "/"),
        ] {
            let target = t.resolve(path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(
                (target.prefix(path), target.rest(path)),
                (prefix, rest),
                "{path}"
            );
        }
        for path in [
            "/",
            "/usersx",
            "/api/v1",
            "/api/v1/",
            "/api/v1x/users",
            "/other/users",
        ] {
            assert!(t.resolve(path).is_none(), "{path}");
        }
    }

    #[test]
    fn round_robin() {
        let t = table();
        let s = &t.services[0];
        let picks: Vec<_> = (0..4).map(|_| s.pick().unwrap().port_u16()).collect();
        assert_eq!(picks, [Some(1), Some(2), Some(1), Some(2)]);
    }
}
