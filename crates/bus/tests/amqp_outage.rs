//! RabbitMQ restarting under the outbox relay: every event whose
//! transaction committed is delivered, once. This restarts the broker at
//! FLOTILLA_TEST_AMQP_URL (with `rabbitmqctl stop_app` / `start_app`), so it
//! runs only when FLOTILLA_TEST_AMQP_RESTART=1 says that is acceptable.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_bus::amqp::AmqpBus;
use flotilla_bus::consumer::{Consumer, Handler, HandlerError};
use flotilla_bus::outbox::{self, Relay, Waker};
use flotilla_bus::{Bus, Message};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio_util::sync::CancellationToken;

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> AnyPool {
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

struct Record;

#[async_trait]
impl Handler for Record {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (message_id) VALUES ($1)")
            .bind(&message.id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .arg(command)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command} failed");
}

#[tokio::test]
async fn a_rabbitmq_restart_while_the_relay_publishes_loses_no_committed_event() {
    let (Ok(url), Ok("1")) = (
        std::env::var("FLOTILLA_TEST_AMQP_URL"),
        std::env::var("FLOTILLA_TEST_AMQP_RESTART").as_deref(),
    ) else {
        eprintln!(
            "skipped: set FLOTILLA_TEST_AMQP_URL and FLOTILLA_TEST_AMQP_RESTART=1 to restart RabbitMQ under load"
        );
        return;
    };
    let prefix = format!("test{}", std::process::id());
    let amqp = Arc::new(
        AmqpBus::connect(&url, &prefix)
            .await
            .expect("RabbitMQ reachable"),
    );
    let bus: Arc<dyn Bus> = amqp.clone();
    let dir = tempfile::tempdir().unwrap();
    let (producer, consumer_db) = (sqlite(&dir, "p.db").await, sqlite(&dir, "c.db").await);
    let shutdown = CancellationToken::new();
    let run = Consumer::new("c", consumer_db.clone(), Record)
        .subscribe(bus.as_ref(), "thing.made", shutdown.clone())
        .await
        .unwrap();
    tokio::spawn(run);
    let waker = Waker::default();
    tokio::spawn(Relay::new(producer.clone(), bus.clone(), waker.clone()).run(shutdown.clone()));

    let mut staged = HashSet::new();
    for i in 0..300 {
        let message = Message::new("thing.made", format!("{i}"));
        let mut tx = producer.begin().await.unwrap();
        outbox::stage(&mut tx, &message).await.unwrap();
        tx.commit().await.unwrap();
        waker.wake();
        staged.insert(message.id);
        if i == 100 {
            tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
                .await
                .unwrap();
        }
        if i == 150 {
            tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got: Vec<String> = sqlx::query("SELECT message_id FROM effects")
            .fetch_all(&consumer_db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("message_id"))
            .collect();
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    let _ = amqp.delete_declared().await;
}
