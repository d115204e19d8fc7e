//! The OpenID provider: discovery, the public keys, `/authorize` (the
//! authorization code flow with PKCE S256) and `/userinfo`; the token
//! endpoints are in `token.rs`.

use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use flotilla_kit::{Error, Json, Problem, Query};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ClientCredentials, Flow, OAuth2, OpenIdConnect, Scopes, SecurityScheme,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

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

/// OpenID Provider Metadata (OpenID Connect Discovery 1.0, section 3).
#[derive(Debug, Serialize, ToSchema)]
pub struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    response_types_supported: &'static [&'static str],
    response_modes_supported: &'static [&'static str],
    grant_types_supported: &'static [&'static str],
    subject_types_supported: &'static [&'static str],
    id_token_signing_alg_values_supported: &'static [&'static str],
    token_endpoint_auth_methods_supported: &'static [&'static str],
    code_challenge_methods_supported: &'static [&'static str],
    scopes_supported: &'static [&'static str],
    claims_supported: &'static [&'static str],
    authorization_response_iss_parameter_supported: bool,
}

/// The provider as OpenAPI security schemes at `issuer`: `openid`, the
/// access tokens of signed-in accounts, and `oauth2`, those confidential
/// clients get with `client_credentials`.
pub fn security_schemes(issuer: &str) -> [(&'static str, SecurityScheme); 2] {
    let openid = OpenIdConnect::with_description(
        format!("{issuer}/.well-known/openid-configuration"),
        "An account's access token, sent as `Authorization: Bearer`".to_owned(),
    );
    let client = OAuth2::with_description(
        [Flow::ClientCredentials(ClientCredentials::new(
            format!("{issuer}/token"),
            Scopes::new(),
        ))],
        "A confidential client's own access token, for the scopes it was given",
    );
    [
        ("openid", SecurityScheme::OpenIdConnect(openid)),
        ("oauth2", SecurityScheme::OAuth2(client)),
    ]
}

/// `/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/openid-configuration", responses(
    (status = 200, description = "OpenID Provider Metadata", body = Metadata),
))]
pub async fn discovery(State(state): State<AppState>) -> Response {
    let issuer = &state.oidc.issuer;
    let metadata = Metadata {
        issuer: issuer.clone(),
        authorization_endpoint: format!("{issuer}/authorize"),
        token_endpoint: format!("{issuer}/token"),
        userinfo_endpoint: format!("{issuer}/userinfo"),
        jwks_uri: format!("{issuer}/jwks.json"),
        end_session_endpoint: format!("{issuer}/end_session"),
        revocation_endpoint: format!("{issuer}/revoke"),
        introspection_endpoint: format!("{issuer}/introspect"),
        response_types_supported: &["code"],
        response_modes_supported: &["query"],
        grant_types_supported: &crate::clients::GRANTS,
        subject_types_supported: &["public"],
        id_token_signing_alg_values_supported: &["ES256"],
        token_endpoint_auth_methods_supported: &[
            "none",
            "client_secret_basic",
            "client_secret_post",
        ],
        code_challenge_methods_supported: &["S256"],
        scopes_supported: SCOPES,
        claims_supported: &[
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "email",
            "name",
        ],
        authorization_response_iss_parameter_supported: true,
    };
    Json(metadata).into_response()
}

/// A JWK Set (RFC 7517, section 5) of P-256 public keys.
#[derive(ToSchema)]
#[allow(dead_code)] // The shape of `jsonwebtoken::jwk::JwkSet` as it is sent.
pub struct JwkSetBody {
    keys: Vec<PublicJwk>,
}

/// A public key to verify ES256 signatures with.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PublicJwk {
    /// `EC`.
    kty: String,
    /// `P-256`.
    crv: String,
    x: String,
    y: String,
    kid: String,
    /// `ES256`.
    alg: String,
    /// `sig`.
    #[schema(rename = "use")]
    use_: String,
}

/// The public keys tokens are signed with.
#[utoipa::path(get, path = "/jwks.json", responses(
    (status = 200, description = "JWK Set", body = JwkSetBody,
        headers(("cache-control" = String, description = "`public, max-age=…`"))),
))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let max_age = crate::rotation::JWKS_MAX_AGE.as_secs();
    let cache = format!("public, max-age={max_age}");
    (
        [(header::CACHE_CONTROL, cache)],
        Json(state.oidc.keys.set()),
    )
        .into_response()
}

/// The parameters of an authorization request. Once the client and its
/// redirect URI are known, a missing or unsupported value is answered by a
/// redirection to the client with `error` (RFC 6749, 4.1.2.1), so every
/// field is an `Option`; the document marks required those a request needs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeParams {
    #[param(value_type = ResponseType, inline)]
    response_type: Option<String>,
    /// A registered client.
    #[param(value_type = String)]
    client_id: Option<String>,
    /// One of the client's registered redirect URIs, exactly.
    #[param(value_type = String)]
    redirect_uri: Option<String>,
    /// Space-separated: `openid`, and any of `profile`, `email` and
    /// `offline_access`.
    #[param(value_type = String)]
    scope: Option<String>,
    /// Given back with the redirection.
    state: Option<String>,
    /// Echoed in the ID token.
    nonce: Option<String>,
    /// PKCE: BASE64URL(SHA-256(verifier)).
    #[param(value_type = String, pattern = "^[A-Za-z0-9_-]{43,128}$")]
    code_challenge: Option<String>,
    #[param(value_type = CodeChallengeMethod, inline)]
    code_challenge_method: Option<String>,
    #[param(value_type = Prompt, inline, required = false)]
    prompt: Option<String>,
    /// Seconds: ask to sign in again if the session is older.
    max_age: Option<u64>,
}

/// `response_type`: `code`, the only one.
pub struct ResponseType;

/// `code_challenge_method`: `S256`, the only one.
pub struct CodeChallengeMethod;

/// `prompt`: `none` (fail rather than ask to sign in) or `login` (always
/// ask).
pub struct Prompt;

/// A string schema that allows `values` alone.
fn one_of(values: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .into()
}

impl PartialSchema for ResponseType {
    fn schema() -> RefOr<Schema> {
        one_of(&["code"], "The authorization code flow, the only one.")
    }
}

impl PartialSchema for CodeChallengeMethod {
    fn schema() -> RefOr<Schema> {
        one_of(&["S256"], "PKCE with SHA-256, the only method.")
    }
}

impl PartialSchema for Prompt {
    fn schema() -> RefOr<Schema> {
        one_of(
            &["none", "login"],
            "`none`: fail rather than ask to sign in; `login`: always ask.",
        )
    }
}

impl ToSchema for ResponseType {}
impl ToSchema for CodeChallengeMethod {}
impl ToSchema for Prompt {}

/// Starts the authorization code flow: to the login page when the browser
/// is not signed in, then back to the client's redirect URI with a code.
#[utoipa::path(get, path = "/authorize", params(AuthorizeParams), responses(
    (status = 303, description = "To the client with `code` and `state` (or `error`), or to the login page",
        headers(("location" = String))),
    (status = 400, description = "Unknown client or unregistered redirect URI: an error page, never a \
        redirect; or a query that does not parse", content(
        (String = "text/html"),
        (Problem = "application/problem+json"),
    )),
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

/// The claims `/userinfo` answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    sub: String,
    /// With the `email` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    email: Option<String>,
    /// With the `email` scope: always false, no address is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    email_verified: Option<bool>,
    /// With the `profile` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    name: Option<String>,
}

/// The signed-in account's claims, for a valid access token.
#[utoipa::path(get, path = "/userinfo", security(("openid" = [])), responses(
    (status = 200, body = UserInfo),
    (status = 401, description = "No valid access token",
        headers(("www-authenticate" = String, description = "`Bearer error=\"invalid_token\"`"))),
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
    let email = scopes.contains(&"email");
    let info = UserInfo {
        sub: account.id,
        email: email.then_some(account.email),
        email_verified: email.then_some(false),
        name: scopes.contains(&"profile").then_some(account.name),
    };
    Ok(Json(info).into_response())
}

/// The same as `GET /userinfo`, which OpenID Connect also allows as POST.
#[utoipa::path(post, path = "/userinfo", operation_id = "userinfo_post", security(("openid" = [])), responses(
    (status = 200, body = UserInfo),
    (status = 401, description = "No valid access token",
        headers(("www-authenticate" = String, description = "`Bearer error=\"invalid_token\"`"))),
))]
pub async fn userinfo_post(state: State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    userinfo(state, headers).await
}
