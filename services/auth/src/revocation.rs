//! What a client may do with a token it holds: revoke it (RFC 7009) or,
//! for a confidential client, ask whether it is active (RFC 7662).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use flotilla_kit::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::grants;
use crate::http::AppState;
use crate::oidc::AUDIENCE;
use crate::session;
use crate::token::{AccessClaims, TokenError, client, internal};
use flotilla_kit::now_ms;

/// A revocation or introspection request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenQuery {
    token: String,
    /// `access_token` or `refresh_token`: accepted, and not needed (both
    /// kinds are looked up).
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Revokes a refresh token and its family (RFC 7009). Access tokens live
/// their ten minutes out. Unknown tokens are not an error.
#[utoipa::path(post, path = "/revoke",
    request_body(content = TokenQuery, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 401, description = "invalid_client"),
        (status = 415, description = "Not a form", body = flotilla_kit::Problem),
))]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(request): Form<TokenQuery>,
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
        (status = 200, description = "`{\"active\": false}`, or `active` with the token's claims"),
        (status = 401, description = "invalid_client: not a confidential client"),
        (status = 415, description = "Not a form", body = flotilla_kit::Problem),
))]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(request): Form<TokenQuery>,
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
        return Json(json!({
            "active": true,
            "token_type": "access_token",
            "iss": claims.iss, "sub": claims.sub, "aud": claims.aud,
            "exp": claims.exp, "iat": claims.iat, "jti": claims.jti,
            "client_id": claims.client_id, "scope": claims.scope,
        }))
        .into_response();
    }
    match grants::refresh(&state.ctx.db, &session::hash(&request.token)).await {
        Ok(Some(grant))
            if grant.revoked == 0 && grant.rotated == 0 && grant.expires_at_ms > now_ms() =>
        {
            Json(json!({
                "active": true,
                "token_type": "refresh_token",
                "iss": provider.issuer, "sub": grant.account_id,
                "exp": grant.expires_at_ms / 1000,
                "client_id": grant.client_id, "scope": grant.scope,
            }))
            .into_response()
        }
        Ok(_) => Json(json!({ "active": false })).into_response(),
        Err(error) => internal(error).into_response(),
    }
}
