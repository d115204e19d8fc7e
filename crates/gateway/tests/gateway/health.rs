//! The aggregated `/health`: what each instance reports, relayed.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::support::{Upstream, gateway, route};

#[tokio::test]
async fn each_services_own_report_is_relayed_not_made_up() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    *a.state.report.lock().unwrap() = Some(json!({
        "status": "pass", "response": "hello from a",
        "checks": { "database": { "status": "pass" } },
    }));
    // b answers 200 but says its own checks fail: it does not pass.
    *b.state.report.lock().unwrap() = Some(json!({
        "status": "fail", "response": "pong",
        "checks": { "bus": { "status": "fail", "detail": "not connected" } },
    }));
    let gw = gateway(&route(&[&a, &b], "")).await;
    let health: Value = reqwest::get(format!("{}/health", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let app = &health["services"]["app"];
    assert_eq!(app["status"], "pass", "{health}");
    assert_eq!(
        app["response"], "hello from a",
        "the passing instance's own words"
    );
    assert_eq!(app["checks"]["database"]["status"], "pass");
    let instances = app["instances"].as_array().unwrap();
    let b_entry = instances
        .iter()
        .find(|i| i["url"] == b.url.as_str())
        .unwrap();
    assert_eq!(b_entry["status"], "fail");
    assert_eq!(b_entry["checks"]["bus"]["detail"], "not connected");
}

#[tokio::test]
async fn a_service_whose_instances_all_report_failure_fails_the_aggregate() {
    let a = Upstream::start("a").await;
    *a.state.report.lock().unwrap() = Some(json!({ "status": "fail", "response": "pong" }));
    let gw = gateway(&route(&[&a], "")).await;
    let response = reqwest::get(format!("{}/health", gw.url)).await.unwrap();
    assert_eq!(response.status(), 503);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["services"]["app"]["status"], "fail");
    assert!(
        health["services"]["app"].get("response").is_none(),
        "{health}"
    );

    // An upstream that is not flotilla: a bare 2xx passes, with nothing to relay.
    *a.state.report.lock().unwrap() = None;
    let health: Value = reqwest::get(format!("{}/health", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["services"]["app"]["status"], "pass");
    assert!(
        health["services"]["app"].get("response").is_none(),
        "{health}"
    );
    a.state.unhealthy.store(true, Ordering::SeqCst);
    let down = reqwest::get(format!("{}/health", gw.url)).await.unwrap();
    assert_eq!(down.status(), 503);
}

#[tokio::test]
async fn a_service_that_serves_with_a_failing_check_of_its_own_warns() {
    let a = Upstream::start("a").await;
    *a.state.report.lock().unwrap() = Some(json!({
        "status": "warn", "response": "pong",
        "checks": { "bus": { "status": "fail", "detail": "not connected" } },
    }));
    let gw = gateway(&route(&[&a], "")).await;
    let response = reqwest::get(format!("{}/health", gw.url)).await.unwrap();
    assert_eq!(response.status(), 200, "a warning is not an outage");
    let health: Value = response.json().await.unwrap();
    let app = &health["services"]["app"];
    assert_eq!(app["status"], "warn", "{health}");
    assert_eq!(app["instances"][0]["status"], "warn");
    assert_eq!(app["checks"]["bus"]["detail"], "not connected");
}
