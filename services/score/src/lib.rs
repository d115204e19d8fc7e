//! The score service: seed 002's scores of the Motus game. It counts each
//! `motus.game.finished` once, keeps per player the games, wins, streaks,
//! the distribution of attempts and "tries per word found", and ranks the
//! players of a day and of all time.

mod config;
mod domain;
mod events;
mod http;
mod store;

use async_trait::async_trait;
use flotilla_kit::{Configure, Context, Deploy, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla score",
        description = "Motus statistics per player, and the leaderboards."
    ),
    paths(http::me, http::player, http::leaderboard),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The score service.
#[derive(Debug, Default)]
pub struct Score;

impl Configure for Score {
    const NAME: &'static str = "score";
    const ABOUT: &'static str =
        "Motus statistics and leaderboards; consumes motus.game.finished and account.created";
    type Config = Config;
    /// Two instances, a client kept on one (seed 002's HAProxy cookie).
    const DEPLOY: Deploy = Deploy {
        sticky: true,
        ..Deploy::DEFAULT
    };

    fn configure(_config: Config, _shared: &Shared) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[async_trait]
impl Service for Score {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        let counted = events::GameFinished {
            metrics: ctx.metrics.clone(),
        };
        ctx.consume(counted, tasks).await?;
        ctx.consume(events::AccountCreated, tasks).await?;
        Ok(http::router(http::AppState { ctx: ctx.clone() }))
    }
}
