//! Writing state and the events it causes together: a [`Tx`] is a database
//! transaction that can stage events in the outbox and, when it commits,
//! hands them to the relay that publishes them. Staging is only possible
//! through it (or a consumer's [`Staging`](crate::consume::Staging), or
//! [`Context::publish`](crate::Context::publish)), so no staged event waits
//! for the relay's next read of the outbox.

use std::ops::{Deref, DerefMut};

use flotilla_bus::outbox::Waker;
use flotilla_contracts::Event;
use sqlx::{Any, AnyConnection, Transaction};

/// A transaction on a service's database that may stage events.
pub struct Tx {
    inner: Transaction<'static, Any>,
    outbox: Waker,
    /// Handed to the relay once the transaction commits.
    staged: Vec<flotilla_bus::Message>,
}

impl Tx {
    pub(crate) fn new(inner: Transaction<'static, Any>, outbox: Waker) -> Self {
        Self {
            inner,
            outbox,
            staged: Vec::new(),
        }
    }

    /// Stages `event` in the outbox; it leaves once the transaction commits.
    pub async fn stage<E: Event>(&mut self, event: &E) -> Result<(), sqlx::Error> {
        let message = message(event);
        flotilla_bus::outbox::stage(&mut self.inner, &message).await?;
        self.staged.push(message);
        Ok(())
    }

    /// Stages every one of `events`, in order.
    pub async fn stage_all<E: Event>(&mut self, events: &[E]) -> Result<(), sqlx::Error> {
        let messages: Vec<_> = events.iter().map(message).collect();
        flotilla_bus::outbox::stage_all(&mut self.inner, &messages).await?;
        self.staged.extend(messages);
        Ok(())
    }

    /// Commits, then hands the events staged to the relay.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await?;
        self.outbox.hand(self.staged);
        Ok(())
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

/// The bus message that carries `event`, with its schema header.
pub(crate) fn message<E: Event>(event: &E) -> flotilla_bus::Message {
    let payload = serde_json::to_vec(event).expect("events serialize");
    flotilla_bus::Message::new(E::SUBJECT, payload)
        .with_header(flotilla_contracts::SCHEMA_HEADER, E::SCHEMA)
}
