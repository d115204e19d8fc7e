//! The notifications service alone: what it makes of `user.created`, its
//! HTTP API, and delivery to a webhook.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use flotilla_contracts::UserCreatedV1;
use flotilla_kit::testing::TestService;
use flotilla_notifications::Notifications;
use serde_json::{Value, json};

fn user(id: &str) -> UserCreatedV1 {
    UserCreatedV1 {
        id: id.to_owned(),
        name: "Ada".to_owned(),
        email: "ada@example.com".to_owned(),
        created_at: "2026-01-01T00:00:00.000Z".to_owned(),
    }
}

async fn messages(app: &TestService) -> Vec<Value> {
    let page: Value = app.get("/messages").await.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_new_user_becomes_one_message_to_the_user_channel() {
    let mut app = TestService::start::<Notifications>(&[]).await;
    app.deliver(&user("u1")).await;
    let listed = messages(&app).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["channel"], "#user");
    assert_eq!(listed[0]["message"], "User u1 created");
    // Without a webhook, messages are kept, not sent.
    assert_eq!(listed[0]["status"], "stored");
}

#[tokio::test]
async fn a_redelivered_event_makes_no_second_message() {
    let mut app = TestService::start::<Notifications>(&[]).await;
    let message =
        flotilla_bus::Message::new("user.created", serde_json::to_vec(&user("u1")).unwrap())
            .with_header("schema", "user.created.v1");
    app.deliver_message(message.clone()).await;
    app.deliver_message(message).await;
    assert_eq!(messages(&app).await.len(), 1);
}

#[tokio::test]
async fn an_event_that_does_not_decode_is_dead_lettered_with_the_reason() {
    let mut app = TestService::start::<Notifications>(&[]).await;
    let garbage = app
        .deliver_json("user.created", "user.created.v1", &json!({ "id": 7 }))
        .await;
    let other_schema = app
        .deliver_json("user.created", "user.created.v9", &json!(user("u2")))
        .await;
    let dead = app.dead_letters().await;
    assert_eq!(dead.len(), 2);
    let reason = |id: &str| {
        dead.iter()
            .find(|d| d.message_id == id)
            .unwrap()
            .error
            .clone()
    };
    assert!(
        reason(&garbage).contains("not a user.created.v1 event"),
        "{}",
        reason(&garbage)
    );
    assert!(reason(&other_schema).contains("expected schema user.created.v1, got user.created.v9"));
    assert!(messages(&app).await.is_empty());
    // The reason is listed at the service's admin endpoint too.
    let listed: Value = app.get("/admin/dead-letters").await.json().await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_message_sent_through_the_api_is_queued_and_fetchable() {
    let app = TestService::start::<Notifications>(&[]).await;
    let response = app
        .post(
            "/messages",
            &json!({ "channel": "#general", "message": "hello" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    let fetched: Value = app
        .get(&format!("/messages/{}", queued["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, queued);
    assert_eq!(app.get("/messages/nope").await.status(), 404);
}

#[tokio::test]
async fn invalid_messages_are_refused() {
    let app = TestService::start::<Notifications>(&[]).await;
    for (body, field) in [
        (json!({ "channel": "", "message": "hi" }), "channel"),
        (json!({ "channel": "#a b", "message": "hi" }), "channel"),
        (
            json!({ "channel": "#us\u{7}er", "message": "hi" }),
            "channel",
        ),
        (json!({ "channel": "#user", "message": "" }), "message"),
        (
            json!({ "channel": "#user", "message": " \n\u{3000}" }),
            "message",
        ),
        (
            json!({ "channel": "#user", "message": "x".repeat(4001) }),
            "message",
        ),
    ] {
        let response = app.post("/messages", &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:flotilla:problem:validation");
        assert_eq!(problem["errors"][0]["field"], field);
    }
    assert!(messages(&app).await.is_empty());
}

/// A local webhook that refuses its first `failures` calls with 503.
struct Webhook {
    url: String,
    /// The bodies it accepted.
    accepted: Arc<Mutex<Vec<Value>>>,
    /// Every call, accepted or refused.
    calls: Arc<Mutex<usize>>,
}

async fn webhook(failures: usize) -> Webhook {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let (record, counted) = (accepted.clone(), calls.clone());
    let app = Router::new().route(
        "/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let (record, calls) = (record.clone(), counted.clone());
            async move {
                let mut calls = calls.lock().unwrap();
                *calls += 1;
                if *calls <= failures {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                record.lock().unwrap().push(body);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Webhook {
        url,
        accepted,
        calls,
    }
}

async fn until_status(app: &TestService, status: &str) -> Value {
    for _ in 0..200 {
        let listed = messages(app).await;
        if listed.first().is_some_and(|m| m["status"] == status) {
            return listed[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no message became {status}: {:?}", messages(app).await);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_until_the_webhook_accepts_it() {
    let hook = webhook(2).await;
    let mut app = TestService::start::<Notifications>(&[
        "--slack-webhook-url",
        &hook.url,
        "--slack-retry-base-ms",
        "20",
    ])
    .await;
    app.deliver(&user("u1")).await;
    let sent = until_status(&app, "sent").await;
    assert_eq!(sent["attempts"], 3);
    assert_eq!(*hook.calls.lock().unwrap(), 3);
    assert_eq!(
        *hook.accepted.lock().unwrap(),
        [json!({ "channel": "#user", "text": "User u1 created" })]
    );
}

#[tokio::test]
async fn a_message_fails_for_good_once_its_attempts_are_spent() {
    let hook = webhook(usize::MAX).await;
    let app = TestService::start::<Notifications>(&[
        "--slack-webhook-url",
        &hook.url,
        "--slack-retry-base-ms",
        "10",
        "--slack-max-attempts",
        "3",
    ])
    .await;
    let response = app
        .post(
            "/messages",
            &json!({ "channel": "#ops", "message": "down" }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let failed = until_status(&app, "failed").await;
    assert_eq!(failed["attempts"], 3);
    assert!(
        failed["last_error"].as_str().unwrap().contains("503"),
        "{failed}"
    );
    assert!(hook.accepted.lock().unwrap().is_empty());
    assert_eq!(
        *hook.calls.lock().unwrap(),
        3,
        "no call after the last attempt"
    );
}
