//! How requests are spread over instances.

use std::time::Duration;

use crate::support::{Upstream, gateway, get_many, route};

#[tokio::test]
async fn round_robin_alternates() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(&[&a, &b], "health = { path = \"\" }")).await;
    let statuses = get_many(&reqwest::Client::new(), &format!("{}/x", gw.url), 100).await;
    assert!(statuses.iter().all(|&s| s == 200));
    assert_eq!((a.hits(), b.hits()), (50, 50));
}

#[tokio::test]
async fn weighted_follows_the_weights() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let toml = format!(
        "[gateway]\naccess_log = false\n[[route]]\nprefix = \"/\"\nbalance = \"weighted\"\nhealth = {{ path = \"\" }}\n\
         upstreams = [{{ url = \"{}\", weight = 3 }}, {{ url = \"{}\", weight = 1 }}]\n",
        a.url, b.url
    );
    let gw = gateway(&toml).await;
    get_many(&reqwest::Client::new(), &gw.url, 400).await;
    assert_eq!((a.hits(), b.hits()), (300, 100));
}

#[tokio::test]
async fn least_conn_favours_the_instance_that_answers_faster() {
    let (slow, fast) = (Upstream::start("slow").await, Upstream::start("fast").await);
    slow.state
        .delay_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let gw = gateway(&route(
        &[&slow, &fast],
        "balance = \"least_conn\"\nhealth = { path = \"\" }",
    ))
    .await;
    let client = reqwest::Client::new();
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (client, url) = (client.clone(), gw.url.clone());
        running.spawn(async move { get_many(&client, &url, 20).await });
    }
    let statuses: Vec<u16> = running.join_all().await.concat();
    assert!(statuses.iter().all(|&s| s == 200));
    assert!(
        fast.hits() > 3 * slow.hits(),
        "fast {} vs slow {}",
        fast.hits(),
        slow.hits()
    );
}

#[tokio::test]
async fn sticky_cookie_pins_and_fails_over() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = gateway(&route(
        &[&a, &b],
        "balance = \"sticky\"\nhealth = { path = \"\" }",
    ))
    .await;
    let client = reqwest::Client::new();
    let first = client.get(&gw.url).send().await.unwrap();
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("FLOTILLA_SERVER="), "{cookie}");
    assert_eq!(first.headers()["cache-control"], "private");
    let pinned_name = first.text().await.unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    for _ in 0..10 {
        let again = client
            .get(&gw.url)
            .header("cookie", &pair)
            .send()
            .await
            .unwrap();
        assert!(
            again.headers().get("set-cookie").is_none(),
            "an honoured cookie is not set again"
        );
        assert_eq!(again.text().await.unwrap(), pinned_name);
    }
    let (pinned, other) = if pinned_name == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(pinned.hits(), 11);

    pinned.kill();
    let failover = client
        .get(&gw.url)
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(failover.status(), 200);
    assert!(
        failover.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("FLOTILLA_SERVER=")
    );
    assert_eq!(failover.text().await.unwrap(), other.state.name);
}

#[tokio::test]
async fn the_sticky_cookie_does_not_reach_the_upstream() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(
        &[&a],
        "balance = \"sticky\"\nhealth = { path = \"\" }",
    ))
    .await;
    let seen: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/headers", gw.url))
        .header("cookie", "FLOTILLA_SERVER=x; theme=dark")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["cookie"], "theme=dark");
    let _ = Duration::ZERO;
}
