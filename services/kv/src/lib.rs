//! The kv service, after the key/value demo of the seeds: a roundtrip
//! carries a pair from HTTP through the bus to storage and back out to
//! every websocket client; a batch is split into one message per item and
//! stored whole, in one transaction, when its last item arrives, while the
//! HTTP request waits for the reply. Everything passes through the outbox
//! and the inbox, so a crash loses nothing and stores nothing twice.

mod config;
mod domain;
mod error;
mod events;
mod http;
mod live;
mod store;

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use flotilla_kit::{Configure, Context, Deploy, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;
use live::Live;
use store::Store;

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
}

impl Configure for Kv {
    const NAME: &'static str = "kv";
    const ABOUT: &'static str =
        "key/value roundtrips through the bus, pushed to websockets; batches stored whole, once";
    type Config = Config;
    /// Pairs and batches live in Redis there, as in the original demo.
    const DEPLOY: Deploy = Deploy {
        redis: true,
        ..Deploy::DEFAULT
    };

    fn configure(config: Config, shared: &Shared) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (1..=domain::MAX_BATCH as u32).contains(&config.batch_max_items),
            "--kv-batch-max-items must be between 1 and {}",
            domain::MAX_BATCH
        );
        Ok(Self {
            config,
            redis_url: shared.redis.clone(),
            live: Live::default(),
        })
    }
}

impl Kv {
    /// Where an instance keeps pairs and batches: SQL, or Redis with `--redis`.
    async fn store(&self, ctx: &Context) -> anyhow::Result<Store> {
        let Some(url) = &self.redis_url else {
            return Ok(Store::Sql(ctx.db.clone()));
        };
        let client = redis::Client::open(url.as_str()).context("--redis is not a valid URL")?;
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
    }
}

#[async_trait]
impl Service for Kv {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        http::with_batch_max(ApiDoc::openapi(), self.config.batch_max_items)
    }

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        let store = self.store(ctx).await?;
        self.live
            .start(ctx.bus.as_ref(), tasks, ctx.shutdown.clone())
            .await?;
        if !self.config.no_consumer {
            let pairs = events::StorePair {
                store: store.clone(),
            };
            ctx.consume(pairs, tasks).await?;
            let batches = events::CollectBatch {
                store: store.clone(),
            };
            ctx.consume(batches, tasks).await?;
        }
        Ok(http::router(http::AppState {
            ctx: ctx.clone(),
            store,
            live: self.live.clone(),
            batch_timeout: Duration::from_millis(self.config.batch_timeout_ms),
            batch_max_items: self.config.batch_max_items as usize,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi;

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_document_defines_every_schema_it_refers_to() {
        let doc = flotilla_kit::openapi::complete(super::ApiDoc::openapi());
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.contains(&"#/components/schemas/BatchId"));
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(doc["components"]["schemas"][name].is_object(), "{target}");
        }
    }
}
