//! Health checks, ejection, retries and their budget, timeouts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{Upstream, gateway, get_many, route};

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_instance_costs_no_failed_get() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.kill();
    let gw = gateway(&route(&[&a, &b], "health = { path = \"\" }")).await;
    let statuses = get_many(&reqwest::Client::new(), &gw.url, 50).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(b.hits(), 50);
    let text = metrics(&gw.url).await;
    assert!(
        text.contains("gateway_retries_total{service=\"app\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn killing_an_instance_under_load_fails_no_get() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(
        &[&a, &b],
        "health = { path = \"/health\", interval_ms = 200 }",
    ))
    .await;
    let client = reqwest::Client::new();
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), gw.url.clone());
        load.spawn(async move { get_many(&client, &url, 300).await });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.kill();
    let statuses: Vec<u16> = load.join_all().await.concat();
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(failed, 0, "{failed} of {} failed", statuses.len());
    let text = metrics(&gw.url).await;
    let connect_errors: u64 = text
        .lines()
        .find(|l| l.starts_with("gateway_upstream_connect_errors_total") && l.contains(&a.url))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert!(
        connect_errors <= 3,
        "the dead instance kept getting traffic: {connect_errors}"
    );
}

#[tokio::test]
async fn an_unhealthy_instance_leaves_within_one_check_interval_and_returns() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(
        &[&a, &b],
        "health = { path = \"/health\", interval_ms = 100, rise = 1, fall = 1 }",
    ))
    .await;
    let client = reqwest::Client::new();
    a.state.unhealthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = a.hits();
    get_many(&client, &gw.url, 20).await;
    assert_eq!(a.hits(), before, "an unhealthy instance got traffic");

    a.state.unhealthy.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    get_many(&client, &gw.url, 20).await;
    assert_eq!(a.hits(), before + 10);
}

#[tokio::test]
async fn consecutive_5xx_eject_an_instance_for_a_while() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(
        &[&a, &b],
        "health = { path = \"\" }\nretries = { eject_after = 3, eject_base_ms = 300 }",
    ))
    .await;
    let client = reqwest::Client::new();
    a.state.failing.store(true, Ordering::SeqCst);
    get_many(&client, &gw.url, 6).await; // three reach a and fail
    assert_eq!(a.hits(), 3);
    get_many(&client, &gw.url, 10).await;
    assert_eq!(a.hits(), 3, "an ejected instance got traffic");
    let text = metrics(&gw.url).await;
    assert!(
        text.contains(&format!(
            "gateway_ejections_total{{service=\"app\",instance=\"{}\"}} 1",
            a.url
        )),
        "{text}"
    );

    a.state.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    get_many(&client, &gw.url, 10).await;
    assert_eq!(a.hits(), 8, "the instance did not come back");
}

#[tokio::test]
async fn retries_stay_within_the_budget() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(
        &[&a, &b],
        "health = { path = \"\" }\nretries = { attempts = 2, budget_ratio = 0.1, budget_min_per_second = 0, eject_after = 1000000 }",
    ))
    .await;
    let statuses = get_many(
        &reqwest::Client::new(),
        &format!("{}/status/503", gw.url),
        100,
    )
    .await;
    assert!(statuses.iter().all(|&s| s == 503));
    let upstream_requests = a.hits() + b.hits();
    // Without a budget, every request would be tried on both instances.
    assert!(
        (100..=111).contains(&upstream_requests),
        "{upstream_requests} upstream requests for 100"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_problem() {
    let a = Upstream::start("a").await;
    a.state.delay_ms.store(2_000, Ordering::SeqCst);
    let gw = gateway(&route(
        &[&a],
        "health = { path = \"\" }\ntimeouts = { request_ms = 200 }",
    ))
    .await;
    let started = std::time::Instant::now();
    let response = reqwest::get(&gw.url).await.unwrap();
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:flotilla:problem:gateway-timeout");
}

#[tokio::test]
async fn a_post_is_not_retried_after_a_5xx() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(&[&a, &b], "health = { path = \"\" }")).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/status/503", gw.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        a.hits() + b.hits(),
        1,
        "a POST that reached a service must not be sent twice"
    );
}
