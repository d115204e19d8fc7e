//! The notifications service: messages to a Slack incoming webhook, one for
//! every `user.created` event and any sent through its API. Every message is
//! persisted first and delivered by a background sender with retries, so an
//! outage of Slack delays messages but loses none.

mod config;
mod domain;
mod events;
mod http;
mod sender;
mod store;

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use flotilla_kit::{Configure, Context, Service, Shared};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use utoipa::OpenApi;

pub use config::Config;
use domain::Status;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flotilla notifications",
        description = "Slack notifications, persisted and retried."
    ),
    paths(http::send, http::list, http::fetch),
    components(schemas(flotilla_kit::Problem))
)]
struct ApiDoc;

/// The notifications service.
#[derive(Debug)]
pub struct Notifications {
    config: Config,
    webhook: Option<::http::Uri>,
    /// Shared by the API, the consumer and the sender of every instance.
    sender: Arc<Notify>,
}

impl Configure for Notifications {
    const NAME: &'static str = "notifications";
    const ABOUT: &'static str =
        "Slack messages, one per new user and any sent through its API; persisted and retried";
    type Config = Config;

    /// Checks the configuration: a webhook URL that does not parse is an
    /// error at start-up, not at the first message.
    fn configure(config: Config, _shared: &Shared) -> anyhow::Result<Self> {
        let webhook = config
            .webhook_url
            .as_deref()
            .filter(|url| !url.is_empty())
            .map(|url| {
                let uri: ::http::Uri = url
                    .parse()
                    .context("FLOTILLA_SLACK_WEBHOOK_URL is not a valid URL")?;
                match (uri.scheme_str(), uri.authority()) {
                    (Some("http" | "https"), Some(_)) => Ok(uri),
                    _ => anyhow::bail!(
                        "FLOTILLA_SLACK_WEBHOOK_URL must be an http:// or https:// URL"
                    ),
                }
            })
            .transpose()?;
        Ok(Self {
            config,
            webhook,
            sender: Arc::default(),
        })
    }
}

impl Notifications {
    fn new_status(&self) -> Status {
        if self.webhook.is_some() {
            Status::Pending
        } else {
            Status::Stored
        }
    }
}

#[async_trait]
impl Service for Notifications {
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
        &MIGRATOR
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        ApiDoc::openapi()
    }

    async fn start(&self, ctx: &Context, tasks: &mut JoinSet<()>) -> anyhow::Result<axum::Router> {
        let handler = events::UserCreated {
            status: self.new_status(),
            sender: self.sender.clone(),
        };
        ctx.consume(handler, tasks).await?;
        if let Some(webhook) = &self.webhook {
            let sender = sender::Sender::new(
                ctx.db.clone(),
                webhook.clone(),
                self.config.clone(),
                self.sender.clone(),
            );
            tasks.spawn(sender.run(ctx.shutdown.clone()));
        }
        Ok(http::router(http::AppState {
            ctx: ctx.clone(),
            new_status: self.new_status(),
            sender: self.sender.clone(),
        }))
    }
}
