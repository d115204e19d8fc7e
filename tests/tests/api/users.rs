//! The users service, through the gateway.

use flotilla_tests::spawn_app;
use serde_json::{Value, json};

#[tokio::test]
async fn create_then_get_list_and_delete() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/users",
            &json!({"name": "foo", "email": "foo@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let id = {
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let user: Value = response.json().await.unwrap();
        assert_eq!(user["name"], "foo");
        assert_eq!(user["email"], "foo@example.com");
        assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
        let id = user["id"].as_str().unwrap().to_owned();
        assert_eq!(location, format!("/users/{id}"));
        id
    };

    let fetched: Value = app.get(&format!("/users/{id}")).await.json().await.unwrap();
    assert_eq!(fetched["id"], id.as_str());
    let aliased: Value = app
        .get(&format!("/api/v1/users/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(aliased, fetched);

    let deleted = app
        .client
        .delete(format!("{}/users/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app.get(&format!("/users/{id}")).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(gone.headers()["content-type"], "application/problem+json");
    let again = app
        .client
        .delete(format!("{}/users/{id}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn keyset_pagination_walks_every_user_once_in_order() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let user = app
            .create_user(&format!("user {i}"), &format!("u{i}@example.com"))
            .await;
        created.push(user["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let page: Value = app
            .get(&format!("/users?limit=3&after={after}"))
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
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    app.create_user("foo", "foo@example.com").await;
    let response = app
        .post_json(
            "/users",
            &json!({"name": "other", "email": "FOO@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:flotilla:problem:conflict");
    assert_eq!(problem["status"], 409);
}

#[tokio::test]
async fn invalid_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let long = "x".repeat(101);
    for (body, field) in [
        (json!({"name": "", "email": "a@example.com"}), "name"),
        (json!({"name": "   ", "email": "a@example.com"}), "name"),
        (json!({"name": long, "email": "a@example.com"}), "name"),
        (json!({"name": "foo", "email": "bar"}), "email"),
        (json!({"name": "foo", "email": "foo@"}), "email"),
    ] {
        let response = app.post_json("/users", &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:flotilla:problem:validation");
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
        assert!(problem["detail"].as_str().unwrap().contains(field));
    }
    let page: Value = app.get("/users").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]), "nothing invalid was stored");
}

#[tokio::test]
async fn service_metrics_count_requests_per_route_and_status() {
    let app = spawn_app().await;
    app.create_user("foo", "foo@example.com").await;
    let _ = app.get("/users/missing").await;
    let metrics = app.get("/users/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{service="users",method="POST",route="/",status="201"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"http_requests_total{service="users",method="GET",route="/{id}",status="404"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
}
