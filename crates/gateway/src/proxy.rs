//! Forwarding a request to an instance of its route's service: path and
//! headers rewritten, retried on another instance when that is safe and the
//! budget allows, websocket upgrades spliced through.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flotilla_contracts::problem;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;

use crate::pool::Instance;
use crate::reply::{self, Body, BoxError};
use crate::table::Route;

/// Bodies up to this size are buffered so that the request can be retried.
const REPLAYABLE: u64 = 64 * 1024;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// What the proxy did, for logs and metrics.
pub(crate) struct Forwarded {
    pub response: Response<Body>,
    pub instance: Option<Arc<Instance>>,
}

impl Forwarded {
    pub fn local(response: Response<Body>) -> Self {
        Self {
            response,
            instance: None,
        }
    }
}

/// The request body: nothing, a buffer that can be sent again, or a stream
/// that can be sent once.
enum Payload {
    Replayable(Bytes),
    Stream(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Payload::Replayable(bytes) => Some(reply::full(bytes.clone())),
            Payload::Stream(body) => body.take(),
        }
    }
}

pub(crate) async fn forward(
    route: &Route,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Forwarded {
    let pool = &route.pool;
    let body_limit = route.body_limit;
    pool.deposit();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > body_limit) {
        return Forwarded::local(reply::problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            problem::PAYLOAD_TOO_LARGE,
            "the request body is larger than the limit",
        ));
    }
    if is_upgrade(req.headers()) {
        return upgrade(route, req, peer, tls).await;
    }

    let (mut parts, body) = req.into_parts();
    let sticky = take_cookie(&mut parts.headers, &route.sticky_cookie);
    let Some(path_and_query) = rewrite(route, &parts.uri) else {
        return Forwarded::local(bad_target());
    };
    let prefix = route.location_prefix().map(str::to_owned);
    remove_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, peer, tls, prefix.as_deref());
    parts.version = Version::HTTP_11;

    // No body, or a small one of known length: kept, so that the request
    // can be sent again. Anything else (chunked, large) streams through once.
    // Either way a client that stops sending it is not waited for.
    let mut payload = if body.is_end_stream() {
        Payload::Replayable(Bytes::new())
    } else {
        let body = Idle::new(
            body.map_err(BoxError::from).boxed_unsync(),
            route.body_timeout,
        );
        match body.size_hint().exact() {
            Some(len) if len <= REPLAYABLE => {
                match Limited::new(body, len as usize).collect().await {
                    Ok(collected) => Payload::Replayable(collected.to_bytes()),
                    Err(error) => return Forwarded::local(client_body_problem(&*error)),
                }
            }
            _ => Payload::Stream(Some(Limited::new(body, body_limit as usize).boxed_unsync())),
        }
    };
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let config = pool.config.load_full();
    let timeout = Duration::from_millis(config.timeouts.request_ms);
    let client = pool.client();
    let mut tried = Vec::new();
    let mut last_failure = None;
    loop {
        let Some((index, instance)) = pool.pick(sticky.as_deref(), &tried) else {
            break;
        };
        tried.push(index);
        let Some(body) = payload.take() else { break };
        let Some(request) = upstream_request(&parts, &instance, &path_and_query, body) else {
            return Forwarded::local(bad_target());
        };
        let may_retry = |payload: &Payload| {
            matches!(payload, Payload::Replayable(_))
                && tried.len() <= config.retries.attempts as usize
        };
        instance.active.fetch_add(1, Relaxed);
        let sent = tokio::time::timeout(timeout, client.request(request)).await;
        instance.active.fetch_sub(1, Relaxed);
        match sent {
            Ok(Ok(response)) => {
                let status = response.status();
                instance.stats.record(status.as_u16());
                if status.is_server_error() {
                    pool.report_failure(&instance, false);
                } else {
                    pool.report_success(&instance);
                }
                let retryable = matches!(
                    status,
                    StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
                );
                if retryable && idempotent && may_retry(&payload) && pool.withdraw_retry() {
                    tracing::debug!(service = %pool.service, instance = %instance.url, %status, "retrying on another instance");
                    continue;
                }
                let response = finish(
                    route,
                    response,
                    &instance,
                    sticky.as_deref(),
                    prefix.as_deref(),
                );
                return Forwarded {
                    response,
                    instance: Some(instance),
                };
            }
            Ok(Err(error)) => {
                if let Some(problem) = client_error(&error) {
                    return Forwarded {
                        response: problem,
                        instance: Some(instance),
                    };
                }
                let connect = error.is_connect();
                if connect {
                    instance.stats.connect_errors.fetch_add(1, Relaxed);
                }
                pool.report_failure(&instance, connect);
                tracing::warn!(service = %pool.service, instance = %instance.url, %error, "upstream request failed");
                // A refused connection never reached the service: safe to
                // retry whatever the method.
                if (connect || idempotent) && may_retry(&payload) && pool.withdraw_retry() {
                    last_failure = Some(instance);
                    continue;
                }
                return Forwarded {
                    response: reply::problem(
                        StatusCode::BAD_GATEWAY,
                        problem::BAD_GATEWAY,
                        &format!("the {} service did not answer", pool.service),
                    ),
                    instance: Some(instance),
                };
            }
            Err(_) => {
                instance.stats.record(504);
                return Forwarded {
                    response: reply::problem(
                        StatusCode::GATEWAY_TIMEOUT,
                        problem::GATEWAY_TIMEOUT,
                        &format!("the {} service did not answer in time", pool.service),
                    ),
                    instance: Some(instance),
                };
            }
        }
    }
    if pool.instances().is_empty() {
        let mut response = reply::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            problem::BAD_GATEWAY,
            &format!("no instance of {} is running", pool.service),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Forwarded::local(response);
    }
    Forwarded {
        response: reply::problem(
            StatusCode::BAD_GATEWAY,
            problem::BAD_GATEWAY,
            &format!("no instance of {} could take the request", pool.service),
        ),
        instance: last_failure,
    }
}

fn bad_target() -> Response<Body> {
    reply::problem(
        StatusCode::BAD_REQUEST,
        problem::BAD_REQUEST,
        "malformed request target",
    )
}

/// The upstream path and query for the request's URI.
fn rewrite(route: &Route, uri: &Uri) -> Option<http::uri::PathAndQuery> {
    let path = route.upstream_path(uri.path());
    if path.len() == uri.path().len() {
        // Nothing stripped: the client's target as it is (a cheap clone).
        return Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
    }
    let joined = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    joined.parse().ok()
}

fn upstream_request(
    parts: &Parts,
    instance: &Instance,
    path_and_query: &http::uri::PathAndQuery,
    body: Body,
) -> Option<Request<Body>> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(instance.authority.clone())
        .path_and_query(path_and_query.clone())
        .build()
        .ok()?;
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    Some(request)
}

/// The response as the client gets it.
fn finish(
    route: &Route,
    response: Response<Incoming>,
    instance: &Instance,
    sticky: Option<&str>,
    prefix: Option<&str>,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(prefix) = prefix {
        prefix_location(&mut parts.headers, prefix);
    }
    if route.pool.config.load().balance == crate::config::Balance::Sticky
        && sticky != Some(instance.id.as_str())
    {
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            route.sticky_cookie, instance.id
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            parts.headers.append(header::SET_COOKIE, value);
            // HAProxy's `nocache`: a response that pins a client is not shared.
            parts
                .headers
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        }
    }
    Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync())
}

/// Removes the sticky cookie from the request (the upstream never sees it)
/// and returns its value.
fn take_cookie(headers: &mut HeaderMap, name: &str) -> Option<String> {
    let mut found = None;
    let mut kept = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        let others: Vec<&str> = value
            .split(';')
            .map(str::trim)
            .filter(|pair| match pair.split_once('=') {
                Some((k, v)) if k == name => {
                    found = Some(v.to_owned());
                    false
                }
                _ => !pair.is_empty(),
            })
            .collect();
        if !others.is_empty() {
            kept.push(others.join("; "));
        }
    }
    if found.is_some() {
        headers.remove(header::COOKIE);
        for value in kept {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(header::COOKIE, value);
            }
        }
    }
    found
}

/// A request body that fails when its client sends nothing for a while.
struct Idle {
    body: Body,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The client stopped sending its request body.
#[derive(Debug, thiserror::Error)]
#[error("the client stopped sending the request body")]
struct BodyTimeout;

impl Idle {
    fn new(body: Body, idle: Duration) -> Self {
        Self {
            body,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl hyper::body::Body for Idle {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            let next = tokio::time::Instant::now() + this.idle;
            this.deadline.as_mut().reset(next);
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A problem for a failure caused by the client's body (too large, too
/// slow, malformed chunked encoding), rather than by the upstream.
fn client_error(error: &hyper_util::client::legacy::Error) -> Option<Response<Body>> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut from_client_body = false;
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() || e.is::<BodyTimeout>() {
            return Some(client_body_problem(e));
        }
        from_client_body |= e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user);
        cause = e.source();
    }
    from_client_body.then(|| {
        reply::problem(
            StatusCode::BAD_REQUEST,
            problem::BAD_REQUEST,
            "the request body is malformed",
        )
    })
}

fn client_body_problem(error: &(dyn std::error::Error + 'static)) -> Response<Body> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return reply::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                problem::PAYLOAD_TOO_LARGE,
                "the request body is larger than the limit",
            );
        }
        if e.is::<BodyTimeout>() {
            return reply::problem(
                StatusCode::REQUEST_TIMEOUT,
                problem::REQUEST_TIMEOUT,
                "the request body stopped coming",
            );
        }
        cause = e.source();
    }
    reply::problem(
        StatusCode::BAD_REQUEST,
        problem::BAD_REQUEST,
        "the request body is malformed",
    )
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// A websocket (or any HTTP/1.1 upgrade): forwarded with its upgrade
/// headers, then both connections spliced once the upstream answers 101.
async fn upgrade(
    route: &Route,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Forwarded {
    let pool = &route.pool;
    let Some((_, instance)) = pool.pick(None, &[]) else {
        return Forwarded::local(reply::problem(
            StatusCode::BAD_GATEWAY,
            problem::BAD_GATEWAY,
            "no instance available",
        ));
    };
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, _body) = req.into_parts();
    let Some(path_and_query) = rewrite(route, &parts.uri) else {
        return Forwarded::local(bad_target());
    };
    let upgrade_to = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    if let Some(protocol) = upgrade_to {
        parts.headers.insert(header::UPGRADE, protocol);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    add_forwarded(&mut parts.headers, peer, tls, route.location_prefix());
    parts.version = Version::HTTP_11;
    let Some(request) = upstream_request(
        &parts,
        &instance,
        &path_and_query,
        reply::full(Bytes::new()),
    ) else {
        return Forwarded::local(bad_target());
    };
    let mut response = match pool.client().request(request).await {
        Ok(response) => response,
        Err(error) => {
            pool.report_failure(&instance, error.is_connect());
            return Forwarded {
                response: reply::problem(
                    StatusCode::BAD_GATEWAY,
                    problem::BAD_GATEWAY,
                    "the upstream refused the upgrade",
                ),
                instance: Some(instance),
            };
        }
    };
    instance.stats.record(response.status().as_u16());
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_side = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = tokio::join!(client_side, upstream_side) else {
                return;
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
    }
    let (parts, body) = response.into_parts();
    Forwarded {
        response: Response::from_parts(parts, body.map_err(BoxError::from).boxed_unsync()),
        instance: Some(instance),
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let hop_by_hop = |name: &HeaderName| {
        name == header::CONNECTION
            || name == header::PROXY_AUTHENTICATE
            || name == header::PROXY_AUTHORIZATION
            || name == header::TE
            || name == header::TRAILER
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name.as_str() == "keep-alive"
            || name.as_str() == "proxy-connection"
    };
    // Most messages have none: one pass over the names, no hashing.
    if !headers.keys().any(hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, tls: bool, prefix: Option<&str>) {
    let ip = peer.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let proto = if tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Some(prefix) = prefix
        && let Ok(value) = HeaderValue::from_str(prefix)
    {
        headers.insert(X_FORWARDED_PREFIX.clone(), value);
    }
}

/// A redirect to `/x` from a service means `/<service>/x` to the client.
fn prefix_location(headers: &mut HeaderMap, prefix: &str) {
    let Some(location) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    if location.starts_with('/')
        && !location.starts_with("//")
        && let Ok(value) = HeaderValue::from_str(&format!("{prefix}{location}"))
    {
        headers.insert(header::LOCATION, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sticky_cookie_is_taken_out_of_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; FLOTILLA_SERVER=abc; b=2"),
        );
        assert_eq!(
            take_cookie(&mut headers, "FLOTILLA_SERVER").as_deref(),
            Some("abc")
        );
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("FLOTILLA_SERVER=abc"),
        );
        take_cookie(&mut only, "FLOTILLA_SERVER");
        assert!(!only.contains_key(header::COOKIE));
    }
}
