//! What the kv service publishes and consumes, all through the outbox:
//! `kv.event` (a roundtrip's pair, to store) → `kv.forward` (the pair
//! stored, to push to websockets); `kv.batch` (one item of a batch) →
//! `kv.batch.reply` (the batch's outcome, once its last item is stored).

use async_trait::async_trait;
use flotilla_contracts::Event;
use flotilla_kit::consume::{Consume, HandlerError, Message, Staging};
use serde::{Deserialize, Serialize};

use crate::domain::{Item, Pair};
use crate::store::{self, Staged, Store};

/// A pair sent on a roundtrip, to be stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundtripV1 {
    pub correlation_id: String,
    pub key: String,
    pub value: String,
}

impl Event for RoundtripV1 {
    const SUBJECT: &'static str = "kv.event";
    const SCHEMA: &'static str = "kv.event.v1";
}

/// A pair stored by a roundtrip: what websocket clients receive.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredV1 {
    pub key: String,
    pub value: String,
    /// RFC 3339, UTC.
    pub stored_at: String,
    pub correlation_id: String,
}

impl Event for StoredV1 {
    const SUBJECT: &'static str = "kv.forward";
    const SCHEMA: &'static str = "kv.forward.v1";
}

/// One item of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchItemV1 {
    pub batch_id: String,
    /// 0-based position in the batch.
    pub index: u32,
    pub total: u32,
    pub key: String,
    pub value: String,
}

impl Event for BatchItemV1 {
    const SUBJECT: &'static str = "kv.batch";
    const SCHEMA: &'static str = "kv.batch.v1";
}

/// The outcome of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchReplyV1 {
    pub batch_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Done { size: u32, stored_at: String },
    Failed { reason: String },
}

impl Event for BatchReplyV1 {
    const SUBJECT: &'static str = "kv.batch.reply";
    const SCHEMA: &'static str = "kv.batch.reply.v1";
}

impl From<Pair> for StoredV1 {
    fn from(pair: Pair) -> Self {
        Self {
            key: pair.key,
            value: pair.value,
            stored_at: pair.stored_at,
            correlation_id: pair.correlation_id,
        }
    }
}

/// Stores a roundtrip's pair and forwards it, in the consumer's transaction.
pub struct StorePair {
    pub store: Store,
}

#[async_trait]
impl Consume for StorePair {
    type Event = RoundtripV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        event: RoundtripV1,
        message: &Message,
    ) -> Result<(), HandlerError> {
        self.handle_all(tx, vec![(event, message)]).await
    }

    /// Stores the pairs with one statement and forwards them with another.
    async fn handle_all(
        &self,
        tx: &mut Staging<'_>,
        events: Vec<(RoundtripV1, &Message)>,
    ) -> Result<(), HandlerError> {
        let stored_at = flotilla_kit::timestamp();
        let pairs: Vec<Pair> = events
            .into_iter()
            .map(|(event, _)| Pair {
                key: event.key,
                value: event.value,
                stored_at: stored_at.clone(),
                correlation_id: event.correlation_id,
            })
            .collect();
        self.store.save_pairs(tx, &pairs).await?;
        let stored: Vec<StoredV1> = pairs.into_iter().map(StoredV1::from).collect();
        tx.stage_all(&stored).await?;
        Ok(())
    }
}

/// Counts the items of a batch; the one that completes it stores the whole
/// batch and stages the reply, in its transaction.
pub struct CollectBatch {
    pub store: Store,
}

#[async_trait]
impl Consume for CollectBatch {
    type Event = BatchItemV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        item: BatchItemV1,
        message: &Message,
    ) -> Result<(), HandlerError> {
        self.handle_all(tx, vec![(item, message)]).await
    }

    /// Counts the items of each batch among `items` with a few statements.
    async fn handle_all(
        &self,
        tx: &mut Staging<'_>,
        items: Vec<(BatchItemV1, &Message)>,
    ) -> Result<(), HandlerError> {
        // Items of one batch id and size, in the order they came.
        let mut batches: Vec<(String, u32, Vec<(u32, Item)>)> = Vec::new();
        for (item, _) in items {
            if item.total == 0 || item.index >= item.total {
                return Err(HandlerError::Permanent(format!(
                    "item {} of a batch of {}",
                    item.index, item.total
                )));
            }
            let entry = (
                item.index,
                Item {
                    key: item.key,
                    value: item.value,
                },
            );
            match batches
                .iter_mut()
                .find(|(id, total, _)| *id == item.batch_id && *total == item.total)
            {
                Some((_, _, entries)) => entries.push(entry),
                None => batches.push((item.batch_id, item.total, vec![entry])),
            }
        }
        for (batch_id, total, entries) in batches {
            self.collect(tx, batch_id, total, &entries).await?;
        }
        Ok(())
    }
}

impl CollectBatch {
    async fn collect(
        &self,
        tx: &mut Staging<'_>,
        batch_id: String,
        total: u32,
        items: &[(u32, Item)],
    ) -> Result<(), HandlerError> {
        let outcome = match store::stage_items(tx, &batch_id, total, items).await? {
            Staged::Duplicate | Staged::Counted { last: false } => return Ok(()),
            // Two batches under one id, of different sizes: the first wins.
            Staged::WrongSize { total: first } => Outcome::Failed {
                reason: format!("batch {batch_id} is {first} items long, not {total}"),
            },
            Staged::Counted { last: true } => {
                let stored_at = self
                    .store
                    .save_batch(tx, &batch_id, total, &flotilla_kit::timestamp())
                    .await?;
                Outcome::Done {
                    size: total,
                    stored_at,
                }
            }
        };
        tx.stage(&BatchReplyV1 { batch_id, outcome }).await?;
        Ok(())
    }
}
