//! RabbitMQ going away under the bus. The broker restarting under the
//! outbox relay: every event whose transaction committed is delivered, once;
//! this restarts the broker at FLOTILLA_TEST_AMQP_URL (with `rabbitmqctl
//! stop_app` / `start_app`), so it runs only when FLOTILLA_TEST_AMQP_RESTART=1
//! says that is acceptable. And the bus's probe while the broker is
//! unreachable or does not answer, through a proxy the test cuts or freezes,
//! which leaves the shared broker alone.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::proxy::Proxy;
use common::{PROBE_TIMEOUT, probe_until, server_url};
use flotilla_bus::amqp::AmqpBus;
use flotilla_bus::{Bus, BusError};

/// Held by each test: the restart takes down the broker the others use,
/// and their queues with it.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .arg(command)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command} failed");
}

#[tokio::test]
#[ignore = "restarts the RabbitMQ of FLOTILLA_TEST_AMQP_URL: FLOTILLA_TEST_AMQP_RESTART=1"]
async fn a_rabbitmq_restart_while_the_relay_publishes_loses_no_committed_event() {
    let _broker = BROKER.lock().await;
    let url = server_url("FLOTILLA_TEST_AMQP_URL");
    assert_eq!(
        std::env::var("FLOTILLA_TEST_AMQP_RESTART").as_deref(),
        Ok("1"),
        "this test restarts the broker: set FLOTILLA_TEST_AMQP_RESTART=1 if it may (or --skip it)"
    );
    let prefix = format!("test{}", std::process::id());
    let amqp = Arc::new(
        AmqpBus::connect(&url, &prefix)
            .await
            .expect("RabbitMQ reachable"),
    );
    common::relay_through_an_outage(amqp.clone(), async |i| {
        if i == 100 {
            tokio::task::spawn_blocking(|| rabbitmqctl("stop_app"))
                .await
                .unwrap();
        }
        if i == 150 {
            tokio::task::spawn_blocking(|| rabbitmqctl("start_app"))
                .await
                .unwrap();
        }
    })
    .await;
    let _ = amqp.delete_declared().await;
}

/// A bus on the broker of FLOTILLA_TEST_AMQP_URL through a proxy of its own.
async fn behind_a_proxy() -> (AmqpBus, Proxy) {
    let url = server_url("FLOTILLA_TEST_AMQP_URL");
    // amqp://user:password@host:port/vhost: the proxy takes host:port's place.
    let (scheme, rest) = url.split_once("://").expect("an amqp:// URL");
    let (authority, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, upstream) = match authority.rsplit_once('@') {
        Some((credentials, host)) => (format!("{credentials}@"), host),
        None => (String::new(), authority),
    };
    let upstream = if upstream.contains(':') {
        upstream.to_owned()
    } else {
        format!("{upstream}:5672")
    };
    let proxy = Proxy::start(&upstream).await;
    let through = format!("{scheme}://{credentials}127.0.0.1:{}/{vhost}", proxy.port());
    let prefix = format!("probe{}", uuid::Uuid::now_v7().simple());
    let bus = AmqpBus::connect(&through, &prefix)
        .await
        .expect("RabbitMQ reachable through the proxy");
    (bus, proxy)
}

#[tokio::test]
#[ignore = "needs RabbitMQ: FLOTILLA_TEST_AMQP_URL"]
async fn the_probe_fails_while_the_broker_is_unreachable_and_passes_once_it_is_back() {
    let _broker = BROKER.lock().await;
    let (bus, mut proxy) = behind_a_proxy().await;
    bus.probe(PROBE_TIMEOUT).await.expect("the broker is up");

    proxy.cut();
    let error = probe_until(&bus, false, Duration::from_secs(5))
        .await
        .unwrap_err();
    eprintln!("with the broker unreachable: {error}");

    proxy.restore().await;
    probe_until(&bus, true, Duration::from_secs(30))
        .await
        .expect("the probe passes again once the connection recovered");
    bus.delete_declared().await.unwrap();
}

/// A broker that keeps the connection open but does not answer leaves the
/// client connected: only the probe's round trip notices it.
#[tokio::test]
#[ignore = "needs RabbitMQ: FLOTILLA_TEST_AMQP_URL"]
async fn the_probe_fails_while_the_broker_does_not_answer() {
    let _broker = BROKER.lock().await;
    let (bus, proxy) = behind_a_proxy().await;
    bus.probe(PROBE_TIMEOUT).await.expect("the broker is up");

    proxy.freeze();
    let error = probe_until(&bus, false, Duration::from_secs(5))
        .await
        .unwrap_err();
    proxy.thaw();
    assert!(
        matches!(error, BusError::Timeout(_)),
        "connected, but no answer in time: {error}"
    );

    probe_until(&bus, true, Duration::from_secs(10))
        .await
        .expect("the probe passes again");
    bus.delete_declared().await.unwrap();
}
