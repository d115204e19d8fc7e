//! Access tokens at the edge: a route that asks for them gets its caller's
//! bearer token (or seed 000's `auth_token` cookie) verified against the
//! issuer's JWK set, and the caller forwarded as `x-user-*` headers. Those
//! headers are removed from every request a client sends, so a service
//! behind the gateway can trust them.
//!
//! The keys are fetched when a token names a `kid` not yet known, at most
//! once per `refetch_ms`, so a flood of made-up `kid`s cannot hammer the
//! issuer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use flotilla_contracts::problem;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{Access, AuthMode, AuthSettings, Timeouts};
use crate::pool::{self, Client};
use crate::reply::{self, Body};
use crate::table::RouteTable;

/// The cookie seed 000's services read the access token from.
const COOKIE: &str = "auth_token";

static X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
static X_USER_EMAIL: HeaderName = HeaderName::from_static("x-user-email");
static X_USER_SCOPES: HeaderName = HeaderName::from_static("x-user-scopes");
static X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");

/// Removes every `x-user-*` header: only the gateway says who is calling.
pub fn strip_identity(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-user-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Verifies access tokens with the issuer's keys.
pub struct Verifier {
    settings: AuthSettings,
    keys: ArcSwap<HashMap<String, Arc<DecodingKey>>>,
    /// When the keys were last fetched (gateway clock, ms); 0 for never.
    fetched_at: AtomicU64,
    fetching: tokio::sync::Mutex<()>,
    /// For a JWK set at an `http://` URL.
    client: Arc<Client>,
}

/// The claims the gateway reads from an access token.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    email: Option<String>,
}

/// Why a request is refused.
enum Refusal {
    /// 401: no token where one is needed, or one that does not verify.
    Unauthorized(Option<&'static str>),
    /// 403: a valid token without a scope the route needs.
    MissingScope(String),
    /// 503: the keys cannot be fetched.
    NoKeys,
}

impl Verifier {
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            settings,
            keys: ArcSwap::from_pointee(HashMap::new()),
            fetched_at: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            client: Arc::new(pool::client(&Timeouts::default())),
        }
    }

    /// Admits a request to a route asking `access`: its token verified and
    /// its caller set as `x-user-*` headers, or the response that refuses it.
    pub async fn admit(
        &self,
        table: &RouteTable,
        access: &Access,
        headers: &mut HeaderMap,
    ) -> Result<(), Response<Body>> {
        let result = match token(headers) {
            None if access.auth == AuthMode::Required => Err(Refusal::Unauthorized(None)),
            None => Ok(None),
            Some(token) => self.verify(table, &token, &access.scopes).await.map(Some),
        };
        match result {
            Ok(Some(claims)) => {
                set_identity(headers, claims);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(refusal) => Err(refusal.response()),
        }
    }

    async fn verify(
        &self,
        table: &RouteTable,
        token: &str,
        scopes: &[String],
    ) -> Result<Claims, Refusal> {
        let invalid = |why| Refusal::Unauthorized(Some(why));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("the token is not a signed JWT"))?;
        if header.alg != Algorithm::ES256 {
            return Err(invalid("the token's algorithm is not accepted"));
        }
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(invalid("the token is not an access token"));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token names no key"))?;
        let key = self
            .key(table, &kid)
            .await?
            .ok_or_else(|| invalid("the token is signed with an unknown key"))?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                invalid(match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidIssuer => "the token is from another issuer",
                    ErrorKind::InvalidAudience => "the token is meant for another audience",
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    _ => "the token is not valid",
                })
            })?
            .claims;
        let granted: Vec<&str> = claims.scope.split_whitespace().collect();
        if let Some(missing) = scopes.iter().find(|s| !granted.contains(&s.as_str())) {
            return Err(Refusal::MissingScope(missing.clone()));
        }
        Ok(claims)
    }

    /// The key `kid`, fetching the set again if it is unknown and the last
    /// fetch is older than `refetch_ms`.
    async fn key(
        &self,
        table: &RouteTable,
        kid: &str,
    ) -> Result<Option<Arc<DecodingKey>>, Refusal> {
        if let Some(key) = self.keys.load().get(kid) {
            return Ok(Some(key.clone()));
        }
        let _fetching = self.fetching.lock().await;
        if let Some(key) = self.keys.load().get(kid) {
            return Ok(Some(key.clone()));
        }
        let last = self.fetched_at.load(Relaxed);
        if last != 0 && pool::now_ms() < last + self.settings.refetch_ms {
            return Ok(None);
        }
        self.fetched_at.store(pool::now_ms().max(1), Relaxed);
        match self.fetch(table).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "token signing keys fetched");
                let key = keys.get(kid).cloned();
                self.keys.store(Arc::new(keys));
                Ok(key)
            }
            Err(error) => {
                tracing::warn!(%error, jwks = %self.settings.jwks, "cannot fetch the token signing keys");
                // Tried again at the next token rather than after refetch_ms.
                self.fetched_at.store(0, Relaxed);
                Err(Refusal::NoKeys)
            }
        }
    }

    async fn fetch(&self, table: &RouteTable) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let (client, url) = if self.settings.jwks.starts_with('/') {
            let route = table
                .find(None, &self.settings.jwks)
                .ok_or("no route serves the path")?;
            let (_, instance) = route.pool.pick(None, &[]).ok_or("no instance")?;
            let url = format!(
                "{}{}",
                instance.url,
                route.upstream_path(&self.settings.jwks)
            );
            (route.pool.client(), url)
        } else {
            (self.client.clone(), self.settings.jwks.clone())
        };
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(reply::full(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), 256 * 1024)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                Some((kid, Arc::new(DecodingKey::from_jwk(jwk).ok()?)))
            })
            .collect())
    }
}

/// The bearer token of `Authorization`, or else the `auth_token` cookie.
fn token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

fn set_identity(headers: &mut HeaderMap, claims: Claims) {
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), value);
        }
    };
    set(&X_USER_ID, &claims.sub);
    if let Some(email) = &claims.email {
        set(&X_USER_EMAIL, email);
    }
    set(&X_USER_SCOPES, &claims.scope);
    set(&X_USER_ROLES, &claims.roles.join(" "));
}

impl Refusal {
    fn response(self) -> Response<Body> {
        let (status, kind, detail, challenge) = match self {
            Refusal::Unauthorized(None) => (
                StatusCode::UNAUTHORIZED,
                problem::UNAUTHORIZED,
                "this route needs an access token".to_owned(),
                r#"Bearer realm="flotilla""#.to_owned(),
            ),
            Refusal::Unauthorized(Some(why)) => (
                StatusCode::UNAUTHORIZED,
                problem::UNAUTHORIZED,
                why.to_owned(),
                format!(
                    r#"Bearer realm="flotilla", error="invalid_token", error_description="{why}""#
                ),
            ),
            Refusal::MissingScope(scope) => (
                StatusCode::FORBIDDEN,
                problem::FORBIDDEN,
                format!("the token lacks the scope `{scope}`"),
                format!(r#"Bearer realm="flotilla", error="insufficient_scope", scope="{scope}""#),
            ),
            Refusal::NoKeys => {
                return reply::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    problem::BAD_GATEWAY,
                    "tokens cannot be verified now: the issuer's keys are out of reach",
                );
            }
        };
        let mut response = reply::problem(status, kind, &detail);
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_bearer_token_comes_before_the_cookie() {
        let both = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "auth_token=def"),
        ]);
        assert_eq!(token(&both).as_deref(), Some("abc"));
        let cookie = headers(&[("cookie", "theme=dark; auth_token=def; x=1")]);
        assert_eq!(token(&cookie).as_deref(), Some("def"));
        let basic = headers(&[
            ("authorization", "Basic YTpi"),
            ("cookie", "auth_token=def"),
        ]);
        assert_eq!(token(&basic), None, "another scheme is not a bearer token");
        assert_eq!(token(&headers(&[("cookie", "my_auth_token=x")])), None);
    }

    #[test]
    fn identity_headers_from_a_client_are_removed() {
        let mut sent = headers(&[
            ("x-user-id", "admin"),
            ("x-user-roles", "admin"),
            ("x-user-anything", "1"),
            ("x-username", "kept"),
        ]);
        strip_identity(&mut sent);
        let left: Vec<&str> = sent.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-username"]);
    }
}
