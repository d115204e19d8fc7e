//! RabbitMQ restarting under the outbox relay: every event whose
//! transaction committed is delivered, once. This restarts the broker at
//! FLOTILLA_TEST_AMQP_URL (with `rabbitmqctl stop_app` / `start_app`), so it
//! runs only when FLOTILLA_TEST_AMQP_RESTART=1 says that is acceptable.

mod common;

use std::process::Command;
use std::sync::Arc;

use flotilla_bus::amqp::AmqpBus;

fn rabbitmqctl(command: &str) {
    let status = Command::new("rabbitmqctl")
        .arg("-q")
        .arg(command)
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command} failed");
}

#[tokio::test]
async fn a_rabbitmq_restart_while_the_relay_publishes_loses_no_committed_event() {
    let (Ok(url), Ok("1")) = (
        std::env::var("FLOTILLA_TEST_AMQP_URL"),
        std::env::var("FLOTILLA_TEST_AMQP_RESTART").as_deref(),
    ) else {
        eprintln!(
            "skipped: set FLOTILLA_TEST_AMQP_URL and FLOTILLA_TEST_AMQP_RESTART=1 to restart RabbitMQ under load"
        );
        return;
    };
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
