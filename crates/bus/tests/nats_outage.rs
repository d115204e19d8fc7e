//! NATS servers dying under the bus: a restart while the outbox relay is
//! publishing, and a node of a three-node JetStream cluster stopped during
//! publishing. Each test runs its own `nats-server` processes on free ports;
//! without the binary they are skipped with a notice.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_bus::consumer::{Consumer, Handler, HandlerError};
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::outbox::{self, Relay, Waker};
use flotilla_bus::{Bus, Message};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio_util::sync::CancellationToken;

fn nats_server() -> Option<&'static str> {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("skipped: nats-server is not installed");
    }
    found.then_some("nats-server")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `nats-server` process, killed on drop.
struct Server {
    child: Child,
    args: Vec<String>,
}

impl Server {
    fn start(args: Vec<String>) -> Self {
        let child = Command::new("nats-server")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        Self { child, args }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Self::start(self.args.clone());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

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

async fn effects(pool: &AnyPool) -> Vec<String> {
    sqlx::query("SELECT message_id FROM effects")
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("message_id"))
        .collect()
}

async fn connect(url: &str, replicas: usize) -> NatsBus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let config = NatsConfig {
            replicas,
            ack_wait: Duration::from_secs(2),
            ..NatsConfig::default()
        };
        match NatsBus::connect(url, config).await {
            Ok(bus) => return bus,
            // A fresh cluster takes a moment to elect its JetStream leader.
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for JetStream: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("JetStream never became ready: {error}"),
        }
    }
}

#[tokio::test]
async fn a_nats_restart_while_the_relay_publishes_loses_no_committed_event() {
    if nats_server().is_none() {
        return;
    }
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-js".into(),
        "-sd".into(),
        store.path().display().to_string(),
    ]);
    let url = format!("nats://127.0.0.1:{port}");
    let bus: Arc<dyn Bus> = Arc::new(connect(&url, 1).await);
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
            server.kill(); // SIGKILL mid-stream
        }
        if i == 150 {
            server.restart();
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
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

#[tokio::test]
async fn a_node_of_a_three_node_cluster_stopping_loses_no_acknowledged_message() {
    if nats_server().is_none() {
        return;
    }
    let (ports, routes): (Vec<u16>, Vec<u16>) = (0..3).map(|_| (free_port(), free_port())).unzip();
    let route_urls: Vec<String> = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let stores: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Server> = (0..3)
        .map(|i| {
            Server::start(vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                ports[i].to_string(),
                "-js".into(),
                "-sd".into(),
                stores[i].path().display().to_string(),
                "--server_name".into(),
                format!("n{i}"),
                "--cluster_name".into(),
                "flotilla".into(),
                "--cluster".into(),
                route_urls[i].clone(),
                "--routes".into(),
                route_urls.join(","),
            ])
        })
        .collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let bus = connect(&urls.join(","), 3).await;
    let consumer = bus.subscribe("thing.made", "checker").await.unwrap();

    // Publish until 600 are acknowledged, stopping a node after 200; a publish
    // refused during the fail-over (reconnecting, electing) is not counted.
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while acknowledged.len() < 600 {
        assert!(
            Instant::now() < deadline,
            "the cluster stopped taking messages ({} acknowledged)",
            acknowledged.len()
        );
        if acknowledged.len() == 200 && i == 200 {
            nodes[0].kill();
        }
        i += 1;
        let message = Message::new("thing.made", format!("{i}"));
        let id = message.id.clone();
        match tokio::time::timeout(Duration::from_secs(5), bus.publish(message)).await {
            Ok(Ok(())) => {
                acknowledged.insert(id);
            }
            _ => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("600 acknowledged, {refused} refused during the fail-over");

    let mut consumer = consumer;
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acknowledged.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged messages read back",
            acknowledged.intersection(&seen).count(),
            acknowledged.len()
        );
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(5), consumer.next()).await
        {
            seen.insert(delivery.message.id.clone());
            delivery.ack().await.unwrap();
        }
    }
    drop(nodes);
}
