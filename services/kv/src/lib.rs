//! The kv service, after the key/value demo of the seeds: a roundtrip
//! carries a pair from HTTP through the bus to storage and back out to
//! every websocket client; a batch is split into one message per item and
//! stored whole, in one transaction, when its last item arrives, while the
//! HTTP request waits for the reply. Everything passes through the outbox
//! and the inbox, so a crash loses nothing and stores nothing twice.

mod domain;
mod error;
mod events;
mod http;
mod live;
mod store;

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use flotilla_bus::consumer::Consumer;
use flotilla_contracts::Event;
use flotilla_kit::{Context, Service};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;
use utoipa::OpenApi;

use events::{BatchItemV1, RoundtripV1};
use live::Live;
use store::Store;

/// How the kv service stores and waits.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "kv")]
pub struct Config {
    /// How long `POST /kv/batch` waits for the batch's reply, in
    /// milliseconds, before answering 504.
    #[arg(
        long = "kv-batch-timeout-ms",
        env = "FLOTILLA_KV_BATCH_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub batch_timeout_ms: u64,
    /// Serve the API only: leave `kv.event` and `kv.batch` to the
    /// consumers of other instances.
    #[arg(long = "kv-no-consumer", env = "FLOTILLA_KV_NO_CONSUMER")]
    pub no_consumer: bool,
    /// Prefix of the Redis keys, when pairs and batches live in Redis
    /// (`--redis`).
    #[arg(
        long = "kv-redis-prefix",
        env = "FLOTILLA_KV_REDIS_PREFIX",
        default_value = "flotilla:kv:"
    )]
    pub redis_prefix: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            batch_timeout_ms: 5000,
            no_consumer: false,
            redis_prefix: "flotilla:kv:".to_owned(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla kv",
        description = "Key/value roundtrips and atomic batches through the bus, pushed live over a websocket."
    ),
    paths(
        http::roundtrip,
        http::ws,
        http::pair,
        http::batch,
        http::list_batches,
        http::fetch_batch
    ),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The kv service.
pub struct Kv {
    config: Config,
    /// `--redis`: pairs and batches live there instead of in SQL.
    redis_url: Option<String>,
    /// Shared by every instance of this process.
    live: Live,
    /// Made by the first instance's `start`, which runs before `router`.
    store: OnceCell<Store>,
}

impl Kv {
    pub fn new(config: Config, redis_url: Option<String>) -> Self {
        Self {
            config,
            redis_url,
            live: Live::default(),
            store: OnceCell::new(),
        }
    }

    async fn store(&self, ctx: &Context) -> anyhow::Result<&Store> {
        self.store
            .get_or_try_init(|| async {
                let Some(url) = &self.redis_url else {
                    return Ok(Store::Sql(ctx.db.clone()));
                };
                let client =
                    redis::Client::open(url.as_str()).context("--redis is not a valid URL")?;
                let redis = tokio::time::timeout(
                    Duration::from_secs(10),
                    redis::aio::ConnectionManager::new(client),
                )
                .await
                .context("Redis did not answer within 10 s")?
                .context("cannot connect to Redis")?;
                Ok(Store::Redis {
                    redis,
                    prefix: self.config.redis_prefix.clone(),
                })
            })
            .await
    }
}

/// State of the HTTP handlers.
#[derive(Clone)]
struct AppState {
    ctx: Context,
    store: Store,
    live: Live,
    batch_timeout: Duration,
}

#[async_trait]
impl Service for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn router(&self, ctx: &Context) -> axum::Router {
        http::router(AppState {
            ctx: ctx.clone(),
            store: self.store.get().expect("start() made the store").clone(),
            live: self.live.clone(),
            batch_timeout: Duration::from_millis(self.config.batch_timeout_ms),
        })
    }

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
        let store = self.store(ctx).await?.clone();
        self.live
            .start(ctx.bus.as_ref(), tasks, ctx.shutdown.clone())
            .await?;
        if self.config.no_consumer {
            return Ok(());
        }
        let pairs = events::StorePair {
            store: store.clone(),
            outbox: ctx.outbox.clone(),
        };
        let batches = events::CollectBatch {
            store,
            outbox: ctx.outbox.clone(),
        };
        let bus = ctx.bus.as_ref();
        let pairs = Consumer::new(ctx.name, ctx.db.clone(), pairs)
            .subscribe(bus, RoundtripV1::SUBJECT, ctx.shutdown.clone())
            .await?;
        let batches = Consumer::new(ctx.name, ctx.db.clone(), batches)
            .subscribe(bus, BatchItemV1::SUBJECT, ctx.shutdown.clone())
            .await?;
        tasks.spawn(pairs);
        tasks.spawn(batches);
        Ok(())
    }
}
