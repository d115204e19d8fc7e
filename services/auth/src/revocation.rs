//! What a client may do with a token it holds: revoke it (RFC 7009) or,
//! for a confidential client, ask whether it is active (RFC 7662).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_kit::{Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::grants;
use crate::http::AppState;
use crate::oidc::AUDIENCE;
use crate::session;
use crate::token::{AccessClaims, OAuthError, OAuthForm, TokenError, client, internal};
use flotilla_kit::now_ms;

/// A revocation or introspection request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenQuery {
    /// The token to revoke or to look at.
    token: String,
    /// `access_token` or `refresh_token`: accepted, and not needed (both
    /// kinds are looked up).
    #[allow(dead_code)]
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// The client, unless it authenticates with HTTP Basic.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// A confidential client's secret, unless sent with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// What `/introspect` says of a token (RFC 7662, 2.2): `active`, and the
/// claims of an active one.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    active: bool,
    /// `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sub: Option<String>,
    /// Access tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    aud: Option<String>,
    /// Seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    exp: Option<i64>,
    /// Access tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    iat: Option<i64>,
    /// Access tokens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    scope: Option<String>,
}

/// Revokes a refresh token and its family (RFC 7009). Access tokens live
/// their ten minutes out. Unknown tokens are not an error.
#[utoipa::path(post, path = "/revoke",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, body = OAuthError, description = "invalid_request: a form that does not parse or has no `token`"),
        (status = 401, body = OAuthError, description = "invalid_client",
            headers(("www-authenticate" = String, description = "`Basic realm=\"auth\"`"))),
        (status = 415, description = "Not a form", body = Problem),
))]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<TokenQuery>,
) -> Response {
    let client = match client(
        &state,
        &headers,
        request.client_id.as_deref(),
        request.client_secret.as_deref(),
    ) {
        Ok(client) => client,
        Err(refused) => return refused.into_response(),
    };
    let db = &state.ctx.db;
    let revoked = async {
        if let Some(grant) = grants::refresh(db, &session::hash(&request.token)).await?
            && grant.client_id == client.id
        {
            grants::revoke_family(db, &grant.family).await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    match revoked.await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(error) => internal(error).into_response(),
    }
}

/// Whether a token is active, and its claims (RFC 7662); for confidential
/// clients only.
#[utoipa::path(post, path = "/introspect",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = Introspection),
        (status = 400, body = OAuthError, description = "invalid_request: a form that does not parse or has no `token`"),
        (status = 401, body = OAuthError, description = "invalid_client: not a confidential client",
            headers(("www-authenticate" = String, description = "`Basic realm=\"auth\"`"))),
        (status = 415, description = "Not a form", body = Problem),
))]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(request): OAuthForm<TokenQuery>,
) -> Response {
    match client(
        &state,
        &headers,
        request.client_id.as_deref(),
        request.client_secret.as_deref(),
    ) {
        Ok(client) if client.is_confidential() => {}
        Ok(_) => {
            return TokenError::Client("introspection is for confidential clients").into_response();
        }
        Err(refused) => return refused.into_response(),
    }
    let provider = &state.oidc;
    if let Some(claims) =
        provider
            .keys
            .verify::<AccessClaims>(&request.token, &provider.issuer, AUDIENCE)
    {
        return Json(Introspection {
            active: true,
            token_type: Some("access_token"),
            iss: Some(claims.iss),
            sub: Some(claims.sub),
            aud: Some(claims.aud),
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            jti: Some(claims.jti),
            client_id: Some(claims.client_id),
            scope: Some(claims.scope),
        })
        .into_response();
    }
    match grants::refresh(&state.ctx.db, &session::hash(&request.token)).await {
        Ok(Some(grant))
            if grant.revoked == 0 && grant.rotated == 0 && grant.expires_at_ms > now_ms() =>
        {
            Json(Introspection {
                active: true,
                token_type: Some("refresh_token"),
                iss: Some(provider.issuer.clone()),
                sub: Some(grant.account_id),
                exp: Some(grant.expires_at_ms / 1000),
                client_id: Some(grant.client_id),
                scope: Some(grant.scope),
                ..Introspection::default()
            })
            .into_response()
        }
        Ok(_) => Json(Introspection::default()).into_response(),
        Err(error) => internal(error).into_response(),
    }
}
