//! Responses the gateway makes itself: problems, JSON, the index.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use crate::routes::RouteTable;

/// The body of every gateway response: a proxied stream or a local buffer.
pub type Body = UnsyncBoxBody<Bytes, hyper::Error>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn json(
    status: StatusCode,
    value: &serde_json::Value,
    content_type: &'static str,
) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An RFC 9457 problem, in the same shape as the services'.
pub fn problem(status: StatusCode, kind: &str, detail: &str) -> Response<Body> {
    let body = json!({
        "type": kind,
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    json(status, &body, "application/problem+json")
}

/// `GET /`: the services and where their APIs and docs are.
pub fn index(routes: &RouteTable) -> Response<Body> {
    let services: serde_json::Map<_, _> = routes
        .services
        .iter()
        .map(|s| {
            let base = format!("/{}", s.name);
            (
                s.name.clone(),
                json!({
                    "url": base,
                    "docs": format!("{base}/docs/"),
                    "openapi": format!("{base}/openapi.json"),
                    "instances": s.instances.len(),
                }),
            )
        })
        .collect();
    let body = json!({ "name": "flotilla", "health": "/health", "services": services });
    json(StatusCode::OK, &body, "application/json")
}
