//! The OpenID provider: discovery, the public keys, `/authorize` (the
//! authorization code flow with PKCE S256), `/token` (codes, once; refresh
//! tokens, rotated, a reused one revoking its family) and `/userinfo`.
//! Errors of `/token` are OAuth's JSON (`{"error", "error_description"}`),
//! as RFC 6749 requires, not problem+json.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_kit::{Error, Form, Json, Query};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::grants::{self, NewCode, Refresh};
use crate::http::AppState;
use crate::keys::Keys;
use crate::session::{self, now_ms};
use crate::{pages, store};

/// The audience of access tokens: the services behind the gateway.
pub const AUDIENCE: &str = "flotilla";
const ACCESS_TTL: Duration = Duration::from_secs(10 * 60);
const ID_TTL: Duration = Duration::from_secs(10 * 60);
const CODE_TTL: Duration = Duration::from_secs(60);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// A registered client. Only public clients exist yet: they have no
/// secret, so PKCE is what ties a code to the client that asked for it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub redirect_uris: Vec<String>,
}

/// The provider: its issuer, signing key and clients.
pub struct Provider {
    pub issuer: String,
    pub keys: Keys,
    pub clients: Vec<Client>,
}

impl Provider {
    /// The clients every stack has: the web console and seed 002's game,
    /// both public, at `public_url`.
    pub fn new(public_url: &str, keys: Keys) -> Self {
        let client = |id: &str, path: &str| Client {
            id: id.to_owned(),
            redirect_uris: vec![format!("{public_url}{path}")],
        };
        Self {
            issuer: format!("{public_url}/auth"),
            keys,
            clients: vec![
                client("flotilla-console", "/callback"),
                client("motus_app", "/motus/callback"),
            ],
        }
    }

    fn client(&self, id: &str) -> Option<&Client> {
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
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
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
    let mut response = Json(state.oidc.keys.set().clone()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
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
fn with_query(uri: &str, fields: &[(&str, &str)]) -> String {
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

/// A token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`.
    grant_type: String,
    client_id: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    /// PKCE: the secret whose S256 was the `code_challenge`.
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

/// What `/token` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// Exchanges a code, or a refresh token, for tokens.
#[utoipa::path(post, path = "/token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "`{\"error\", \"error_description\"}`: invalid_request, invalid_grant, unsupported_grant_type"),
        (status = 401, description = "invalid_client"),
))]
pub async fn token(State(state): State<AppState>, Form(request): Form<TokenRequest>) -> Response {
    let answer = match request.grant_type.as_str() {
        "authorization_code" => exchange_code(&state, &request).await,
        "refresh_token" => refresh(&state, &request).await,
        _ => Err(oauth(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code or refresh_token",
        )),
    };
    let mut response = match answer {
        Ok(tokens) => Json(tokens).into_response(),
        Err(error) => error,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An OAuth error response.
fn oauth(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

fn invalid_grant(description: &str) -> Response {
    oauth(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn internal(error: impl Into<anyhow::Error>) -> Response {
    Error::Internal(error.into()).into_response()
}

async fn exchange_code(
    state: &AppState,
    request: &TokenRequest,
) -> Result<TokenResponse, Response> {
    let client_id = request.client_id.as_deref().unwrap_or_default();
    if state.oidc.client(client_id).is_none() {
        return Err(oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id",
        ));
    }
    let Some(code) = request.code.as_deref() else {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        ));
    };
    let db = &state.ctx.db;
    let code_hash = session::hash(code);
    let Some(grant) = grants::code(db, &code_hash).await.map_err(internal)? else {
        return Err(invalid_grant("unknown code"));
    };
    if grant.used != 0 || !grants::use_code(db, &code_hash).await.map_err(internal)? {
        // Presented twice: whatever the first exchange gave is revoked.
        grants::revoke_family(db, &code_hash)
            .await
            .map_err(internal)?;
        return Err(invalid_grant(
            "the code was used already; the tokens it gave are revoked",
        ));
    }
    if grant.expires_at_ms <= now_ms() {
        return Err(invalid_grant("the code has expired"));
    }
    if grant.client_id != client_id || request.redirect_uri.as_deref() != Some(&grant.redirect_uri)
    {
        return Err(invalid_grant(
            "client_id or redirect_uri differ from the authorization request",
        ));
    }
    let verified = request.code_verifier.as_deref().is_some_and(|verifier| {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == grant.code_challenge
    });
    if !verified {
        return Err(invalid_grant(
            "code_verifier is missing or does not match the code_challenge",
        ));
    }
    let family = Refresh {
        family: code_hash,
        client_id: grant.client_id,
        account_id: grant.account_id,
        scope: grant.scope,
        auth_time_ms: grant.auth_time_ms,
        expires_at_ms: now_ms() + REFRESH_TTL.as_millis() as i64,
        rotated: 0,
        revoked: 0,
    };
    issue(state, "authorization_code", family, grant.nonce.as_deref()).await
}

async fn refresh(state: &AppState, request: &TokenRequest) -> Result<TokenResponse, Response> {
    let Some(token) = request.refresh_token.as_deref() else {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        ));
    };
    let db = &state.ctx.db;
    let token_hash = session::hash(token);
    let Some(grant) = grants::refresh(db, &token_hash).await.map_err(internal)? else {
        return Err(invalid_grant("unknown refresh token"));
    };
    if grant.revoked != 0 {
        return Err(invalid_grant("the refresh token is revoked"));
    }
    if grant.rotated != 0 || !grants::rotate(db, &token_hash).await.map_err(internal)? {
        // A rotated token again: someone kept a copy. Nobody in its family
        // may go on.
        grants::revoke_family(db, &grant.family)
            .await
            .map_err(internal)?;
        return Err(invalid_grant(
            "the refresh token was used already; its family is revoked",
        ));
    }
    if grant.expires_at_ms <= now_ms() {
        return Err(invalid_grant("the refresh token has expired"));
    }
    if request
        .client_id
        .as_deref()
        .is_some_and(|id| id != grant.client_id)
    {
        return Err(invalid_grant("the refresh token belongs to another client"));
    }
    let next = Refresh {
        expires_at_ms: now_ms() + REFRESH_TTL.as_millis() as i64,
        ..grant
    };
    issue(state, "refresh_token", next, None).await
}

/// The claims of an access token (RFC 9068).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub roles: Vec<String>,
}

/// Signs the tokens of `grant`: an access token, an ID token (`openid` is
/// always in the scope), and a new refresh token of the family with
/// `offline_access`.
async fn issue(
    state: &AppState,
    grant_type: &'static str,
    grant: Refresh,
    nonce: Option<&str>,
) -> Result<TokenResponse, Response> {
    let db = &state.ctx.db;
    let provider = &state.oidc;
    let account = store::account(db, &grant.account_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| invalid_grant("the account no longer exists"))?;
    let roles = store::roles(db, &account.id).await.map_err(internal)?;
    let now = now_ms() / 1000;
    let access = AccessClaims {
        iss: provider.issuer.clone(),
        sub: account.id.clone(),
        aud: AUDIENCE.to_owned(),
        exp: now + ACCESS_TTL.as_secs() as i64,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        roles,
    };
    let access_token = provider.keys.sign("at+jwt", &access).map_err(internal)?;
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    let mut id = json!({
        "iss": provider.issuer,
        "sub": account.id,
        "aud": grant.client_id,
        "exp": now + ID_TTL.as_secs() as i64,
        "iat": now,
        "auth_time": grant.auth_time_ms / 1000,
    });
    if let Some(nonce) = nonce {
        id["nonce"] = json!(nonce);
    }
    if scopes.contains(&"email") {
        id["email"] = json!(account.email);
    }
    if scopes.contains(&"profile") {
        id["name"] = json!(account.name);
    }
    let id_token = provider.keys.sign("JWT", &id).map_err(internal)?;
    let refresh_token = if scopes.contains(&"offline_access") {
        let token = session::new_token();
        grants::insert_refresh(db, &session::hash(&token), &grant)
            .await
            .map_err(internal)?;
        Some(token)
    } else {
        None
    };
    state.ctx.metrics.record(|| {
        metrics::counter!("auth_tokens_issued_total", "grant" => grant_type).increment(1);
    });
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.as_secs(),
        scope: grant.scope,
        id_token: Some(id_token),
        refresh_token,
    })
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
