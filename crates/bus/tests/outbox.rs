//! The outbox relay and the consumer over a real SQLite database and the
//! in-process bus: delivery, de-duplication, retries and dead letters.

mod common;

use common::{database, effects};

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flotilla_bus::consumer::{Consumer, Handler, HandlerError, RetryPolicy, dead_letters};
use flotilla_bus::outbox::{self, Relay, Waker};
use flotilla_bus::{Bus, MemoryBus, Message};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio_util::sync::CancellationToken;

/// Records each message as a row of `effects`; fails the first `failures` times.
struct Record {
    failures: u32,
    permanent: bool,
    calls: Arc<AtomicU32>,
}

impl Record {
    fn new(failures: u32, permanent: bool) -> (Self, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let record = Self {
            failures,
            permanent,
            calls: calls.clone(),
        };
        (record, calls)
    }
}

#[async_trait]
impl Handler for Record {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
            .bind(&message.id)
            .execute(&mut *tx)
            .await?;
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
            // The effect above is rolled back with the transaction.
            return Err(if self.permanent {
                HandlerError::Permanent("bad payload".into())
            } else {
                HandlerError::Transient("busy".into())
            });
        }
        Ok(())
    }
}

async fn stage(pool: &AnyPool, message: &Message) {
    let mut tx = pool.begin().await.unwrap();
    outbox::stage(&mut tx, message).await.unwrap();
    tx.commit().await.unwrap();
}

/// Subscribes a consumer of `subject` running `handler`; cancel the token to stop it.
async fn consume(
    db: &AnyPool,
    bus: &dyn Bus,
    subject: &str,
    handler: Record,
    retry: RetryPolicy,
) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let run = Consumer::new("c", db.clone(), handler)
        .retry(retry)
        .subscribe(bus, subject, shutdown.clone())
        .await
        .unwrap();
    tokio::spawn(run);
    shutdown
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
    }
}

async fn eventually(mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn staged_messages_are_delivered_once_and_marked_published() {
    let dir = tempfile::tempdir().unwrap();
    let (producer, consumer_db) = (database(&dir, "p.db").await, database(&dir, "c.db").await);
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let (handler, calls) = Record::new(2, false);
    let shutdown = consume(
        &consumer_db,
        bus.as_ref(),
        "thing.*",
        handler,
        fast_retry(5),
    )
    .await;

    let messages: Vec<Message> = (0..3)
        .map(|i| Message::new("thing.made", format!("{i}")))
        .collect();
    for message in &messages {
        stage(&producer, message).await;
    }
    tokio::spawn(Relay::new(producer.clone(), bus.clone(), Waker::default()).run(shutdown.clone()));

    let mut ids: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    eventually(async || effects(&consumer_db).await == ids).await;
    eventually(async || {
        sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE published_at IS NULL")
            .fetch_one(&producer)
            .await
            .unwrap()
            .get::<i64, _>("n")
            == 0
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "two failures retried, three successes"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_redelivered_message_has_no_second_effect() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "c.db").await;
    let bus = MemoryBus::default();
    let (handler, calls) = Record::new(0, false);
    let shutdown = consume(&db, &bus, "thing.made", handler, RetryPolicy::default()).await;

    // The same message published twice, as a relay does after a crash
    // between the consumer's commit and the outbox update.
    let message = Message::new("thing.made", "x");
    bus.publish(message.clone()).await.unwrap();
    bus.publish(message.clone()).await.unwrap();
    assert_eq!(effects(&db).await, vec![message.id]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the inbox stopped the second"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_message_twice_in_one_transaction_has_one_effect() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "c.db").await;
    let bus = MemoryBus::default();
    // Both copies wait before the consumer runs, so that it takes them together.
    drop(bus.subscribe("thing.made", "c").await.unwrap());
    let message = Message::new("thing.made", "x");
    let publishing: Vec<_> = (0..2)
        .map(|_| {
            let (bus, message) = (bus.clone(), message.clone());
            tokio::spawn(async move { bus.publish(message).await.unwrap() })
        })
        .collect();
    tokio::task::yield_now().await;
    let (handler, calls) = Record::new(0, false);
    let shutdown = consume(&db, &bus, "thing.made", handler, RetryPolicy::default()).await;
    futures::future::join_all(publishing).await;
    assert_eq!(effects(&db).await, vec![message.id]);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "handled once");
    shutdown.cancel();
}

#[tokio::test]
async fn failing_messages_are_dead_lettered_after_bounded_retries() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "c.db").await;
    let bus = MemoryBus::default();
    let (handler, calls) = Record::new(u32::MAX, false);
    let shutdown = consume(&db, &bus, "thing.made", handler, fast_retry(3)).await;

    let message = Message::new("thing.made", "{\"n\":1}");
    bus.publish(message.clone()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(effects(&db).await.is_empty());
    let dead = dead_letters(&db).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, message.id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "busy");
    assert_eq!(dead[0].payload, "{\"n\":1}");
    // The same transaction staged it on dead.<subject>, for whoever watches.
    let staged = sqlx::query("SELECT subject, headers FROM outbox")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(staged.len(), 1);
    assert_eq!(staged[0].get::<String, _>("subject"), "dead.thing.made");
    let headers: String = staged[0].get("headers");
    assert!(
        headers.contains(&message.id) && headers.contains("\"dead-attempts\":\"3\""),
        "{headers}"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "c.db").await;
    let bus = MemoryBus::default();
    let (handler, calls) = Record::new(u32::MAX, true);
    let shutdown = consume(&db, &bus, "thing.made", handler, RetryPolicy::default()).await;
    bus.publish(Message::new("thing.made", "?")).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(dead_letters(&db).await.unwrap()[0].error, "bad payload");
    shutdown.cancel();
}

/// Records each message, refuses the payload `bad` for good, and counts
/// committed transactions.
struct RefuseBad {
    commits: Arc<AtomicU32>,
}

#[async_trait]
impl Handler for RefuseBad {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
            .bind(&message.id)
            .execute(&mut *tx)
            .await?;
        if &message.payload[..] == b"bad" {
            return Err(HandlerError::Permanent("bad payload".into()));
        }
        Ok(())
    }

    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn waiting_messages_share_a_transaction_and_a_bad_one_spoils_none() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(&dir, "c.db").await;
    let bus = MemoryBus::default();
    // Published before the consumer runs, so that they wait together.
    let messages: Vec<Message> = (0..300)
        .map(|i| {
            Message::new(
                "thing.made",
                if i == 150 {
                    "bad".to_owned()
                } else {
                    format!("{i}")
                },
            )
        })
        .collect();
    let subscription = bus.subscribe("thing.made", "c").await.unwrap();
    drop(subscription);
    let publishing: Vec<_> = messages
        .iter()
        .map(|m| {
            let (bus, m) = (bus.clone(), m.clone());
            tokio::spawn(async move { bus.publish(m).await.unwrap() })
        })
        .collect();
    tokio::task::yield_now().await;
    let commits = Arc::new(AtomicU32::new(0));
    let handler = RefuseBad {
        commits: commits.clone(),
    };
    let shutdown = CancellationToken::new();
    let run = Consumer::new("c", db.clone(), handler)
        .subscribe(&bus, "thing.made", shutdown.clone())
        .await
        .unwrap();
    tokio::spawn(run);
    futures::future::join_all(publishing).await;

    let mut good: Vec<String> = messages
        .iter()
        .filter(|m| &m.payload[..] != b"bad")
        .map(|m| m.id.clone())
        .collect();
    good.sort();
    assert_eq!(effects(&db).await, good, "every good message once");
    let dead = dead_letters(&db).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, messages[150].id);
    // The batch holding the bad message is handled one message at a time;
    // the others in a transaction each.
    let commits = commits.load(Ordering::SeqCst);
    assert!(
        commits < 299 - 100,
        "{commits} transactions for 299 messages"
    );
    shutdown.cancel();
}
