//! The RabbitMQ backend (AMQP 0-9-1, lapin).
//!
//! Events are published with publisher confirms to one durable topic
//! exchange, routing key = subject. Each consumer group is a durable quorum
//! queue bound to its subject (`*` and `>` become `*` and `#`), consumed with
//! manual acks; quorum queues count deliveries, which gives the attempt
//! number, and dead-letter to the `<prefix>.dead` exchange. The connection
//! recovers by itself after the broker restarts. Requests are published with
//! `mandatory` (no queue bound: no responders) and answered on a temporary
//! exclusive queue.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::{Acker, Bus, BusError, Delivery, Message, NoAck, Source, Subscription};

fn backend(error: impl std::fmt::Display) -> BusError {
    BusError::Backend(error.to_string())
}

/// The RabbitMQ bus.
pub struct AmqpBus {
    connection: Arc<Connection>,
    publisher: Channel,
    /// The channel of [`Bus::probe`], opened by the first probe; its lock
    /// keeps one probe at a time on the wire.
    probe: Arc<tokio::sync::Mutex<Option<Channel>>>,
    prefix: String,
    /// Queues this bus declared, for [`AmqpBus::delete_declared`].
    declared: std::sync::Mutex<Vec<String>>,
}

/// Server-named queues, where replies go.
const REPLY_QUEUE: &str = "amq.gen-";

impl AmqpBus {
    /// Connects to `url` and declares the exchanges; `prefix` names them.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        // Recovery retries for ever; the first connection gets a deadline,
        // so that a wrong URL is an error at start-up, not a silent hang.
        let connecting = Connection::connect(
            url,
            ConnectionProperties::default()
                .with_connection_name("flotilla".into())
                .enable_auto_recover(),
        );
        let connection = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| BusError::Backend("RabbitMQ did not answer within 10 s".to_owned()))?
            .map_err(backend)?;
        let publisher = connection.create_channel().await.map_err(backend)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(backend)?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        publisher
            .exchange_declare(
                format!("{prefix}.events").into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        publisher
            .exchange_declare(
                format!("{prefix}.dead").into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        let dead = format!("{prefix}.dead");
        publisher
            .queue_declare(
                dead.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        publisher
            .queue_bind(
                dead.clone().into(),
                dead.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        Ok(Self {
            connection: Arc::new(connection),
            publisher,
            probe: Arc::default(),
            prefix: prefix.to_owned(),
            declared: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Deletes the queues and exchanges this bus declared (for tests).
    pub async fn delete_declared(&self) -> Result<(), BusError> {
        let queues = std::mem::take(&mut *self.declared.lock().unwrap());
        let dead = format!("{}.dead", self.prefix);
        for queue in queues.iter().chain([&dead]) {
            self.publisher
                .queue_delete(queue.clone().into(), Default::default())
                .await
                .map_err(backend)?;
        }
        for exchange in [format!("{}.events", self.prefix), dead] {
            self.publisher
                .exchange_delete(exchange.into(), Default::default())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    fn exchange(&self) -> ShortString {
        format!("{}.events", self.prefix).into()
    }

    /// Publishes and waits for the broker's confirm; true if it was routed.
    async fn send(
        &self,
        exchange: ShortString,
        message: &Message,
        mandatory: bool,
    ) -> Result<bool, BusError> {
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(
                name.clone().into(),
                AMQPValue::LongString(value.clone().into()),
            );
        }
        let mut properties = BasicProperties::default()
            .with_message_id(message.id.clone().into())
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(reply_to) = &message.reply_to {
            properties = properties.with_reply_to(reply_to.clone().into());
        }
        let options = BasicPublishOptions {
            mandatory,
            ..Default::default()
        };
        let confirm = self
            .publisher
            .basic_publish(
                exchange,
                message.subject.clone().into(),
                options,
                &message.payload,
                properties,
            )
            .await
            .map_err(backend)?
            .await
            .map_err(backend)?;
        if !confirm.is_ack() {
            return Err(BusError::Backend(
                "the broker refused the message".to_owned(),
            ));
        }
        Ok(confirm.take_message().is_none())
    }

    /// A server-named queue of a channel of its own, consumed without
    /// acknowledgement and deleted with the channel: for replies and
    /// listeners.
    async fn private_queue(&self) -> Result<(Channel, ShortString, lapin::Consumer), BusError> {
        let channel = self.connection.create_channel().await.map_err(backend)?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        Ok((channel, queue.name().clone(), consumer))
    }
}

/// A NATS-style subject pattern as an AMQP topic binding key.
fn binding_key(subject: &str) -> String {
    subject
        .split('.')
        .map(|t| if t == ">" { "#" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

fn unwrap(delivery: &lapin::message::Delivery) -> (Message, u32) {
    let properties = &delivery.properties;
    let mut headers = std::collections::BTreeMap::new();
    let mut previous = 0;
    for (name, value) in properties.headers().iter().flat_map(|h| h.inner()) {
        match (name.as_str(), value) {
            ("x-delivery-count", AMQPValue::LongLongInt(n)) => previous = *n as u32,
            ("x-delivery-count", AMQPValue::LongInt(n)) => previous = *n as u32,
            (name, AMQPValue::LongString(s)) if !name.starts_with("x-") => {
                headers.insert(
                    name.to_owned(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                );
            }
            _ => {}
        }
    }
    let message = Message {
        id: properties
            .message_id()
            .as_ref()
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |id| id.to_string()),
        subject: delivery.routing_key.to_string(),
        headers,
        payload: Bytes::from(delivery.data.clone()),
        reply_to: properties.reply_to().as_ref().map(|r| r.to_string()),
    };
    (message, previous + 1)
}

#[async_trait]
impl Bus for AmqpBus {
    fn backend(&self) -> &'static str {
        "amqp"
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        if message.subject.starts_with(REPLY_QUEUE) {
            self.send("".into(), &message, false).await?;
            return Ok(());
        }
        self.send(self.exchange(), &message, false).await?;
        Ok(())
    }

    async fn subscribe(&self, subject: &str, group: &str) -> Result<Subscription, BusError> {
        let channel = self.connection.create_channel().await.map_err(backend)?;
        // Enough unacknowledged deliveries for a consumer to apply many in
        // one transaction (32 made a 100,000-item kv batch take twice as
        // long as on NATS).
        channel
            .basic_qos(256, BasicQosOptions::default())
            .await
            .map_err(backend)?;
        let queue = format!("{}.{group}.{subject}", self.prefix);
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(format!("{}.dead", self.prefix).into()),
        );
        channel
            .queue_declare(
                queue.clone().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map_err(backend)?;
        channel
            .queue_bind(
                queue.clone().into(),
                self.exchange(),
                binding_key(subject).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        self.declared.lock().unwrap().push(queue.clone());
        let consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        Ok(Subscription::new(AmqpSource {
            consumer,
            _channel: channel,
            acked: true,
        }))
    }

    async fn listen(&self, subject: &str) -> Result<Subscription, BusError> {
        let (channel, queue, consumer) = self.private_queue().await?;
        channel
            .queue_bind(
                queue,
                self.exchange(),
                binding_key(subject).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend)?;
        Ok(Subscription::new(AmqpSource {
            consumer,
            _channel: channel,
            acked: false,
        }))
    }

    async fn request(
        &self,
        subject: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        let (channel, inbox, mut replies) = self.private_queue().await?;
        let mut request = Message::new(subject, payload);
        request.reply_to = Some(inbox.to_string());
        let answered = tokio::time::timeout(timeout, async {
            if !self.send(self.exchange(), &request, true).await? {
                return Err(BusError::NoResponders(subject.to_owned()));
            }
            match replies.next().await {
                Some(Ok(delivery)) => Ok(unwrap(&delivery).0),
                Some(Err(error)) => Err(backend(error)),
                None => Err(BusError::Closed),
            }
        })
        .await;
        let _ = channel.close(200, "done".into()).await;
        answered.unwrap_or(Err(BusError::Timeout(timeout)))
    }

    /// Connected, not blocked by a resource alarm, and the broker answers a
    /// passive declare of the events exchange on the probe's own channel (a
    /// failed declare closes its channel, which must not be the
    /// publisher's). The round trip catches a broker that stopped answering
    /// without closing the connection, which the heartbeat notices late.
    async fn probe(&self, timeout: Duration) -> Result<(), BusError> {
        let status = self.connection.status();
        if !status.connected() {
            return Err(BusError::Backend(format!(
                "not connected to RabbitMQ ({})",
                connection_state(status)
            )));
        }
        if status.blocked() {
            return Err(BusError::Backend(
                "RabbitMQ blocks publishing (a resource alarm)".to_owned(),
            ));
        }
        let (slot, connection, exchange) =
            (self.probe.clone(), self.connection.clone(), self.exchange());
        let round_trip = async move {
            let mut slot = slot.lock_owned().await;
            // Spawned, so that a round trip this probe stops waiting for
            // still completes: a channel being opened is kept, not leaked,
            // and the lock is held until the broker answers, so unanswered
            // probes do not pile up.
            let declared = tokio::spawn(async move {
                let channel = match slot.as_ref() {
                    Some(open) if open.status().connected() || open.status().reconnecting() => {
                        open.clone()
                    }
                    _ => {
                        let opened = connection.create_channel().await.map_err(backend)?;
                        slot.insert(opened).clone()
                    }
                };
                let passive = ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        exchange,
                        ExchangeKind::Topic,
                        passive,
                        FieldTable::default(),
                    )
                    .await
                    .map_err(backend)
            });
            declared.await.map_err(backend)?
        };
        tokio::time::timeout(timeout, round_trip)
            .await
            .unwrap_or(Err(BusError::Timeout(timeout)))
    }
}

/// The state of a connection that is not connected, in a word.
fn connection_state(status: &lapin::ConnectionStatus) -> &'static str {
    if status.reconnecting() {
        "reconnecting"
    } else if status.connecting() {
        "connecting"
    } else if status.closing() || status.closed() {
        "closed"
    } else if status.errored() {
        "failed"
    } else {
        "not yet open"
    }
}

struct AmqpSource {
    consumer: lapin::Consumer,
    _channel: Channel,
    /// False for a listener: its queue is consumed without acknowledgement.
    acked: bool,
}

#[async_trait]
impl Source for AmqpSource {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.consumer.next().await? {
                Ok(delivery) if self.acked => {
                    let (message, attempt) = unwrap(&delivery);
                    return Some(Delivery::new(message, attempt, AmqpAcker(delivery.acker)));
                }
                Ok(delivery) => return Some(Delivery::new(unwrap(&delivery).0, 1, NoAck)),
                Err(error) => {
                    tracing::warn!(%error, "AMQP consumer error; recovering");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

struct AmqpAcker(lapin::Acker);

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0
            .ack(BasicAckOptions::default())
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        // AMQP has no delayed requeue: hold the message for the delay, then
        // put it back at the head of the queue.
        let acker = self.0;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            if let Err(error) = acker.nack(requeue).await {
                tracing::warn!(%error, "AMQP nack failed; the broker redelivers on reconnect");
            }
        });
        Ok(())
    }
}
