//! The users service alone: its HTTP API and the events it publishes.

use flotilla_contracts::{Event as _, UserCreatedV1, UserDeletedV1};
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
async fn an_email_is_taken_once_whatever_its_case() {
    let mut app = TestService::start::<Users>(&[]).await;
    assert_eq!(create(&app, "Ada", "ada@example.com").await.status(), 201);
    let _: UserCreatedV1 = app.published().await;
    let response = create(&app, "Ada again", "ADA@example.com").await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:flotilla:problem:conflict");
    assert!(
        !app.publishes_on(
            UserCreatedV1::SUBJECT,
            std::time::Duration::from_millis(200)
        )
        .await
    );
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let app = TestService::start::<Users>(&[]).await;
    for (name, email, field) in [
        ("", "a@example.com", "name"),
        ("Ada", "not an email", "email"),
    ] {
        let response = create(&app, name, email).await;
        assert_eq!(response.status(), 422, "{name:?} {email:?}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field);
    }
    let page: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn users_are_listed_a_page_at_a_time_in_creation_order() {
    let app = TestService::start::<Users>(&[]).await;
    for i in 0..5 {
        assert_eq!(
            create(&app, &format!("u{i}"), &format!("u{i}@example.com"))
                .await
                .status(),
            201
        );
    }
    let mut names = Vec::new();
    let mut path = "/?limit=2".to_owned();
    loop {
        let page: Value = app.get(&path).await.json().await.unwrap();
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["name"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["u0", "u1", "u2", "u3", "u4"]);
    assert_eq!(app.get("/?limit=0").await.status(), 400);
    assert_eq!(app.get("/?limit=501").await.status(), 400);
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
