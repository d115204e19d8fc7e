//! Publish → consume throughput and latency through flotilla's `Bus`, next
//! to the raw client of the same broker in the same run.
//!
//! ```sh
//! cargo run --release -p flotilla-bus --example bus_bench [MESSAGES] [ROUNDS]
//! ```
//!
//! Backends: the in-process bus (next to a tokio channel), NATS JetStream at
//! FLOTILLA_BENCH_NATS_URL (default nats://127.0.0.1:4222, next to async-nats
//! alone) and RabbitMQ at FLOTILLA_BENCH_AMQP_URL (default
//! amqp://guest:guest@127.0.0.1:5672/%2f, next to lapin alone); a broker
//! that does not answer is skipped. Each run publishes with up to WINDOW
//! publishes in flight and one consumer acknowledging every message. The
//! brokers' paths run ROUNDS (3) times over in the order raw, flotilla,
//! flotilla, raw, and the best run of each is reported: on two cores the
//! client and the broker share, one run of either can be 20 % slower than
//! the next. The raw NATS client is given the same guarantees as flotilla
//! (message ids for de-duplication, idle heartbeats); a bare run without
//! them follows for reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flotilla_bus::amqp::AmqpBus;
use flotilla_bus::nats::{NatsBus, NatsConfig};
use flotilla_bus::{Bus, MemoryBus, Message};
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};

/// Publishes in flight at most.
const WINDOW: usize = 256;

/// Nanoseconds since the start of the run, carried in each payload.
fn stamp(epoch: Instant) -> Bytes {
    Bytes::copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_le_bytes())
}

fn latency(epoch: Instant, payload: &[u8]) -> Duration {
    let sent = u64::from_le_bytes(payload[..8].try_into().expect("8-byte stamp"));
    Duration::from_nanos(epoch.elapsed().as_nanos() as u64 - sent)
}

#[derive(Clone)]
struct Run {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(n: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Run {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Run {
        per_second: n as f64 / elapsed.as_secs_f64(),
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Through the `Bus` trait: publishers bounded by WINDOW, one consumer.
async fn through_bus(bus: Arc<dyn Bus>, subject: &str, n: usize) -> Run {
    let mut subscription = bus.subscribe(subject, "bench").await.expect("subscribe");
    let epoch = Instant::now();
    let window = Arc::new(Semaphore::new(WINDOW));
    let publisher = {
        let (bus, subject) = (bus.clone(), subject.to_owned());
        tokio::spawn(async move {
            for _ in 0..n {
                let permit = window.clone().acquire_owned().await.unwrap();
                let (bus, message) = (bus.clone(), Message::new(subject.clone(), stamp(epoch)));
                tokio::spawn(async move {
                    bus.publish(message).await.expect("publish");
                    drop(permit);
                });
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let delivery = subscription.next().await.expect("delivery");
        latencies.push(latency(epoch, &delivery.message.payload));
        delivery.ack().await.expect("ack");
    }
    publisher.await.unwrap();
    summarize(n, epoch.elapsed(), latencies)
}

/// The anchor of the in-process bus: a bounded tokio channel.
async fn raw_channel(n: usize) -> Run {
    let (tx, mut rx) = mpsc::channel::<Bytes>(WINDOW);
    let epoch = Instant::now();
    tokio::spawn(async move {
        for _ in 0..n {
            tx.send(stamp(epoch)).await.unwrap();
        }
    });
    let mut latencies = Vec::with_capacity(n);
    while let Some(payload) = rx.recv().await {
        latencies.push(latency(epoch, &payload));
        if latencies.len() == n {
            break;
        }
    }
    summarize(n, epoch.elapsed(), latencies)
}

/// async-nats alone, with the guarantees flotilla gives and used the way
/// the bus uses it: the same stream settings (file storage, a two-minute
/// de-duplication window), each publish carrying a `Nats-Msg-Id` and
/// waiting for its PubAck in a task of its own, a durable pull consumer with
/// explicit acks and idle heartbeats. `bare` drops the message id (so the
/// server tracks no duplicates) and the heartbeats: less than flotilla
/// promises, shown for reference.
async fn raw_nats(url: &str, n: usize, bare: bool) -> Run {
    use async_nats::jetstream::{self, consumer::pull, stream};
    let client = async_nats::connect(url).await.expect("NATS");
    let js = jetstream::new(client);
    let name = format!("RAWBENCH{}", std::process::id());
    let s = js
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("rawbench{}.>", std::process::id())],
            storage: stream::StorageType::File,
            duplicate_window: if bare {
                Duration::ZERO
            } else {
                Duration::from_secs(120)
            },
            ..Default::default()
        })
        .await
        .expect("stream");
    let subject = format!("rawbench{}.x", std::process::id());
    let consumer = s
        .get_or_create_consumer(
            "bench",
            pull::Config {
                durable_name: Some("bench".into()),
                filter_subject: subject.clone(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .expect("consumer");
    let mut messages = if bare {
        consumer.messages().await
    } else {
        consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await
    }
    .expect("messages");
    let epoch = Instant::now();
    let window = Arc::new(Semaphore::new(WINDOW));
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                let permit = window.clone().acquire_owned().await.unwrap();
                let (js, subject) = (js.clone(), subject.clone());
                tokio::spawn(async move {
                    let mut headers = async_nats::HeaderMap::new();
                    if !bare {
                        headers.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                    }
                    let ack = js
                        .publish_with_headers(subject, headers, stamp(epoch))
                        .await
                        .expect("publish");
                    ack.await.expect("PubAck");
                    drop(permit);
                });
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let message = messages.next().await.expect("message").expect("ok");
        latencies.push(latency(epoch, &message.payload));
        message.ack().await.expect("ack");
    }
    publisher.await.unwrap();
    let run = summarize(n, epoch.elapsed(), latencies);
    let _ = js.delete_stream(&name).await;
    run
}

/// lapin alone: publisher confirms, a durable quorum queue, manual acks.
async fn raw_amqp(url: &str, n: usize) -> Run {
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let publisher = connection.create_channel().await.unwrap();
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let consumer_channel = connection.create_channel().await.unwrap();
    // The prefetch of `AmqpBus`, so that both hold as many deliveries.
    consumer_channel
        .basic_qos(256, BasicQosOptions::default())
        .await
        .unwrap();
    let queue = format!("rawbench{}", std::process::id());
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    publisher
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            queue.clone().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let epoch = Instant::now();
    let window = Arc::new(Semaphore::new(WINDOW));
    let sent = Arc::new(AtomicUsize::new(0));
    let publishing = {
        let (publisher, queue, sent) = (publisher.clone(), queue.clone(), sent.clone());
        tokio::spawn(async move {
            for _ in 0..n {
                let permit = window.clone().acquire_owned().await.unwrap();
                let confirm = publisher
                    .basic_publish(
                        "".into(),
                        queue.clone().into(),
                        BasicPublishOptions::default(),
                        &stamp(epoch),
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .expect("publish");
                let sent = sent.clone();
                tokio::spawn(async move {
                    confirm.await.expect("confirm");
                    sent.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                });
            }
        })
    };
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let delivery = consumer.next().await.expect("delivery").expect("ok");
        latencies.push(latency(epoch, &delivery.data));
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    publishing.await.unwrap();
    let run = summarize(n, epoch.elapsed(), latencies);
    let _ = publisher
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    run
}

/// The run with the higher throughput.
fn best(a: Run, b: Run) -> Run {
    if a.per_second >= b.per_second { a } else { b }
}

/// The best of `rounds` × 2 runs of each path, in the order raw, ours,
/// ours, raw: the first run of a broker warms it up for the next, and
/// neither path always goes first. `ours` is given the run's number, for a
/// subject of its own.
async fn alternate(
    rounds: usize,
    mut raw: impl AsyncFnMut() -> Run,
    mut ours: impl AsyncFnMut(usize) -> Run,
) -> (Run, Run) {
    let (mut best_raw, mut best_ours): (Option<Run>, Option<Run>) = (None, None);
    let keep = |kept: &mut Option<Run>, run: Run| {
        *kept = Some(match kept.take() {
            Some(before) => best(before, run),
            None => run,
        });
    };
    for round in 0..rounds {
        keep(&mut best_raw, raw().await);
        keep(&mut best_ours, ours(2 * round).await);
        keep(&mut best_ours, ours(2 * round + 1).await);
        keep(&mut best_raw, raw().await);
    }
    (best_raw.expect("a round"), best_ours.expect("a round"))
}

fn row(name: &str, run: &Run) {
    println!(
        "{name:<22} {:>10.0} {:>10.2} {:>10.2}",
        run.per_second,
        run.p50.as_secs_f64() * 1000.0,
        run.p99.as_secs_f64() * 1000.0
    );
}

fn ratio(backend: &str, ours: &Run, raw: &Run) {
    println!(
        "{backend:<22} throughput {:.2}x of the raw client, p99 {:.2}x",
        ours.per_second / raw.per_second,
        ours.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!(
        "{n} messages of 8 bytes, {WINDOW} publishes in flight, one consumer acking each; brokers: best of {} runs per path\n",
        2 * rounds
    );
    println!(
        "{:<22} {:>10} {:>10} {:>10}",
        "path", "msg/s", "p50 ms", "p99 ms"
    );
    let mut ratios = Vec::new();

    let channel = raw_channel(n).await;
    row("tokio channel", &channel);
    let memory = through_bus(Arc::new(MemoryBus::default()), "bench.memory", n).await;
    row("flotilla memory", &memory);

    let nats_url =
        std::env::var("FLOTILLA_BENCH_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let config = NatsConfig {
        stream: format!("BENCH{}", std::process::id()),
        prefix: format!("bench{}", std::process::id()),
        ..NatsConfig::default()
    };
    match NatsBus::connect(&nats_url, config).await {
        Ok(bus) => {
            let (raw, ours) = alternate(
                rounds,
                async || raw_nats(&nats_url, n, false).await,
                async |run| {
                    through_bus(Arc::new(bus.clone()), &format!("bench.nats{run}"), n).await
                },
            )
            .await;
            let bare = best(
                raw_nats(&nats_url, n, true).await,
                raw_nats(&nats_url, n, true).await,
            );
            row("async-nats alone", &raw);
            row("flotilla nats", &ours);
            row("async-nats bare", &bare);
            let _ = bus.delete_stream().await;
            ratios.push(("nats", ours.clone(), raw));
            ratios.push(("nats (vs bare)", ours, bare));
        }
        Err(error) => println!("nats skipped: {error}"),
    }

    let amqp_url = std::env::var("FLOTILLA_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    match AmqpBus::connect(&amqp_url, &format!("bench{}", std::process::id())).await {
        Ok(bus) => {
            let bus = Arc::new(bus);
            let (raw, ours) = alternate(
                rounds,
                async || raw_amqp(&amqp_url, n).await,
                async |run| through_bus(bus.clone(), &format!("bench.amqp{run}"), n).await,
            )
            .await;
            row("lapin alone", &raw);
            row("flotilla amqp", &ours);
            let _ = bus.delete_declared().await;
            ratios.push(("amqp", ours, raw));
        }
        Err(error) => println!("amqp skipped: {error}"),
    }

    println!();
    for (backend, ours, raw) in &ratios {
        ratio(backend, ours, raw);
    }
}
