//! The service runtime every flotilla service is built on.
//!
//! A service describes itself through [`Service`] (its migrations, its
//! OpenAPI document, and what an instance starts: background work and the
//! routes over the state it made) and [`Configure`] (its name and its
//! settings, from which the command line builds it). The kit does the rest
//! the same way for every service: the database pool and migrations
//! ([`db`]), the standard endpoints `/health`, `/metrics`, `/openapi.json`
//! and `/docs` with request metrics and body limits ([`http`]),
//! problem+json errors ([`problem`], [`Error`]), transactions that stage
//! events and wake the relay ([`Tx`]), typed consumers ([`consume`]), keyset
//! pages ([`page`]), logs ([`telemetry`]), the lifecycle of an instance
//! ([`runtime`]), and a harness that starts one service in a test
//! ([`testing`]).

pub mod consume;
pub mod db;
mod error;
pub mod fields;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod runtime;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_bus::Bus;
use flotilla_bus::outbox::{Stager, Waker};
use sqlx::AnyPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use error::Error;
/// Milliseconds since the Unix epoch, the clock of what the bus and services store.
pub use flotilla_bus::now_ms;
pub use identity::{Access, Auth, Caller};
pub use problem::{Form, Json, Problem, Query};
pub use tx::Tx;

/// What a service hands to the kit.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The service's own migrations, applied at start-up.
    fn migrator(&self) -> &'static sqlx::migrate::Migrator;

    /// The OpenAPI document of the routes.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// Starts one instance: its background work (bus consumers, senders) on
    /// `tasks`, subscribed before this returns; then gives the instance's
    /// routes, over the state made here. The kit adds the standard ones.
    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router>;
}

/// How a service is named and built from its settings: what the registry
/// of the command line reads.
pub trait Configure: Service + Sized {
    /// The service's name: its URL prefix at the gateway, its database name
    /// and its consumer group.
    const NAME: &'static str;
    /// One line on what it does, for `--help` and the generated deploy files.
    const ABOUT: &'static str;
    /// Its settings, flattened into `flotilla up` and `flotilla serve`, with
    /// a `#[group(id = NAME)]`. Each has a `--long` name prefixed like the
    /// others of the service, an `env` variable, and an id (its field name)
    /// unique in the whole command line; a secret one sets
    /// `hide_env_values`, and is handed to child processes through the
    /// environment rather than the command line.
    type Config: clap::Args + clap::FromArgMatches + std::fmt::Debug;

    /// How the generated deploy files run it.
    const DEPLOY: Deploy = Deploy::DEFAULT;

    /// What the gateway asks of its callers: by default, a token is
    /// optional and its caller forwarded ([`Caller`]).
    const ACCESS: Access = Access::OPTIONAL;

    /// Its administrative commands, if it has any: `flotilla <NAME> …`.
    const ADMIN: Option<Admin> = None;

    /// Builds the service; an invalid setting is an error here, at start-up.
    fn configure(config: Self::Config, shared: &Shared) -> anyhow::Result<Self>;
}

/// A service's administrative commands, run from the command line against
/// its database (migrated first), as `flotilla <service> <command> …`.
#[derive(Clone, Copy, Debug)]
pub struct Admin {
    /// The commands, as subcommands of a clap command.
    pub commands: fn(clap::Command) -> clap::Command,
    /// Runs the one given; what it returns is printed.
    pub run: for<'a> fn(&'a clap::ArgMatches, &'a AnyPool) -> AdminFuture<'a>,
}

/// What an administrative command's `run` returns.
pub type AdminFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send + 'a>>;

/// How the stack runs a service: in `flotilla up` and in the files
/// `flotilla deploy` generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deploy {
    /// Instances in Compose and Kubernetes.
    pub replicas: u16,
    /// Whether it is given Redis (`FLOTILLA_REDIS`), and so starts after it.
    pub redis: bool,
    /// Whether the gateway keeps a client on one instance (its sticky
    /// cookie), in `flotilla up` and in the deploy files.
    pub sticky: bool,
}

impl Deploy {
    /// Two instances, no Redis, not sticky.
    pub const DEFAULT: Self = Self {
        replicas: 2,
        redis: false,
        sticky: false,
    };
}

/// Settings of the stack that a service may use.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// `--redis`: a Redis URL, for services that can keep data there.
    pub redis: Option<String>,
    /// `--public-url`: where clients reach the gateway, without a trailing
    /// `/` (`up` sets it to its gateway's address when it is not given).
    pub public_url: Option<String>,
}

impl Shared {
    /// `public_url`, or `http://127.0.0.1:8080` when it was not given.
    pub fn gateway_url(&self) -> &str {
        self.public_url
            .as_deref()
            .unwrap_or("http://127.0.0.1:8080")
    }
}

/// What a service instance gets from the runtime.
#[derive(Clone)]
pub struct Context {
    pub name: &'static str,
    pub db: AnyPool,
    pub bus: Arc<dyn Bus>,
    /// Hands committed events to the outbox relay; [`Tx::commit`] and
    /// typed consumers do it.
    outbox: Waker,
    /// Writes what [`Context::publish`] stages.
    stager: Stager,
    pub shutdown: CancellationToken,
    /// The instance's own Prometheus registry: record what the service
    /// does with `ctx.metrics.record(|| metrics::counter!(…))`, and it is
    /// served at `/metrics` with the HTTP metrics.
    pub metrics: Arc<metrics::Metrics>,
}

impl Context {
    /// Begins a transaction that may stage events; committing it hands
    /// them to the outbox relay.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(Tx::new(self.db.begin().await?, self.outbox.clone()))
    }

    /// Stages `event` in the outbox, committed when this returns: for an
    /// event that goes with no change of state. Events published at the
    /// same moment are written with one statement, outside any transaction
    /// (which would cost two more round trips to the database).
    pub async fn publish<E: flotilla_contracts::Event>(&self, event: &E) -> Result<(), Error> {
        self.stager
            .stage(tx::message(event))
            .await
            .map_err(|error| Error::Internal(error.into()))
    }

    /// Subscribes `handler` to its event's subject in this service's
    /// consumer group, and runs it on `tasks` until shutdown.
    pub async fn consume<C: consume::Consume>(
        &self,
        handler: C,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        use flotilla_contracts::Event as _;
        let subject = <C::Event>::SUBJECT;
        let consumer = consume::consumer(self.name, self.db.clone(), self.outbox.clone(), handler)
            .subscribe(self.bus.as_ref(), subject, self.shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot subscribe to {subject}: {e}", self.name))?;
        tasks.spawn(consumer);
        Ok(())
    }
}

/// The current time as RFC 3339 UTC with milliseconds, the format of every
/// timestamp flotilla stores and returns.
pub fn timestamp() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .expect("UTC time formats")
}
