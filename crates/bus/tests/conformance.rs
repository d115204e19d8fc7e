//! One suite for every `Bus` backend: the in-process bus always; NATS
//! JetStream (FLOTILLA_TEST_NATS_URL) and RabbitMQ (FLOTILLA_TEST_AMQP_URL)
//! with `--include-ignored`, which a missing URL then fails.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::server_url;
use flotilla_bus::amqp::AmqpBus;
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::{Bus, BusError, Delivery, MemoryBus, Message, Subscription};

/// How long a test waits for a delivery it expects.
const WAIT: Duration = Duration::from_secs(10);
/// The ack wait the buses under test are given.
const ACK_WAIT: Duration = Duration::from_millis(1000);

/// A bus under test, with what it takes to clean up after it.
struct Backend {
    bus: Arc<dyn Bus>,
    nats: Option<NatsBus>,
    amqp: Option<Arc<AmqpBus>>,
}

/// A tag unique to one test, for names on a shared server.
fn tag() -> String {
    format!(
        "{:x}",
        std::hash::BuildHasher::hash_one(
            &std::hash::RandomState::new(),
            std::time::SystemTime::now()
        )
    )
}

impl Backend {
    async fn memory() -> Self {
        Self {
            bus: Arc::new(MemoryBus::new(ACK_WAIT)),
            nats: None,
            amqp: None,
        }
    }

    async fn nats() -> Self {
        let url = server_url("FLOTILLA_TEST_NATS_URL");
        // A stream of its own per test: tests run in parallel.
        let tag = format!(
            "{:x}",
            std::hash::BuildHasher::hash_one(
                &std::hash::RandomState::new(),
                std::time::SystemTime::now()
            )
        );
        let config = NatsConfig {
            stream: format!("TEST_{tag}"),
            prefix: format!("t{tag}"),
            ack_wait: ACK_WAIT,
            max_age: Duration::from_secs(3600),
            ..NatsConfig::default()
        };
        let nats = NatsBus::connect(&url, config)
            .await
            .expect("NATS reachable");
        Self {
            bus: Arc::new(nats.clone()),
            nats: Some(nats),
            amqp: None,
        }
    }

    async fn amqp() -> Self {
        let url = server_url("FLOTILLA_TEST_AMQP_URL");
        let amqp = Arc::new(
            AmqpBus::connect(&url, &format!("test{}", tag()))
                .await
                .expect("RabbitMQ reachable"),
        );
        Self {
            bus: amqp.clone(),
            nats: None,
            amqp: Some(amqp),
        }
    }

    async fn finish(self) {
        if let Some(nats) = self.nats {
            let _ = nats.delete_stream().await;
        }
        if let Some(amqp) = self.amqp {
            amqp.delete_declared().await.expect("test queues deleted");
        }
    }

    /// Publishes without waiting: the in-process bus confirms only once consumed.
    fn publish(&self, message: Message) {
        let bus = self.bus.clone();
        tokio::spawn(async move { bus.publish(message).await.expect("published") });
    }
}

async fn next(subscription: &mut Subscription) -> Delivery {
    tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("a delivery in time")
        .expect("the subscription is open")
}

async fn fan_out_to_every_group(b: Backend) {
    let mut one = b.bus.subscribe("orders.created", "billing").await.unwrap();
    let mut two = b.bus.subscribe("orders.*", "shipping").await.unwrap();
    let sent: Vec<Message> = (0..3)
        .map(|i| Message::new("orders.created", format!("{i}")).with_header("k", "v"))
        .collect();
    for message in &sent {
        b.publish(message.clone());
    }
    for subscription in [&mut one, &mut two] {
        let mut got = HashSet::new();
        for _ in 0..3 {
            let delivery = next(subscription).await;
            assert_eq!(delivery.message.subject, "orders.created");
            assert_eq!(delivery.message.headers["k"], "v");
            got.insert(delivery.message.id.clone());
            delivery.ack().await.unwrap();
        }
        assert_eq!(got, sent.iter().map(|m| m.id.clone()).collect());
    }
    b.finish().await;
}

async fn members_of_a_group_share_its_messages(b: Backend) {
    let mut one = b.bus.subscribe("jobs.run", "workers").await.unwrap();
    let mut two = b.bus.subscribe("jobs.run", "workers").await.unwrap();
    // More than a NATS member pulls at once (200), so a member that took a
    // first batch cannot have taken them all.
    const SENT: usize = 500;
    for i in 0..SENT {
        b.publish(Message::new("jobs.run", format!("{i}")));
    }
    let (mut seen, mut by_one) = (Vec::new(), 0);
    while seen.len() < SENT {
        let (delivery, from_one) = tokio::select! {
            d = next(&mut one) => (d, true),
            d = next(&mut two) => (d, false),
        };
        seen.push(delivery.message.id.clone());
        by_one += usize::from(from_one);
        delivery.ack().await.unwrap();
    }
    assert!(
        (1..SENT).contains(&by_one),
        "one member received {by_one} of {SENT}: the group did not share them"
    );
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        SENT,
        "a message went to two members of one group"
    );
    // Nothing more arrives: each message went to one member only.
    let extra = tokio::time::timeout(Duration::from_millis(300), async {
        tokio::select! { d = one.next() => d, d = two.next() => d }
    })
    .await;
    assert!(extra.is_err(), "an acknowledged message came again");
    b.finish().await;
}

async fn a_nack_redelivers_after_its_delay(b: Backend) {
    let mut subscription = b.bus.subscribe("mail.send", "mailer").await.unwrap();
    let message = Message::new("mail.send", "x");
    b.publish(message.clone());
    let first = next(&mut subscription).await;
    assert_eq!(first.attempt, 1);
    first.nack(Duration::from_millis(100)).await.unwrap();
    let second = next(&mut subscription).await;
    assert_eq!(
        (second.message.id.as_str(), second.attempt),
        (message.id.as_str(), 2)
    );
    second.ack().await.unwrap();
    b.finish().await;
}

async fn an_unacknowledged_delivery_comes_back_after_the_ack_wait(b: Backend) {
    let mut subscription = b.bus.subscribe("mail.send", "mailer").await.unwrap();
    b.publish(Message::new("mail.send", "x"));
    let first = next(&mut subscription).await;
    let started = std::time::Instant::now();
    let again = next(&mut subscription).await;
    assert!(
        started.elapsed() >= ACK_WAIT / 2,
        "redelivered before the ack wait"
    );
    assert_eq!(again.message.id, first.message.id);
    assert_eq!(again.attempt, 2);
    again.ack().await.unwrap();
    drop(first);
    b.finish().await;
}

async fn request_reply_no_responders_and_timeout(b: Backend) {
    // Told at once, not left to wait out the timeout.
    let asked = std::time::Instant::now();
    let none = b
        .bus
        .request("echo.nobody", Bytes::from_static(b"?"), WAIT)
        .await;
    assert!(matches!(none, Err(BusError::NoResponders(_))), "{none:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );

    let mut responder = b.bus.subscribe("echo.upper", "echo").await.unwrap();
    let bus = b.bus.clone();
    tokio::spawn(async move {
        let request = responder.next().await.unwrap();
        let upper = String::from_utf8_lossy(&request.message.payload).to_uppercase();
        bus.publish(Message::reply(&request.message, upper).unwrap())
            .await
            .unwrap();
        request.ack().await.unwrap();
        let _unanswered = responder.next().await;
        std::future::pending::<()>().await;
    });
    let reply = b
        .bus
        .request("echo.upper", Bytes::from_static(b"hi"), WAIT)
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"HI");
    let late = b
        .bus
        .request(
            "echo.upper",
            Bytes::from_static(b"hi"),
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(late, Err(BusError::Timeout(_))), "{late:?}");
    b.finish().await;
}

/// Every listener hears every message published after it started, with no
/// group and no acknowledgement; a publish does not wait for listeners.
async fn listeners_hear_every_message_live(b: Backend) {
    let mut one = b.bus.listen("feed.*").await.unwrap();
    let mut two = b.bus.listen("feed.item").await.unwrap();
    // Nobody in a group: on the in-process bus the publish returns at once.
    let sent: Vec<Message> = (0..5)
        .map(|i| Message::new("feed.item", format!("{i}")).with_header("k", "v"))
        .collect();
    for message in &sent {
        tokio::time::timeout(WAIT, b.bus.publish(message.clone()))
            .await
            .expect("a publish does not wait for listeners")
            .unwrap();
    }
    for listener in [&mut one, &mut two] {
        let mut got = Vec::new();
        for _ in 0..sent.len() {
            let delivery = next(listener).await;
            assert_eq!(delivery.message.subject, "feed.item");
            assert_eq!(delivery.message.headers["k"], "v");
            got.push(delivery.message.id.clone());
            delivery.ack().await.unwrap();
        }
        assert_eq!(got, sent.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
    }
    b.bus
        .publish(Message::new("other.item", "x"))
        .await
        .unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(300), two.next()).await;
    assert!(quiet.is_err(), "a listener hears only its subject");
    b.finish().await;
}

/// One member alone in its group gets the messages in the order they were
/// published (each publish confirmed before the next), on every backend.
async fn a_single_member_receives_in_publish_order(b: Backend) {
    let mut subscription = b.bus.subscribe("ledger.entry", "books").await.unwrap();
    let bus = b.bus.clone();
    let sent: Vec<Message> = (0..50)
        .map(|i| Message::new("ledger.entry", format!("{i}")))
        .collect();
    let ids: Vec<String> = sent.iter().map(|m| m.id.clone()).collect();
    tokio::spawn(async move {
        for message in sent {
            bus.publish(message).await.unwrap();
        }
    });
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let delivery = next(&mut subscription).await;
        got.push(delivery.message.id.clone());
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, ids);
    b.finish().await;
}

/// A bus whose broker is up passes its probe, promptly.
async fn a_working_bus_passes_its_probe(b: Backend) {
    let started = std::time::Instant::now();
    b.bus
        .probe(Duration::from_secs(2))
        .await
        .expect("a working bus passes its probe");
    assert!(started.elapsed() < Duration::from_secs(2));
    b.finish().await;
}

macro_rules! suite {
    ($backend:ident $(, $ignore:meta)?) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            $(#[$ignore])?
            async fn fan_out() {
                fan_out_to_every_group(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn competing_consumers() {
                members_of_a_group_share_its_messages(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn nack() {
                a_nack_redelivers_after_its_delay(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn ordering() {
                a_single_member_receives_in_publish_order(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn listen() {
                listeners_hear_every_message_live(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn probe() {
                a_working_bus_passes_its_probe(Backend::$backend().await).await
            }

            #[tokio::test]
            $(#[$ignore])?
            async fn request_reply() {
                request_reply_no_responders_and_timeout(Backend::$backend().await).await
            }
        }
    };
}

suite!(memory);
suite!(
    nats,
    ignore = "needs NATS JetStream: FLOTILLA_TEST_NATS_URL"
);
suite!(amqp, ignore = "needs RabbitMQ: FLOTILLA_TEST_AMQP_URL");

// RabbitMQ has no per-message ack wait (an unacknowledged message comes back
// when its channel closes), so this one is for the others.
macro_rules! ack_wait {
    ($backend:ident $(, $ignore:meta)?) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            $(#[$ignore])?
            async fn ack_wait() {
                an_unacknowledged_delivery_comes_back_after_the_ack_wait(Backend::$backend().await).await
            }
        }
    };
}

/// The stream is created with the retention it is given: without a limit,
/// subjects that are only listened to would fill it for ever.
#[tokio::test]
#[ignore = "needs NATS JetStream: FLOTILLA_TEST_NATS_URL"]
async fn the_nats_stream_keeps_messages_for_its_max_age() {
    let url = server_url("FLOTILLA_TEST_NATS_URL");
    let name = format!("TEST_AGE{}", std::process::id());
    let config = NatsConfig {
        stream: name.clone(),
        prefix: format!("tage{}", std::process::id()),
        max_age: Duration::from_secs(5 * 3600),
        ..NatsConfig::default()
    };
    let bus = NatsBus::connect(&url, config)
        .await
        .expect("NATS reachable");
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut stream = js.get_stream(&name).await.unwrap();
    let max_age = stream.info().await.unwrap().config.max_age;
    bus.delete_stream().await.unwrap();
    assert_eq!(max_age, Duration::from_secs(5 * 3600));
}

/// The probe asks the broker, not only the connection: with the stream it
/// publishes to deleted, a connected NATS bus fails it.
#[tokio::test]
#[ignore = "needs NATS JetStream: FLOTILLA_TEST_NATS_URL"]
async fn the_nats_probe_fails_without_its_stream() {
    let b = Backend::nats().await;
    let nats = b.nats.as_ref().expect("a NATS backend");
    b.bus.probe(Duration::from_secs(2)).await.unwrap();
    nats.delete_stream().await.unwrap();
    let error = b.bus.probe(Duration::from_secs(2)).await.unwrap_err();
    assert!(error.to_string().contains("stream"), "{error}");
}

/// Likewise on RabbitMQ: with its exchange deleted, the bus fails its probe
/// (and its publisher channel is left alone).
#[tokio::test]
#[ignore = "needs RabbitMQ: FLOTILLA_TEST_AMQP_URL"]
async fn the_amqp_probe_fails_without_its_exchange() {
    let b = Backend::amqp().await;
    let amqp = b.amqp.as_ref().expect("a RabbitMQ backend");
    b.bus.probe(Duration::from_secs(2)).await.unwrap();
    amqp.delete_declared().await.unwrap();
    let error = b.bus.probe(Duration::from_secs(2)).await.unwrap_err();
    assert!(error.to_string().contains("NOT_FOUND"), "{error}");
}

mod ack_wait_expiry {
    use super::*;
    ack_wait!(memory);
    ack_wait!(
        nats,
        ignore = "needs NATS JetStream: FLOTILLA_TEST_NATS_URL"
    );
}
