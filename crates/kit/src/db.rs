//! Database pools: one per service, SQLite (a file under the data directory)
//! or PostgreSQL, through sqlx's `Any` driver so that one set of queries runs
//! on both. Queries use `$n` placeholders and only portable types: text,
//! integers, floats.

use std::path::Path;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, any::AnyPoolOptions};

/// The URL of the SQLite database of `service` under `data_dir`.
pub fn sqlite_url(data_dir: &Path, service: &str) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join(format!("{service}.db")).display()
    )
}

/// Connects to `url` (`sqlite://…` or `postgres://…`).
pub async fn connect(url: &str) -> Result<AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        .max_connections(if sqlite { 8 } else { 16 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    // WAL lets readers run beside the writer; NORMAL syncs on
                    // checkpoints, which survives a crash of the process.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
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
