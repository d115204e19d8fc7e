//! SQL of what the OpenID provider hands out: authorization codes and
//! refresh-token families. Codes and tokens are stored as their SHA-256.

use sqlx::AnyPool;

/// A stored authorization code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Code {
    pub client_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time_ms: i64,
    pub expires_at_ms: i64,
    pub used: i64,
}

/// What a new code is for.
pub struct NewCode<'a> {
    pub code_hash: &'a str,
    pub client_id: &'a str,
    pub account_id: &'a str,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub code_challenge: &'a str,
    pub auth_time_ms: i64,
    pub expires_at_ms: i64,
}

pub async fn insert_code(db: &AnyPool, code: &NewCode<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, client_id, account_id, redirect_uri, scope, \
         nonce, code_challenge, auth_time_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(code.code_hash)
    .bind(code.client_id)
    .bind(code.account_id)
    .bind(code.redirect_uri)
    .bind(code.scope)
    .bind(code.nonce)
    .bind(code.code_challenge)
    .bind(code.auth_time_ms)
    .bind(code.expires_at_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn code(db: &AnyPool, code_hash: &str) -> Result<Option<Code>, sqlx::Error> {
    sqlx::query_as(
        "SELECT client_id, account_id, redirect_uri, scope, nonce, code_challenge, auth_time_ms, \
         expires_at_ms, used FROM authorization_codes WHERE code_hash = $1",
    )
    .bind(code_hash)
    .fetch_optional(db)
    .await
}

/// Marks a code used; false if it was already (by this or a racing request).
pub async fn use_code(db: &AnyPool, code_hash: &str) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE authorization_codes SET used = 1 WHERE code_hash = $1 AND used = 0")
            .bind(code_hash)
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A stored refresh token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Refresh {
    pub family: String,
    pub client_id: String,
    pub account_id: String,
    pub scope: String,
    pub auth_time_ms: i64,
    pub expires_at_ms: i64,
    pub rotated: i64,
    pub revoked: i64,
}

pub async fn insert_refresh(
    db: &AnyPool,
    token_hash: &str,
    grant: &Refresh,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family, client_id, account_id, scope, auth_time_ms, \
         expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token_hash)
    .bind(&grant.family)
    .bind(&grant.client_id)
    .bind(&grant.account_id)
    .bind(&grant.scope)
    .bind(grant.auth_time_ms)
    .bind(grant.expires_at_ms)
    .execute(db)
    .await?;
    Ok(())
}

pub async fn refresh(db: &AnyPool, token_hash: &str) -> Result<Option<Refresh>, sqlx::Error> {
    sqlx::query_as(
        "SELECT family, client_id, account_id, scope, auth_time_ms, expires_at_ms, rotated, revoked \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// Marks a refresh token rotated; false if it was already.
pub async fn rotate(db: &AnyPool, token_hash: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET rotated = 1 WHERE token_hash = $1 AND rotated = 0 AND revoked = 0",
    )
    .bind(token_hash)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every refresh token of `family`.
pub async fn revoke_family(db: &AnyPool, family: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE family = $1")
        .bind(family)
        .execute(db)
        .await?;
    Ok(())
}
