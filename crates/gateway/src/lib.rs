//! The edge gateway: one address in front of every service.
//!
//! `/<service>/...` is proxied to an instance of that service with the prefix
//! stripped, `/api/v1/<service>/...` is an alias, and `/health` aggregates the
//! health of every service. It is built directly on hyper: a route table
//! swapped atomically (no lock on the request path) and a pooled keep-alive
//! client to the upstreams.

mod health;
mod proxy;
mod reply;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use routes::{RouteTable, Upstream};

/// How long in-flight requests may take to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(10);

/// The pooled keep-alive client to the upstreams.
pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, reply::Body>;

/// The gateway. Share it with an `Arc`; [`Gateway::set_upstreams`] may be
/// called at any time.
pub struct Gateway {
    routes: ArcSwap<RouteTable>,
    client: Client,
}

impl Gateway {
    pub fn new(upstreams: Vec<Upstream>) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Arc::new(Self {
            routes: ArcSwap::from_pointee(RouteTable::new(upstreams)),
            client,
        })
    }

    /// Replaces the route table; requests in flight keep the one they started with.
    pub fn set_upstreams(&self, upstreams: Vec<Upstream>) {
        self.routes.store(Arc::new(RouteTable::new(upstreams)));
    }

    /// Serves on `listener` until `shutdown`, then gives in-flight requests
    /// a grace period to finish.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, peer) = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            let service = service_fn(move |req| gateway.clone().handle(req, peer));
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "client connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain period; closing them");
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<hyper::Response<reply::Body>, std::convert::Infallible> {
        let routes = self.routes.load_full();
        let path = req.uri().path();
        let response = if path == "/health" {
            health::aggregate(&self.client, &routes).await
        } else if path == "/" {
            reply::index(&routes)
        } else {
            match routes.resolve(path) {
                Some(target) => proxy::forward(&self.client, req, target, peer).await,
                None => reply::problem(
                    hyper::StatusCode::NOT_FOUND,
                    flotilla_contracts::problem::NOT_FOUND,
                    "no service is routed at this path",
                ),
            }
        };
        Ok(response)
    }
}
