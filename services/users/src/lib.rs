//! The users service: user profiles. Creating a user publishes
//! `user.created`, deleting one `user.deleted`, both through the outbox; an
//! account created in the auth service gets its profile here.

mod config;
mod events;
mod http;
mod store;

use async_trait::async_trait;
use flotilla_kit::{Configure, Context, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;

#[derive(OpenApi)]
#[openapi(
    info(title = "flotilla users", description = "User accounts."),
    paths(http::create, http::list, http::me, http::fetch, http::remove),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The users service.
#[derive(Debug, Default)]
pub struct Users;

impl Configure for Users {
    const NAME: &'static str = "users";
    const ABOUT: &'static str =
        "user profiles, one per account too; publishes user.created and user.deleted";
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

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        ctx.consume(events::AccountCreated, tasks).await?;
        Ok(http::router(http::AppState { ctx: ctx.clone() }))
    }
}
