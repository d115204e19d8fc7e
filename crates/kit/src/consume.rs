//! Typed consumers: a [`Consume`] handler receives the decoded, versioned
//! event inside the consumer's transaction. A payload that does not decode,
//! or carries another schema, goes to the dead letters with the reason; what
//! a handler staged is handed to the outbox relay once its transaction commits.

use std::sync::Mutex;

use async_trait::async_trait;
pub use flotilla_bus::Message;
pub use flotilla_bus::consumer::HandlerError;
use flotilla_bus::consumer::{Consumer, Handler};
use flotilla_bus::outbox::Waker;
use flotilla_contracts::{Event, SCHEMA_HEADER};
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;

use crate::tx::message;

/// The effect of one event, applied in the consumer's transaction.
#[async_trait]
pub trait Consume: Send + Sync + 'static {
    /// The event consumed, on its subject.
    type Event: Event + DeserializeOwned + Send;

    /// Applies `event`; `message` carries its id and headers.
    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        event: Self::Event,
        message: &Message,
    ) -> Result<(), HandlerError>;

    /// Applies several events, in order, in one transaction; a handler
    /// overrides it to apply them with fewer statements than one by one.
    /// An error undoes them all, and each is then handled on its own.
    async fn handle_all(
        &self,
        tx: &mut Staging<'_>,
        events: Vec<(Self::Event, &Message)>,
    ) -> Result<(), HandlerError> {
        for (event, message) in events {
            self.handle(tx, event, message).await?;
        }
        Ok(())
    }

    /// Called after a transaction that applied events committed.
    fn committed(&self) {}
}

/// The consumer's transaction, in which a handler may stage events.
pub struct Staging<'a> {
    conn: &'a mut AnyConnection,
    staged: &'a Mutex<Vec<Message>>,
}

impl Staging<'_> {
    /// Stages `event` in the outbox, in the consumer's transaction.
    pub async fn stage<E: Event>(&mut self, event: &E) -> Result<(), sqlx::Error> {
        let message = message(event);
        flotilla_bus::outbox::stage(self.conn, &message).await?;
        self.staged.lock().unwrap().push(message);
        Ok(())
    }

    /// Stages every one of `events`, in order, in as few statements as it can.
    pub async fn stage_all<E: Event>(&mut self, events: &[E]) -> Result<(), sqlx::Error> {
        let messages: Vec<_> = events.iter().map(message).collect();
        flotilla_bus::outbox::stage_all(self.conn, &messages).await?;
        self.staged.lock().unwrap().extend(messages);
        Ok(())
    }
}

impl std::ops::Deref for Staging<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn
    }
}

impl std::ops::DerefMut for Staging<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
    }
}

/// Decodes `message` as `E`: its schema header, when present, must be
/// `E::SCHEMA`.
pub fn decode<E: Event + DeserializeOwned>(message: &Message) -> Result<E, HandlerError> {
    if let Some(schema) = message.headers.get(SCHEMA_HEADER)
        && schema != E::SCHEMA
    {
        return Err(HandlerError::Permanent(format!(
            "expected schema {}, got {schema}",
            E::SCHEMA
        )));
    }
    serde_json::from_slice(&message.payload)
        .map_err(|e| HandlerError::Permanent(format!("not a {} event: {e}", E::SCHEMA)))
}

/// A [`Consume`] as the bus's untyped [`Handler`].
struct Typed<C> {
    inner: C,
    outbox: Waker,
    /// Staged by the transaction under way; handed to the relay if it
    /// commits. One consumer runs one transaction at a time.
    staged: Mutex<Vec<Message>>,
}

#[async_trait]
impl<C: Consume> Handler for Typed<C> {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError> {
        self.handle_all(tx, &[message]).await
    }

    async fn handle_all(
        &self,
        tx: &mut AnyConnection,
        messages: &[&Message],
    ) -> Result<(), HandlerError> {
        // What a transaction that did not commit staged is gone with it.
        self.staged.lock().unwrap().clear();
        let events = messages
            .iter()
            .map(|message| Ok((decode::<C::Event>(message)?, *message)))
            .collect::<Result<Vec<_>, HandlerError>>()?;
        let mut staging = Staging {
            conn: tx,
            staged: &self.staged,
        };
        self.inner.handle_all(&mut staging, events).await
    }

    fn committed(&self) {
        self.outbox
            .hand(std::mem::take(&mut *self.staged.lock().unwrap()));
        self.inner.committed();
    }
}

/// The bus consumer that runs `handler` in the group `group`.
pub(crate) fn consumer<C: Consume>(
    group: &str,
    pool: sqlx::AnyPool,
    outbox: Waker,
    handler: C,
) -> Consumer {
    let typed = Typed {
        inner: handler,
        outbox,
        staged: Mutex::default(),
    };
    Consumer::new(group, pool, typed)
}
