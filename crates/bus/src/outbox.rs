//! The transactional outbox: [`stage`] writes a message in the caller's
//! transaction; the [`Relay`] publishes staged messages and marks each one
//! published once the bus has confirmed it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::sql::Held;
use crate::{Bus, Message, now_ms};

/// Migrations of the outbox, inbox and dead-letter tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Messages staged at once at most by one relay pass, and published concurrently.
const BATCH: i64 = 256;
/// Messages in flight beyond which the relay reads the outbox less often.
const BUSY: usize = 10 * BATCH as usize;
/// Published rows are kept this long for inspection, then pruned.
const RETENTION_MS: i64 = 60 * 60 * 1000;

/// Writes `message` into the outbox inside the caller's transaction.
pub async fn stage(conn: &mut AnyConnection, message: &Message) -> Result<(), sqlx::Error> {
    stage_all(conn, std::slice::from_ref(message)).await
}

/// Rows per statement in [`stage_all`], of 5 parameters each.
const STAGE_CHUNK: usize = crate::sql::rows_per_statement(5);

/// Writes `messages` into the outbox inside the caller's transaction, a
/// hundred rows per statement.
pub async fn stage_all(conn: &mut AnyConnection, messages: &[Message]) -> Result<(), sqlx::Error> {
    let now = now_ms();
    for chunk in messages.chunks(STAGE_CHUNK) {
        let sql = format!(
            "INSERT INTO outbox (id, subject, headers, payload, created_at) VALUES {}",
            crate::sql::values(conn, chunk.len(), 5)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for message in chunk {
            let headers = serde_json::to_string(&message.headers).expect("string map serializes");
            query = query
                .bind(message.id.clone())
                .bind(message.subject.clone())
                .bind(headers)
                .bind(String::from_utf8_lossy(&message.payload).into_owned())
                .bind(now);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A message waiting for the [`Stager`], and who waits for it to be written.
type Waiting = (Message, oneshot::Sender<Result<(), Arc<sqlx::Error>>>);

/// Stages messages that go with no change of state: each is written and
/// committed before its caller hears so, but the messages of callers that
/// come while a write is under way are written together by the next one,
/// with one statement. Written, they are handed to the relay.
#[derive(Clone)]
pub struct Stager(mpsc::UnboundedSender<Waiting>);

impl Stager {
    /// Starts writing into `pool`'s outbox, until the last clone is dropped.
    pub fn start(pool: AnyPool, waker: Waker) -> Self {
        let (queue, mut waiting) = mpsc::unbounded_channel::<Waiting>();
        tokio::spawn(async move {
            let mut conn = Held::new(pool);
            let mut batch = Vec::new();
            while waiting.recv_many(&mut batch, STAGE_CHUNK).await > 0 {
                let (messages, callers): (Vec<Message>, Vec<_>) = batch.drain(..).unzip();
                let written = match conn.get().await {
                    Ok(conn) => stage_all(conn, &messages).await,
                    Err(error) => Err(error),
                };
                conn.release(written.is_ok());
                let written = written.map_err(Arc::new);
                if written.is_ok() {
                    waker.hand(messages);
                }
                for caller in callers {
                    let _ = caller.send(written.clone());
                }
            }
        });
        Self(queue)
    }

    /// Stages `message`; it is committed when this returns `Ok`.
    pub async fn stage(&self, message: Message) -> Result<(), Arc<sqlx::Error>> {
        let (done, written) = oneshot::channel();
        let gone = || Arc::new(sqlx::Error::WorkerCrashed);
        self.0.send((message, done)).map_err(|_| gone())?;
        written.await.map_err(|_| gone())?
    }
}

/// Wakes the relay right after a commit, so messages leave without waiting
/// for the next poll; a transaction that hands over what it staged spares
/// the relay reading it back.
#[derive(Clone, Default)]
pub struct Waker(Arc<Wake>);

#[derive(Default)]
struct Wake {
    notify: Notify,
    /// Staged by transactions that committed, for the relay to publish.
    handed: Mutex<Vec<Message>>,
    /// Something was staged without being handed over: read the outbox.
    read: AtomicBool,
}

impl Waker {
    /// Messages were staged and committed: the relay reads the outbox.
    pub fn wake(&self) {
        self.0.read.store(true, Ordering::Release);
        self.0.notify.notify_one();
    }

    /// `messages` were staged by a transaction that has committed: the
    /// relay publishes them as they are. Handing over messages that were
    /// not committed would publish them: call it only after the commit.
    pub fn hand(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        self.0.handed.lock().unwrap().extend(messages);
        self.0.notify.notify_one();
    }
}

/// Publishes what was staged in one database's outbox.
pub struct Relay {
    pool: AnyPool,
    bus: Arc<dyn Bus>,
    waker: Waker,
    poll: Duration,
}

/// What a relay's publishing tasks share with it.
struct Publishing {
    tasks: JoinSet<()>,
    in_flight: Arc<Mutex<InFlight>>,
    confirmed: mpsc::UnboundedSender<String>,
}

impl Relay {
    pub fn new(pool: AnyPool, bus: Arc<dyn Bus>, waker: Waker) -> Self {
        Self {
            pool,
            bus,
            waker,
            poll: Duration::from_millis(500),
        }
    }

    /// How often the outbox is read without a wake-up (default 500 ms).
    pub fn poll(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// Runs until `shutdown`; messages still in flight then stay staged and
    /// are published by the next run. Messages handed over are published at
    /// once; the outbox is read when woken, and every `poll` for what was
    /// staged elsewhere or failed to publish.
    pub async fn run(self, shutdown: CancellationToken) {
        let (confirmed, marking) = mpsc::unbounded_channel();
        let mut publishing = Publishing {
            tasks: JoinSet::new(),
            in_flight: Arc::default(),
            confirmed,
        };
        publishing.tasks.spawn(mark_published(
            self.pool.clone(),
            marking,
            publishing.in_flight.clone(),
        ));
        let mut last_read: Option<Instant> = None;
        let mut last_prune = 0;
        loop {
            let wake = self.waker.0.notify.notified();
            // Before a read: a message a read already published stays in
            // flight until the next read starts, so it is skipped here. One
            // handed over only after that (its committer was slow) goes out
            // twice, which consumers' inboxes absorb.
            let handed = std::mem::take(&mut *self.waker.0.handed.lock().unwrap());
            for message in handed {
                self.publish(message, &mut publishing);
            }
            // With many messages in flight (a large batch handed over),
            // a read would fetch them all again only to skip them: it waits
            // for them to be confirmed, ten polls at most.
            let busy = publishing.in_flight.lock().unwrap().ids.len() > BUSY;
            let due = last_read
                .is_none_or(|at| at.elapsed() >= if busy { self.poll * 10 } else { self.poll });
            if self.waker.0.read.swap(false, Ordering::AcqRel) || due {
                last_read = Some(Instant::now());
                if let Err(error) = self.pass(&mut publishing).await {
                    tracing::warn!(%error, "outbox relay pass failed");
                }
            }
            while publishing.tasks.try_join_next().is_some() {}
            if now_ms() - last_prune > 60_000 {
                last_prune = now_ms();
                let pruned = sqlx::query("DELETE FROM outbox WHERE published_at < $1")
                    .bind(last_prune - RETENTION_MS)
                    .execute(&self.pool)
                    .await;
                if let Err(error) = pruned {
                    tracing::warn!(%error, "outbox prune failed");
                }
            }
            let next_read =
                last_read.map_or(Duration::ZERO, |at| self.poll.saturating_sub(at.elapsed()));
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake => {}
                () = tokio::time::sleep(next_read) => {}
            }
        }
        publishing.tasks.abort_all();
    }

    /// Starts publishing `message` unless it is in flight already.
    fn publish(&self, message: Message, publishing: &mut Publishing) {
        if !publishing
            .in_flight
            .lock()
            .unwrap()
            .ids
            .insert(message.id.clone())
        {
            return;
        }
        let (bus, confirmed, in_flight) = (
            self.bus.clone(),
            publishing.confirmed.clone(),
            publishing.in_flight.clone(),
        );
        publishing.tasks.spawn(async move {
            let id = message.id.clone();
            match bus.publish(message).await {
                // Marked by `mark_published`, which then forgets it.
                Ok(()) => drop(confirmed.send(id)),
                Err(error) => {
                    tracing::warn!(%error, %id, "publish failed; will retry");
                    in_flight.lock().unwrap().ids.remove(&id);
                }
            }
        });
    }

    /// Starts publishing every staged message that is not already in flight.
    async fn pass(&self, publishing: &mut Publishing) -> Result<(), sqlx::Error> {
        publishing.in_flight.lock().unwrap().forget_marked();
        let mut after = String::new();
        loop {
            let rows = sqlx::query(
                "SELECT id, subject, headers, payload FROM outbox \
                 WHERE published_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
            )
            .bind(&after)
            .bind(BATCH)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.try_get("id")?;
            let full = rows.len() as i64 == BATCH;
            for row in rows {
                let headers: String = row.try_get("headers")?;
                let payload: String = row.try_get("payload")?;
                let message = Message {
                    id: row.try_get("id")?,
                    subject: row.try_get("subject")?,
                    headers: serde_json::from_str::<BTreeMap<String, String>>(&headers)
                        .unwrap_or_default(),
                    payload: Bytes::from(payload),
                    reply_to: None,
                };
                self.publish(message, publishing);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Ids marked published per statement.
const MARK_CHUNK: usize = 500;
/// How long the marker gathers confirmations before it writes: nothing
/// waits on a mark, and one statement for what came in meanwhile spares a
/// round trip per message or two.
const MARK_GATHER: Duration = Duration::from_millis(50);

/// The messages a relay is publishing or marking, which its passes skip.
#[derive(Default)]
struct InFlight {
    ids: HashSet<String>,
    /// Marked published, and so no longer selected by a pass that starts
    /// now; a pass that started before the mark may still see them.
    marked: Vec<String>,
}

impl InFlight {
    /// Called as a pass starts, before it reads the outbox.
    fn forget_marked(&mut self) {
        for id in std::mem::take(&mut self.marked) {
            self.ids.remove(&id);
        }
    }
}

/// Marks the messages of `ids` published, with one statement.
async fn mark(pool: &AnyPool, ids: &[String]) -> Result<(), sqlx::Error> {
    use crate::sql::placeholders;
    let mut conn = pool.acquire().await?;
    let sql = format!(
        "UPDATE outbox SET published_at = {} WHERE id IN ({})",
        placeholders(&conn, 1, 1),
        placeholders(&conn, 2, ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms());
    for id in ids {
        query = query.bind(id);
    }
    query.execute(&mut *conn).await?;
    Ok(())
}

/// Marks confirmed messages published, as many per statement as have been
/// confirmed within [`MARK_GATHER`]: one write for a burst instead of one
/// per message. A mark lost to a crash means a second publish, which
/// consumers' inboxes absorb.
async fn mark_published(
    pool: AnyPool,
    mut confirmed: mpsc::UnboundedReceiver<String>,
    in_flight: Arc<Mutex<InFlight>>,
) {
    let mut ids = Vec::with_capacity(MARK_CHUNK);
    while confirmed.recv_many(&mut ids, MARK_CHUNK).await > 0 {
        tokio::time::sleep(MARK_GATHER).await;
        while ids.len() < MARK_CHUNK {
            match confirmed.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        if let Err(error) = mark(&pool, &ids).await {
            // Published again by a later pass; consumers de-duplicate.
            tracing::warn!(%error, count = ids.len(), "could not mark outbox messages published");
        }
        in_flight.lock().unwrap().marked.append(&mut ids);
    }
}
