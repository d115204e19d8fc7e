//! `GET /health` of an instance checks its bus for real: it passes on the
//! in-process bus, and on NATS it warns (200, its bus check failing) while the
//! server is down and passes again once it is back. The NATS test runs its
//! own `nats-server` on a free port, so it is ignored unless asked for.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::{Bus, MemoryBus};
use flotilla_kit::db::Storage;
use flotilla_kit::{Context, Service, runtime};
use serde_json::Value;
use sqlx::migrate::Migrator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A service with nothing of its own: the kit's endpoints alone.
struct Bare;

static NO_MIGRATIONS: Migrator = Migrator::DEFAULT;

#[async_trait]
impl Service for Bare {
    fn migrator(&self) -> &'static Migrator {
        &NO_MIGRATIONS
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        utoipa::openapi::OpenApiBuilder::new().build()
    }

    async fn start(
        &self,
        _ctx: &Context,
        _tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<axum::Router> {
        Ok(axum::Router::new())
    }
}

/// One instance of [`Bare`] on `bus`, stopped when dropped.
struct Instance {
    addr: SocketAddr,
    shutdown: CancellationToken,
    _tasks: JoinSet<()>,
    _data: tempfile::TempDir,
}

impl Instance {
    async fn start(bus: Arc<dyn Bus>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let storage = Storage::Sqlite(data.path().to_owned());
        let shutdown = CancellationToken::new();
        let prepared = runtime::prepare("bare", Arc::new(Bare), &storage, bus, shutdown.clone())
            .await
            .unwrap();
        let mut tasks = JoinSet::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = prepared.start_instance(listener, &mut tasks).await.unwrap();
        Self {
            addr,
            shutdown,
            _tasks: tasks,
            _data: data,
        }
    }

    /// `GET /health`: the status code and the JSON body.
    async fn health(&self) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
        let code = head.split(' ').nth(1).and_then(|c| c.parse().ok());
        let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (code.expect("a status line"), body)
    }

    /// Asks `/health` until it answers `code`, for at most `within`.
    /// The report once its status is `status`, or a panic after `within`.
    async fn health_until(&self, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (code, body) = self.health().await;
            if body["status"] == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/health did not say {status} within {within:?}: {code} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[tokio::test]
async fn health_passes_on_the_in_process_bus() {
    let instance = Instance::start(Arc::new(MemoryBus::default())).await;
    let (code, body) = instance.health().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "pass");
    assert_eq!(body["response"], "pong");
    assert_eq!(body["service"], "bare");
    assert_eq!(body["checks"]["database"]["status"], "pass");
    let bus = &body["checks"]["bus"];
    assert_eq!(bus["status"], "pass");
    assert_eq!(bus["backend"], "memory");
    assert!(bus["time"].is_u64(), "{bus}");
    assert!(bus.get("detail").is_none(), "{bus}");
}

/// One `nats-server` with JetStream on a free port, killed on drop.
struct NatsServer {
    child: Child,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, &store);
        Self { child, port, store }
    }

    fn spawn(port: u16, store: &tempfile::TempDir) -> Child {
        Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts")
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, &self.store);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
#[ignore = "needs nats-server on PATH"]
async fn health_fails_while_nats_is_down_and_passes_once_it_is_back() {
    let mut server = NatsServer::start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let bus = loop {
        match NatsBus::connect(&server.url(), NatsConfig::default()).await {
            Ok(bus) => break bus,
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for JetStream: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("JetStream never became ready: {error}"),
        }
    };
    let instance = Instance::start(Arc::new(bus)).await;
    let (code, body) = instance.health().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["checks"]["bus"]["status"], "pass");
    assert_eq!(body["checks"]["bus"]["backend"], "nats");

    server.kill();
    let body = instance.health_until("warn", Duration::from_secs(5)).await;
    assert_eq!(instance.health().await.0, 200, "still serving: {body}");
    assert_eq!(body["response"], "pong");
    assert_eq!(body["checks"]["database"]["status"], "pass");
    let bus = &body["checks"]["bus"];
    assert_eq!(bus["status"], "fail");
    assert_eq!(bus["backend"], "nats");
    assert!(bus["time"].is_u64(), "{bus}");
    let detail = bus["detail"].as_str().unwrap_or_default();
    assert!(!detail.is_empty(), "a failed bus says why: {bus}");
    eprintln!("with NATS down: {bus}");

    server.restart();
    let body = instance.health_until("pass", Duration::from_secs(20)).await;
    assert_eq!(body["checks"]["bus"]["status"], "pass");
}
