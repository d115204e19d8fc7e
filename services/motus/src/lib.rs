//! The motus service: seed 002's daily word game. One word a day for
//! everyone (drawn from a seeded order of the answer list, recorded the
//! first time the day is played), six attempts, letters marked as the TV
//! game marks them; a finished game is announced as `motus.game.finished`.

mod config;
mod domain;
mod http;
mod store;
mod words;

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_kit::{Access, Auth, Configure, Context, Deploy, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::{Config, Lang};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla motus",
        description = "The daily word game: the signed-in player's game of the day, guesses, and the accepted words."
    ),
    paths(http::today, http::guess, http::words),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The motus service.
pub struct Motus {
    words: Arc<words::Words>,
    zone: jiff::tz::TimeZone,
}

impl std::fmt::Debug for Motus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Motus").finish_non_exhaustive()
    }
}

impl Configure for Motus {
    const NAME: &'static str = "motus";
    const ABOUT: &'static str = "the daily word game (seed 002); publishes motus.game.finished";
    type Config = Config;
    /// Two instances, a client kept on one (seed 002's HAProxy cookie).
    const DEPLOY: Deploy = Deploy {
        sticky: true,
        ..Deploy::DEFAULT
    };
    /// Only signed-in players play.
    const ACCESS: Access = Access {
        auth: Auth::Required,
        scopes: &[],
    };

    fn configure(config: Config, _shared: &Shared) -> anyhow::Result<Self> {
        let zone = jiff::tz::TimeZone::get(&config.time_zone)
            .map_err(|e| anyhow::anyhow!("--motus-time-zone {}: {e}", config.time_zone))?;
        Ok(Self {
            words: Arc::new(words::Words::new(config.lang, config.seed)),
            zone,
        })
    }
}

#[async_trait]
impl Service for Motus {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    async fn start(&self, ctx: &Context, _tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        Ok(http::router(http::AppState {
            ctx: ctx.clone(),
            words: self.words.clone(),
            zone: self.zone.clone(),
        }))
    }
}
