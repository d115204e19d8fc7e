//! The route table: an immutable list of routes, longest prefix first,
//! swapped whole when anything changes.

use std::sync::Arc;

use crate::config::{Access, Settings};
use crate::pool::Pool;
use crate::ratelimit::Limiter;
use crate::stats::RouteStats;

pub struct Route {
    pub prefix: String,
    pub host: Option<String>,
    pub strip_prefix: bool,
    pub pool: Arc<Pool>,
    pub sticky_cookie: String,
    /// Whether callers need an access token, and which scopes.
    pub access: Access,
    /// The largest request body forwarded, in bytes.
    pub body_limit: u64,
    /// Longest wait for the next part of a request body.
    pub body_timeout: std::time::Duration,
    pub rate_limit: Option<Arc<Limiter>>,
    pub stats: Arc<RouteStats>,
}

impl Route {
    fn matches(&self, host: Option<&str>, path: &str) -> bool {
        if let Some(wanted) = &self.host
            && host.is_none_or(|h| !h.eq_ignore_ascii_case(wanted))
        {
            return false;
        }
        let prefix = self.prefix.as_str();
        prefix == "/"
            || (path.starts_with(prefix)
                && (prefix.ends_with('/')
                    || path.len() == prefix.len()
                    || path.as_bytes()[prefix.len()] == b'/'))
    }

    /// The path to forward: with the prefix removed when the route strips it.
    pub fn upstream_path<'p>(&self, path: &'p str) -> &'p str {
        if !self.strip_prefix || self.prefix == "/" {
            return path;
        }
        let keep_slash = usize::from(self.prefix.ends_with('/'));
        match &path[self.prefix.len() - keep_slash..] {
            "" => "/",
            rest => rest,
        }
    }

    /// What a `Location` from the upstream needs in front to be right for
    /// the client.
    pub fn location_prefix(&self) -> Option<&str> {
        (self.strip_prefix && self.prefix != "/").then(|| self.prefix.trim_end_matches('/'))
    }
}

pub struct RouteTable {
    pub routes: Vec<Route>,
    pub settings: Settings,
}

impl RouteTable {
    /// Host-specific routes before host-less ones, longer prefixes first.
    pub fn new(mut routes: Vec<Route>, settings: Settings) -> Self {
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Self { routes, settings }
    }

    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(host, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Balance, HealthConfig, RetryConfig, Timeouts};
    use crate::pool::PoolConfig;

    fn route(prefix: &str, host: Option<&str>, strip: bool) -> Route {
        let config = PoolConfig {
            balance: Balance::RoundRobin,
            health: HealthConfig::default(),
            timeouts: Timeouts::default(),
            retries: RetryConfig::default(),
        };
        Route {
            prefix: prefix.to_owned(),
            host: host.map(str::to_owned),
            strip_prefix: strip,
            pool: Arc::new(Pool::new(prefix, config)),
            sticky_cookie: "c".into(),
            access: Access::default(),
            body_limit: 1024,
            body_timeout: std::time::Duration::from_secs(1),
            rate_limit: None,
            stats: Arc::default(),
        }
    }

    #[tokio::test]
    async fn longest_prefix_on_segment_boundaries_and_hosts_first() {
        let table = RouteTable::new(
            vec![
                route("/", None, false),
                route("/users", None, true),
                route("/api/v1/users", None, true),
                route("/users", Some("admin.example"), true),
            ],
            Settings::default(),
        );
        let found = |host, path| {
            let r = table.find(host, path).unwrap();
            (
                r.prefix.clone(),
                r.host.clone(),
                r.upstream_path(path).to_owned(),
            )
        };
        assert_eq!(
            found(None, "/users/42"),
            ("/users".into(), None, "/42".into())
        );
        assert_eq!(found(None, "/users"), ("/users".into(), None, "/".into()));
        assert_eq!(found(None, "/usersx"), ("/".into(), None, "/usersx".into()));
        assert_eq!(
            found(None, "/api/v1/users/1"),
            ("/api/v1/users".into(), None, "/1".into())
        );
        assert_eq!(
            found(Some("ADMIN.example"), "/users/1"),
            ("/users".into(), Some("admin.example".into()), "/1".into())
        );
    }

    #[tokio::test]
    async fn trailing_slash_prefixes_keep_the_slash() {
        let table = RouteTable::new(vec![route("/api/", None, true)], Settings::default());
        let r = table.find(None, "/api/x").unwrap();
        assert_eq!(r.upstream_path("/api/x"), "/x");
        assert!(table.find(None, "/apix").is_none());
        assert_eq!(r.location_prefix(), Some("/api"));
    }
}
