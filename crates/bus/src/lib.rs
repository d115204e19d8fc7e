//! The message bus: one [`Bus`] trait, its backends, and the outbox and inbox
//! that make delivery at-least-once and effects exactly-once.
//!
//! A service never publishes from a request handler straight to the bus. It
//! stages the message in its outbox table, in the same transaction as the state
//! change that caused it ([`outbox::stage`]); the [`outbox::Relay`] hands staged
//! messages to the bus and marks them published once the bus confirms. On the
//! other side a [`consumer::Consumer`] records each handled message id in the
//! inbox table in the same transaction as its effect, so a redelivery has no
//! second effect, and moves a message that keeps failing to the dead-letter
//! table after bounded retries.

pub mod amqp;
pub mod consumer;
pub mod memory;
pub mod nats;
pub mod outbox;
pub mod sql;
mod subject;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use memory::MemoryBus;

/// A message on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Unique id, kept across redeliveries; consumers de-duplicate on it.
    pub id: String,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Bytes,
    /// Where a responder sends its answer, for request/reply.
    pub reply_to: Option<String>,
}

impl Message {
    /// A new message with a fresh, time-ordered id.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            subject: subject.into(),
            headers: BTreeMap::new(),
            payload: payload.into(),
            reply_to: None,
        }
    }

    /// The answer to `request`, addressed to its `reply_to` subject.
    pub fn reply(request: &Message, payload: impl Into<Bytes>) -> Option<Self> {
        let to = request.reply_to.as_ref()?;
        Some(Self::new(to.clone(), payload))
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// Errors of a bus backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("nobody is subscribed to {0}")]
    NoResponders(String),
    #[error("the bus is closed")]
    Closed,
    #[error("bus backend error: {0}")]
    Backend(String),
}

/// A message bus: publish, subscribe as a member of a consumer group with
/// explicit acknowledgement, and request/reply.
///
/// Subjects are dot-separated tokens; a subscription may use `*` for one token
/// and a final `>` for one or more. Every group subscribed to a subject gets
/// each message once; within a group, subscribers compete for messages.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The backend's name, for logs and `/health`.
    fn backend(&self) -> &'static str;

    /// Hands `message` to the bus and returns once the bus has taken
    /// responsibility for it. Until then the caller (the outbox relay) keeps it.
    async fn publish(&self, message: Message) -> Result<(), BusError>;

    /// Joins consumer `group` on `subject`.
    async fn subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError>;

    /// Hears every message published on `subject` from now on, outside any
    /// group and without acknowledgement (its deliveries settle as no-ops):
    /// for live views such as a websocket feed. Nothing is kept for a
    /// listener that is not there, and listeners never hold up a publish.
    async fn listen(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Sends `payload` to one subscriber of `subject` and waits for its reply.
    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError>;

    /// Checks now that the bus can take and deliver messages: the backend's
    /// connection is up and the broker answers a round trip, within
    /// `timeout` (after which it is [`BusError::Timeout`]). It changes
    /// nothing and is cheap enough for `/health` to ask on every request;
    /// an error's text says what is wrong, without addresses or secrets.
    async fn probe(&self, timeout: Duration) -> Result<(), BusError>;
}

/// A stream of deliveries for one member of a consumer group.
pub struct Subscription {
    inner: Box<dyn Source>,
}

impl Subscription {
    pub fn new(source: impl Source) -> Self {
        Self {
            inner: Box::new(source),
        }
    }

    /// The next delivery, or `None` once the bus is closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.inner.next().await
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

/// What a backend implements to feed a [`Subscription`].
#[async_trait]
pub trait Source: Send + 'static {
    async fn next(&mut self) -> Option<Delivery>;
}

/// One delivery of a message. It must be settled with [`Delivery::ack`] or
/// [`Delivery::nack`]; a delivery dropped unsettled is redelivered.
pub struct Delivery {
    pub message: Message,
    /// 1 for the first delivery, 2 for the first redelivery, and so on.
    pub attempt: u32,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(message: Message, attempt: u32, acker: impl Acker) -> Self {
        Self {
            message,
            attempt,
            acker: Box::new(acker),
        }
    }

    /// The message is handled; it will not be delivered to this group again.
    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// The message could not be handled; deliver it again after `delay`.
    pub async fn nack(self, delay: Duration) -> Result<(), BusError> {
        self.acker.nack(delay).await
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// How a backend settles a delivery.
#[async_trait]
pub trait Acker: Send + 'static {
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
}

/// The acker of a delivery there is nothing to settle for: a request, or a
/// message heard by a listener.
pub(crate) struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }

    async fn nack(self: Box<Self>, _delay: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, the time unit of the bus tables.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
