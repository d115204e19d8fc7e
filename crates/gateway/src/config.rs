//! The gateway's configuration: routes and edge settings, as written in the
//! TOML file given to `flotilla serve gateway --config`, or built by
//! `flotilla up` for the services it starts.
//!
//! ```toml
//! [gateway]
//! access_log = true
//! cors_origins = ["https://app.example.com"]
//!
//! [[route]]
//! prefix = "/"                # longest prefix wins
//! host = "api.example.com"    # optional
//! strip_prefix = false
//! upstreams = ["http://127.0.0.1:9001", { url = "http://127.0.0.1:9002", weight = 3 }]
//! balance = "round_robin"     # round_robin | weighted | least_conn | sticky
//! rate_limit = { per_second = 100, burst = 200 }
//! health = { path = "/health", interval_ms = 2000 }
//! auth = "required"           # none (default) | optional | required
//! scopes = ["orders"]         # scopes a token needs on this route
//! ```
//!
//! Access tokens are verified when `[gateway.auth]` says where the keys are
//! (`flotilla` sets it to its auth service):
//!
//! ```toml
//! [gateway.auth]
//! issuer = "https://flotilla.example.com/auth"
//! jwks = "/auth/jwks.json"   # a path routed here, or an http:// URL
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gateway: Settings,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.gateway.tls_cert.is_some() != self.gateway.tls_key.is_some() {
            return Err(ConfigError("tls_cert and tls_key go together".to_owned()));
        }
        for route in &self.routes {
            if !route.prefix.starts_with('/') {
                return Err(ConfigError(format!(
                    "route prefix `{}` must start with /",
                    route.prefix
                )));
            }
            for upstream in &route.upstreams {
                let url = upstream.url();
                let rest = url.strip_prefix("http://").ok_or_else(|| {
                    ConfigError(format!("upstream `{url}` must be an http:// URL"))
                })?;
                rest.trim_end_matches('/')
                    .parse::<http::uri::Authority>()
                    .map_err(|_| {
                        ConfigError(format!("upstream `{url}` must be http://host:port"))
                    })?;
            }
            if route.auth.is_none() && !route.scopes.is_empty() {
                return Err(ConfigError(format!(
                    "route `{}`: scopes need auth = \"required\" or \"optional\"",
                    route.prefix
                )));
            }
            if let Some(limit) = &route.rate_limit
                && (limit.per_second == 0 || limit.burst == 0)
            {
                return Err(ConfigError(format!(
                    "route `{}`: rate_limit must be positive",
                    route.prefix
                )));
            }
        }
        Ok(())
    }
}

/// A configuration that cannot be used; the message says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid gateway configuration: {0}")]
pub struct ConfigError(pub String);

/// Settings of the gateway as a whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// One JSON log line per request.
    pub access_log: bool,
    /// Origins allowed to call through the gateway from a browser; `"*"` for any.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub body_limit: u64,
    /// Longest wait for the next part of a request body, in milliseconds:
    /// a client that stops sending gets 408 (a body read before forwarding)
    /// or has its request cut.
    pub body_timeout_ms: u64,
    /// Time a client has to send a request's headers, in milliseconds;
    /// read at start, like the limits below.
    pub header_timeout_ms: u64,
    /// Client connections open at once; one more is closed as it comes.
    pub max_connections: usize,
    /// Headers one HTTP/1 request may have (their total size is at most
    /// 64 KiB; HTTP/2's header list too).
    pub max_headers: usize,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_streams: u32,
    /// Seconds after which a registered instance that stopped heartbeating is dropped.
    pub registration_ttl_ms: u64,
    /// How often upstream host names are resolved again.
    pub dns_refresh_ms: u64,
    /// PEM certificate chain; with `tls_key`, clients connect over TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `redis://…`: rate-limit buckets shared by every gateway using it.
    pub redis_url: Option<String>,
    /// How access tokens are verified; without it, none is.
    pub auth: Option<AuthSettings>,
    /// By service: what the routes made from its name (its instances given
    /// by `flotilla up` or registered) ask of callers, and how they balance.
    pub services: BTreeMap<String, ServiceDefaults>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            access_log: true,
            cors_origins: Vec::new(),
            body_limit: 10 * 1024 * 1024,
            body_timeout_ms: 10_000,
            header_timeout_ms: 10_000,
            max_connections: 10_000,
            max_headers: 100,
            http2_max_streams: 100,
            registration_ttl_ms: 10_000,
            dns_refresh_ms: 5_000,
            tls_cert: None,
            tls_key: None,
            redis_url: None,
            auth: None,
            services: BTreeMap::new(),
        }
    }
}

/// Where the keys that sign access tokens are, and what tokens must say.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The `iss` of every token.
    pub issuer: String,
    /// The JWK set: a path routed by this gateway, or an `http://` URL.
    pub jwks: String,
    /// The `aud` every token must name.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// The shortest time between two fetches of the keys, which a token
    /// naming an unknown key causes, in milliseconds.
    #[serde(default = "default_refetch_ms")]
    pub refetch_ms: u64,
}

impl AuthSettings {
    /// Tokens of `issuer`, for the audience `flotilla`, with the keys at `jwks`.
    pub fn new(issuer: String, jwks: String) -> Self {
        Self {
            issuer,
            jwks,
            audience: default_audience(),
            refetch_ms: default_refetch_ms(),
        }
    }
}

fn default_audience() -> String {
    "flotilla".to_owned()
}

fn default_refetch_ms() -> u64 {
    10_000
}

/// Whether a route needs a caller's access token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Tokens are not looked at.
    #[default]
    None,
    /// A token, if one is sent, must be valid; its caller is forwarded.
    Optional,
    /// A valid token is needed.
    Required,
}

/// The settings of the routes made from a service's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefaults {
    #[serde(default)]
    pub auth: AuthMode,
    /// Scopes a token must have.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Round robin when not given.
    #[serde(default)]
    pub balance: Option<Balance>,
    /// The largest body its instances take, in bytes: a larger one is
    /// refused (413) before it is forwarded.
    #[serde(default)]
    pub body_limit: Option<u64>,
}

/// What a route asks of callers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub auth: AuthMode,
    /// Scopes a token must have.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// One route: which requests, and where they go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on segment boundaries; the longest match wins.
    pub prefix: String,
    /// Only requests for this host (the `Host` header, without port).
    #[serde(default)]
    pub host: Option<String>,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// The service name in metrics and on the dashboard; the first path
    /// segment of the prefix by default.
    #[serde(default)]
    pub service: Option<String>,
    pub upstreams: Vec<UpstreamConfig>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retries: RetryConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Cookie that pins a client to an instance, for `balance = "sticky"`.
    #[serde(default = "default_cookie")]
    pub sticky_cookie: String,
    /// Whether callers need an access token; the service's entry of
    /// `[gateway.services]` when not given, `none` when it has none.
    #[serde(default)]
    pub auth: Option<AuthMode>,
    /// Scopes a token must have on this route.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The largest request body forwarded, in bytes (never more than the
    /// gateway's `body_limit`); the service's entry of `[gateway.services]`
    /// when not given.
    #[serde(default)]
    pub body_limit: Option<u64>,
}

fn default_cookie() -> String {
    "FLOTILLA_SERVER".to_owned()
}

impl RouteConfig {
    /// A route for `service` at `/service` (prefix stripped) with default settings.
    pub fn service(service: &str, prefix: &str, upstreams: Vec<String>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            host: None,
            strip_prefix: true,
            service: Some(service.to_owned()),
            upstreams: upstreams.into_iter().map(UpstreamConfig::Url).collect(),
            balance: Balance::default(),
            health: HealthConfig::default(),
            timeouts: Timeouts::default(),
            retries: RetryConfig::default(),
            rate_limit: None,
            sticky_cookie: default_cookie(),
            auth: None,
            scopes: Vec::new(),
            body_limit: None,
        }
    }

    /// The service name of this route.
    pub fn service_name(&self) -> String {
        if let Some(name) = &self.service {
            return name.clone();
        }
        let first = self
            .prefix
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        if first.is_empty() {
            "root".to_owned()
        } else {
            first.to_owned()
        }
    }
}

/// An upstream base URL, optionally weighted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum UpstreamConfig {
    Url(String),
    Weighted { url: String, weight: u32 },
}

impl UpstreamConfig {
    pub fn url(&self) -> &str {
        match self {
            UpstreamConfig::Url(url) | UpstreamConfig::Weighted { url, .. } => url,
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            UpstreamConfig::Url(_) => 1,
            UpstreamConfig::Weighted { weight, .. } => (*weight).max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    Weighted,
    LeastConn,
    Sticky,
}

/// Active health checks of each instance.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Path checked with GET; a 2xx answer passes. Empty disables checks.
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Passes in a row that bring an instance back.
    pub rise: u32,
    /// Failures in a row that take it out.
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            path: "/health".to_owned(),
            interval_ms: 1_000,
            timeout_ms: 1_000,
            rise: 2,
            fall: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Until the upstream's response headers arrive.
    pub request_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 2_000,
            request_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Further attempts on another instance after a failed one.
    pub attempts: u32,
    /// Retries allowed as a share of requests (0.2: one retry per five requests)...
    pub budget_ratio: f64,
    /// ...plus this many retries per second regardless of traffic.
    pub budget_min_per_second: u32,
    /// Consecutive failures (connection errors or 5xx) that eject an instance.
    pub eject_after: u32,
    /// First ejection, doubled at each new ejection up to a minute.
    pub eject_base_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
            eject_after: 3,
            eject_base_ms: 1_000,
        }
    }
}

/// Token bucket per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let config = Config::parse(
            r#"
            [gateway]
            access_log = false
            [[route]]
            prefix = "/"
            strip_prefix = false
            upstreams = ["http://127.0.0.1:9001", { url = "http://127.0.0.1:9002", weight = 3 }]
            balance = "weighted"
            rate_limit = { per_second = 100, burst = 200 }
            health = { path = "/healthz", interval_ms = 500 }
            "#,
        )
        .unwrap();
        assert!(!config.gateway.access_log);
        let route = &config.routes[0];
        assert_eq!(route.balance, Balance::Weighted);
        assert_eq!(route.upstreams[1].weight(), 3);
        assert_eq!(route.health.path, "/healthz");
        assert_eq!(route.health.fall, 2);
        assert_eq!(route.service_name(), "root");
    }

    #[test]
    fn rejects_what_cannot_work() {
        for bad in [
            "[[route]]\nprefix = \"x\"\nupstreams = []",
            "[[route]]\nprefix = \"/\"\nupstreams = [\"https://a:1\"]",
            "[[route]]\nprefix = \"/\"\nupstreams = [\"http://\"]",
            "[[route]]\nprefix = \"/\"\nupstreams = []\nbalance = \"random\"",
            "[[route]]\nprefix = \"/\"\nupstreams = []\nrate_limit = { per_second = 0, burst = 1 }",
            "[[route]]\nprefix = \"/\"\nupstreams = []\nunknown = 1",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
