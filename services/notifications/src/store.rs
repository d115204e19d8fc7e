//! SQL of the notifications service.

use sqlx::{AnyConnection, AnyPool};

use crate::domain::{Channel, Status, Text};

/// A stored message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    pub id: String,
    pub channel: String,
    pub text: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

const COLUMNS: &str = "id, channel, text, status, attempts, last_error, created_at, sent_at";

pub async fn insert(
    conn: &mut AnyConnection,
    channel: &Channel,
    text: &Text,
    source: &str,
    status: Status,
) -> Result<Stored, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO messages (id, channel, text, source, status, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6) RETURNING {COLUMNS}"
    )))
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(channel.as_str())
    .bind(text.as_str())
    .bind(source)
    .bind(status.as_str())
    .bind(flotilla_kit::timestamp())
    .fetch_one(conn)
    .await
}

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM messages WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Up to `limit` messages with ids after `after`, oldest first.
pub async fn list(pool: &AnyPool, after: &str, limit: i64) -> Result<Vec<Stored>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A message claimed for one delivery attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub channel: String,
    pub text: String,
    pub attempts: i64,
}

/// Leases up to `limit` due messages until `lease_until`, so that no other
/// sender takes them meanwhile. The outer condition is checked again under
/// the row lock on PostgreSQL, so two senders never claim the same message.
pub async fn claim_due(
    pool: &AnyPool,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE messages SET lease_until = $1 \
         WHERE status = 'pending' AND lease_until <= $2 AND id IN ( \
             SELECT id FROM messages \
             WHERE status = 'pending' AND next_attempt_at <= $2 AND lease_until <= $2 \
             ORDER BY next_attempt_at LIMIT $3) \
         RETURNING id, channel, text, attempts",
    )
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Extends the leases of `ids` still held (not yet recorded) to
/// `lease_until`.
pub async fn renew(
    pool: &AnyPool,
    ids: &[String],
    now: i64,
    lease_until: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for id in ids {
        sqlx::query(
            "UPDATE messages SET lease_until = $1 \
             WHERE id = $2 AND status = 'pending' AND lease_until > $3",
        )
        .bind(lease_until)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// When the next pending message is due, if any.
pub async fn next_due(pool: &AnyPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END) AS due \
         FROM messages WHERE status = 'pending'",
    )
    .fetch_one(pool)
    .await
}

pub async fn mark_sent(pool: &AnyPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET status = $1, attempts = attempts + 1, last_error = NULL, \
         lease_until = 0, sent_at = $2 WHERE id = $3",
    )
    .bind(Status::Sent.as_str())
    .bind(flotilla_kit::timestamp())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: due again at `retry_at`, or failed for good.
pub async fn mark_attempt_failed(
    pool: &AnyPool,
    id: &str,
    error: &str,
    retry_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    let status = if retry_at.is_some() {
        Status::Pending
    } else {
        Status::Failed
    };
    sqlx::query(
        "UPDATE messages SET status = $1, attempts = attempts + 1, last_error = $2, \
         next_attempt_at = $3, lease_until = 0 WHERE id = $4",
    )
    .bind(status.as_str())
    .bind(error)
    .bind(retry_at.unwrap_or(0))
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
