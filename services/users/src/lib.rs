//! The users service: user accounts. Creating a user publishes
//! `user.created`, deleting one `user.deleted`, both through the outbox.

mod domain;
mod error;
mod http;
mod store;

use flotilla_kit::{Context, Service};
use utoipa::OpenApi;

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

impl Service for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    fn router(&self, ctx: &Context) -> axum::Router {
        http::router(ctx.clone())
    }
}
