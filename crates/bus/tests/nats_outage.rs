//! NATS servers dying under the bus: a restart while the outbox relay is
//! publishing, and a node of a three-node JetStream cluster stopped during
//! publishing. Each test runs its own `nats-server` processes on free ports;
//! without the binary they are skipped with a notice.

use std::collections::HashSet;
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::{Bus, Message};

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
    common::relay_through_an_outage(bus, async |i| {
        if i == 100 {
            server.kill(); // SIGKILL mid-stream
        }
        if i == 150 {
            server.restart();
        }
    })
    .await;
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
