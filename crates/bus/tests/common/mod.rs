//! What the bus tests share: a database with the bus tables, a handler that
//! records each message as a row, a relay run through an outage, a proxy
//! that breaks connections to a shared server, and probing until a change.

#![allow(dead_code)] // each test binary uses its own part

pub mod proxy;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_bus::consumer::{Consumer, Handler, HandlerError};
use flotilla_bus::outbox::{self, Relay, Waker};
use flotilla_bus::{Bus, BusError, Message};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio_util::sync::CancellationToken;

/// The URL of the server an ignored test runs against, read from `var`: a
/// run that includes ignored tests without it fails, never passes unseen.
pub fn server_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: this test needs its server"))
}

/// A SQLite database with the bus tables and an `effects` table.
pub async fn database(dir: &tempfile::TempDir, name: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join(name).display());
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    outbox::MIGRATOR.run(&pool).await.unwrap();
    sqlx::query("CREATE TABLE effects (message_id TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

/// The message ids recorded in `effects`.
pub async fn effects(pool: &AnyPool) -> Vec<String> {
    sqlx::query("SELECT message_id FROM effects ORDER BY message_id")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("message_id"))
        .collect()
}

/// Records each message it handles as a row of `effects`.
pub struct Recorder;

#[async_trait]
impl Handler for Recorder {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
            .bind(&message.id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

/// Stages 300 events through the outbox relay into a consumer on `bus`,
/// calling `outage(i)` before the i-th so that the test can take the broker
/// down and up; then waits until every committed event has had its effect,
/// and checks none had two.
pub async fn relay_through_an_outage(bus: Arc<dyn Bus>, mut outage: impl AsyncFnMut(usize)) {
    let dir = tempfile::tempdir().unwrap();
    let (producer, consumer_db) = (database(&dir, "p.db").await, database(&dir, "c.db").await);
    let shutdown = CancellationToken::new();
    let run = Consumer::new("c", consumer_db.clone(), Recorder)
        .subscribe(bus.as_ref(), "thing.made", shutdown.clone())
        .await
        .unwrap();
    tokio::spawn(run);
    let waker = Waker::default();
    tokio::spawn(Relay::new(producer.clone(), bus.clone(), waker.clone()).run(shutdown.clone()));

    let mut staged = HashSet::new();
    for i in 0..300 {
        outage(i).await;
        let message = Message::new("thing.made", format!("{i}"));
        let mut tx = producer.begin().await.unwrap();
        outbox::stage(&mut tx, &message).await.unwrap();
        tx.commit().await.unwrap();
        waker.wake();
        staged.insert(message.id);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = effects(&consumer_db).await;
        let distinct: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(distinct.len(), got.len(), "an event had two effects");
        if distinct == staged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} delivered",
            distinct.len(),
            staged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
}

/// How long each probe of the outage tests may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Probes `bus` until it passes (`pass`) or fails, for at most `within`;
/// each probe must return within its timeout. The last result.
pub async fn probe_until(bus: &dyn Bus, pass: bool, within: Duration) -> Result<(), BusError> {
    let deadline = Instant::now() + within;
    loop {
        let started = Instant::now();
        let result = bus.probe(PROBE_TIMEOUT).await;
        assert!(
            started.elapsed() < PROBE_TIMEOUT + Duration::from_millis(500),
            "a probe took {:?}",
            started.elapsed()
        );
        if result.is_ok() == pass {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "the probe did not {} within {within:?}: {result:?}",
            if pass { "pass" } else { "fail" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
