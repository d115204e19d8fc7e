//! Storage of pairs and batches: the service's SQL database, or Redis (a
//! hash per pair and per batch, as in the seed). Batch items being collected
//! are always staged in SQL, in the consumer's transaction with its inbox;
//! a batch is written to Redis whole, in one MULTI/EXEC, by the transaction
//! that handles its last item, and writing it again after a redelivery
//! writes the same thing (under the time it was first stored at).

use redis::AsyncCommands;
use sqlx::{AnyConnection, AnyPool};

use crate::domain::{Item, Pair};

/// Where pairs and stored batches live.
#[derive(Clone)]
pub enum Store {
    Sql(AnyPool),
    Redis {
        redis: redis::aio::ConnectionManager,
        /// Prefix of every key, so that several stacks can share a server.
        prefix: String,
    },
}

/// A stored batch, without its items.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Batch {
    pub id: String,
    pub size: i64,
    pub stored_at: String,
}

/// What staging one batch item did.
#[derive(Debug, PartialEq, Eq)]
pub enum Staged {
    /// Counted; `last` when it completes the batch.
    Counted { last: bool },
    /// Seen before, or its batch is already stored.
    Duplicate,
    /// The batch under this id has another size.
    WrongSize { total: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<StoreError> for flotilla_bus::consumer::HandlerError {
    fn from(error: StoreError) -> Self {
        Self::Transient(error.to_string())
    }
}

/// Rows per statement when staging items or storing pairs, of 4
/// parameters each.
const STAGE_CHUNK: usize = flotilla_bus::sql::rows_per_statement(4);

/// Counts `items` (index and item) towards batch `batch_id` of `total`
/// items, each index once, with the batch's progress row locked
/// (PostgreSQL) or the database written (SQLite) by this transaction.
pub async fn stage_items(
    tx: &mut AnyConnection,
    batch_id: &str,
    total: u32,
    items: &[(u32, Item)],
) -> Result<Staged, sqlx::Error> {
    sqlx::query(
        "INSERT INTO batch_progress (batch_id, total, received) VALUES ($1, $2, 0) \
         ON CONFLICT DO NOTHING",
    )
    .bind(batch_id)
    .bind(i64::from(total))
    .execute(&mut *tx)
    .await?;
    // A write that changes nothing, to hold the row until commit.
    let (first_total, received): (i64, i64) = sqlx::query_as(
        "UPDATE batch_progress SET received = received WHERE batch_id = $1 \
         RETURNING total, received",
    )
    .bind(batch_id)
    .fetch_one(&mut *tx)
    .await?;
    if first_total != i64::from(total) {
        return Ok(Staged::WrongSize { total: first_total });
    }
    if received >= first_total {
        return Ok(Staged::Duplicate);
    }
    let mut fresh = 0;
    for chunk in items.chunks(STAGE_CHUNK) {
        let sql = format!(
            "INSERT INTO batch_staging (batch_id, idx, key, value) VALUES {} \
             ON CONFLICT DO NOTHING",
            flotilla_bus::sql::values(tx, chunk.len(), 4)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (index, item) in chunk {
            query = query
                .bind(batch_id)
                .bind(i64::from(*index))
                .bind(&item.key)
                .bind(&item.value);
        }
        fresh += query.execute(&mut *tx).await?.rows_affected() as i64;
    }
    if fresh == 0 {
        return Ok(Staged::Duplicate);
    }
    sqlx::query("UPDATE batch_progress SET received = received + $1 WHERE batch_id = $2")
        .bind(fresh)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
    Ok(Staged::Counted {
        last: received + fresh == first_total,
    })
}

/// Records a batch asked for over HTTP; `None` if it was new, else the size
/// it was first asked with.
pub async fn request_batch(
    tx: &mut AnyConnection,
    id: &str,
    size: usize,
) -> Result<Option<i64>, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO batch_requests (id, size, requested_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(size as i64)
    .bind(flotilla_kit::timestamp())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        return Ok(None);
    }
    let size = sqlx::query_scalar("SELECT size FROM batch_requests WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Some(size))
}

/// A batch asked for and not stored yet: its size and the items received.
pub async fn pending(db: &AnyPool, id: &str) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.size, COALESCE(p.received, 0) FROM batch_requests r \
         LEFT JOIN batch_progress p ON p.batch_id = r.id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A batch from its Redis metadata, `"<size> <stored_at>"`.
fn from_meta(id: &str, meta: &str) -> Option<Batch> {
    let (size, stored_at) = meta.split_once(' ')?;
    Some(Batch {
        id: id.to_owned(),
        size: size.parse().ok()?,
        stored_at: stored_at.to_owned(),
    })
}

impl Store {
    fn key(prefix: &str, kind: &str, name: &str) -> String {
        format!("{prefix}{kind}:{name}")
    }

    /// Stores `pairs`, in order: of several with one key, the last wins.
    pub async fn save_pairs(
        &self,
        tx: &mut AnyConnection,
        pairs: &[Pair],
    ) -> Result<(), StoreError> {
        match self {
            Store::Sql(_) => {
                // One statement may not update a row twice: the last of each key.
                let mut seen = std::collections::HashSet::new();
                let mut latest: Vec<&Pair> = (pairs.iter().rev())
                    .filter(|pair| seen.insert(pair.key.as_str()))
                    .collect();
                latest.reverse();
                for chunk in latest.chunks(STAGE_CHUNK) {
                    let sql = format!(
                        "INSERT INTO pairs (key, value, correlation_id, stored_at) VALUES {} \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                         correlation_id = excluded.correlation_id, stored_at = excluded.stored_at",
                        flotilla_bus::sql::values(tx, chunk.len(), 4)
                    );
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for pair in chunk {
                        query = query
                            .bind(&pair.key)
                            .bind(&pair.value)
                            .bind(&pair.correlation_id)
                            .bind(&pair.stored_at);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            Store::Redis { redis, prefix, .. } => {
                let mut pipe = redis::pipe();
                for pair in pairs {
                    pipe.hset_multiple(
                        Self::key(prefix, "pair", &pair.key),
                        &[
                            ("value", &pair.value),
                            ("correlation_id", &pair.correlation_id),
                            ("stored_at", &pair.stored_at),
                        ],
                    )
                    .ignore();
                }
                let () = pipe.query_async(&mut redis.clone()).await?;
            }
        }
        Ok(())
    }

    pub async fn pair(&self, key: &str) -> Result<Option<Pair>, StoreError> {
        match self {
            Store::Sql(db) => {
                let row: Option<(String, String, String, String)> = sqlx::query_as(
                    "SELECT key, value, stored_at, correlation_id FROM pairs WHERE key = $1",
                )
                .bind(key)
                .fetch_optional(db)
                .await?;
                Ok(row.map(|(key, value, stored_at, correlation_id)| Pair {
                    key,
                    value,
                    stored_at,
                    correlation_id,
                }))
            }
            Store::Redis { redis, prefix, .. } => {
                let fields: std::collections::HashMap<String, String> = redis
                    .clone()
                    .hgetall(Self::key(prefix, "pair", key))
                    .await?;
                let field = |name: &str| fields.get(name).cloned();
                Ok(field("value").map(|value| Pair {
                    key: key.to_owned(),
                    value,
                    stored_at: field("stored_at").unwrap_or_default(),
                    correlation_id: field("correlation_id").unwrap_or_default(),
                }))
            }
        }
    }

    /// Stores the staged items of batch `id` as one batch and clears them.
    /// Stores the staged items of batch `id` as the batch, stored at
    /// `stored_at`; the time it is stored at, which on Redis is the first
    /// one if the batch was written there before (by a transaction whose SQL
    /// side did not commit).
    pub async fn save_batch(
        &self,
        tx: &mut AnyConnection,
        id: &str,
        size: u32,
        stored_at: &str,
    ) -> Result<String, StoreError> {
        let mut stored_at = stored_at.to_owned();
        match self {
            Store::Sql(_) => {
                sqlx::query("INSERT INTO batches (id, size, stored_at) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(i64::from(size))
                    .bind(&stored_at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO batch_items (batch_id, idx, key, value) \
                     SELECT batch_id, idx, key, value FROM batch_staging WHERE batch_id = $1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            Store::Redis { redis, prefix, .. } => {
                // Written before: the same batch again, under its first time,
                // so that it is listed once.
                if let Some(earlier) = self.batch(id).await? {
                    stored_at = earlier.stored_at;
                }
                let items: Vec<(String, String)> =
                    sqlx::query_as("SELECT key, value FROM batch_staging WHERE batch_id = $1")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                let hash = Self::key(prefix, "batch", id);
                let () = redis::pipe()
                    .atomic()
                    .del(&hash)
                    .ignore()
                    .hset_multiple(&hash, &items)
                    .ignore()
                    .hset(
                        Self::key(prefix, "batches", "meta"),
                        id,
                        format!("{size} {stored_at}"),
                    )
                    .ignore()
                    .zadd(
                        Self::key(prefix, "batches", "newest"),
                        format!("{stored_at}|{id}"),
                        0,
                    )
                    .ignore()
                    .query_async(&mut redis.clone())
                    .await?;
            }
        }
        sqlx::query("DELETE FROM batch_staging WHERE batch_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok(stored_at)
    }

    /// A stored batch, without its items.
    pub async fn batch(&self, id: &str) -> Result<Option<Batch>, StoreError> {
        match self {
            Store::Sql(db) => {
                let batch = sqlx::query_as("SELECT id, size, stored_at FROM batches WHERE id = $1")
                    .bind(id)
                    .fetch_optional(db)
                    .await?;
                Ok(batch)
            }
            Store::Redis { redis, prefix, .. } => {
                let meta: Option<String> = redis
                    .clone()
                    .hget(Self::key(prefix, "batches", "meta"), id)
                    .await?;
                Ok(meta.and_then(|meta| from_meta(id, &meta)))
            }
        }
    }

    /// The items of a stored batch: in batch order from SQL, by key from Redis.
    pub async fn items(&self, id: &str) -> Result<Vec<Item>, StoreError> {
        match self {
            Store::Sql(db) => {
                let items: Vec<(String, String)> = sqlx::query_as(
                    "SELECT key, value FROM batch_items WHERE batch_id = $1 ORDER BY idx",
                )
                .bind(id)
                .fetch_all(db)
                .await?;
                Ok(items
                    .into_iter()
                    .map(|(key, value)| Item { key, value })
                    .collect())
            }
            Store::Redis { redis, prefix, .. } => {
                let mut items: Vec<(String, String)> = redis
                    .clone()
                    .hgetall(Self::key(prefix, "batch", id))
                    .await?;
                items.sort_unstable();
                Ok(items
                    .into_iter()
                    .map(|(key, value)| Item { key, value })
                    .collect())
            }
        }
    }

    /// Stored batches, newest first, `limit` of them after batch `after`.
    pub async fn batches(&self, after: &str, limit: i64) -> Result<Vec<Batch>, StoreError> {
        match self {
            Store::Sql(db) => {
                let batches = sqlx::query_as(
                    "SELECT id, size, stored_at FROM batches \
                     WHERE $1 = '' OR (stored_at, id) < (SELECT stored_at, id FROM batches WHERE id = $1) \
                     ORDER BY stored_at DESC, id DESC LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(db)
                .await?;
                Ok(batches)
            }
            Store::Redis { redis, prefix, .. } => {
                let max = if after.is_empty() {
                    "+".to_owned()
                } else {
                    match self.batch(after).await? {
                        Some(b) => format!("({}|{}", b.stored_at, b.id),
                        None => return Ok(Vec::new()),
                    }
                };
                let members: Vec<String> = redis
                    .clone()
                    .zrevrangebylex_limit(
                        Self::key(prefix, "batches", "newest"),
                        max,
                        "-",
                        0,
                        limit as isize,
                    )
                    .await?;
                let ids: Vec<&str> = members
                    .iter()
                    .map(|member| member.split_once('|').map_or(member.as_str(), |(_, id)| id))
                    .collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                // One HMGET for the page, the sizes and times of every batch on it.
                let metas: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(Self::key(prefix, "batches", "meta"))
                    .arg(&ids)
                    .query_async(&mut redis.clone())
                    .await?;
                let page = ids
                    .iter()
                    .zip(metas)
                    .filter_map(|(id, meta)| from_meta(id, &meta?))
                    .collect();
                Ok(page)
            }
        }
    }
}
