//! Cookies: the session (`flotilla_session`, HttpOnly, SameSite=Lax) and the
//! CSRF token of the forms (`flotilla_csrf`, compared with the form's hidden
//! field: a page of another site can send the cookie but cannot read it).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_kit::Problem;
use sha2::{Digest, Sha256};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

pub const SESSION: &str = "flotilla_session";
pub const CSRF: &str = "flotilla_csrf";
/// Seed 000's cookie: the access token itself, which the gateway accepts
/// as it accepts a bearer token.
pub const ACCESS: &str = "auth_token";

/// The cookies of a request.
pub struct Cookies(Vec<(String, String)>);

impl From<&HeaderMap> for Cookies {
    fn from(headers: &HeaderMap) -> Self {
        let pairs = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .collect();
        Self(pairs)
    }
}

impl Cookies {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    }

    pub fn session(&self) -> Option<String> {
        self.get(SESSION)
    }

    pub fn csrf(&self) -> Option<String> {
        self.get(CSRF).filter(|token| is_token(token))
    }
}

/// The session cookie as an OpenAPI security scheme.
pub fn security_scheme() -> SecurityScheme {
    SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
        SESSION,
        "The session cookie the login form sets",
    )))
}

/// The session token of a request's cookies.
pub fn from_headers(headers: &HeaderMap) -> Option<String> {
    Cookies::from(headers).session()
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What the database keeps of a session token.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `bytes` as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The CSRF token of the page about to be shown: the browser's, or a new one
/// with the cookie that sets it.
pub fn csrf_token(cookies: &Cookies, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(token) = cookies.csrf() {
        return (token, None);
    }
    let token = new_token();
    // Strict: the cookie never goes along with a request from another site.
    let cookie = cookie(CSRF, &token, "Strict", None, headers);
    (token, Some(cookie))
}

/// Whether a form's `csrf` field is the browser's CSRF cookie, compared in
/// constant time.
pub fn csrf_matches(cookies: &Cookies, field: &str) -> bool {
    let Some(cookie) = cookies.csrf() else {
        return false;
    };
    same(&cookie, field)
}

/// Whether two secrets are equal, compared in time that does not depend on
/// where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

pub fn csrf_refused() -> Response {
    Problem::new(
        StatusCode::FORBIDDEN,
        flotilla_kit::problem::kind::FORBIDDEN,
        "the form's CSRF token is missing or does not match: reload the page and send it again",
    )
    .into_response()
}

/// The session cookie; an empty `token` with no lifetime clears it.
pub fn session_cookie(token: &str, lifetime: Duration, headers: &HeaderMap) -> HeaderValue {
    cookie(SESSION, token, "Lax", Some(lifetime), headers)
}

/// The `auth_token` cookie, expiring with its token.
pub fn access_cookie(token: &str, lifetime: Duration, headers: &HeaderMap) -> HeaderValue {
    cookie(ACCESS, token, "Lax", Some(lifetime), headers)
}

/// What clears a browser's sign-in: both cookies, expired.
pub fn signed_out_cookies(headers: &HeaderMap) -> Vec<HeaderValue> {
    vec![
        session_cookie("", Duration::ZERO, headers),
        access_cookie("", Duration::ZERO, headers),
    ]
}

/// An HttpOnly cookie for the whole site, `Secure` when the client came
/// over TLS (as the gateway says in `X-Forwarded-Proto`).
fn cookie(
    name: &str,
    value: &str,
    same_site: &str,
    lifetime: Option<Duration>,
    headers: &HeaderMap,
) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(lifetime) = lifetime {
        cookie.push_str(&format!("; Max-Age={}", lifetime.as_secs()));
    }
    let tls = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    if tls {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("cookie names and hex tokens are valid header text")
}

/// The client's address as the gateway reports it: the last entry of
/// `X-Forwarded-For`, the one the gateway added (the others come from the
/// client and prove nothing).
pub fn client_address(headers: &HeaderMap) -> String {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .rfind(|entry| !entry.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// `path` on the site the client sees: absolute behind the gateway (which
/// would otherwise read a `Location` of `/x` as one of this service's own
/// paths, `/auth/x`), the path alone when the service is reached directly.
pub fn site_url(headers: &HeaderMap, path: &str) -> String {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    match (header("x-forwarded-proto"), header("x-forwarded-host")) {
        (Some(proto), Some(host)) if !host.contains(['/', '@', '\\']) => {
            format!("{proto}://{host}{path}")
        }
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tokens() {
        let token = new_token();
        assert!(is_token(&token));
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            format!("a=1; {CSRF}={token}; {SESSION}=s").parse().unwrap(),
        );
        let cookies = Cookies::from(&headers);
        assert_eq!(cookies.session().as_deref(), Some("s"));
        assert!(csrf_matches(&cookies, &token));
        assert!(!csrf_matches(&cookies, ""));
        assert!(!csrf_matches(&cookies, &new_token()));
        assert_eq!(hash("x").len(), 64);
        assert_ne!(hash("x"), hash("y"));
    }

    #[test]
    fn the_address_is_the_one_the_gateway_added() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_address(&headers), "unknown");
        headers.insert("x-forwarded-for", "6.6.6.6, 10.0.0.7".parse().unwrap());
        assert_eq!(client_address(&headers), "10.0.0.7");
    }

    #[test]
    fn cookies_are_secure_behind_tls() {
        let mut headers = HeaderMap::new();
        let plain = session_cookie("t", Duration::from_secs(60), &headers);
        assert_eq!(
            plain,
            "flotilla_session=t; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let secure = session_cookie("t", Duration::from_secs(60), &headers);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
