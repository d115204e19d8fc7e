//! Real upstream servers and a real gateway on free ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use flotilla_gateway::{Config, Gateway};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// An upstream instance: answers its name, counts hits, and can be made
/// slow, failing, unhealthy or dead.
pub struct Upstream {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
    task: JoinHandle<()>,
}

#[derive(Default)]
pub struct UpstreamState {
    pub name: String,
    pub hits: AtomicUsize,
    pub unhealthy: AtomicBool,
    /// Answer 500 to everything but /health.
    pub failing: AtomicBool,
    pub delay_ms: AtomicU64,
    /// The JSON body /health answers with, if any.
    pub report: std::sync::Mutex<Option<serde_json::Value>>,
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), name).await
    }

    pub async fn on(listener: TcpListener, name: &str) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            name: name.to_owned(),
            ..UpstreamState::default()
        });
        let app = Router::new()
            .route("/health", get(health))
            .route("/headers", get(headers))
            .route("/status/{code}", axum::routing::any(status))
            .route("/ws", get(ws))
            .route(
                "/echo",
                axum::routing::post(|body: String| async move { body }),
            )
            .fallback(hit)
            .with_state(state.clone());
        // Each connection is a task of this one, so aborting it kills the
        // instance, kept-alive connections included.
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("http://{addr}"),
            addr,
            state,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection, like a killed process.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hit(State(state): State<Arc<UpstreamState>>) -> impl IntoResponse {
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "failing".to_owned());
    }
    (StatusCode::OK, state.name.clone())
}

async fn health(State(state): State<Arc<UpstreamState>>) -> axum::response::Response {
    let status = if state.unhealthy.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    match state.report.lock().unwrap().clone() {
        Some(report) => (status, axum::Json(report)).into_response(),
        None => status.into_response(),
    }
}

async fn headers(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let map: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    axum::Json(map.into())
}

async fn status(State(state): State<Arc<UpstreamState>>, Path(code): Path<u16>) -> StatusCode {
    state.hits.fetch_add(1, Ordering::SeqCst);
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Text(_) | Message::Binary(_))
                && socket.send(message).await.is_err()
            {
                return;
            }
        }
    })
}

/// A gateway serving `toml` (with `{a}`, `{b}`… replaced by upstream URLs).
pub struct TestGateway {
    pub url: String,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn gateway(toml: &str) -> TestGateway {
    start(Config::parse(toml).expect("valid config"), None).await
}

pub async fn start(config: Config, file: Option<std::path::PathBuf>) -> TestGateway {
    serve(Gateway::new(config, file).await.expect("gateway starts")).await
}

pub async fn serve(gateway: Arc<Gateway>) -> TestGateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(gateway.serve(listener, shutdown.clone()));
    TestGateway {
        url: format!("http://{addr}"),
        addr,
        shutdown,
    }
}

/// One route over `upstreams`, with extra route settings in `extra`.
pub fn route(upstreams: &[&Upstream], extra: &str) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("\"{}\"", u.url)).collect();
    format!(
        "[gateway]\naccess_log = false\n[[route]]\nprefix = \"/\"\nservice = \"app\"\nupstreams = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// GETs `path` `n` times; the statuses.
pub async fn get_many(client: &reqwest::Client, url: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(
            client
                .get(url)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16()),
        );
    }
    statuses
}
