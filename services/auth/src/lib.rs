//! The auth service: accounts that sign in with an email and a password,
//! the sign-up and login pages, browser sessions, and an OpenID provider
//! (authorization code flow with PKCE, rotating refresh tokens). Seed 002 and seed
//! 000 both have one; a new account gets its profile in the users service
//! through `account.created`.

mod admin;
mod clients;
mod config;
mod domain;
mod end_session;
mod grants;
mod http;
mod keys;
mod oidc;
mod pages;
mod password;
mod revocation;
mod rotation;
mod session;
mod store;
mod token;

use std::time::Duration;

use async_trait::async_trait;
use flotilla_kit::{Access, Admin, Auth as Tokens, Configure, Context, Service, Shared};
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla auth",
        description = "Accounts, the sign-up and login pages, browser sessions, and an OpenID \
            provider (the authorization code flow with PKCE, refresh tokens, `client_credentials`)."
    ),
    paths(
        http::signup,
        http::signup_page,
        http::login_page,
        http::login,
        http::logout,
        http::current,
        http::grant_role,
        oidc::discovery,
        oidc::jwks,
        oidc::authorize,
        token::token,
        revocation::revoke,
        revocation::introspect,
        oidc::userinfo,
        oidc::userinfo_post,
        end_session::confirm,
        end_session::end
    ),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The auth service.
#[derive(Debug)]
pub struct Auth {
    config: Config,
    /// Where clients reach the gateway: the issuer is this + `/auth`.
    public_url: String,
    clients: Vec<clients::Client>,
}

impl Configure for Auth {
    const NAME: &'static str = "auth";
    const ABOUT: &'static str =
        "accounts, sign-up and login pages, sessions; publishes account.created";
    type Config = Config;
    /// The gateway leaves its tokens alone: the token endpoint takes client
    /// credentials, and `/userinfo` checks its bearer token itself.
    const ACCESS: Access = Access {
        auth: Tokens::None,
        scopes: &[],
    };
    const ADMIN: Option<Admin> = Some(Admin {
        commands: admin::commands,
        run: admin::run,
    });

    fn configure(config: Config, shared: &Shared) -> anyhow::Result<Self> {
        if shared.public_url.is_none() {
            tracing::warn!("no --public-url: the issuer is http://127.0.0.1:8080/auth");
        }
        let public_url = shared.gateway_url().to_owned();
        let clients = clients::load(&public_url, config.clients_file.as_deref())?;
        Ok(Self {
            config,
            public_url,
            clients,
        })
    }
}

#[async_trait]
impl Service for Auth {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        let mut doc = ApiDoc::openapi();
        let issuer = format!("{}/auth", self.public_url);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_schemes_from_iter(oidc::security_schemes(&issuer));
        components.add_security_scheme("session", session::security_scheme());
        doc
    }

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        let schedule = rotation::Schedule::new(
            Duration::from_secs(self.config.key_rotation_days.saturating_mul(24 * 3600)),
            Duration::from_secs(self.config.key_reload_secs),
        );
        let keys = keys::Keys::load(&ctx.db, schedule).await?;
        tasks.spawn(keys.clone().reload_until_shutdown(ctx.clone()));
        Ok(http::router(http::AppState {
            ctx: ctx.clone(),
            config: self.config.clone(),
            oidc: std::sync::Arc::new(oidc::Provider::new(
                &self.public_url,
                keys,
                self.clients.clone(),
            )),
        }))
    }
}
