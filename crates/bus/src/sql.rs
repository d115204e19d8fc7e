//! SQL shared by the bus tables and the services' multi-row writes.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Transaction};

/// Parameters bound per statement at most by the multi-row writes. SQLite
/// (through sqlx) looks each parameter's name up in a list as long as the
/// statement's parameters, so a statement's binding time grows with their
/// square: 5,000 took half the time of a 100,000-item kv batch. A few
/// hundred cost little per row there, and few round trips on PostgreSQL.
pub const PARAMETERS: usize = 512;

/// Rows of `width` parameters each that one multi-row statement takes.
pub const fn rows_per_statement(width: usize) -> usize {
    PARAMETERS / width
}

/// The tuples of a multi-row `VALUES`: `rows` of `width` numbered
/// placeholders each, `($1, $2), ($3, $4)` for 2 × 2, bound row after row.
pub fn values(rows: usize, width: usize) -> String {
    let tuple = |row: usize| {
        let numbers: Vec<String> = (1..=width)
            .map(|n| format!("${}", row * width + n))
            .collect();
        format!("({})", numbers.join(", "))
    };
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
    #[test]
    fn rows_are_numbered_in_binding_order() {
        assert_eq!(super::values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values(1, 1), "($1)");
    }
}
