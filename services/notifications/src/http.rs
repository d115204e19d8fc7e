//! HTTP handlers of the notifications service.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flotilla_kit::page::PageParams;
use flotilla_kit::{Json, Problem, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::State as App;
use crate::domain::{Channel, Text};
use crate::store::{self, Stored};

pub fn router(app: App) -> Router {
    Router::new()
        .route("/messages", get(list).post(send))
        .route("/messages/{id}", get(fetch))
        .with_state(app)
}

/// The service's errors, each with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422
    #[error("invalid `{field}`: {detail}")]
    Invalid {
        field: &'static str,
        detail: &'static str,
    },
    /// 400
    #[error("{0}")]
    BadQuery(String),
    /// 404
    #[error("no message with id {0}")]
    NotFound(String),
    /// 500, logged and not shown.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Invalid { field, detail } => Problem::invalid_field(field, detail),
            Error::BadQuery(detail) => Problem::bad_request(detail),
            Error::NotFound(_) => Problem::not_found(self.to_string()),
            Error::Db(error) => {
                tracing::error!(%error, "database error");
                Problem::internal()
            }
        }
        .into_response()
    }
}

/// The body of `POST /messages`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessage {
    #[schema(example = "#user")]
    channel: String,
    #[schema(example = "User 42 created")]
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

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    items: Vec<MessageBody>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Queues a message for the Slack webhook; delivery happens in the
/// background, with retries.
#[utoipa::path(post, path = "/messages", request_body = SendMessage, responses(
    (status = 202, body = MessageBody),
    (status = 422, body = flotilla_kit::Problem),
))]
pub async fn send(
    State(app): State<App>,
    Json(body): Json<SendMessage>,
) -> Result<(StatusCode, Json<MessageBody>), Error> {
    let channel = Channel::parse(&body.channel).map_err(|detail| Error::Invalid {
        field: "channel",
        detail,
    })?;
    let text = Text::parse(&body.message).map_err(|detail| Error::Invalid {
        field: "message",
        detail,
    })?;
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
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<MessageBody>, Error> {
    match store::get(&app.ctx.db, &id).await? {
        Some(m) => Ok(Json(m.into())),
        None => Err(Error::NotFound(id)),
    }
}

/// Lists messages, oldest first, with their delivery state.
#[utoipa::path(get, path = "/messages", params(PageParams), responses(
    (status = 200, body = MessagePage),
    (status = 400, body = flotilla_kit::Problem),
))]
pub async fn list(
    State(app): State<App>,
    Query(params): Query<PageParams>,
) -> Result<Json<MessagePage>, Error> {
    let page = params.validate(100, 1000).map_err(Error::BadQuery)?;
    let items = store::list(&app.ctx.db, &page.after, page.fetch()).await?;
    let (items, next) = page.split(items, |m| &m.id);
    Ok(Json(MessagePage {
        items: items.into_iter().map(MessageBody::from).collect(),
        next,
    }))
}
