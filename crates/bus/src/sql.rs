//! SQL shared by the bus tables and the services' multi-row writes.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Transaction};

/// Parameters bound per statement at most by the multi-row writes. A
/// 10,000-item kv batch took as long with 2,048, on SQLite and on
/// PostgreSQL; fewer row counts mean fewer statements to prepare.
pub const PARAMETERS: usize = 512;

/// Rows of `width` parameters each that one multi-row statement takes.
pub const fn rows_per_statement(width: usize) -> usize {
    PARAMETERS / width
}

/// `count` placeholders for `conn`, the first of them parameter `first`
/// (1-based), separated by commas. PostgreSQL numbers them (`$3, $4`).
/// SQLite gets anonymous ones (`?, ?`), bound in order: sqlx looks up the
/// name of each numbered one, which SQLite finds in a list as long as the
/// statement's parameters, so that binding takes time in their square (9 %
/// of a 100,000-item kv batch with 512 per statement, half of it with
/// 5,000).
pub fn placeholders(conn: &AnyConnection, first: usize, count: usize) -> String {
    let numbered = conn.backend_name() != "SQLite";
    let one = |n: usize| {
        if numbered {
            format!("${n}")
        } else {
            "?".to_owned()
        }
    };
    (first..first + count)
        .map(one)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tuples of a multi-row `VALUES` for `conn`: `rows` of `width`
/// [`placeholders`] each, `($1, $2), ($3, $4)` for 2 × 2 on PostgreSQL,
/// bound row after row.
pub fn values(conn: &AnyConnection, rows: usize, width: usize) -> String {
    let tuple = |row: usize| format!("({})", placeholders(conn, row * width + 1, width));
    (0..rows).map(tuple).collect::<Vec<_>>().join(", ")
}

/// A connection that a worker of the bus (a consumer, a stager) writes
/// through. When its pool has several, the worker keeps one from write to
/// write: the pool checks a connection with a round trip each time it comes
/// back, one more per write. With one (a SQLite file) it goes back after
/// each write, so that the service's requests get their turn.
pub(crate) struct Held {
    pool: AnyPool,
    keep: bool,
    conn: Option<PoolConnection<Any>>,
}

impl Held {
    pub(crate) fn new(pool: AnyPool) -> Self {
        let keep = pool.options().get_max_connections() > 1;
        Self {
            pool,
            keep,
            conn: None,
        }
    }

    pub(crate) async fn get(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        Ok(self.conn.as_mut().expect("acquired"))
    }

    pub(crate) async fn begin(&mut self) -> Result<Transaction<'_, Any>, sqlx::Error> {
        self.get().await?.begin().await
    }

    /// After a write: the connection goes back to the pool unless it is
    /// kept and the write went well (after an error it may be broken).
    pub(crate) fn release(&mut self, ok: bool) {
        if !(ok && self.keep) {
            self.conn = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    #[tokio::test]
    async fn sqlite_gets_anonymous_placeholders_bound_in_order() {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        assert_eq!(super::values(&conn, 2, 2), "(?, ?), (?, ?)");
        let sql = format!("SELECT * FROM (VALUES {})", super::values(&conn, 2, 2));
        let rows: Vec<(i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(1_i64)
            .bind("a")
            .bind(2_i64)
            .bind("b")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows, [(1, "a".to_owned()), (2, "b".to_owned())]);
    }
}
