//! Forwarding one request to an instance of the service it is routed to.

use std::net::SocketAddr;
use std::time::Duration;

use flotilla_contracts::problem;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::Client;
use crate::reply::{self, Body};
use crate::routes::Target;

/// How long an upstream may take to start answering.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub(crate) async fn forward(
    client: &Client,
    req: Request<Incoming>,
    target: Target<'_>,
    peer: SocketAddr,
) -> Response<Body> {
    let service = &target.service.name;
    let Some(authority) = target.service.pick() else {
        return reply::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            problem::BAD_GATEWAY,
            &format!("no instance of {service} is available"),
        );
    };
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path();
    let prefix = target.prefix(path).to_owned();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{}?{query}", target.rest(path)),
        None => target.rest(path).to_owned(),
    };
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build();
    let Ok(uri) = uri else {
        return reply::problem(
            StatusCode::BAD_REQUEST,
            problem::BAD_REQUEST,
            "malformed request target",
        );
    };
    remove_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, peer, &prefix);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream = Request::from_parts(parts, body.boxed_unsync());

    match tokio::time::timeout(UPSTREAM_TIMEOUT, client.request(upstream)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            prefix_location(&mut parts.headers, &prefix);
            Response::from_parts(parts, body.boxed_unsync())
        }
        Ok(Err(error)) if client_body_failed(&error) => reply::problem(
            StatusCode::BAD_REQUEST,
            problem::BAD_REQUEST,
            "the request body is malformed",
        ),
        Ok(Err(error)) => {
            tracing::warn!(%service, %authority, %error, "upstream request failed");
            reply::problem(
                StatusCode::BAD_GATEWAY,
                problem::BAD_GATEWAY,
                &format!("the {service} service did not answer"),
            )
        }
        Err(_) => reply::problem(
            StatusCode::GATEWAY_TIMEOUT,
            problem::GATEWAY_TIMEOUT,
            &format!("the {service} service did not answer in time"),
        ),
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
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

fn add_forwarded(headers: &mut HeaderMap, peer: SocketAddr, prefix: &str) {
    let ip = peer.ip().to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Ok(value) = HeaderValue::from_str(prefix) {
        headers.insert(X_FORWARDED_PREFIX.clone(), value);
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        let id = uuid::Uuid::now_v7().to_string();
        headers.insert(
            X_REQUEST_ID.clone(),
            HeaderValue::from_str(&id).expect("uuid is ASCII"),
        );
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

/// Whether forwarding failed because the client's body was malformed (bad
/// chunked encoding, a body cut short), not because of the upstream.
fn client_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cause = e.source();
    }
    false
}
