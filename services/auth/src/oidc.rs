//! The OpenID provider: discovery, the public keys, `/authorize` (the
//! authorization code flow with PKCE S256) and `/userinfo`; the token
//! endpoints are in `token.rs`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use flotilla_kit::{Error, Json, Query};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::clients::Client;
use crate::grants::{self, NewCode};
use crate::http::AppState;
use crate::keys::Keys;
use crate::session;
use crate::token::AccessClaims;
use crate::{pages, store};
use flotilla_kit::now_ms;

/// The audience of access tokens: the services behind the gateway.
pub const AUDIENCE: &str = "flotilla";
const CODE_TTL: Duration = Duration::from_secs(60);
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// The provider: its issuer, signing key and clients.
pub struct Provider {
    pub issuer: String,
    pub keys: Keys,
    pub clients: Vec<Client>,
}

impl Provider {
    pub fn new(public_url: &str, keys: Keys, clients: Vec<Client>) -> Self {
        Self {
            issuer: format!("{public_url}/auth"),
            keys,
            clients,
        }
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }
}

/// `/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", responses((status = 200, description = "OpenID Provider Metadata")))]
pub async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = &state.oidc.issuer;
    let metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "end_session_endpoint": format!("{issuer}/end_session"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "name"],
        "authorization_response_iss_parameter_supported": true,
    });
    Json(metadata).into_response()
}

/// The public keys tokens are signed with.
#[utoipa::path(get, path = "/jwks.json", responses((status = 200, description = "JWK Set")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let max_age = crate::rotation::JWKS_MAX_AGE.as_secs();
    let cache = format!("public, max-age={max_age}");
    (
        [(header::CACHE_CONTROL, cache)],
        Json(state.oidc.keys.set()),
    )
        .into_response()
}

/// The parameters of an authorization request.
#[derive(Debug, Deserialize, IntoParams)]
pub struct AuthorizeParams {
    /// `code`.
    response_type: Option<String>,
    client_id: Option<String>,
    /// Exactly one registered for the client.
    redirect_uri: Option<String>,
    /// Space-separated; must hold `openid`.
    scope: Option<String>,
    state: Option<String>,
    /// Echoed in the ID token.
    nonce: Option<String>,
    /// PKCE: BASE64URL(SHA-256(verifier)).
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
    /// `none` (fail rather than ask to sign in) or `login` (always ask).
    prompt: Option<String>,
    /// Seconds: ask to sign in again if the session is older.
    max_age: Option<u64>,
}

/// Starts the authorization code flow: to the login page when the browser
/// is not signed in, then back to the client's redirect URI with a code.
#[utoipa::path(get, path = "/authorize", params(AuthorizeParams), responses(
    (status = 303, description = "To the client with `code` and `state` (or `error`), or to the login page"),
    (status = 400, description = "Unknown client or unregistered redirect URI: an error page, never a redirect", content_type = "text/html"),
))]
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Query(params): Query<AuthorizeParams>,
) -> Result<Response, Error> {
    let provider = &state.oidc;
    let Some(client) = params
        .client_id
        .as_deref()
        .and_then(|id| provider.client(id))
    else {
        return Ok(error_page("This application is not known here."));
    };
    let Some(redirect_uri) = params
        .redirect_uri
        .as_deref()
        .filter(|uri| client.redirect_uris.iter().any(|r| r == uri))
    else {
        return Ok(error_page(
            "This redirect URI is not registered for the application.",
        ));
    };
    let back = |fields: &[(&str, &str)]| {
        let mut fields = fields.to_vec();
        if let Some(state) = params.state.as_deref() {
            fields.push(("state", state));
        }
        fields.push(("iss", provider.issuer.as_str()));
        Redirect::to(&with_query(redirect_uri, &fields)).into_response()
    };
    let fail = |error: &str, description: &str| {
        back(&[("error", error), ("error_description", description)])
    };
    if params.response_type.as_deref() != Some("code") {
        return Ok(fail(
            "unsupported_response_type",
            "only `code` is supported",
        ));
    }
    let scope = params.scope.as_deref().unwrap_or_default();
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if !scopes.contains(&"openid") || scopes.iter().any(|s| !SCOPES.contains(s)) {
        return Ok(fail(
            "invalid_scope",
            "the scope must hold openid, and only profile, email and offline_access besides",
        ));
    }
    let challenge = params.code_challenge.as_deref().unwrap_or_default();
    if params.code_challenge_method.as_deref() != Some("S256") || !is_challenge(challenge) {
        return Ok(fail(
            "invalid_request",
            "PKCE is required: a code_challenge with code_challenge_method=S256",
        ));
    }

    let signed_in = match session::from_headers(&headers) {
        Some(token) => store::session(&state.ctx.db, &session::hash(&token), now_ms()).await?,
        None => None,
    };
    let prompt = params.prompt.as_deref().unwrap_or_default();
    let recent = |auth_time_ms: i64| {
        params
            .max_age
            .is_none_or(|max| now_ms() - auth_time_ms <= (max as i64).saturating_mul(1000))
    };
    let account = match signed_in {
        Some((account, auth_time_ms)) if prompt != "login" && recent(auth_time_ms) => {
            (account, auth_time_ms)
        }
        _ if prompt == "none" => return Ok(fail("login_required", "the browser is not signed in")),
        _ => {
            // Back here once signed in, without `prompt=login` (or it would
            // ask again and again).
            let query = query.unwrap_or_default();
            let again: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("prompt="))
                .collect();
            let prefix = headers
                .get("x-forwarded-prefix")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let here = format!("{prefix}/authorize?{}", again.join("&"));
            return Ok(Redirect::to(&with_query("login", &[("return_to", &here)])).into_response());
        }
    };
    let (account, auth_time_ms) = account;
    let code = session::new_token();
    let code_hash = session::hash(&code);
    let scope = scopes.join(" ");
    grants::insert_code(
        &state.ctx.db,
        &NewCode {
            code_hash: &code_hash,
            client_id: &client.id,
            account_id: &account.id,
            redirect_uri,
            scope: &scope,
            nonce: params.nonce.as_deref(),
            code_challenge: challenge,
            auth_time_ms,
            expires_at_ms: now_ms() + CODE_TTL.as_millis() as i64,
        },
    )
    .await?;
    Ok(back(&[("code", &code)]))
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(pages::authorize_error(message)),
    )
        .into_response()
}

/// 43 to 128 characters of base64url, as RFC 7636 says.
fn is_challenge(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `uri` with `fields` added to its query, percent-encoded.
pub fn with_query(uri: &str, fields: &[(&str, &str)]) -> String {
    let mut out = uri.to_owned();
    for (i, (name, value)) in fields.iter().enumerate() {
        let separator = if i == 0 && !uri.contains('?') {
            '?'
        } else {
            '&'
        };
        out.push(separator);
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The signed-in account's claims, for a valid access token.
#[utoipa::path(get, path = "/userinfo", responses(
    (status = 200, description = "`sub`, and `email` and `name` as the scope allows"),
    (status = 401, description = "No valid access token: `WWW-Authenticate: Bearer error=\"invalid_token\"`"),
))]
pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let claims: Option<AccessClaims> =
        token.and_then(|t| state.oidc.keys.verify(t, &state.oidc.issuer, AUDIENCE));
    let account = match &claims {
        Some(claims) => store::account(&state.ctx.db, &claims.sub).await?,
        None => None,
    };
    let (Some(claims), Some(account)) = (claims, account) else {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Ok(response);
    };
    let scopes: Vec<&str> = claims.scope.split_whitespace().collect();
    let mut info = json!({ "sub": account.id });
    if scopes.contains(&"email") {
        info["email"] = json!(account.email);
        info["email_verified"] = json!(false);
    }
    if scopes.contains(&"profile") {
        info["name"] = json!(account.name);
    }
    Ok(Json(info).into_response())
}
