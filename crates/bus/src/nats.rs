//! The NATS JetStream backend, for many processes on many machines.
//!
//! Events go to one file-backed stream capturing `<prefix>.events.>`; each
//! consumer group is a durable pull consumer with explicit acks, filtered on
//! its subject, so a group's position survives restarts. A publish returns
//! once JetStream has stored the message (its PubAck); the message id is
//! sent as `Nats-Msg-Id`, so a publish repeated within the duplicate window
//! (a relay retrying after a crash) is stored once. Requests use core NATS
//! on `<prefix>.rpc.<subject>` with queue groups.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::{Acker, Bus, BusError, Delivery, Message, NoAck, Source, Subscription};

/// Where a [`NatsBus`] keeps its messages.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// Name of the JetStream stream.
    pub stream: String,
    /// First token of every subject this bus uses.
    pub prefix: String,
    /// How long a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Stream replicas (1 on a single server, 3 on a cluster).
    pub replicas: usize,
    /// How long the stream keeps a message, acknowledged or not. Set when
    /// the stream is created; an existing stream keeps its settings.
    pub max_age: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            stream: "FLOTILLA".to_owned(),
            prefix: "flotilla".to_owned(),
            ack_wait: Duration::from_secs(30),
            replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The NATS JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    config: NatsConfig,
}

fn backend(error: impl std::fmt::Display) -> BusError {
    BusError::Backend(error.to_string())
}

const ID_HEADER: &str = "Nats-Msg-Id";

impl NatsBus {
    /// Connects to `url` (several servers of a cluster separated by commas)
    /// and creates the stream if it does not exist.
    pub async fn connect(url: &str, config: NatsConfig) -> Result<Self, BusError> {
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        let client = async_nats::ConnectOptions::new()
            .name("flotilla")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(backend)?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.events.>", config.prefix)],
                storage: stream::StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: Duration::from_secs(120),
                max_age: config.max_age,
                ..Default::default()
            })
            .await
            .map_err(backend)?;
        Ok(Self {
            client,
            js,
            stream,
            config,
        })
    }

    /// Deletes the stream and everything in it (for tests).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.js
            .delete_stream(&self.config.stream)
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn events(&self, subject: &str) -> String {
        format!("{}.events.{subject}", self.config.prefix)
    }

    fn rpc(&self, subject: &str) -> String {
        format!("{}.rpc.{subject}", self.config.prefix)
    }
}

fn headers(message: &Message) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ID_HEADER, message.id.as_str());
    for (name, value) in &message.headers {
        headers.insert(name.as_str(), value.as_str());
    }
    headers
}

/// The bus message carried by a NATS message, with its prefix removed.
fn unwrap(message: async_nats::Message, prefix: &str) -> Message {
    let subject = message.subject.to_string();
    let subject = subject.strip_prefix(prefix).unwrap_or(&subject).to_owned();
    let mut headers = std::collections::BTreeMap::new();
    let mut id = None;
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        let value = values
            .first()
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        if AsRef::<str>::as_ref(name) == ID_HEADER {
            id = Some(value);
        } else {
            headers.insert(name.to_string(), value);
        }
    }
    Message {
        id: id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        subject,
        headers,
        payload: message.payload,
        reply_to: message.reply.map(|r| r.to_string()),
    }
}

/// Consumer names may not contain `.`, `*` or `>`.
fn consumer_name(group: &str, subject: &str) -> String {
    format!("{group}-{subject}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[async_trait]
impl Bus for NatsBus {
    fn backend(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        if message.subject.starts_with("_INBOX.") {
            // A reply to a request: core NATS, nothing to store.
            self.client
                .publish_with_headers(message.subject.clone(), headers(&message), message.payload)
                .await
                .map_err(backend)?;
            return self.client.flush().await.map_err(backend);
        }
        let ack = self
            .js
            .publish_with_headers(
                self.events(&message.subject),
                headers(&message),
                message.payload,
            )
            .await
            .map_err(backend)?;
        ack.await.map_err(backend)?;
        Ok(())
    }

    async fn subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        let name = consumer_name(group, subject);
        let consumer = self
            .stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.events(subject),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    deliver_policy: jetstream::consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(backend)?;
        let events = consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
            .map_err(backend)?;
        let requests = self
            .client
            .queue_subscribe(self.rpc(subject), group.to_owned())
            .await
            .map_err(backend)?;
        Ok(Subscription::new(NatsSource {
            events,
            requests,
            prefix: format!("{}.events.", self.config.prefix),
            rpc_prefix: format!("{}.rpc.", self.config.prefix),
        }))
    }

    async fn listen(&self, subject: &str) -> Result<Subscription, BusError> {
        let subscriber = self
            .client
            .subscribe(self.events(subject))
            .await
            .map_err(backend)?;
        Ok(Subscription::new(NatsListener {
            subscriber,
            prefix: format!("{}.events.", self.config.prefix),
        }))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let asked =
            tokio::time::timeout(timeout, self.client.request(self.rpc(subject), payload)).await;
        match asked {
            Err(_) => Err(BusError::Timeout(timeout)),
            Ok(Ok(reply)) => Ok(unwrap(reply, "")),
            Ok(Err(error)) => match error.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    Err(BusError::NoResponders(subject.to_owned()))
                }
                async_nats::RequestErrorKind::TimedOut => Err(BusError::Timeout(timeout)),
                _ => Err(backend(error)),
            },
        }
    }

    /// Connected, and the stream answers an info request, which its leader
    /// serves: what a publish needs. The round trip catches a server that
    /// stopped answering without closing the connection (frozen,
    /// partitioned), which the client would notice only at its next ping.
    async fn probe(&self, timeout: Duration) -> Result<(), BusError> {
        let state = self.client.connection_state();
        if state != async_nats::connection::State::Connected {
            return Err(BusError::Backend(format!(
                "not connected to NATS ({state})"
            )));
        }
        match tokio::time::timeout(timeout, self.stream.get_info()).await {
            Err(_) => Err(BusError::Timeout(timeout)),
            Ok(Err(error)) => Err(BusError::Backend(format!(
                "JetStream stream {}: {error}",
                self.config.stream
            ))),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

struct NatsSource {
    events: pull::Stream,
    requests: async_nats::Subscriber,
    prefix: String,
    rpc_prefix: String,
}

#[async_trait]
impl Source for NatsSource {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            tokio::select! {
                event = self.events.next() => match event? {
                    Ok(event) => {
                        let attempt = event.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1);
                        let (message, acker) = event.split();
                        return Some(Delivery::new(unwrap(message, &self.prefix), attempt, JetStreamAcker(acker)));
                    }
                    Err(error) => {
                        // Heartbeats missed or the server restarting: the
                        // stream reconnects by itself; keep pulling.
                        tracing::warn!(%error, "JetStream consumer error");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                request = self.requests.next() => {
                    return Some(Delivery::new(unwrap(request?, &self.rpc_prefix), 1, NoAck));
                }
            }
        }
    }
}

struct JetStreamAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack().await.map_err(backend)
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(backend)
    }
}

/// A core NATS subscription on the events' subject: JetStream stores what is
/// published there, and plain subscribers hear it live as well.
struct NatsListener {
    subscriber: async_nats::Subscriber,
    prefix: String,
}

#[async_trait]
impl Source for NatsListener {
    async fn next(&mut self) -> Option<Delivery> {
        let message = self.subscriber.next().await?;
        Some(Delivery::new(unwrap(message, &self.prefix), 1, NoAck))
    }
}
