//! NATS servers dying under the bus: a restart while the outbox relay is
//! publishing, a node of a three-node JetStream cluster stopped during
//! publishing, and the bus's probe while its server is gone or frozen. Each
//! test runs its own `nats-server` processes on free ports, so they are
//! ignored unless asked for (`--include-ignored`, with nats-server on PATH).

use std::collections::HashSet;
mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{PROBE_TIMEOUT, probe_until};
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::{Bus, BusError, Message};

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

    /// SIGKILLs the server and returns how it exited; panics if it is still
    /// running five seconds later.
    fn stop(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().expect("the server can be waited for") {
                return status;
            }
            assert!(Instant::now() < deadline, "nats-server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
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

/// One JetStream server on a free port, storing in a temporary directory;
/// with its URL.
fn single_server() -> (Server, String, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-js".into(),
        "-sd".into(),
        store.path().display().to_string(),
    ]);
    (server, format!("nats://127.0.0.1:{port}"), store)
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
#[ignore = "needs nats-server on PATH"]
async fn a_nats_restart_while_the_relay_publishes_loses_no_committed_event() {
    let (mut server, url, _store) = single_server();
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
#[ignore = "needs nats-server on PATH"]
async fn a_node_of_a_three_node_cluster_stopping_loses_no_acknowledged_message() {
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

    // Publish until 600 are acknowledged, stopping a node once at least 200
    // are; a publish refused (reconnecting, electing) is not counted.
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    let mut before_the_stop = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while acknowledged.len() < 600 {
        assert!(
            Instant::now() < deadline,
            "the cluster stopped taking messages ({} acknowledged)",
            acknowledged.len()
        );
        if before_the_stop.is_none() && acknowledged.len() >= 200 {
            let exit = nodes[0].stop();
            assert_eq!(exit.signal(), Some(9), "the node ended by SIGKILL: {exit}");
            let listening = std::net::TcpStream::connect(("127.0.0.1", ports[0]));
            assert!(listening.is_err(), "the stopped node still listens");
            before_the_stop = Some(acknowledged.len());
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
    let before = before_the_stop.expect("a node was stopped while publishing");
    let after = acknowledged.len() - before;
    eprintln!("{before} acknowledged before the stop, {after} after, {refused} refused");
    assert!(
        before >= 200 && after >= 400,
        "publishing went on around the stop ({before} before, {after} after)"
    );

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

#[tokio::test]
#[ignore = "needs nats-server on PATH"]
async fn the_probe_fails_while_the_server_is_down_and_passes_once_it_is_back() {
    let (mut server, url, _store) = single_server();
    let bus = connect(&url, 1).await;
    bus.probe(PROBE_TIMEOUT).await.expect("the server is up");

    server.stop();
    let error = probe_until(&bus, false, Duration::from_secs(5))
        .await
        .unwrap_err();
    eprintln!("with the server stopped: {error}");

    server.restart();
    probe_until(&bus, true, Duration::from_secs(20))
        .await
        .expect("the probe passes again");
}

/// A server that keeps its connections open but does not answer (SIGSTOP)
/// leaves the client connected: only the probe's round trip notices it.
#[tokio::test]
#[ignore = "needs nats-server on PATH"]
async fn the_probe_fails_while_the_server_does_not_answer() {
    let (server, url, _store) = single_server();
    let bus = connect(&url, 1).await;
    bus.probe(PROBE_TIMEOUT).await.expect("the server is up");

    server.signal("STOP");
    let error = probe_until(&bus, false, Duration::from_secs(5))
        .await
        .unwrap_err();
    server.signal("CONT");
    assert!(
        matches!(error, BusError::Timeout(_)),
        "connected, but no answer in time: {error}"
    );

    probe_until(&bus, true, Duration::from_secs(10))
        .await
        .expect("the probe passes again");
}
