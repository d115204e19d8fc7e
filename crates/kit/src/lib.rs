//! The service runtime every flotilla service is built on.
//!
//! A service describes itself through the [`Service`] trait: its name, its
//! migrations, its routes and OpenAPI document, and the background work it
//! runs. The kit does the rest the same way for every service: the database
//! pool and migrations ([`db`]), the standard endpoints `/health`, `/metrics`,
//! `/openapi.json` and `/docs` with request metrics and body limits
//! ([`http`]), problem+json errors ([`problem`]), logs ([`telemetry`]), and
//! the lifecycle of an instance ([`runtime`]).

pub mod db;
pub mod http;
pub mod metrics;
pub mod page;
pub mod problem;
pub mod runtime;
pub mod telemetry;

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_bus::Bus;
use flotilla_bus::outbox::Waker;
use sqlx::AnyPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use problem::{Json, Problem, Query};

/// What a service hands to the kit.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// The service's name: its URL prefix at the gateway and its database name.
    fn name(&self) -> &'static str;

    /// The service's own migrations, applied at start-up.
    fn migrator(&self) -> &'static sqlx::migrate::Migrator;

    /// The OpenAPI document of the routes.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The service's routes; the kit adds the standard ones around them.
    fn router(&self, ctx: &Context) -> axum::Router;

    /// Starts the background work of one instance (bus consumers, senders)
    /// on `tasks`. Subscriptions are made before this returns.
    async fn start(&self, _ctx: &Context, _tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What a service instance gets from the runtime.
#[derive(Clone)]
pub struct Context {
    pub name: &'static str,
    pub db: AnyPool,
    pub bus: Arc<dyn Bus>,
    /// Wakes the outbox relay after a commit that staged messages.
    pub outbox: Waker,
    pub shutdown: CancellationToken,
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

/// Stages `event` in the outbox inside the caller's transaction; call
/// [`Context::outbox`]`.wake()` after the commit.
pub async fn stage_event<E: flotilla_contracts::Event>(
    tx: &mut sqlx::AnyConnection,
    event: &E,
) -> Result<(), sqlx::Error> {
    flotilla_bus::outbox::stage(tx, &message(event)).await
}

/// Stages every one of `events`, in order, inside the caller's transaction.
pub async fn stage_events<E: flotilla_contracts::Event>(
    tx: &mut sqlx::AnyConnection,
    events: &[E],
) -> Result<(), sqlx::Error> {
    let messages: Vec<_> = events.iter().map(message).collect();
    flotilla_bus::outbox::stage_all(tx, &messages).await
}

fn message<E: flotilla_contracts::Event>(event: &E) -> flotilla_bus::Message {
    let payload = serde_json::to_vec(event).expect("events serialize");
    flotilla_bus::Message::new(E::SUBJECT, payload)
        .with_header(flotilla_contracts::SCHEMA_HEADER, E::SCHEMA)
}
