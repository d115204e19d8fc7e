//! The gateway's own endpoints: `/metrics`, `/dashboard`, the web UI at `/`
//! (the files of `web/`, compiled in), and the JSON API under `/_flotilla/`
//! (services, registry and statistics).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use flotilla_contracts::problem;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Gateway;
use crate::pool::{Instance, Pool};
use crate::reply::{self, Body};
use crate::stats::{self, Exposition};
use crate::table::RouteTable;

const REGISTRY: &str = "/_flotilla/registry/instances";

pub(crate) async fn handle(
    gateway: &Gateway,
    table: &RouteTable,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/_flotilla/api/stats") => {
            reply::json(StatusCode::OK, &snapshot(gateway, table))
        }
        (&Method::GET, "/_flotilla/api/services") => services(table),
        (&Method::GET, "/_flotilla/ui/app.js") => asset(APP_JS, "text/javascript; charset=utf-8"),
        (&Method::GET, "/_flotilla/ui/signin.js") => {
            asset(SIGNIN_JS, "text/javascript; charset=utf-8")
        }
        (&Method::GET, "/_flotilla/ui/motus.js") => {
            asset(MOTUS_JS, "text/javascript; charset=utf-8")
        }
        (&Method::GET, "/_flotilla/ui/style.css") => asset(STYLE_CSS, "text/css; charset=utf-8"),
        (&Method::GET, REGISTRY) => reply::json(StatusCode::OK, &registrations(gateway)),
        (&Method::POST, REGISTRY) => register(gateway, req, peer).await,
        (&Method::DELETE, p) if p.starts_with(REGISTRY) => {
            deregister(gateway, &p[REGISTRY.len()..], peer)
        }
        _ => reply::problem(
            StatusCode::NOT_FOUND,
            problem::NOT_FOUND,
            "no such gateway endpoint",
        ),
    }
}

const INDEX_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/index.html"));
const APP_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/app.js"));
const SIGNIN_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/signin.js"));
const MOTUS_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/motus.js"));
const STYLE_CSS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/style.css"));

/// `GET /` (and `/callback`, where sign-in comes back to): the web UI.
pub(crate) fn index() -> Response<Body> {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = reply::with_type(StatusCode::OK, body, content_type);
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// `GET /_flotilla/api/services`: the services and where their APIs and docs are.
fn services(table: &RouteTable) -> Response<Body> {
    let mut services = serde_json::Map::new();
    for route in &table.routes {
        let name = &route.pool.service;
        if services.contains_key(name) || route.prefix.starts_with("/api/") {
            continue;
        }
        let base = route.prefix.trim_end_matches('/');
        services.insert(
            name.clone(),
            json!({
                "url": route.prefix,
                "docs": format!("{base}/docs/"),
                "openapi": format!("{base}/openapi.json"),
                "instances": route.pool.instances().len(),
            }),
        );
    }
    let body = json!({
        "name": "flotilla",
        "health": "/health",
        "metrics": "/metrics",
        "dashboard": "/dashboard",
        "services": services,
    });
    reply::json(StatusCode::OK, &body)
}

pub(crate) fn dashboard() -> Response<Body> {
    reply::with_type(
        StatusCode::OK,
        include_str!("dashboard.html"),
        "text/html; charset=utf-8",
    )
}

/// Every distinct pool of the table, in route order.
fn pools(table: &RouteTable) -> Vec<Arc<Pool>> {
    let mut pools: Vec<Arc<Pool>> = Vec::new();
    for route in &table.routes {
        if !pools.iter().any(|p| Arc::ptr_eq(p, &route.pool)) {
            pools.push(route.pool.clone());
        }
    }
    pools
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub(crate) fn metrics(gateway: &Gateway, table: &RouteTable) -> Response<Body> {
    let mut e = Exposition::new();
    e.help(
        "gateway_requests_total",
        "counter",
        "Requests by route and status class.",
    );
    for route in &table.routes {
        for (class, count) in CLASSES.iter().zip(&route.stats.by_class) {
            let labels = [
                ("route", route.prefix.as_str()),
                ("service", route.pool.service.as_str()),
                ("class", class),
            ];
            e.sample("gateway_requests_total", &labels, count.load(Relaxed));
        }
    }
    e.help(
        "gateway_request_duration_seconds",
        "histogram",
        "Time to answer, by route.",
    );
    for route in &table.routes {
        let labels = [
            ("route", route.prefix.as_str()),
            ("service", route.pool.service.as_str()),
        ];
        e.histogram(
            "gateway_request_duration_seconds",
            &labels,
            &route.stats.buckets(),
            route.stats.sum_seconds(),
        );
    }
    let pools = pools(table);
    let per_instance = |e: &mut Exposition,
                        name: &str,
                        kind: &str,
                        help: &str,
                        value: &dyn Fn(&Instance) -> u64| {
        e.help(name, kind, help);
        for pool in &pools {
            for instance in pool.instances().iter() {
                let labels = [
                    ("service", pool.service.as_str()),
                    ("instance", instance.url.as_str()),
                ];
                e.sample(name, &labels, value(instance));
            }
        }
    };
    e.help(
        "gateway_upstream_responses_total",
        "counter",
        "Upstream answers by instance and status class.",
    );
    for pool in &pools {
        for instance in pool.instances().iter() {
            for (class, count) in CLASSES.iter().zip(&instance.stats.by_class) {
                let labels = [
                    ("service", pool.service.as_str()),
                    ("instance", instance.url.as_str()),
                    ("class", class),
                ];
                e.sample(
                    "gateway_upstream_responses_total",
                    &labels,
                    count.load(Relaxed),
                );
            }
        }
    }
    per_instance(
        &mut e,
        "gateway_upstream_connect_errors_total",
        "counter",
        "Failed connections to an instance.",
        &|i| i.stats.connect_errors.load(Relaxed),
    );
    per_instance(
        &mut e,
        "gateway_ejections_total",
        "counter",
        "Times an instance was ejected after failures.",
        &|i| i.stats.ejections.load(Relaxed),
    );
    per_instance(
        &mut e,
        "gateway_upstream_healthy",
        "gauge",
        "1 when the instance passes its health checks.",
        &|i| u64::from(i.healthy()),
    );
    per_instance(
        &mut e,
        "gateway_upstream_active_requests",
        "gauge",
        "Requests in flight to an instance.",
        &|i| i.active.load(Relaxed) as u64,
    );
    e.help(
        "gateway_retries_total",
        "counter",
        "Attempts retried on another instance.",
    );
    for pool in &pools {
        e.sample(
            "gateway_retries_total",
            &[("service", pool.service.as_str())],
            pool.retries(),
        );
    }
    e.help(
        "gateway_open_connections",
        "gauge",
        "Client connections open.",
    );
    e.sample(
        "gateway_open_connections",
        &[],
        gateway.open_connections.load(Relaxed),
    );
    e.help(
        "gateway_connections_refused_total",
        "counter",
        "Client connections closed at once: max_connections were open.",
    );
    e.sample(
        "gateway_connections_refused_total",
        &[],
        gateway.refused_connections.load(Relaxed),
    );
    reply::with_type(StatusCode::OK, e.finish(), "text/plain; version=0.0.4")
}

/// Routes, services and instances with their counters, for the dashboard.
fn snapshot(gateway: &Gateway, table: &RouteTable) -> Value {
    let routes: Vec<Value> = table
        .routes
        .iter()
        .map(|route| {
            let buckets = route.stats.buckets();
            let ms = |q| stats::quantile(&buckets, q).map(|s| s * 1000.0);
            json!({
                "prefix": route.prefix,
                "host": route.host,
                "service": route.pool.service,
                "strip_prefix": route.strip_prefix,
                "requests": route.stats.total(),
                "errors": route.stats.by_class[4].load(Relaxed),
                "by_class": route.stats.by_class.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>(),
                "buckets": buckets,
                "bucket_bounds_ms": stats::BUCKETS.iter().map(|b| b * 1000.0).collect::<Vec<_>>(),
                "p50_ms": ms(0.5),
                "p99_ms": ms(0.99),
            })
        })
        .collect();
    let services: Vec<Value> = pools(table)
        .iter()
        .map(|pool| {
            let config = pool.config.load();
            json!({
                "name": pool.service,
                "balance": format!("{:?}", config.balance),
                "retries": pool.retries(),
                "instances": pool.instances().iter().map(|i| json!({
                    "url": i.url,
                    "id": i.id,
                    "weight": i.weight,
                    "healthy": i.healthy(),
                    "ejected": i.ejected(),
                    "active": i.active.load(Relaxed),
                    "responses": i.stats.by_class.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>(),
                    "connect_errors": i.stats.connect_errors.load(Relaxed),
                    "ejections": i.stats.ejections.load(Relaxed),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "open_connections": gateway.open_connections.load(Relaxed),
        "routes": routes,
        "services": services,
    })
}

fn registrations(gateway: &Gateway) -> Value {
    let sources = gateway.sources.lock().unwrap();
    let now = crate::pool::now_ms();
    let items: Vec<Value> = sources
        .registered
        .iter()
        .flat_map(|(service, urls)| {
            urls.iter().map(move |(url, expires)| {
                json!({ "service": service, "url": url, "expires_in_ms": expires.saturating_sub(now) })
            })
        })
        .collect();
    json!({ "items": items })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Registration {
    service: String,
    url: String,
    ttl_ms: Option<u64>,
}

/// Registration is open to the gateway's own network only: loopback and
/// private addresses, where the services run.
fn trusted(peer: SocketAddr) -> bool {
    match peer.ip() {
        IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        IpAddr::V6(ip) => {
            ip.is_loopback()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

fn forbidden() -> Response<Body> {
    reply::problem(
        StatusCode::FORBIDDEN,
        problem::FORBIDDEN,
        "registration is open to the private network only",
    )
}

fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && name != "api"
        && !name.starts_with('_')
}

/// `POST /_flotilla/registry/instances {"service","url","ttl_ms"}`: registers
/// an instance, or renews it (the heartbeat).
async fn register(
    gateway: &Gateway,
    req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if !trusted(peer) {
        return forbidden();
    }
    let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await else {
        return reply::problem(
            StatusCode::BAD_REQUEST,
            problem::BAD_REQUEST,
            "unreadable or oversized body",
        );
    };
    let registration: Registration = match serde_json::from_slice(&body.to_bytes()) {
        Ok(r) => r,
        Err(error) => {
            return reply::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                problem::VALIDATION,
                &error.to_string(),
            );
        }
    };
    if !valid_service(&registration.service) {
        return reply::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            problem::VALIDATION,
            "invalid `service`: lower-case letters, digits and dashes",
        );
    }
    let Some(instance) = Instance::new(&registration.url, 1) else {
        return reply::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            problem::VALIDATION,
            "invalid `url`: expected http://host:port",
        );
    };
    let default_ttl = gateway.table.load().settings.registration_ttl_ms;
    let ttl = registration
        .ttl_ms
        .unwrap_or(default_ttl)
        .clamp(500, 300_000);
    let new = gateway.register(
        &registration.service,
        &instance.url,
        Duration::from_millis(ttl),
    );
    let body = json!({
        "id": format!("{}/{}", registration.service, instance.id),
        "service": registration.service,
        "url": instance.url,
        "ttl_ms": ttl,
    });
    reply::json(
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &body,
    )
}

/// `DELETE /_flotilla/registry/instances/<service>/<id>`.
fn deregister(gateway: &Gateway, rest: &str, peer: SocketAddr) -> Response<Body> {
    if !trusted(peer) {
        return forbidden();
    }
    let Some((service, id)) = rest.trim_start_matches('/').split_once('/') else {
        return reply::problem(
            StatusCode::NOT_FOUND,
            problem::NOT_FOUND,
            "expected /<service>/<id>",
        );
    };
    let url = {
        let sources = gateway.sources.lock().unwrap();
        sources.registered.get(service).and_then(|urls| {
            urls.keys()
                .find(|url| Instance::new(url, 1).is_some_and(|i| i.id == id))
                .cloned()
        })
    };
    match url {
        Some(url) if gateway.deregister(service, &url) => {
            let mut response = Response::new(reply::full(""));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        _ => reply::problem(
            StatusCode::NOT_FOUND,
            problem::NOT_FOUND,
            "no such registered instance",
        ),
    }
}
