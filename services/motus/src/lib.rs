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
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use config::{Config, Lang};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla motus",
        description = "The daily word game: the signed-in player's game of the day, guesses, and the accepted words."
    ),
    paths(http::today, http::guess, http::words),
    components(schemas(flotilla_kit::Problem)),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Every route needs a user's access token: the gateway answers 401
/// without one.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some("A user's access token from the auth service"))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

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
