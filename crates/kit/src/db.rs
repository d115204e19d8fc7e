//! Database pools: one per service, through sqlx's `Any` driver so that one
//! set of queries runs on SQLite (a file per service under the data
//! directory) and on PostgreSQL (a schema per service). Queries use `$n`
//! placeholders and only portable types: text, 64-bit integers, floats.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Connection, Executor, any::AnyPoolOptions};

/// Where the services keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// One SQLite file per service in this directory.
    Sqlite(PathBuf),
    /// One schema per service, named `<prefix><service>`, in this database.
    Postgres { url: String, schema_prefix: String },
}

impl Storage {
    /// `--db` when given (a `postgres://` URL), else SQLite files under `data`.
    pub fn new(db: Option<&str>, data: PathBuf, schema_prefix: &str) -> Result<Self, String> {
        match db {
            None => Ok(Storage::Sqlite(data)),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let valid = schema_prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !valid {
                    return Err(format!(
                        "schema prefix `{schema_prefix}`: lower-case letters, digits and _ only"
                    ));
                }
                Ok(Storage::Postgres {
                    url: url.to_owned(),
                    schema_prefix: schema_prefix.to_owned(),
                })
            }
            Some(other) => Err(format!(
                "--db {other}: expected a postgres:// URL (SQLite is the default)"
            )),
        }
    }

    /// Where `service`'s data lives, for logs.
    pub fn describe(&self, service: &str) -> String {
        match self {
            Storage::Sqlite(dir) => dir.join(format!("{service}.db")).display().to_string(),
            Storage::Postgres { schema_prefix, .. } => {
                format!("postgres schema {schema_prefix}{service}")
            }
        }
    }

    /// Opens the database of `service`, creating its file or schema.
    pub async fn open(&self, service: &str) -> Result<AnyPool, sqlx::Error> {
        sqlx::any::install_default_drivers();
        match self {
            Storage::Sqlite(dir) => {
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.join(format!("{service}.db")).display()
                );
                let pool = pool(&url, None).await?;
                tokio::spawn(checkpoint(url, pool.clone()));
                Ok(pool)
            }
            Storage::Postgres { url, schema_prefix } => {
                let schema = format!("{schema_prefix}{service}");
                let mut conn = sqlx::AnyConnection::connect(url).await?;
                let created = conn
                    .execute(sqlx::AssertSqlSafe(format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
                    )))
                    .await;
                match created {
                    Ok(_) => {}
                    // Another instance created it at the same moment.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                    Err(e) => return Err(e),
                }
                conn.close().await?;
                pool(url, Some(schema)).await
            }
        }
    }
}

/// A pooled connection idle this long is pinged before it is handed out.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// A pool on `url`; on PostgreSQL every connection works in `schema`.
async fn pool(url: &str, schema: Option<String>) -> Result<AnyPool, sqlx::Error> {
    let sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        // SQLite writes one transaction at a time: with one connection the
        // others wait their turn in the pool's queue, not in SQLite's busy
        // handler, which sleeps 1 to 100 ms between tries (at 1,000 kv
        // roundtrips/s, p99 69 ms with 8 connections, 23 ms with one).
        .max_connections(if sqlite { 1 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings a connection as it returns to the pool; pinging it
        // again as it leaves costs a round trip per acquire for nothing
        // when it was idle a moment. One idle longer (a database restart
        // takes longer) is pinged, and replaced if the server is gone.
        // Nothing to check on a SQLite file the process opened itself.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if !sqlite && meta.idle_for >= IDLE_BEFORE_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _meta| {
            let schema = schema.clone();
            Box::pin(async move {
                if let Some(schema) = schema {
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "SET search_path TO \"{schema}\""
                    )))
                    .await?;
                }
                if sqlite {
                    // WAL lets readers run beside the writer; NORMAL syncs on
                    // checkpoints, which survives a crash of the process.
                    // The WAL is written back by `checkpoint`; these
                    // connections do it only if it falls far behind.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                         PRAGMA wal_autocheckpoint = 20000;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// How often a SQLite file's WAL is written back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Writes the WAL of the SQLite file at `url` back into the database, on a
/// connection of its own, until `pool` closes. Left to the pool's
/// connection, SQLite does it in the commit that takes the WAL past 1,000
/// pages, which then waits for two fsyncs (15-25 ms on the disks measured)
/// with every writer of the service queued behind it. A passive checkpoint
/// here does not wait for the writer, nor the writer for it.
async fn checkpoint(url: String, pool: AnyPool) {
    let mut conn = match sqlx::AnyConnection::connect(&url).await {
        Ok(conn) => conn,
        Err(error) => {
            tracing::warn!(%error, url, "cannot open a connection to checkpoint the WAL");
            return;
        }
    };
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        every.tick().await;
        if let Err(error) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::warn!(%error, url, "WAL checkpoint failed");
        }
    }
}

/// Applies the bus tables' migrations and then the service's own. Each
/// migrator ignores the other's versions.
pub async fn migrate(
    pool: &AnyPool,
    service: &Migrator,
) -> Result<(), sqlx::migrate::MigrateError> {
    for migrator in [&flotilla_bus::outbox::MIGRATOR, service] {
        let mut migrator = Migrator::with_migrations(migrator.iter().cloned().collect());
        migrator.set_ignore_missing(true);
        migrator.run(pool).await?;
    }
    Ok(())
}
