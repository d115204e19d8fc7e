//! The consuming side: a [`Consumer`] runs a [`Handler`] for each delivery in
//! a transaction that also records the message id in the inbox, retries
//! failures with exponential back-off, and moves a message to the dead-letter
//! table once its attempts are spent.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::join_all;
use rand::RngExt;
use sqlx::{AnyConnection, AnyPool};
use tokio_util::sync::CancellationToken;

use crate::sql::Held;
use crate::{Bus, BusError, Delivery, Message, Subscription, now_ms};

/// Deliveries already waiting that are handled in one transaction at most.
const TOGETHER: usize = 128;

/// Why a handler did not handle a message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: a timeout, a database that is busy.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (a payload that does not parse): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
}

impl From<sqlx::Error> for HandlerError {
    fn from(error: sqlx::Error) -> Self {
        HandlerError::Transient(error.to_string())
    }
}

/// The effect of a message, applied inside the consumer's transaction.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, tx: &mut AnyConnection, message: &Message) -> Result<(), HandlerError>;

    /// Applies `messages`, in order, in one transaction: what a handler
    /// overrides to apply many with fewer statements than one by one. An
    /// error undoes them all; the consumer then handles each on its own.
    async fn handle_all(
        &self,
        tx: &mut AnyConnection,
        messages: &[&Message],
    ) -> Result<(), HandlerError> {
        for message in messages {
            self.handle(tx, message).await?;
        }
        Ok(())
    }

    /// Called after the transaction of a handled message committed.
    fn committed(&self) {}
}

/// How often and how patiently a consumer retries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Deliveries before the message is dead-lettered.
    pub max_attempts: u32,
    /// Back-off before the second delivery; doubled each time after.
    pub base: Duration,
    /// Upper bound of the back-off.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Back-off after failed delivery `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.base, self.max, attempt)
    }
}

/// Exponential back-off after failed `attempt` (1-based): `base` doubled per
/// attempt up to `max`, with jitter over the upper half so that retries of
/// many messages spread out.
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(20))
        .min(max);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// A consumer group member bound to one database.
pub struct Consumer {
    /// The name recorded in the inbox and the dead-letter table.
    name: String,
    pool: AnyPool,
    handler: Arc<dyn Handler>,
    retry: RetryPolicy,
}

impl Consumer {
    pub fn new(name: impl Into<String>, pool: AnyPool, handler: impl Handler) -> Self {
        Self {
            name: name.into(),
            pool,
            handler: Arc::new(handler),
            retry: RetryPolicy::default(),
        }
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Subscribes to `subject` in the group named after the consumer, then
    /// returns the loop to run until `shutdown`. Subscribing first means that
    /// nothing published after this returns is missed.
    pub async fn subscribe(
        self,
        bus: &dyn Bus,
        subject: &str,
        shutdown: CancellationToken,
    ) -> Result<impl Future<Output = ()> + Send + 'static, BusError> {
        let subscription = bus.subscribe(subject, &self.name).await?;
        Ok(async move {
            tokio::select! {
                () = self.run(subscription) => {}
                () = shutdown.cancelled() => {}
            }
        })
    }

    /// Handles deliveries as they come: those already waiting together, in
    /// one transaction, the others one at a time. A delivery cut short by
    /// shutdown is dropped unsettled, and so redelivered.
    async fn run(self, mut subscription: Subscription) {
        let mut conn = Held::new(self.pool.clone());
        while let Some(first) = subscription.next().await {
            let mut ready = vec![first];
            while ready.len() < TOGETHER {
                match subscription.next().now_or_never() {
                    Some(Some(delivery)) => ready.push(delivery),
                    _ => break,
                }
            }
            if ready.len() == 1 {
                self.process(&mut conn, ready.pop().expect("one")).await;
            } else {
                self.process_together(&mut conn, ready).await;
            }
        }
    }

    /// Applies `ready` in one transaction and acknowledges them all; if any
    /// fails, nothing of them is kept and each goes its own way instead.
    async fn process_together(&self, conn: &mut Held, ready: Vec<Delivery>) {
        let messages: Vec<&Message> = ready.iter().map(|d| &d.message).collect();
        let applied = self.apply_all(conn, &messages).await;
        drop(messages);
        match applied {
            // Settled together: a backend's acks then share round trips.
            Ok(()) => drop(join_all(ready.into_iter().map(Delivery::ack)).await),
            Err(error) => {
                tracing::debug!(consumer = %self.name, %error, count = ready.len(), "a batch failed; handling its messages one by one");
                for delivery in ready {
                    self.process(conn, delivery).await;
                }
            }
        }
    }

    async fn process(&self, conn: &mut Held, delivery: Delivery) {
        let id = delivery.message.id.clone();
        match self.apply_all(conn, &[&delivery.message]).await {
            Ok(()) => {
                let _ = delivery.ack().await;
            }
            Err(error) => {
                let permanent = matches!(error, HandlerError::Permanent(_));
                if permanent || delivery.attempt >= self.retry.max_attempts {
                    tracing::error!(consumer = %self.name, %id, attempts = delivery.attempt, %error, "dead-lettering message");
                    match self
                        .dead_letter(&delivery.message, delivery.attempt, &error.to_string())
                        .await
                    {
                        Ok(()) => {
                            let _ = delivery.ack().await;
                        }
                        Err(db) => {
                            tracing::error!(%db, "could not dead-letter message; will retry");
                            let _ = delivery.nack(self.retry.max).await;
                        }
                    }
                } else {
                    let delay = self.retry.backoff(delivery.attempt);
                    tracing::warn!(consumer = %self.name, %id, attempt = delivery.attempt, %error, ?delay, "handler failed; retrying");
                    let _ = delivery.nack(delay).await;
                }
            }
        }
    }

    /// The effects and inbox records of `messages`, in one transaction:
    /// those not in the inbox yet are recorded there with one statement and
    /// handed to the handler together.
    async fn apply_all(&self, conn: &mut Held, messages: &[&Message]) -> Result<(), HandlerError> {
        let applied = self.apply_in(conn, messages).await;
        conn.release(applied.is_ok());
        applied
    }

    async fn apply_in(&self, conn: &mut Held, messages: &[&Message]) -> Result<(), HandlerError> {
        let mut tx = conn.begin().await?;
        let fresh = self.record(&mut tx, messages).await?;
        if !fresh.is_empty() {
            self.handler.handle_all(&mut tx, &fresh).await?;
        }
        tx.commit().await?;
        if !fresh.is_empty() {
            self.handler.committed();
        }
        Ok(())
    }

    /// Records `messages` in the inbox: those that were not there yet, in
    /// order, each once.
    async fn record<'m>(
        &self,
        tx: &mut AnyConnection,
        messages: &[&'m Message],
    ) -> Result<Vec<&'m Message>, HandlerError> {
        let sql = format!(
            "INSERT INTO inbox (consumer, message_id, handled_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING message_id",
            crate::sql::values(tx, messages.len(), 3)
        );
        let now = now_ms();
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for message in messages {
            query = query.bind(&self.name).bind(&message.id).bind(now);
        }
        let mut fresh: HashSet<String> = query.fetch_all(&mut *tx).await?.into_iter().collect();
        let skipped = messages.len() - fresh.len();
        if skipped > 0 {
            tracing::debug!(consumer = %self.name, skipped, "duplicate deliveries skipped");
        }
        Ok(messages
            .iter()
            .copied()
            .filter(|message| fresh.remove(&message.id))
            .collect())
    }

    /// Records the message in the dead-letter table and, in the same
    /// transaction, stages a copy on `dead.<subject>` in the outbox, so that
    /// whoever watches `dead.>` hears of it.
    async fn dead_letter(
        &self,
        message: &Message,
        attempts: u32,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(
            "INSERT INTO dead_letters \
             (consumer, message_id, subject, headers, payload, attempts, error, failed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&self.name)
        .bind(&message.id)
        .bind(&message.subject)
        .bind(serde_json::to_string(&message.headers).expect("string map serializes"))
        .bind(String::from_utf8_lossy(&message.payload).as_ref())
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if recorded == 1 {
            let mut dead =
                Message::new(format!("dead.{}", message.subject), message.payload.clone())
                    .with_header("dead-consumer", self.name.clone())
                    .with_header("dead-message-id", message.id.clone())
                    .with_header("dead-attempts", attempts.to_string())
                    .with_header("dead-error", error);
            dead.headers.extend(message.headers.clone());
            crate::outbox::stage(&mut tx, &dead).await?;
        }
        tx.commit().await
    }
}

/// A message a consumer gave up on.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeadLetter {
    pub consumer: String,
    pub message_id: String,
    pub subject: String,
    pub payload: String,
    pub attempts: i64,
    pub error: String,
    pub failed_at: i64,
}

/// Every dead letter in `pool`, newest first.
pub async fn dead_letters(pool: &AnyPool) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT consumer, message_id, subject, payload, attempts, error, failed_at \
         FROM dead_letters ORDER BY failed_at DESC",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..30 {
            let exp = (100u64 << (attempt - 1).min(20)).min(1000);
            let d = policy.backoff(attempt).as_millis() as u64;
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d} ms");
        }
    }
}
