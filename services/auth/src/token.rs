//! The token endpoint: `/token` (codes, once; refresh tokens, rotated, a
//! reused one revoking its family; `client_credentials` for confidential
//! clients). Its errors, and those of `/revoke` and `/introspect`
//! (`revocation.rs`), are OAuth's JSON (`{"error", "error_description"}`), as RFC 6749
//! requires, not problem+json; a malformed form is `invalid_request` too. Only a
//! body that is not a form is a problem (415).

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_kit::{Error, Form, Json, Problem};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::clients::{self, Client, Refused};
use crate::grants::{self, Refresh};
use crate::http::AppState;
use crate::oidc::{AUDIENCE, Provider};
use crate::session;
use crate::store;
use flotilla_kit::now_ms;

pub(crate) const ACCESS_TTL: Duration = Duration::from_secs(10 * 60);
pub(crate) const ID_TTL: Duration = Duration::from_secs(10 * 60);
const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    #[schema(schema_with = grant_type)]
    grant_type: String,
    /// The client, unless it authenticates with HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// A confidential client's secret, unless sent with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
    /// For `client_credentials`: the scopes wanted, among the client's.
    #[schema(nullable = false)]
    scope: Option<String>,
    /// For `authorization_code`: the code `/authorize` gave.
    #[schema(nullable = false)]
    code: Option<String>,
    /// For `authorization_code`: the one of the authorization request.
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    /// For `authorization_code`, PKCE: the secret whose S256 was the
    /// `code_challenge`.
    #[schema(nullable = false)]
    code_verifier: Option<String>,
    /// For `refresh_token`: the refresh token to rotate.
    #[schema(nullable = false)]
    refresh_token: Option<String>,
}

/// The schema of `grant_type`: the grants this endpoint knows.
fn grant_type() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(clients::GRANTS))
        .description(Some(
            "What is exchanged; the client must be allowed the grant (public \
             clients: `authorization_code` and `refresh_token`).",
        ))
        .build()
}

/// An error of `/token`, `/revoke` or `/introspect` (RFC 6749, 5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `invalid_scope`,
    /// `unauthorized_client` or `unsupported_grant_type`.
    error: &'static str,
    error_description: Cow<'static, str>,
}

/// What `/token` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    expires_in: u64,
    scope: String,
    /// With the `authorization_code` and `refresh_token` grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    id_token: Option<String>,
    /// With the `offline_access` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refresh_token: Option<String>,
}

/// Exchanges a code, a refresh token, or a confidential client's
/// credentials for tokens.
#[utoipa::path(post, path = "/token",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse, headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, body = OAuthError, description = "invalid_request (a form that does not parse, or a \
            parameter the grant needs is missing), invalid_grant (a code or refresh token that is unknown, \
            used, expired or another client's, or a code_verifier that does not match), invalid_scope, \
            unauthorized_client, unsupported_grant_type"),
        (status = 401, body = OAuthError, description = "invalid_client",
            headers(("www-authenticate" = String, description = "`Basic realm=\"auth\"`"))),
        (status = 415, description = "Not a form", body = Problem),
))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<TokenRequest>,
) -> Response {
    let answer = async {
        let grant = request.grant_type.as_str();
        if !clients::GRANTS.contains(&grant) {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code, refresh_token or client_credentials",
            ));
        }
        let client = client(
            &state,
            &headers,
            request.client_id.as_deref(),
            request.client_secret.as_deref(),
        )?;
        if !client.allows(grant) {
            return Err(oauth(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "this client may not use this grant_type",
            ));
        }
        match grant {
            "authorization_code" => exchange_code(&state, client, &request).await,
            "refresh_token" => refresh(&state, client, &request).await,
            _ => client_credentials(&state, client, &request),
        }
    }
    .await;
    let mut response = match answer {
        Ok(tokens) => Json(tokens).into_response(),
        Err(error) => error.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The client of a request, or the `invalid_client` answer.
pub(crate) fn client<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    id: Option<&str>,
    secret: Option<&str>,
) -> Result<&'a Client, TokenError> {
    clients::authenticate(&state.oidc.clients, headers, id, secret).map_err(|refused| {
        TokenError::Client(match refused {
            Refused::Unknown => "unknown client",
            Refused::BadSecret => "the client's secret is missing or wrong",
        })
    })
}

/// An error of the token endpoints, answered as OAuth's JSON.
pub enum TokenError {
    OAuth {
        status: StatusCode,
        error: &'static str,
        description: Cow<'static, str>,
    },
    /// `invalid_client`, 401, with a `WWW-Authenticate` challenge.
    Client(&'static str),
    /// Logged, answered as an opaque 500 problem.
    Internal(anyhow::Error),
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = |error, description: Cow<'static, str>| {
            Json(OAuthError {
                error,
                error_description: description,
            })
        };
        match self {
            TokenError::OAuth {
                status,
                error,
                description,
            } => (status, body(error, description)).into_response(),
            TokenError::Client(description) => {
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    body("invalid_client", description.into()),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"auth\""),
                );
                response
            }
            TokenError::Internal(error) => Error::Internal(error).into_response(),
        }
    }
}

fn oauth(status: StatusCode, error: &'static str, description: &'static str) -> TokenError {
    TokenError::OAuth {
        status,
        error,
        description: description.into(),
    }
}

/// The form of a request to `/token`, `/revoke` or `/introspect`: one that
/// does not parse is OAuth's `invalid_request`, as the endpoints' other
/// errors are OAuth's; another content type is still 415.
pub struct OAuthForm<T>(pub T);

impl<T, S> FromRequest<S> for OAuthForm<T>
where
    Form<T>: FromRequest<S, Rejection = Problem>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Form::<T>::from_request(request, state).await {
            Ok(Form(form)) => Ok(Self(form)),
            Err(problem) if problem.status == StatusCode::BAD_REQUEST.as_u16() => {
                Err(TokenError::OAuth {
                    status: StatusCode::BAD_REQUEST,
                    error: "invalid_request",
                    description: problem.detail.into(),
                }
                .into_response())
            }
            Err(problem) => Err(problem.into_response()),
        }
    }
}

fn invalid_grant(description: &'static str) -> TokenError {
    oauth(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

pub(crate) fn internal(error: impl Into<anyhow::Error>) -> TokenError {
    TokenError::Internal(error.into())
}

async fn exchange_code(
    state: &AppState,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, TokenError> {
    let client_id = client.id.as_str();
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

async fn refresh(
    state: &AppState,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, TokenError> {
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
    if grant.client_id != client.id {
        return Err(invalid_grant("the refresh token belongs to another client"));
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
    let next = Refresh {
        expires_at_ms: now_ms() + REFRESH_TTL.as_millis() as i64,
        ..grant
    };
    issue(state, "refresh_token", next, None).await
}

/// A confidential client's own access token: `sub` is the client, the
/// scope among those it was given; no refresh or ID token.
fn client_credentials(
    state: &AppState,
    client: &Client,
    request: &TokenRequest,
) -> Result<TokenResponse, TokenError> {
    let wanted: Vec<&str> = match request.scope.as_deref() {
        Some(scope) => scope.split_whitespace().collect(),
        None => client.scopes.iter().map(String::as_str).collect(),
    };
    if wanted.iter().any(|s| !client.scopes.iter().any(|c| c == s)) {
        return Err(oauth(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "a scope this client was not given",
        ));
    }
    let scope = wanted.join(" ");
    let access_token = access_token(
        &state.oidc,
        &client.id,
        &client.id,
        &scope,
        Vec::new(),
        None,
    )
    .map_err(internal)?;
    state.ctx.metrics.record(|| {
        metrics::counter!("auth_tokens_issued_total", "grant" => "client_credentials").increment(1);
    });
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.as_secs(),
        scope,
        id_token: None,
        refresh_token: None,
    })
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
    /// With the `email` scope: the gateway forwards it as `x-user-email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// An access token for an account signed in at the login page itself, as
/// the console's (seed 000's `auth_token` cookie).
pub async fn first_party(state: &AppState, account_id: &str) -> anyhow::Result<String> {
    let db = &state.ctx.db;
    let account = store::account(db, account_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the signed-in account {account_id} is gone"))?;
    let roles = store::roles(db, &account.id).await?;
    access_token(
        &state.oidc,
        &account.id,
        clients::CONSOLE,
        "openid profile email",
        roles,
        Some(account.email),
    )
}

/// An access token (RFC 9068, `typ: at+jwt`) for `sub`, issued now to
/// `client_id` for `scope`, signed.
fn access_token(
    provider: &Provider,
    sub: &str,
    client_id: &str,
    scope: &str,
    roles: Vec<String>,
    email: Option<String>,
) -> anyhow::Result<String> {
    let now = now_ms() / 1000;
    let claims = AccessClaims {
        iss: provider.issuer.clone(),
        sub: sub.to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: now + ACCESS_TTL.as_secs() as i64,
        iat: now,
        jti: uuid::Uuid::now_v7().to_string(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        roles,
        email,
    };
    provider.keys.sign("at+jwt", &claims)
}

/// Signs the tokens of `grant`: an access token, an ID token (`openid` is
/// always in the scope), and a new refresh token of the family with
/// `offline_access`.
async fn issue(
    state: &AppState,
    grant_type: &'static str,
    grant: Refresh,
    nonce: Option<&str>,
) -> Result<TokenResponse, TokenError> {
    let db = &state.ctx.db;
    let provider = &state.oidc;
    let account = store::account(db, &grant.account_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| invalid_grant("the account no longer exists"))?;
    let roles = store::roles(db, &account.id).await.map_err(internal)?;
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    let now = now_ms() / 1000;
    let email = scopes.contains(&"email").then(|| account.email.clone());
    let access_token = access_token(
        provider,
        &account.id,
        &grant.client_id,
        &grant.scope,
        roles,
        email,
    )
    .map_err(internal)?;
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
