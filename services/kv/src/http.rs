//! HTTP handlers of the kv service: roundtrips, batches, stored pairs, and
//! the websocket feed.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use flotilla_kit::page::{Page, PageParams};
use flotilla_kit::{Context, Json, Query};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

// utoipa reads a type named `Value` as any JSON value: this one is not.
use crate::domain::Value as PairValue;
use crate::domain::{BatchId, Item, Items, Key, MAX_BATCH};
use crate::error::Error;
use crate::events::{BatchItemV1, Outcome, RoundtripV1, StoredV1};
use crate::live::Live;
use crate::store::{self, Batch, Store};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub store: Store,
    pub live: Live,
    pub batch_timeout: Duration,
    /// The most items a batch may have.
    pub batch_max_items: usize,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/roundtrip", post(roundtrip))
        .route("/ws", get(ws))
        .route("/pairs/{key}", get(pair))
        .route("/batch", post(batch))
        .route("/batches", get(list_batches))
        .route("/batches/{id}", get(fetch_batch))
        .with_state(state)
}

/// The body of `POST /kv/roundtrip`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RoundtripRequest {
    #[schema(value_type = Key)]
    key: String,
    #[schema(value_type = PairValue)]
    value: String,
}

/// A roundtrip accepted: its pair will arrive on `/kv/ws` with this id.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoundtripAccepted {
    correlation_id: String,
    key: String,
    value: String,
}

fn invalid(field: &'static str) -> impl FnOnce(&str) -> Error {
    move |detail| Error::invalid(field, detail)
}

/// Sends a pair around: published on `kv.event`, stored by a consumer, then
/// published on `kv.forward` and pushed to every client of `/kv/ws`.
#[utoipa::path(post, path = "/roundtrip", request_body = RoundtripRequest, responses(
    (status = 202, body = RoundtripAccepted),
    (status = 422, description = "Key or value invalid", body = flotilla_kit::Problem),
))]
pub async fn roundtrip(
    State(state): State<AppState>,
    Json(body): Json<RoundtripRequest>,
) -> Result<impl IntoResponse, Error> {
    let key = Key::parse(&body.key).map_err(invalid("key"))?;
    let value = PairValue::parse(&body.value).map_err(invalid("value"))?;
    let event = RoundtripV1 {
        correlation_id: uuid::Uuid::now_v7().to_string(),
        key: key.into_string(),
        value: value.into_string(),
    };
    state.ctx.publish(&event).await?;
    let accepted = RoundtripAccepted {
        correlation_id: event.correlation_id,
        key: event.key,
        value: event.value,
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// The largest frame or message a websocket client may send: it has
/// nothing to say but its close.
const WS_LIMIT: usize = 4096;

/// Pushes every stored pair as a JSON text frame
/// `{"key","value","stored_at","correlation_id"}`; a client frame over 4 KiB
/// ends the connection.
#[utoipa::path(get, path = "/ws",
    params(
        ("Connection" = String, Header, description = "A list of tokens, one of them `upgrade`",
            pattern = "^([ \\t!-+\\--~]*,)*[ \\t]*[Uu][Pp][Gg][Rr][Aa][Dd][Ee][ \\t]*(,[ \\t!-+\\--~]*)*$",
            example = "upgrade"),
        ("Upgrade" = String, Header, description = "`websocket`, in any case",
            pattern = "^[Ww][Ee][Bb][Ss][Oo][Cc][Kk][Ee][Tt]$", example = "websocket"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$", example = "13"),
        ("Sec-WebSocket-Key" = String, Header, description = "The client's nonce (RFC 6455)",
            example = "dGhlIHNhbXBsZSBub25jZQ=="),
    ),
    responses(
        (status = 101, description = "Switched to the websocket: a text frame per stored pair, as `StoredV1`"),
        (status = 400, description = "Not a websocket handshake", body = String, content_type = "text/plain"),
))]
pub async fn ws(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_frame_size(WS_LIMIT)
        .max_message_size(WS_LIMIT)
        .on_upgrade(move |socket| push(socket, state))
}

async fn push(mut socket: WebSocket, state: AppState) {
    let mut feed = state.live.subscribe();
    let shutdown = state.ctx.shutdown.clone();
    loop {
        tokio::select! {
            stored = feed.recv() => match stored {
                Ok(json) => {
                    if socket.send(Frame::text(json.as_ref())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "a websocket client is too slow; frames skipped");
                }
                Err(RecvError::Closed) => return,
            },
            // Whatever the client sends is ignored; its close ends the feed.
            received = socket.recv() => match received {
                Some(Ok(Frame::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            () = shutdown.cancelled() => {
                let _ = socket.send(Frame::Close(None)).await;
                return;
            }
        }
    }
}

/// The stored value of a key, with the roundtrip that stored it.
#[utoipa::path(get, path = "/pairs/{key}", params(("key" = String, Path)), responses(
    (status = 200, body = StoredV1),
    (status = 404, body = flotilla_kit::Problem),
))]
pub async fn pair(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<StoredV1>, Error> {
    match state.store.pair(&key).await? {
        Some(pair) => Ok(Json(pair.into())),
        None => Err(Error::not_found(format!("no pair with key {key}"))),
    }
}

/// The body of `POST /kv/batch`: a size, or the items themselves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Resubmitting with the same id never stores the batch twice (the
    /// `Idempotency-Key` header does the same).
    id: Option<String>,
    /// Generate this many items (`item-000000` = `value-000000`, ...).
    size: Option<u64>,
    items: Option<Vec<ItemBody>>,
}

impl utoipa::PartialSchema for BatchRequest {
    /// One of two shapes, `size` or `items`, the other absent or null.
    fn schema() -> RefOr<Schema> {
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let id = OneOfBuilder::new()
            .item(null())
            .item(Ref::from_schema_name(BatchId::name()))
            .description(Some(
                "Resubmitting with the same id never stores the batch twice. The \
                 `Idempotency-Key` header does the same; when both are given they \
                 must be equal.",
            ))
            .build();
        let id = RefOr::T(Schema::OneOf(id));
        let shape = |field: &str, schema: RefOr<Schema>, other: &str| {
            ObjectBuilder::new()
                .property("id", id.clone())
                .property(field, schema)
                .required(field)
                .property(other, null())
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let size = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .description(Some(
                "Generate this many items (`item-000000` = `value-000000`, ...).",
            ))
            .minimum(Some(1))
            .maximum(Some(MAX_BATCH as u64))
            .examples([100]);
        let items = ArrayBuilder::new()
            .items(Ref::from_schema_name(ItemBody::name()))
            .description(Some("The items, no key twice."))
            .min_items(Some(1))
            .max_items(Some(MAX_BATCH));
        OneOfBuilder::new()
            .description(Some(
                "The body of `POST /kv/batch`: a size, or the items themselves.",
            ))
            .item(shape("size", size.into(), "items").title(Some("Generated")))
            .item(shape("items", items.into(), "size").title(Some("Given")))
            .into()
    }
}

/// `doc` with the batch size bounded by `max` (`--kv-batch-max-items`)
/// rather than by [`MAX_BATCH`].
pub fn with_batch_max(doc: utoipa::openapi::OpenApi, max: u32) -> utoipa::openapi::OpenApi {
    let mut value = serde_json::to_value(&doc).expect("an OpenAPI document serializes");
    let shapes = value
        .pointer_mut(&format!(
            "/components/schemas/{}/oneOf",
            BatchRequest::name()
        ))
        .and_then(serde_json::Value::as_array_mut)
        .expect("the batch body is a oneOf");
    for shape in shapes {
        if let Some(size) = shape.pointer_mut("/properties/size/maximum") {
            *size = max.into();
        }
        if let Some(items) = shape.pointer_mut("/properties/items/maxItems") {
            *items = max.into();
        }
    }
    serde_json::from_value(value).expect("still an OpenAPI document")
}

impl ToSchema for BatchRequest {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((BatchId::name().into(), BatchId::schema()));
        schemas.push((ItemBody::name().into(), ItemBody::schema()));
        <ItemBody as ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemBody {
    #[schema(value_type = Key)]
    key: String,
    #[schema(value_type = PairValue)]
    value: String,
}

impl From<Item> for ItemBody {
    fn from(item: Item) -> Self {
        Self {
            key: item.key,
            value: item.value,
        }
    }
}

/// A batch: stored whole (`done`), or still arriving (`pending`, with the
/// count of items received so far and no items).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchBody {
    id: String,
    /// `done` or `pending`.
    status: &'static str,
    size: i64,
    /// RFC 3339, UTC; absent while pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    stored_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    items: Option<Vec<ItemBody>>,
}

impl From<Batch> for BatchBody {
    fn from(batch: Batch) -> Self {
        Self {
            id: batch.id,
            status: "done",
            size: batch.size,
            stored_at: Some(batch.stored_at),
            received: None,
            items: None,
        }
    }
}

/// Stores a batch whole: publishes its items, one message each, on
/// `kv.batch`, and answers once the consumer that got the last one has
/// stored the batch and replied on `kv.batch.reply`.
#[utoipa::path(post, path = "/batch", request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false,
        description = "The batch id, if not in the body; equal to it if both are given",
        min_length = 1, max_length = 100, pattern = "^[A-Za-z0-9._:-]+$")),
    responses(
        (status = 200, description = "Stored whole", body = BatchBody),
        (status = 409, description = "The id names another batch, or the batch failed", body = flotilla_kit::Problem),
        (status = 422, description = "Size, items or id invalid, or the id differs from the Idempotency-Key header", body = flotilla_kit::Problem),
        (status = 504, description = "No reply in time (the wait starts once every item is queued); the batch may still complete", body = flotilla_kit::Problem),
))]
pub async fn batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<BatchRequest>,
) -> Result<Json<BatchBody>, Error> {
    let id = batch_id(&headers, body.id.as_deref())?;
    let items = match (body.size, body.items) {
        (Some(size), None) => Items::generate(size, state.batch_max_items)
            .map_err(|detail| Error::invalid("size", detail))?,
        (None, Some(items)) => {
            let pairs = items.into_iter().map(|i| (i.key, i.value)).collect();
            Items::given(pairs, state.batch_max_items)
                .map_err(|detail| Error::invalid("items", detail))?
        }
        _ => {
            return Err(Error::invalid("size", "give either `size` or `items`"));
        }
    };
    let size = items.len();
    let mut waiter = state.live.wait_for(id.as_str());
    if let Some(stored) = state.store.batch(id.as_str()).await? {
        return same_size(stored, size).map(Json);
    }
    let mut tx = state.ctx.begin().await?;
    match store::request_batch(&mut tx, id.as_str(), size).await? {
        // Asked for before: its items are on their way already.
        Some(first) if first != size as i64 => {
            return Err(Error::conflict(format!(
                "batch {} was asked for with {first} items, not {size}",
                id.as_str()
            )));
        }
        Some(_) => drop(tx),
        None => {
            let total = size as u32;
            let messages: Vec<_> = items
                .into_vec()
                .into_iter()
                .enumerate()
                .map(|(index, item)| BatchItemV1 {
                    batch_id: id.as_str().to_owned(),
                    index: index as u32,
                    total,
                    key: item.key,
                    value: item.value,
                })
                .collect();
            tx.stage_all(&messages).await?;
            tx.commit().await?;
        }
    }
    let timeout = state.batch_timeout;
    match tokio::time::timeout(timeout, &mut waiter.rx).await {
        Ok(Ok(Outcome::Done { size, stored_at })) => Ok(Json(BatchBody {
            id: id.as_str().to_owned(),
            status: "done",
            size: i64::from(size),
            stored_at: Some(stored_at),
            received: None,
            items: None,
        })),
        Ok(Ok(Outcome::Failed { reason })) => Err(Error::conflict(reason)),
        // Timed out, or the reply went by unheard (this instance restarted
        // its listener): the store has the last word.
        Ok(Err(_)) | Err(_) => match state.store.batch(id.as_str()).await? {
            Some(stored) => same_size(stored, size).map(Json),
            None => Err(Error::Timeout {
                id: id.as_str().to_owned(),
                timeout_ms: timeout.as_millis() as u64,
            }),
        },
    }
}

fn batch_id(headers: &HeaderMap, body: Option<&str>) -> Result<BatchId, Error> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| Error::invalid("Idempotency-Key", "must be visible ASCII"))?,
        ),
    };
    match (body, header) {
        (Some(body), Some(header)) if body != header => Err(Error::invalid(
            "id",
            "differs from the Idempotency-Key header",
        )),
        (Some(id), _) => BatchId::parse(id).map_err(invalid("id")),
        (None, Some(id)) => BatchId::parse(id).map_err(invalid("Idempotency-Key")),
        (None, None) => Ok(BatchId::new()),
    }
}

fn same_size(stored: Batch, size: usize) -> Result<BatchBody, Error> {
    if stored.size != size as i64 {
        return Err(Error::conflict(format!(
            "batch {} is stored with {} items, not {size}",
            stored.id, stored.size
        )));
    }
    Ok(stored.into())
}

/// Lists stored batches, newest first, with their sizes.
#[utoipa::path(get, path = "/batches", params(PageParams), responses(
    (status = 200, body = Page<BatchBody>),
    (status = 400, body = flotilla_kit::Problem),
))]
pub async fn list_batches(
    State(state): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<BatchBody>>, Error> {
    let request = params.validate(20)?;
    let batches = state.store.batches(&request.after, request.fetch()).await?;
    Ok(Json(request.page(batches, |b| &b.id)))
}

/// One stored batch with its items, or the progress of one still arriving.
#[utoipa::path(get, path = "/batches/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = BatchBody),
    (status = 404, body = flotilla_kit::Problem),
))]
pub async fn fetch_batch(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BatchBody>, Error> {
    let Some(batch) = state.store.batch(&id).await? else {
        return match store::pending(&state.ctx.db, &id).await? {
            Some((size, received)) => Ok(Json(BatchBody {
                id,
                status: "pending",
                size,
                stored_at: None,
                received: Some(received),
                items: None,
            })),
            None => Err(Error::not_found(format!("no batch with id {id}"))),
        };
    };
    let items = state.store.items(&id).await?;
    let mut body = BatchBody::from(batch);
    body.items = Some(items.into_iter().map(ItemBody::from).collect());
    Ok(Json(body))
}
