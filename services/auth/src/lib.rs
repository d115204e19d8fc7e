//! The auth service: accounts that sign in with an email and a password,
//! the sign-up and login pages, and browser sessions. Seed 002 and seed
//! 000 both have one; a new account gets its profile in the users service
//! through `account.created`.

mod admin;
mod config;
mod domain;
mod http;
mod pages;
mod password;
mod session;
mod store;

use async_trait::async_trait;
use flotilla_kit::{Admin, Configure, Context, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla auth",
        description = "Accounts, the sign-up and login pages, and browser sessions."
    ),
    paths(
        http::signup,
        http::signup_page,
        http::login_page,
        http::login,
        http::logout,
        http::current,
        http::grant_role
    ),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The auth service.
#[derive(Debug)]
pub struct Auth {
    config: Config,
}

impl Configure for Auth {
    const NAME: &'static str = "auth";
    const ABOUT: &'static str =
        "accounts, sign-up and login pages, sessions; publishes account.created";
    type Config = Config;
    const ADMIN: Option<Admin> = Some(Admin {
        commands: admin::commands,
        run: admin::run,
    });

    fn configure(config: Config, _shared: &Shared) -> anyhow::Result<Self> {
        Ok(Self { config })
    }
}

#[async_trait]
impl Service for Auth {
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
            config: self.config.clone(),
        }))
    }
}
