//! HTTP handlers of the notifications service.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use flotilla_kit::page::{Page, PageParams};
use flotilla_kit::{Context, Error, Json, Query};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::domain::{Channel, Status, Text};
use crate::store::{self, Stored};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    /// Status of new messages: pending with a webhook, stored without.
    pub new_status: Status,
    /// Wakes the sender.
    pub sender: Arc<Notify>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/messages", get(list).post(send))
        .route("/messages/{id}", get(fetch))
        .with_state(state)
}

/// The body of `POST /messages`; other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessage {
    #[schema(value_type = Channel)]
    channel: String,
    #[schema(value_type = Text)]
    message: String,
}

/// A message and its delivery state.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody {
    id: String,
    channel: String,
    message: String,
    /// `pending`, `sent`, `failed`, or `stored` when no webhook is configured.
    status: String,
    attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<String>,
}

impl From<Stored> for MessageBody {
    fn from(m: Stored) -> Self {
        Self {
            id: m.id,
            channel: m.channel,
            message: m.text,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}

/// Queues a message for the Slack webhook; delivery happens in the
/// background, with retries.
#[utoipa::path(post, path = "/messages", request_body = SendMessage, responses(
    (status = 202, body = MessageBody),
    (status = 422, description = "Invalid channel or message", body = flotilla_kit::Problem),
))]
pub async fn send(
    State(app): State<AppState>,
    Json(body): Json<SendMessage>,
) -> Result<(StatusCode, Json<MessageBody>), Error> {
    let channel = Channel::parse(&body.channel).map_err(Error::field("channel"))?;
    let text = Text::parse(&body.message).map_err(Error::field("message"))?;
    let mut conn = app.ctx.db.acquire().await?;
    let stored = store::insert(&mut conn, &channel, &text, "api", app.new_status).await?;
    app.sender.notify_one();
    Ok((StatusCode::ACCEPTED, Json(stored.into())))
}

/// Returns one message with its delivery state.
#[utoipa::path(get, path = "/messages/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = MessageBody),
    (status = 404, body = flotilla_kit::Problem),
))]
pub async fn fetch(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<MessageBody>, Error> {
    match store::get(&app.ctx.db, &id).await? {
        Some(m) => Ok(Json(m.into())),
        None => Err(Error::NotFound(format!("no message with id {id}"))),
    }
}

/// Lists messages, oldest first, with their delivery state.
#[utoipa::path(get, path = "/messages", params(PageParams), responses(
    (status = 200, body = Page<MessageBody>),
    (status = 400, body = flotilla_kit::Problem),
))]
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<MessageBody>>, Error> {
    let request = params.validate(100)?;
    let items = store::list(&app.ctx.db, &request.after, request.fetch()).await?;
    Ok(Json(request.page(items, |m| &m.id)))
}
