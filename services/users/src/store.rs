//! SQL of the users service.

use sqlx::{AnyConnection, AnyPool};

use flotilla_kit::fields::{DisplayName, Email};

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    pub created_at: String,
}

pub async fn insert(
    tx: &mut AnyConnection,
    name: &DisplayName,
    email: &Email,
) -> Result<User, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO users (id, name, email, email_key, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id, name, email, created_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(name.as_str())
    .bind(email.as_str())
    .bind(email.key())
    .bind(flotilla_kit::timestamp())
    .fetch_one(tx)
    .await
}

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, email, created_at FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The user with `email`, whatever its case.
pub async fn by_email(pool: &AnyPool, email: &Email) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, email, created_at FROM users WHERE email_key = $1")
        .bind(email.key())
        .fetch_optional(pool)
        .await
}

/// Up to `limit` users with ids after `after`, in creation order.
pub async fn list(pool: &AnyPool, after: &str, limit: i64) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, email, created_at FROM users WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Whether a user was deleted.
pub async fn delete(tx: &mut AnyConnection, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Inserts a user unless one has `email` already (whatever its case); the
/// new user, or `None`.
pub async fn insert_if_new(
    tx: &mut AnyConnection,
    name: &DisplayName,
    email: &Email,
) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO users (id, name, email, email_key, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (email_key) DO NOTHING RETURNING id, name, email, created_at",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(name.as_str())
    .bind(email.as_str())
    .bind(email.key())
    .bind(flotilla_kit::timestamp())
    .fetch_optional(tx)
    .await
}
