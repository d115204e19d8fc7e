//! SQL of the auth service: accounts and their roles, sessions, and the
//! counts of failed logins.

use sqlx::{AnyConnection, AnyPool};

/// A stored account, without its password hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub name: String,
    pub created_at: String,
}

/// An account with what it signs in with.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    pub id: String,
    pub password_hash: String,
}

const ACCOUNT: &str = "id, email, name, created_at";

pub async fn insert_account(
    tx: &mut AnyConnection,
    email: &str,
    email_key: &str,
    name: &str,
    password_hash: &str,
) -> Result<Account, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts (id, email, email_key, name, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ACCOUNT}"
    )))
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(email)
    .bind(email_key)
    .bind(name)
    .bind(password_hash)
    .bind(flotilla_kit::timestamp())
    .fetch_one(tx)
    .await
}

pub async fn credentials(
    pool: &AnyPool,
    email_key: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    sqlx::query_as("SELECT id, password_hash FROM accounts WHERE email_key = $1")
        .bind(email_key)
        .fetch_optional(pool)
        .await
}

pub async fn account(pool: &AnyPool, id: &str) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ACCOUNT} FROM accounts WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn account_id_by_email(
    pool: &AnyPool,
    email_key: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM accounts WHERE email_key = $1")
        .bind(email_key)
        .fetch_optional(pool)
        .await
}

/// The roles of an account, sorted.
pub async fn roles(pool: &AnyPool, account_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM account_roles WHERE account_id = $1 ORDER BY role")
        .bind(account_id)
        .fetch_all(pool)
        .await
}

/// Grants `role`; false if the account had it already.
pub async fn grant_role(pool: &AnyPool, account_id: &str, role: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO account_roles (account_id, role, granted_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(role)
    .bind(flotilla_kit::timestamp())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn create_session(
    pool: &AnyPool,
    token_hash: &str,
    account_id: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, account_id, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(account_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(pool)
    .await?;
    // Expired sessions of anyone go with each new one.
    sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(pool)
        .await?;
    Ok(())
}

/// The account of the session `token_hash` and when it signed in, if the
/// session has not expired.
pub async fn session(
    pool: &AnyPool,
    token_hash: &str,
    now_ms: i64,
) -> Result<Option<(Account, i64)>, sqlx::Error> {
    let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
        "SELECT a.id, a.email, a.name, a.created_at, s.created_at_ms FROM sessions s \
         JOIN accounts a ON a.id = s.account_id \
         WHERE s.token_hash = $1 AND s.expires_at_ms > $2",
    )
    .bind(token_hash)
    .bind(now_ms)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(id, email, name, created_at, signed_in_ms)| {
        (
            Account {
                id,
                email,
                name,
                created_at,
            },
            signed_in_ms,
        )
    }))
}

pub async fn delete_session(pool: &AnyPool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// The failures counted under `key` and when their window started.
pub async fn failures(pool: &AnyPool, key: &str) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT failures, window_start_ms FROM login_failures WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Records the failures counted under `key` in the window that started at
/// `window_start_ms`, and forgets windows that started before `expired_ms`.
pub async fn set_failures(
    pool: &AnyPool,
    key: &str,
    failures: i64,
    window_start_ms: i64,
    expired_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE window_start_ms < $1")
        .bind(expired_ms)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO login_failures (key, failures, window_start_ms) VALUES ($1, $2, $3) \
         ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, \
         window_start_ms = excluded.window_start_ms",
    )
    .bind(key)
    .bind(failures)
    .bind(window_start_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn clear_failures(pool: &AnyPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
