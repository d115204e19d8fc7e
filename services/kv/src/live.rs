//! What an instance hears live on the bus: stored pairs, fanned out to its
//! websocket clients, and batch replies, handed to the requests waiting for
//! them. Both are listened to outside any consumer group, so every instance
//! hears every message, whichever instance stored it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_bus::{Bus, BusError, Subscription};
use flotilla_contracts::Event;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::events::{BatchReplyV1, Outcome, StoredV1};

/// Websocket frames buffered per client before a slow one skips ahead.
const FEED_BUFFER: usize = 1024;

/// The live side of one instance.
#[derive(Clone)]
pub struct Live {
    /// Stored pairs as JSON text, ready to send.
    feed: broadcast::Sender<Arc<str>>,
    waiters: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>>,
    /// Set by the first instance to start: the instances of one process
    /// share one listener of each subject, or each frame would go out once
    /// per instance.
    listening: Arc<AtomicBool>,
}

impl Default for Live {
    fn default() -> Self {
        Self {
            feed: broadcast::channel(FEED_BUFFER).0,
            waiters: Arc::default(),
            listening: Arc::default(),
        }
    }
}

impl Live {
    /// Starts listening; nothing published after this returns is missed.
    pub async fn start(
        &self,
        bus: &dyn Bus,
        tasks: &mut JoinSet<()>,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        if self.listening.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let stored = bus.listen(StoredV1::SUBJECT).await?;
        let replies = bus.listen(BatchReplyV1::SUBJECT).await?;
        let this = self.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            stop.run_until_cancelled(this.forward(stored))
                .await
                .unwrap_or(())
        });
        let this = self.clone();
        tasks.spawn(async move {
            shutdown
                .run_until_cancelled(this.answer(replies))
                .await
                .unwrap_or(())
        });
        Ok(())
    }

    async fn forward(self, mut stored: Subscription) {
        while let Some(delivery) = stored.next().await {
            match std::str::from_utf8(&delivery.message.payload) {
                // No receiver is not an error: nobody is connected.
                Ok(json) => drop(self.feed.send(Arc::from(json))),
                Err(_) => {
                    tracing::warn!(id = %delivery.message.id, "kv.forward payload is not UTF-8")
                }
            }
        }
    }

    async fn answer(self, mut replies: Subscription) {
        while let Some(delivery) = replies.next().await {
            let reply: BatchReplyV1 = match serde_json::from_slice(&delivery.message.payload) {
                Ok(reply) => reply,
                Err(error) => {
                    tracing::warn!(id = %delivery.message.id, %error, "malformed kv.batch.reply");
                    continue;
                }
            };
            let waiting = self.waiters.lock().unwrap().remove(&reply.batch_id);
            for waiter in waiting.into_iter().flatten() {
                let _ = waiter.send(reply.outcome.clone());
            }
        }
    }

    /// A receiver of stored pairs, for one websocket client.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.feed.subscribe()
    }

    /// Waits for the reply to batch `id`; register before publishing it.
    pub fn wait_for(&self, id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap()
            .entry(id.to_owned())
            .or_default()
            .push(tx);
        Waiter {
            id: id.to_owned(),
            rx,
            waiters: self.waiters.clone(),
        }
    }
}

/// A request waiting for its batch's reply; dropping it stops waiting.
pub struct Waiter {
    id: String,
    pub rx: oneshot::Receiver<Outcome>,
    waiters: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<Outcome>>>>>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.rx.close();
        let mut waiters = self.waiters.lock().unwrap();
        if let Some(list) = waiters.get_mut(&self.id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                waiters.remove(&self.id);
            }
        }
    }
}
