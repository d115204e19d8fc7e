//! Edge policies applied to every proxied request: W3C trace context,
//! request ids, CORS.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use rand::RngExt;

use crate::reply::{self, Body};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Sets the `traceparent` the upstream sees: the caller's trace with the
/// gateway as the new parent, or a new trace. Returns the trace id.
pub fn trace(headers: &mut HeaderMap) -> String {
    let mut rng = rand::rng();
    let span: u64 = rng.random::<u64>().max(1);
    let incoming = headers
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let (trace_id, flags) = match incoming {
        Some((trace_id, flags)) => (trace_id.to_owned(), flags.to_owned()),
        None => (
            format!("{:032x}", rng.random::<u128>().max(1)),
            "01".to_owned(),
        ),
    };
    let value = format!("00-{trace_id}-{span:016x}-{flags}");
    headers.insert(
        TRACEPARENT.clone(),
        HeaderValue::from_str(&value).expect("hex is a valid header"),
    );
    trace_id
}

/// The trace id and flags of a valid version-00 `traceparent`.
fn parse_traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some((trace, flags))
}

/// The request id, taken from the client or made here.
pub fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID)
        && !id.is_empty()
        && id.len() <= 128
    {
        return id.clone();
    }
    // A random (v4) id from the thread's generator: no system call per request.
    let id = uuid::Builder::from_random_bytes(rand::rng().random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = HeaderValue::from_bytes(id.hyphenated().encode_lower(&mut text).as_bytes())
        .expect("uuid is ASCII");
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// The allowed origin that matches the request's `Origin`, if any.
pub fn cors_origin(origins: &[String], headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = origins
        .iter()
        .any(|o| o == "*" || origin.to_str().is_ok_and(|v| v.eq_ignore_ascii_case(o)));
    allowed.then(|| origin.clone())
}

/// The answer to a CORS preflight: 204 with the allowances, or 403.
pub fn preflight(origin: Option<HeaderValue>, headers: &HeaderMap) -> Response<Body> {
    let Some(origin) = origin else {
        return reply::problem(
            StatusCode::FORBIDDEN,
            flotilla_contracts::problem::FORBIDDEN,
            "this origin may not call the API",
        );
    };
    let mut response = Response::new(reply::full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    response
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_a_valid_trace_and_starts_one_otherwise() {
        let mut headers = HeaderMap::new();
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT.clone(), HeaderValue::from_static(incoming));
        let trace_id = trace(&mut headers);
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let forwarded = headers[&TRACEPARENT].to_str().unwrap().to_owned();
        assert!(forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(forwarded.ends_with("-01"));
        assert_ne!(forwarded, incoming, "the gateway is the new parent");

        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT.clone(), HeaderValue::from_static(bad));
            let fresh = trace(&mut headers);
            assert_eq!(fresh.len(), 32);
            assert!(parse_traceparent(headers[&TRACEPARENT].to_str().unwrap()).is_some());
        }
    }
}
