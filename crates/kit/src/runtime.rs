//! The lifecycle of a service: connect and migrate once, then start any
//! number of instances (HTTP server plus background work) and one outbox
//! relay, all stopped by one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use flotilla_bus::Bus;
use flotilla_bus::outbox::{Relay, Stager, Waker};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Context, Service, db, http};

/// A service whose database is ready.
pub struct Prepared {
    service: Arc<dyn Service>,
    ctx: Context,
}

/// Opens the service's database in `storage` and applies migrations.
pub async fn prepare(
    name: &'static str,
    service: Arc<dyn Service>,
    storage: &db::Storage,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
) -> anyhow::Result<Prepared> {
    let pool = storage.open(name).await.with_context(|| {
        format!(
            "{name}: cannot open its database ({})",
            storage.describe(name)
        )
    })?;
    db::migrate(&pool, service.migrator())
        .await
        .with_context(|| format!("{name}: migrations failed"))?;
    let outbox = Waker::default();
    let ctx = Context {
        name,
        stager: Stager::start(pool.clone(), outbox.clone()),
        db: pool,
        bus,
        outbox,
        shutdown,
        metrics: crate::metrics::Metrics::new(name),
    };
    Ok(Prepared { service, ctx })
}

impl Prepared {
    pub fn name(&self) -> &'static str {
        self.ctx.name
    }

    /// What the service's instances get.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Starts the instance's background work, then serves HTTP on `listener`.
    pub async fn start_instance(
        &self,
        listener: TcpListener,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        // Each instance counts its own work, in a registry of its own.
        let ctx = Context {
            metrics: crate::metrics::Metrics::new(self.ctx.name),
            ..self.ctx.clone()
        };
        let routes = self
            .service
            .start(&ctx, tasks)
            .await
            .with_context(|| format!("{}: start-up failed", ctx.name))?;
        let app = http::app(routes, self.service.openapi(), &ctx);
        tasks.spawn(http::serve(listener, app, ctx.shutdown.clone()));
        Ok(addr)
    }

    /// Starts the relay that publishes the service's outbox. Start it after
    /// every consumer of the stack has subscribed.
    pub fn start_relay(&self, tasks: &mut JoinSet<()>) {
        let relay = Relay::new(
            self.ctx.db.clone(),
            self.ctx.bus.clone(),
            self.ctx.outbox.clone(),
        );
        tasks.spawn(relay.run(self.ctx.shutdown.clone()));
    }
}
