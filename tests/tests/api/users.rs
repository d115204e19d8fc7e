//! The users service through the gateway: its routes, its alias, the
//! gateway's `Location` prefix and its metrics (the rest of its API is
//! tested in its crate).

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
