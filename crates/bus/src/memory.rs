//! The in-process backend, for `flotilla up`.
//!
//! It holds messages in memory only, so it confirms a publish once every
//! group subscribed to the subject has acknowledged the message: until then
//! the message stays in the publisher's outbox, and a crash loses nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::{Acker, Bus, BusError, Delivery, Message, NoAck, Source, Subscription, subject};

const INBOX_PREFIX: &str = "_INBOX.";

/// The in-process bus. Cloning gives another handle on the same bus.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// How long a delivery may stay unsettled before it is redelivered.
    ack_wait: Duration,
    groups: Mutex<Vec<Arc<Group>>>,
    /// Listeners: a subject pattern and where to send what matches it.
    listeners: Mutex<Vec<(String, mpsc::UnboundedSender<Message>)>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Message>>>,
}

struct Group {
    pattern: String,
    name: String,
    queue: Mutex<VecDeque<Pending>>,
    ready: Notify,
}

#[derive(Clone)]
struct Pending {
    message: Arc<Message>,
    /// Deliveries so far.
    deliveries: u32,
    confirm: Arc<Confirm>,
}

/// Counts the groups that have yet to acknowledge one published message.
struct Confirm {
    remaining: AtomicUsize,
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl Confirm {
    fn acked(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(done) = self.done.lock().unwrap().take()
        {
            let _ = done.send(());
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl MemoryBus {
    pub fn new(ack_wait: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                ack_wait,
                groups: Mutex::new(Vec::new()),
                listeners: Mutex::new(Vec::new()),
                waiters: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Queues `message` for every matching group; the receiver fires once all
    /// of them have acknowledged it. `None` when no group matches.
    fn enqueue(&self, message: Message) -> Option<oneshot::Receiver<()>> {
        if message.subject.starts_with(INBOX_PREFIX) {
            if let Some(waiter) = self.inner.waiters.lock().unwrap().remove(&message.subject) {
                let _ = waiter.send(message);
            }
            return None;
        }
        self.inner
            .listeners
            .lock()
            .unwrap()
            .retain(|(pattern, listener)| {
                !subject::matches(pattern, &message.subject)
                    || listener.send(message.clone()).is_ok()
            });
        let groups: Vec<Arc<Group>> = self
            .inner
            .groups
            .lock()
            .unwrap()
            .iter()
            .filter(|g| subject::matches(&g.pattern, &message.subject))
            .cloned()
            .collect();
        if groups.is_empty() {
            return None;
        }
        let (done, confirmed) = oneshot::channel();
        let confirm = Arc::new(Confirm {
            remaining: AtomicUsize::new(groups.len()),
            done: Mutex::new(Some(done)),
        });
        let message = Arc::new(message);
        for group in groups {
            group.push(Pending {
                message: message.clone(),
                deliveries: 0,
                confirm: confirm.clone(),
            });
        }
        Some(confirmed)
    }
}

impl Group {
    fn push(&self, pending: Pending) {
        self.queue.lock().unwrap().push_back(pending);
        self.ready.notify_one();
    }

    fn requeue(self: &Arc<Self>, mut pending: Pending, delay: Duration) {
        pending.deliveries += 1;
        if delay.is_zero() {
            self.push(pending);
        } else {
            let group = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                group.push(pending);
            });
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        match self.enqueue(message) {
            Some(confirmed) => confirmed.await.map_err(|_| BusError::Closed),
            None => Ok(()),
        }
    }

    async fn subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        let group = {
            let mut groups = self.inner.groups.lock().unwrap();
            match groups
                .iter()
                .find(|g| g.pattern == subject && g.name == group)
            {
                Some(existing) => existing.clone(),
                None => {
                    let created = Arc::new(Group {
                        pattern: subject.to_owned(),
                        name: group.to_owned(),
                        queue: Mutex::new(VecDeque::new()),
                        ready: Notify::new(),
                    });
                    groups.push(created.clone());
                    created
                }
            }
        };
        Ok(Subscription::new(MemorySource {
            group,
            ack_wait: self.inner.ack_wait,
        }))
    }

    async fn listen(&self, subject: &str) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pattern = subject.to_owned();
        self.inner.listeners.lock().unwrap().push((pattern, tx));
        Ok(Subscription::new(MemoryListener(rx)))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let inbox = format!("{INBOX_PREFIX}{}", uuid::Uuid::now_v7());
        let (tx, rx) = oneshot::channel();
        self.inner.waiters.lock().unwrap().insert(inbox.clone(), tx);
        let mut message = Message::new(subject, payload);
        message.reply_to = Some(inbox.clone());
        let result = match self.enqueue(message) {
            None => Err(BusError::NoResponders(subject.to_owned())),
            Some(_) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(BusError::Closed),
                Err(_) => Err(BusError::Timeout(timeout)),
            },
        };
        self.inner.waiters.lock().unwrap().remove(&inbox);
        result
    }

    /// Always fine: the bus is this process's memory, up while it is.
    async fn probe(&self, _timeout: Duration) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemorySource {
    group: Arc<Group>,
    ack_wait: Duration,
}

#[async_trait]
impl Source for MemorySource {
    async fn next(&mut self) -> Option<Delivery> {
        let pending = loop {
            let ready = self.group.ready.notified();
            if let Some(pending) = self.group.queue.lock().unwrap().pop_front() {
                break pending;
            }
            ready.await;
        };
        let settled = Arc::new(AtomicBool::new(false));
        let expiry = {
            let (group, pending, settled) = (self.group.clone(), pending.clone(), settled.clone());
            let ack_wait = self.ack_wait;
            tokio::spawn(async move {
                tokio::time::sleep(ack_wait).await;
                if !settled.swap(true, Ordering::AcqRel) {
                    group.requeue(pending, Duration::ZERO);
                }
            })
            .abort_handle()
        };
        let message = (*pending.message).clone();
        let attempt = pending.deliveries + 1;
        Some(Delivery::new(
            message,
            attempt,
            MemoryAcker {
                group: self.group.clone(),
                pending: Some(pending),
                settled,
                expiry,
            },
        ))
    }
}

struct MemoryListener(mpsc::UnboundedReceiver<Message>);

#[async_trait]
impl Source for MemoryListener {
    async fn next(&mut self) -> Option<Delivery> {
        Some(Delivery::new(self.0.recv().await?, 1, NoAck))
    }
}

struct MemoryAcker {
    group: Arc<Group>,
    pending: Option<Pending>,
    settled: Arc<AtomicBool>,
    expiry: AbortHandle,
}

impl MemoryAcker {
    /// Settles once; false when the ack-wait timer got there first.
    fn settle(&mut self) -> Option<Pending> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return None;
        }
        self.expiry.abort();
        self.pending.take()
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), BusError> {
        if let Some(pending) = self.settle() {
            pending.confirm.acked();
        }
        Ok(())
    }

    async fn nack(mut self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        if let Some(pending) = self.settle() {
            self.group.requeue(pending, delay);
        }
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        if let Some(pending) = self.settle() {
            self.group.requeue(pending, Duration::ZERO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(d: &Delivery) -> &[u8] {
        &d.message.payload
    }

    #[tokio::test]
    async fn every_group_gets_each_message_and_publish_waits_for_all_acks() {
        let bus = MemoryBus::default();
        let mut a = bus.subscribe("user.*", "a").await.unwrap();
        let mut b = bus.subscribe("user.created", "b").await.unwrap();
        let publish = tokio::spawn({
            let bus = bus.clone();
            async move { bus.publish(Message::new("user.created", "x")).await }
        });
        let da = a.next().await.unwrap();
        let db = b.next().await.unwrap();
        assert_eq!(text(&da), b"x");
        assert_eq!(da.message.id, db.message.id);
        da.ack().await.unwrap();
        tokio::task::yield_now().await;
        assert!(!publish.is_finished(), "confirmed before every group acked");
        db.ack().await.unwrap();
        publish.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn members_of_a_group_compete() {
        let bus = MemoryBus::default();
        let mut one = bus.subscribe("job", "workers").await.unwrap();
        let mut two = bus.subscribe("job", "workers").await.unwrap();
        for i in 0..2 {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish(Message::new("job", format!("{i}"))).await });
        }
        let first = one.next().await.unwrap();
        let second = two.next().await.unwrap();
        assert_ne!(first.message.id, second.message.id);
    }

    #[tokio::test(start_paused = true)]
    async fn nack_and_drop_and_ack_wait_redeliver() {
        let bus = MemoryBus::new(Duration::from_secs(5));
        let mut sub = bus.subscribe("job", "g").await.unwrap();
        tokio::spawn({
            let bus = bus.clone();
            async move { bus.publish(Message::new("job", "x")).await }
        });
        let first = sub.next().await.unwrap();
        assert_eq!(first.attempt, 1);
        first.nack(Duration::from_secs(1)).await.unwrap();
        let second = sub.next().await.unwrap();
        assert_eq!(second.attempt, 2);
        drop(second);
        let third = sub.next().await.unwrap();
        assert_eq!(third.attempt, 3);
        let kept = third; // never settled: the ack-wait timer redelivers it
        let fourth = sub.next().await.unwrap();
        assert_eq!(fourth.attempt, 4);
        kept.ack().await.unwrap(); // too late, ignored
        fourth.ack().await.unwrap();
    }

    #[tokio::test]
    async fn request_reply_and_timeout() {
        let bus = MemoryBus::default();
        let err = bus
            .request("echo", Bytes::from_static(b"hi"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::NoResponders(_)));

        let mut sub = bus.subscribe("echo", "echo").await.unwrap();
        let responder = bus.clone();
        tokio::spawn(async move {
            let d = sub.next().await.unwrap();
            let reply = Message::reply(&d.message, d.message.payload.clone()).unwrap();
            responder.publish(reply).await.unwrap();
            d.ack().await.unwrap();
            let _ignored = sub.next().await; // second request: never answered
        });
        let reply = bus
            .request("echo", Bytes::from_static(b"hi"), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], b"hi");
        let err = bus
            .request("echo", Bytes::from_static(b"hi"), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::Timeout(_)));
    }
}
