//! The users service: user accounts. Creating a user publishes
//! `user.created`, deleting one `user.deleted`, both through the outbox.

mod config;
mod domain;
mod http;
mod store;

use async_trait::async_trait;
use flotilla_kit::{Configure, Context, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;
pub use domain::{Email, UserName};

#[derive(OpenApi)]
#[openapi(
    info(title = "flotilla users", description = "User accounts."),
    paths(http::create, http::list, http::fetch, http::remove),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The users service.
#[derive(Debug, Default)]
pub struct Users;

impl Configure for Users {
    const NAME: &'static str = "users";
    const ABOUT: &'static str = "user accounts; publishes user.created and user.deleted";
    type Config = Config;

    fn configure(_config: Config, _shared: &Shared) -> anyhow::Result<Self> {
        Ok(Self)
    }
}

#[async_trait]
impl Service for Users {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    async fn start(&self, ctx: &Context, _tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        Ok(http::router(http::AppState { ctx: ctx.clone() }))
    }
}
