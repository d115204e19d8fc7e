//! The kv service through the gateway: roundtrips seen on the websocket,
//! batches stored whole, timeouts, idempotent resubmission, limits.

use std::time::Duration;

use flotilla_tests::{TestApp, spawn_app, spawn_app_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// The ids of the stored batches from `GET /kv/batches`, checked against
/// the ids met walking the list one page of one at a time.
async fn batch_ids(app: &TestApp) -> Vec<String> {
    let id = |batch: &Value| batch["id"].as_str().unwrap().to_owned();
    let list: Value = app.get("/kv/batches").await.json().await.unwrap();
    let ids: Vec<String> = list["items"].as_array().unwrap().iter().map(id).collect();
    let mut paged = Vec::new();
    let mut pages = 0;
    let mut path = "/kv/batches?limit=1".to_owned();
    loop {
        pages += 1;
        let page: Value = app.get(&path).await.json().await.unwrap();
        paged.extend(page["items"].as_array().unwrap().iter().map(id));
        match page["next"].as_str() {
            Some(next) => path = format!("/kv/batches?limit=1&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, ids, "pages of one walk the same list");
    assert_eq!(pages, ids.len(), "the last page has no `next`");
    ids
}

#[tokio::test]
async fn a_roundtrip_comes_back_on_the_websocket_and_is_stored() {
    let app = spawn_app().await;
    let mut feed = app.websocket("/kv/ws").await;
    let id = app.roundtrip("greeting", "hello, world").await;
    let frame = feed.wait_for(&id, WAIT).await;
    assert_eq!(frame["key"], "greeting");
    assert_eq!(frame["value"], "hello, world");
    assert!(
        frame["stored_at"].as_str().unwrap().ends_with('Z'),
        "{frame}"
    );

    let stored: Value = app.get("/kv/pairs/greeting").await.json().await.unwrap();
    assert_eq!(stored, frame);
    let missing = app.get("/kv/pairs/nothing-here").await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn every_client_of_every_instance_sees_every_roundtrip() {
    let app = spawn_app_with(|args| args.replicas = 2).await;
    // Round robin puts the two sockets on different instances.
    let mut feeds = vec![app.websocket("/kv/ws").await, app.websocket("/kv/ws").await];
    let ids: Vec<String> = futures::future::join_all((0..10).map(|i| {
        let app = &app;
        async move { app.roundtrip(&format!("k{i}"), &format!("v{i}")).await }
    }))
    .await;
    for feed in &mut feeds {
        feed.wait_for_all(&ids, WAIT).await;
    }
}

#[tokio::test]
async fn a_batch_is_stored_whole_and_listed() {
    let app = spawn_app().await;
    let done = app.post_json("/kv/batch", &json!({ "size": 500 })).await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["status"], "done");
    assert_eq!(done["size"], 500);
    let id = done["id"].as_str().unwrap();

    let given = json!({ "id": "given-1", "items": [
        { "key": "b", "value": "2" }, { "key": "a", "value": "1" }
    ]});
    let given: Value = app
        .post_json("/kv/batch", &given)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (given["id"].as_str(), given["size"].as_i64()),
        (Some("given-1"), Some(2))
    );

    assert_eq!(batch_ids(&app).await, ["given-1", id], "newest first");
    let list: Value = app.get("/kv/batches").await.json().await.unwrap();
    assert_eq!(list["items"][1]["size"], 500);

    let batch: Value = app
        .get(&format!("/kv/batches/{id}"))
        .await
        .json()
        .await
        .unwrap();
    let items = batch["items"].as_array().unwrap();
    assert_eq!(items.len(), 500);
    assert_eq!(
        items[0],
        json!({ "key": "item-000000", "value": "value-000000" })
    );
    assert_eq!(items[499]["key"], "item-000499");
    assert_eq!(app.get("/kv/batches/unknown").await.status(), 404);
}

#[tokio::test]
async fn a_batch_nobody_consumes_times_out_with_504() {
    let app = spawn_app_with(|args| {
        args.services.set("kv-no-consumer", "true");
        args.services.set("kv-batch-timeout-ms", "300");
    })
    .await;
    let started = std::time::Instant::now();
    let response = app
        .post_json("/kv/batch", &json!({ "id": "late", "size": 10 }))
        .await;
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:flotilla:problem:gateway-timeout");
    assert_eq!(problem["batch_id"], "late");
    let list: Value = app.get("/kv/batches").await.json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    let pending: Value = app.get("/kv/batches/late").await.json().await.unwrap();
    assert_eq!(
        pending,
        json!({ "id": "late", "status": "pending", "size": 10, "received": 0 })
    );
}

#[tokio::test]
async fn resubmitting_a_batch_never_stores_it_twice() {
    let app = spawn_app().await;
    // Two at once, then two after: one batch.
    let send = |body: Value| {
        let app = &app;
        async move { app.post_json("/kv/batch", &body).await }
    };
    let first =
        futures::future::join_all((0..2).map(|_| send(json!({ "id": "order-7", "size": 300 }))))
            .await;
    let mut stored_at = Vec::new();
    for response in first {
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        stored_at.push(body["stored_at"].as_str().unwrap().to_owned());
    }
    let by_header = app
        .client
        .post(format!("{}/kv/batch", app.url))
        .header("idempotency-key", "order-7")
        .json(&json!({ "size": 300 }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let by_header: Value = by_header.json().await.unwrap();
    stored_at.push(by_header["stored_at"].as_str().unwrap().to_owned());
    stored_at.dedup();
    assert_eq!(stored_at.len(), 1, "one store: {stored_at:?}");

    let other_size = send(json!({ "id": "order-7", "size": 301 })).await;
    assert_eq!(other_size.status(), 409);

    let list: Value = app.get("/kv/batches").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let batch: Value = app.get("/kv/batches/order-7").await.json().await.unwrap();
    assert_eq!(batch["items"].as_array().unwrap().len(), 300);
}

#[tokio::test]
#[ignore = "needs Redis: FLOTILLA_TEST_REDIS_URL"]
async fn with_redis_pairs_and_batches_live_in_redis() {
    let redis_url = std::env::var("FLOTILLA_TEST_REDIS_URL")
        .expect("FLOTILLA_TEST_REDIS_URL is not set: this test needs its server");
    let prefix = format!("test:{}:", std::process::id());
    let app = spawn_app_with(|args| {
        args.backends.redis = Some(redis_url.clone());
        args.services.set("kv-redis-prefix", &prefix);
    })
    .await;
    let mut feed = app.websocket("/kv/ws").await;
    let id = app.roundtrip("colour", "blue").await;
    feed.wait_for(&id, WAIT).await;
    let pair: Value = app.get("/kv/pairs/colour").await.json().await.unwrap();
    assert_eq!(
        (pair["value"].as_str(), pair["correlation_id"].as_str()),
        (Some("blue"), Some(&*id))
    );

    let items: Vec<Value> = (0..200)
        .rev()
        .map(|i| json!({ "key": format!("k{i:03}"), "value": format!("v{i}") }))
        .collect();
    let done = app
        .post_json("/kv/batch", &json!({ "id": "in-redis", "items": items }))
        .await;
    assert_eq!(done.status(), 200);
    let second = app.post_json("/kv/batch", &json!({ "size": 3 })).await;
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        batch_ids(&app).await,
        [second["id"].as_str().unwrap(), "in-redis"],
        "newest first"
    );
    let batch: Value = app.get("/kv/batches/in-redis").await.json().await.unwrap();
    let batch_items = batch["items"].as_array().unwrap();
    assert_eq!(batch_items.len(), 200);
    assert_eq!(
        batch_items[0],
        json!({ "key": "k000", "value": "v0" }),
        "sorted by key"
    );

    // In Redis itself: a hash per pair and per batch, as in the seed.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let value: String = redis::cmd("HGET")
        .arg(format!("{prefix}pair:colour"))
        .arg("value")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(value, "blue");
    let fields: i64 = redis::cmd("HLEN")
        .arg(format!("{prefix}batch:in-redis"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(fields, 200);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .unwrap();
}
