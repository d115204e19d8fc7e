//! The edge gateway: one address in front of every service.
//!
//! Requests are matched against a route table (longest path prefix, optional
//! host), balanced over the instances of the route's service, and forwarded
//! with a pooled keep-alive client; a failed attempt is retried on another
//! instance within a retry budget. Routes and instances come from the
//! services `flotilla up` starts, a TOML file that is watched, instances
//! that register over HTTP, and DNS. The table is rebuilt off the request
//! path and swapped atomically, so a request takes no lock.
//!
//! The gateway's own endpoints: `/health` (every service, aggregated),
//! `/metrics` (Prometheus), `/dashboard`, and the JSON API under
//! `/_flotilla/`.

mod api;
mod auth;
pub mod config;
mod discovery;
mod early;
mod edge;
mod health;
mod pool;
mod proxy;
mod ratelimit;
mod reply;
mod stats;
mod table;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, ConfigError, RouteConfig};
pub use discovery::{BoxFuture, Resolve, SystemResolver, service_routes};

use discovery::{Sources, WatchedFile};
use reply::Body;
use table::RouteTable;

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// The gateway. [`Gateway::serve`] runs it; it can be reconfigured while it runs.
pub struct Gateway {
    table: ArcSwap<RouteTable>,
    sources: Mutex<Sources>,
    open_connections: AtomicI64,
    refused_connections: AtomicU64,
    resolver: Box<dyn Resolve>,
    /// Set when a certificate is configured; the listener then speaks TLS.
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Set when `[gateway.auth]` is; routes asking for tokens need it.
    verifier: Option<auth::Verifier>,
    this: Weak<Gateway>,
}

impl Gateway {
    /// A gateway for `config`, plus the routes of the TOML file at `file`
    /// (watched and reloaded while the gateway runs).
    pub async fn new(config: Config, file: Option<PathBuf>) -> Result<Arc<Self>, ConfigError> {
        Self::with_resolver(config, file, SystemResolver).await
    }

    /// [`Gateway::new`] with another resolver for upstream host names.
    pub async fn with_resolver(
        config: Config,
        file: Option<PathBuf>,
        resolver: impl Resolve,
    ) -> Result<Arc<Self>, ConfigError> {
        let watched = match file {
            Some(path) => Some(WatchedFile::new(path.clone(), Config::load(&path)?)),
            None => None,
        };
        // The certificate is read once, at start.
        let settings = watched
            .as_ref()
            .map_or(&config.gateway, |w| &w.config.gateway);
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let redis_url = settings
            .redis_url
            .as_ref()
            .or(config.gateway.redis_url.as_ref());
        let redis = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| ConfigError(format!("redis_url: {e}")))?;
                let manager = client.get_connection_manager().await.map_err(|e| {
                    ConfigError(format!("cannot reach Redis for shared rate limits: {e}"))
                })?;
                Some(manager)
            }
            None => None,
        };
        let verifier = settings
            .auth
            .as_ref()
            .or(config.gateway.auth.as_ref())
            .map(|auth| auth::Verifier::new(auth.clone()));
        let gateway = Arc::new_cyclic(|this| Gateway {
            table: ArcSwap::from_pointee(RouteTable::new(Vec::new(), config.gateway.clone())),
            sources: Mutex::new(Sources::new(config, watched, redis)),
            open_connections: AtomicI64::new(0),
            refused_connections: AtomicU64::new(0),
            resolver: Box::new(resolver),
            tls,
            verifier,
            this: this.clone(),
        });
        discovery::resolve(&gateway).await;
        gateway.rebuild();
        discovery::spawn_watchers(Arc::downgrade(&gateway));
        Ok(gateway)
    }

    /// Builds the route table from the current sources and swaps it in.
    pub fn rebuild(&self) {
        let table = self.sources.lock().unwrap().build(&self.this);
        self.table.store(Arc::new(table));
    }

    /// Adds or renews an instance of `service` for `ttl`; true if it is new.
    pub fn register(&self, service: &str, url: &str, ttl: Duration) -> bool {
        let expires = pool::now_ms() + ttl.as_millis() as u64;
        let new = {
            let mut sources = self.sources.lock().unwrap();
            let urls = sources.registered.entry(service.to_owned()).or_default();
            urls.insert(url.to_owned(), expires).is_none()
        };
        if new {
            tracing::info!(%service, %url, "instance registered");
            self.rebuild();
        }
        new
    }

    /// How many instances of `service` are registered.
    pub fn registered(&self, service: &str) -> usize {
        self.sources
            .lock()
            .unwrap()
            .registered
            .get(service)
            .map_or(0, |urls| urls.len())
    }

    /// Removes a registered instance; false if there was none.
    pub fn deregister(&self, service: &str, url: &str) -> bool {
        let removed = {
            let mut sources = self.sources.lock().unwrap();
            let removed = sources
                .registered
                .get_mut(service)
                .is_some_and(|urls| urls.remove(url).is_some());
            sources.registered.retain(|_, urls| !urls.is_empty());
            removed
        };
        if removed {
            tracing::info!(%service, %url, "instance deregistered");
            self.rebuild();
        }
        removed
    }

    /// Serves on `listener` until `shutdown`, then gives in-flight requests
    /// a grace period to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = GracefulShutdown::new();
        let settings = self.table.load().settings.clone();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .max_buf_size(64 * 1024)
            .max_headers(settings.max_headers)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_millis(settings.header_timeout_ms));
        // HTTP/2: few streams at once, small header lists, and the connection
        // closed (GOAWAY) when a client resets streams faster than they are
        // served or makes the server reset too many (CVE-2023-44487).
        builder
            .http2()
            .timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(settings.http2_max_streams)
            .max_header_list_size(64 * 1024)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024);
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if self.open_connections.load(Relaxed) >= settings.max_connections as i64 {
                self.refused_connections.fetch_add(1, Relaxed);
                tracing::debug!(%peer, "max_connections are open; connection closed");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let tls = self.tls.is_some();
            let gateway = self.clone();
            let service = service_fn(move |req| gateway.clone().handle(req, peer, tls));
            let gateway = self.clone();
            gateway.open_connections.fetch_add(1, Relaxed);
            match &self.tls {
                None => {
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%error, "client connection ended with an error");
                        }
                        gateway.open_connections.fetch_sub(1, Relaxed);
                    });
                }
                Some(acceptor) => {
                    let (acceptor, builder) = (acceptor.clone(), builder.clone());
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        let handshake =
                            tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                                .await;
                        if let Ok(Ok(stream)) = handshake {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            if let Err(error) = watcher.watch(conn.into_owned()).await {
                                tracing::debug!(%error, "client connection ended with an error");
                            }
                        }
                        gateway.open_connections.fetch_sub(1, Relaxed);
                    });
                }
            }
        }
        drop(listener);
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain period; closing them");
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let table = self.table.load_full();
        let path = req.uri().path();
        let response = match path {
            "/health" => health::aggregate(&table).await,
            "/metrics" => api::metrics(&self, &table),
            "/dashboard" => api::dashboard(),
            _ if path.starts_with("/_flotilla/") => api::handle(&self, &table, req, peer).await,
            _ => self.route(&table, req, peer, tls).await,
        };
        Ok(response)
    }

    /// Checks the caller's token where the route asks for one.
    async fn admit(
        &self,
        table: &RouteTable,
        route: &table::Route,
        headers: &mut http::HeaderMap,
    ) -> Result<(), Response<Body>> {
        if route.access.auth == config::AuthMode::None {
            return Ok(());
        }
        match &self.verifier {
            Some(verifier) => verifier.admit(table, &route.access, headers).await,
            None => Err(reply::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                flotilla_contracts::problem::BAD_GATEWAY,
                "this route needs access tokens, and the gateway has no [gateway.auth] to verify them",
            )),
        }
    }

    /// A request for an upstream: edge policies, then the proxy.
    async fn route(
        &self,
        table: &RouteTable,
        mut req: hyper::Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        let started = Instant::now();
        let host = req.uri().host().or_else(|| {
            req.headers()
                .get(header::HOST)?
                .to_str()
                .ok()?
                .split(':')
                .next()
        });
        let Some(route) = table.find(host, req.uri().path()) else {
            return if matches!(req.uri().path(), "/" | "/callback") {
                api::index()
            } else {
                reply::problem(
                    StatusCode::NOT_FOUND,
                    flotilla_contracts::problem::NOT_FOUND,
                    "no service is routed at this path",
                )
            };
        };
        let settings = &table.settings;
        let origin = edge::cors_origin(&settings.cors_origins, req.headers());
        if edge::is_preflight(req.method(), req.headers()) {
            return edge::preflight(origin, req.headers());
        }
        if let Some(limiter) = &route.rate_limit
            && let Err(wait) = limiter.check(peer.ip()).await
        {
            let mut response = reply::problem(
                StatusCode::TOO_MANY_REQUESTS,
                flotilla_contracts::problem::RATE_LIMITED,
                "too many requests; retry later",
            );
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            route.stats.record(429, started.elapsed());
            return response;
        }
        let request_id = edge::request_id(req.headers_mut());
        let trace_id = edge::trace(req.headers_mut());
        let method = req.method().clone();
        let uri = req.uri().clone();
        auth::strip_identity(req.headers_mut());
        let forwarded = match self.admit(table, route, req.headers_mut()).await {
            Ok(()) => proxy::forward(route, req, peer, tls).await,
            Err(refused) => proxy::Forwarded::local(refused),
        };
        let mut response = forwarded.response;
        let headers = response.headers_mut();
        headers.insert(edge::X_REQUEST_ID.clone(), request_id.clone());
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        let elapsed = started.elapsed();
        route.stats.record(response.status().as_u16(), elapsed);
        if settings.access_log {
            tracing::info!(
                target: "flotilla::access",
                method = %method,
                path = %uri.path(),
                status = response.status().as_u16(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                service = %route.pool.service,
                instance = forwarded.instance.as_ref().map_or("-", |i| i.url.as_str()),
                client = %peer.ip(),
                request_id = request_id.to_str().unwrap_or("-"),
                trace_id = %trace_id,
            );
        }
        response
    }
}
