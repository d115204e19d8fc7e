//! The users service alone: its HTTP API and the events it publishes.

use std::time::Duration;

use flotilla_contracts::{AccountCreatedV1, Event as _, UserCreatedV1, UserDeletedV1};
use flotilla_kit::testing::TestService;
use flotilla_users::Users;
use serde_json::{Value, json};

async fn create(app: &TestService, name: &str, email: &str) -> reqwest::Response {
    app.post("/", &json!({ "name": name, "email": email }))
        .await
}

#[tokio::test]
async fn a_created_user_is_stored_and_announced() {
    let mut app = TestService::start::<Users>(&[]).await;
    let response = create(&app, "Ada", "ada@example.com").await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let user: Value = response.json().await.unwrap();
    let id = user["id"].as_str().unwrap();
    assert_eq!(location, format!("/{id}"));
    assert_eq!(
        (user["name"].as_str(), user["email"].as_str()),
        (Some("Ada"), Some("ada@example.com"))
    );

    let event: UserCreatedV1 = app.published().await;
    assert_eq!(event.id, id);
    assert_eq!(event.email, "ada@example.com");
    assert_eq!(event.created_at, user["created_at"].as_str().unwrap());

    let fetched: Value = app.get(&location).await.json().await.unwrap();
    assert_eq!(fetched, user);
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_whatever_its_case() {
    let mut app = TestService::start::<Users>(&[]).await;
    assert_eq!(create(&app, "foo", "foo@example.com").await.status(), 201);
    let _: UserCreatedV1 = app.published().await;
    let response = create(&app, "other", "FOO@example.com").await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:flotilla:problem:conflict");
    assert_eq!(problem["status"], 409);
    assert!(
        !app.publishes_on(UserCreatedV1::SUBJECT, Duration::from_millis(200))
            .await
    );
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let mut app = TestService::start::<Users>(&[]).await;
    let long = "x".repeat(101);
    for (name, email, field) in [
        ("", "a@example.com", "name"),
        ("   ", "a@example.com", "name"),
        (long.as_str(), "a@example.com", "name"),
        ("a\u{1}b", "a@example.com", "name"),
        ("foo", "bar", "email"),
        ("foo", "foo@", "email"),
    ] {
        let response = create(&app, name, email).await;
        assert_eq!(response.status(), 422, "{name:?} {email:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:flotilla:problem:validation");
        assert_eq!(problem["errors"][0]["field"], field, "{name:?} {email:?}");
        assert!(problem["detail"].as_str().unwrap().contains(field));
    }
    let page: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]), "nothing invalid was stored");
    assert!(
        !app.publishes_on(UserCreatedV1::SUBJECT, Duration::from_millis(100))
            .await
    );
}

#[tokio::test]
async fn keyset_pagination_walks_every_user_once_in_order() {
    let app = TestService::start::<Users>(&[]).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let user: Value = create(&app, &format!("user {i}"), &format!("u{i}@example.com"))
            .await
            .json()
            .await
            .unwrap();
        created.push(user["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page: Value = app
            .get(&format!("/?limit=3&after={after}"))
            .await
            .json()
            .await
            .unwrap();
        pages += 1;
        for user in page["items"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, created);
    assert_eq!(pages, 3);
    for limit in ["0", "1001", "x"] {
        let response = app.get(&format!("/?limit={limit}")).await;
        assert_eq!(response.status(), 400, "limit={limit}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn a_deleted_user_is_gone_and_announced() {
    let mut app = TestService::start::<Users>(&[]).await;
    let user: Value = create(&app, "Ada", "ada@example.com")
        .await
        .json()
        .await
        .unwrap();
    let id = user["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/{id}")).await.status(), 204);
    let event: UserDeletedV1 = app.published().await;
    assert_eq!(event.id, id);
    assert_eq!(app.get(&format!("/{id}")).await.status(), 404);
    let again = app.delete(&format!("/{id}")).await;
    assert_eq!(again.status(), 404);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
}

fn account(id: &str, email: &str) -> AccountCreatedV1 {
    AccountCreatedV1 {
        id: id.to_owned(),
        email: email.to_owned(),
        name: "Ada".to_owned(),
        created_at: "2026-01-01T00:00:00.000Z".to_owned(),
    }
}

#[tokio::test]
async fn a_new_account_gets_a_profile_once_per_email() {
    let mut app = TestService::start::<Users>(&[]).await;
    app.deliver(&account("a1", "ada@example.com")).await;
    let event: UserCreatedV1 = app.published().await;
    assert_eq!(
        (event.email.as_str(), event.name.as_str()),
        ("ada@example.com", "Ada")
    );
    let user: Value = app
        .get(&format!("/{}", event.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(user["email"], "ada@example.com");

    // Another account event for the same address, in another case: no
    // second profile, no second announcement.
    app.deliver(&account("a2", "ADA@example.com")).await;
    assert!(
        !app.publishes_on(UserCreatedV1::SUBJECT, Duration::from_millis(200))
            .await
    );
    let page: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_account_event_that_does_not_fit_is_dead_lettered() {
    let mut app = TestService::start::<Users>(&[]).await;
    let id = app.deliver(&account("a1", "not an email")).await;
    let reason = app.dead_letter_reason(&id).await;
    assert_eq!(reason, "email must look like name@example.com");
    assert_eq!(
        app.get("/").await.json::<Value>().await.unwrap()["items"],
        json!([])
    );
}
