//! Where routes and instances come from, merged into one route table: the
//! services `flotilla up` starts, the TOML file (watched and reloaded),
//! instances that register themselves over HTTP (dropped when their TTL
//! lapses), and upstream host names resolved again and again (as Docker
//! Compose and Kubernetes headless services answer).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::Gateway;
use crate::config::{Access, Config, RateLimit, RouteConfig, ServiceDefaults};
use crate::health;
use crate::pool::{Pool, PoolConfig, now_ms};
use crate::ratelimit::Limiter;
use crate::stats::RouteStats;
use crate::table::{Route, RouteTable};

/// The sources, and the state that must outlive a table swap.
#[derive(Default)]
pub(crate) struct Sources {
    pub base: Config,
    pub file: Option<WatchedFile>,
    /// service → instance URL → expiry (gateway clock, ms).
    pub registered: BTreeMap<String, BTreeMap<String, u64>>,
    /// `host:port` → resolved `ip:port`s.
    pub resolved: HashMap<String, Vec<String>>,
    pools: HashMap<String, Arc<Pool>>,
    stats: HashMap<String, Arc<RouteStats>>,
    limiters: HashMap<String, (RateLimit, Arc<Limiter>)>,
    /// Where rate-limit buckets are shared between gateways, if anywhere.
    pub redis: Option<redis::aio::ConnectionManager>,
}

pub(crate) struct WatchedFile {
    pub path: PathBuf,
    pub config: Config,
    stamp: Option<(SystemTime, u64)>,
}

impl WatchedFile {
    pub fn new(path: PathBuf, config: Config) -> Self {
        let stamp = stamp(&path);
        Self {
            path,
            config,
            stamp,
        }
    }
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The routes a service gets when it comes from `up` or registers itself:
/// `/<service>` and `/api/v1/<service>`, prefix stripped.
pub fn service_routes(service: &str, upstreams: Vec<String>) -> [RouteConfig; 2] {
    [
        RouteConfig::service(service, &format!("/{service}"), upstreams.clone()),
        RouteConfig::service(service, &format!("/api/v1/{service}"), upstreams),
    ]
}

impl Sources {
    pub fn new(
        base: Config,
        file: Option<WatchedFile>,
        redis: Option<redis::aio::ConnectionManager>,
    ) -> Self {
        Self {
            base,
            file,
            redis,
            ..Self::default()
        }
    }

    fn route_configs(&self) -> Vec<RouteConfig> {
        let file = self
            .file
            .iter()
            .flat_map(|f| f.config.routes.iter().cloned());
        // Routes made from a service's name (`up`'s and registered ones)
        // balance as its `[gateway.services]` entry says.
        let registered = self
            .registered
            .iter()
            .flat_map(|(service, urls)| service_routes(service, urls.keys().cloned().collect()));
        // A service the gateway was told of keeps its routes while none of
        // its instances is registered (all restarting, say): its callers
        // get 503, not 404.
        let told = self
            .file
            .iter()
            .flat_map(|f| f.config.gateway.services.keys())
            .chain(self.base.gateway.services.keys())
            .flat_map(|service| service_routes(service, Vec::new()));
        let made = self
            .base
            .routes
            .iter()
            .cloned()
            .chain(registered)
            .chain(told)
            .map(|mut route| {
                if let Some(balance) = self.defaults(&route.service_name()).balance {
                    route.balance = balance;
                }
                route
            });
        let mut seen = std::collections::HashSet::new();
        file.chain(made)
            .filter(|r| seen.insert((r.host.clone(), r.prefix.clone())))
            .collect()
    }

    /// Host names (`host:port`) that upstreams use, to resolve.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .route_configs()
            .iter()
            .flat_map(|r| r.upstreams.iter().map(|u| u.url().to_owned()))
            .filter_map(|url| {
                let authority: http::uri::Authority = url
                    .strip_prefix("http://")?
                    .trim_end_matches('/')
                    .parse()
                    .ok()?;
                let host = authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                (host.parse::<IpAddr>().is_err())
                    .then(|| format!("{host}:{}", authority.port_u16().unwrap_or(80)))
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Instance URLs for a configured upstream URL: itself for an address,
    /// every resolved address for a name.
    fn expand(&self, url: &str) -> Vec<String> {
        let Some(rest) = url.strip_prefix("http://") else {
            return Vec::new();
        };
        let Ok(authority) = rest.trim_end_matches('/').parse::<http::uri::Authority>() else {
            return Vec::new();
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() {
            return vec![format!("http://{authority}")];
        }
        let name = format!("{host}:{}", authority.port_u16().unwrap_or(80));
        self.resolved
            .get(&name)
            .map(|addrs| addrs.iter().map(|a| format!("http://{a}")).collect())
            .unwrap_or_default()
    }

    /// Builds the table for the current sources, reusing pools (and so
    /// connections, health and counters) of services that stay.
    pub fn build(&mut self, gateway: &Weak<Gateway>) -> RouteTable {
        let configs = self.route_configs();
        let mut services: BTreeMap<String, (PoolConfig, Vec<(String, u32)>)> = BTreeMap::new();
        for config in &configs {
            let (_, instances) = services.entry(config.service_name()).or_insert_with(|| {
                (
                    PoolConfig {
                        balance: config.balance,
                        health: config.health.clone(),
                        timeouts: config.timeouts.clone(),
                        retries: config.retries.clone(),
                    },
                    Vec::new(),
                )
            });
            for upstream in &config.upstreams {
                for url in self.expand(upstream.url()) {
                    if !instances.iter().any(|(u, _)| *u == url) {
                        instances.push((url, upstream.weight()));
                    }
                }
            }
        }

        self.pools.retain(|name, _| services.contains_key(name));
        for (name, (config, instances)) in services {
            let pool = self.pools.entry(name.clone()).or_insert_with(|| {
                let pool = Arc::new(Pool::new(&name, config.clone()));
                health::spawn_checks(Arc::downgrade(&pool), gateway.clone());
                pool
            });
            pool.configure(config);
            pool.set_instances(&instances);
        }

        let settings = self
            .file
            .as_ref()
            .map_or_else(|| self.base.gateway.clone(), |f| f.config.gateway.clone());
        let mut keys = Vec::new();
        let routes = configs
            .iter()
            .map(|config| {
                let key = format!("{}|{}", config.host.as_deref().unwrap_or(""), config.prefix);
                keys.push(key.clone());
                let rate_limit = config.rate_limit.map(|limit| {
                    let entry = self.limiters.entry(key.clone()).or_insert_with(|| {
                        (
                            limit,
                            Arc::new(Limiter::new(limit, self.redis.as_ref(), &key)),
                        )
                    });
                    if entry.0 != limit {
                        *entry = (
                            limit,
                            Arc::new(Limiter::new(limit, self.redis.as_ref(), &key)),
                        );
                    }
                    entry.1.clone()
                });
                Route {
                    prefix: config.prefix.clone(),
                    host: config.host.clone(),
                    strip_prefix: config.strip_prefix,
                    pool: self.pools[&config.service_name()].clone(),
                    sticky_cookie: config.sticky_cookie.clone(),
                    access: self.access(config),
                    body_limit: config
                        .body_limit
                        .or_else(|| self.defaults(&config.service_name()).body_limit)
                        .map_or(settings.body_limit, |limit| limit.min(settings.body_limit)),
                    body_timeout: Duration::from_millis(settings.body_timeout_ms),
                    rate_limit,
                    stats: self.stats.entry(key).or_default().clone(),
                }
            })
            .collect();
        self.stats.retain(|key, _| keys.contains(key));
        self.limiters.retain(|key, _| keys.contains(key));
        RouteTable::new(routes, settings)
    }

    /// What a route asks of callers: its own `auth`, or its service's
    /// entry in `[gateway.services]`.
    fn access(&self, config: &RouteConfig) -> Access {
        if let Some(auth) = config.auth {
            return Access {
                auth,
                scopes: config.scopes.clone(),
            };
        }
        let defaults = self.defaults(&config.service_name());
        Access {
            auth: defaults.auth,
            scopes: defaults.scopes,
        }
    }

    /// A service's entry in `[gateway.services]`: the file's, then the one
    /// `flotilla` gave.
    fn defaults(&self, service: &str) -> ServiceDefaults {
        self.file
            .as_ref()
            .and_then(|f| f.config.gateway.services.get(service))
            .or_else(|| self.base.gateway.services.get(service))
            .cloned()
            .unwrap_or_default()
    }

    /// Drops registrations whose TTL lapsed; true if any did.
    pub fn expire(&mut self) -> bool {
        let now = now_ms();
        let before: usize = self.registered.values().map(BTreeMap::len).sum();
        for urls in self.registered.values_mut() {
            urls.retain(|_, expires| *expires > now);
        }
        self.registered.retain(|_, urls| !urls.is_empty());
        let after: usize = self.registered.values().map(BTreeMap::len).sum();
        after != before
    }
}

/// Turns `host:port` into addresses.
pub trait Resolve: Send + Sync + 'static {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The system's resolver (`/etc/hosts`, then DNS), as `getaddrinfo` sees it.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host(name).await?.collect()) })
    }
}

/// Resolves every upstream host name now; true if an answer changed.
pub(crate) async fn resolve(gateway: &Gateway) -> bool {
    let names = gateway.sources.lock().unwrap().names();
    let mut answers = HashMap::new();
    for name in names {
        let looked_up = gateway.resolver.resolve(&name).await;
        match looked_up {
            Ok(addrs) => {
                let mut addrs: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                addrs.sort();
                addrs.dedup();
                answers.insert(name, addrs);
            }
            Err(error) => {
                // Keep the last answer: a resolver hiccup is not an outage.
                tracing::warn!(%name, %error, "cannot resolve upstream host");
                if let Some(previous) = gateway.sources.lock().unwrap().resolved.get(&name) {
                    answers.insert(name, previous.clone());
                }
            }
        }
    }
    let mut sources = gateway.sources.lock().unwrap();
    let changed = sources.resolved != answers;
    sources.resolved = answers;
    changed
}

/// Background work: re-resolve names, reload the file, expire registrations.
pub(crate) fn spawn_watchers(gateway: Weak<Gateway>) {
    tokio::spawn(async move {
        let mut last_dns = now_ms();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(gateway) = gateway.upgrade() else {
                return;
            };
            let mut changed = gateway.sources.lock().unwrap().expire();
            changed |= reload_file(&gateway);
            let refresh = gateway.table.load().settings.dns_refresh_ms;
            if changed || now_ms() >= last_dns + refresh {
                last_dns = now_ms();
                changed |= resolve(&gateway).await;
            }
            if changed {
                gateway.rebuild();
            }
        }
    });
}

/// Loads the watched file again if it changed; a file that does not parse
/// is logged and the running configuration kept.
fn reload_file(gateway: &Gateway) -> bool {
    let mut sources = gateway.sources.lock().unwrap();
    let Some(file) = sources.file.as_mut() else {
        return false;
    };
    let now = stamp(&file.path);
    if now == file.stamp {
        return false;
    }
    file.stamp = now;
    match Config::load(&file.path) {
        Ok(config) => {
            tracing::info!(path = %file.path.display(), routes = config.routes.len(), "configuration reloaded");
            file.config = config;
            true
        }
        Err(error) => {
            tracing::error!(%error, "keeping the running configuration");
            false
        }
    }
}
