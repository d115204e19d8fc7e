//! The notifications service: user.created to Slack, the message API, and
//! what happens while Slack is down.

use std::time::Duration;

use flotilla_tests::{spawn_app, spawn_app_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn creating_a_user_sends_the_seed_message_to_slack() {
    let app = spawn_app().await;
    let user = app.create_user("foo", "foo@example.com").await;
    let id = user["id"].as_str().unwrap();

    let accepted = app.slack.settled(1, Duration::from_millis(500)).await;
    assert_eq!(
        accepted[0].body,
        json!({"channel": "#user", "text": format!("User {id} created")})
    );
    let messages = app
        .wait_for_messages(WAIT, |m| m.iter().any(|m| m["status"] == "sent"))
        .await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["attempts"], 1);
    assert_eq!(messages[0]["id"].as_str().unwrap(), accepted[0].message_id);
}

#[tokio::test]
async fn any_message_can_be_sent_through_the_api() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/notifications/messages",
            &json!({"channel": "#user", "message": "User <id> created"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["status"], "pending");

    let accepted = app.slack.wait_for(1, WAIT).await;
    assert_eq!(
        accepted[0].body,
        json!({"channel": "#user", "text": "User <id> created"})
    );
    let id = queued["id"].as_str().unwrap();
    let messages = app
        .wait_for_messages(WAIT, |m| m.iter().all(|m| m["status"] == "sent"))
        .await;
    assert_eq!(messages[0]["id"], id);
    let one: Value = app
        .get(&format!("/notifications/messages/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["status"], "sent");
    assert!(one["sent_at"].is_string());
}

#[tokio::test]
async fn a_slack_outage_delays_but_does_not_lose_messages() {
    let app = spawn_app().await;
    app.slack.set_down(true);
    let mut ids = Vec::new();
    for i in 0..5 {
        let user = app.create_user("foo", &format!("foo{i}@example.com")).await;
        ids.push(user["id"].as_str().unwrap().to_owned());
    }
    // While Slack is down, messages stay pending with the error recorded.
    let pending = app
        .wait_for_messages(WAIT, |m| {
            m.len() == 5
                && m.iter()
                    .all(|m| m["status"] == "pending" && m["attempts"].as_i64() >= Some(2))
        })
        .await;
    assert!(pending[0]["last_error"].as_str().unwrap().contains("503"));
    // Slack was called during the outage, and accepted nothing.
    assert!(app.slack.refused() >= 10, "{} refused", app.slack.refused());
    assert!(app.slack.accepted().is_empty());

    app.slack.set_down(false);
    app.wait_for_messages(WAIT, |m| m.iter().all(|m| m["status"] == "sent"))
        .await;
    let mut texts: Vec<String> = app
        .slack
        .accepted()
        .iter()
        .map(|d| d.body["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("User {id} created")).collect();
    expected.sort();
    assert_eq!(texts, expected, "each message delivered exactly once");
}

#[tokio::test]
async fn without_a_webhook_messages_are_stored() {
    let app = spawn_app_with(|args| args.services.set("slack-webhook-url", "")).await;
    app.create_user("foo", "foo@example.com").await;
    let messages = app.wait_for_messages(WAIT, |m| m.len() == 1).await;
    assert_eq!(messages[0]["status"], "stored");
    assert_eq!(messages[0]["attempts"], 0, "nothing is sent anywhere");
}
