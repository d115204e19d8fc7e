//! Bad input gets a 4xx problem, never a 500, and the stack stays up.

use std::time::Duration;

use flotilla_tests::{TestApp, spawn_app};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn assert_problem(response: reqwest::Response, status: u16, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{what}"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status, "{what}");
    assert!(problem["detail"].is_string(), "{what}");
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_bodies() {
    let app = spawn_app().await;
    for path in ["/users", "/notifications/messages"] {
        let json = "application/json";
        assert_problem(
            post_raw(&app, path, json, "{\"name\":").await,
            400,
            "truncated JSON",
        )
        .await;
        assert_problem(
            post_raw(&app, path, json, "not json").await,
            400,
            "not JSON",
        )
        .await;
        assert_problem(
            post_raw(&app, path, json, vec![0xff, 0xfe, 0x00]).await,
            400,
            "binary",
        )
        .await;
        assert_problem(
            post_raw(&app, path, "text/plain", "{}").await,
            415,
            "wrong content type",
        )
        .await;
        assert_problem(
            post_raw(&app, path, json, "{\"name\": 1, \"email\": []}").await,
            422,
            "wrong types",
        )
        .await;
        assert_problem(
            post_raw(&app, path, json, "{}").await,
            422,
            "missing fields",
        )
        .await;
        assert_problem(post_raw(&app, path, json, "[]").await, 422, "an array").await;
        // Over the service's limit (1 MiB) and under the gateway's (10 MiB):
        // refused every time, and held against no instance.
        let huge = format!(
            "{{\"name\":\"{}\",\"email\":\"a@example.com\"}}",
            "x".repeat(8 << 20)
        );
        for _ in 0..5 {
            assert_problem(
                post_raw(&app, path, json, huge.clone()).await,
                413,
                "huge body",
            )
            .await;
        }
    }
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn unknown_routes_methods_and_queries() {
    let app = spawn_app().await;
    assert_problem(app.get("/users/a/b/c").await, 404, "deep unknown route").await;
    assert_problem(app.get("/notifications/nope").await, 404, "unknown route").await;
    let put = app
        .client
        .put(format!("{}/users", app.url))
        .send()
        .await
        .unwrap();
    assert_problem(put, 405, "method not allowed").await;
    assert_problem(app.get("/users?limit=abc").await, 400, "limit not a number").await;
    assert_problem(app.get("/users?limit=0").await, 400, "limit zero").await;
    assert_problem(app.get("/users?limit=100000").await, 400, "limit too large").await;
    assert_problem(
        app.get("/notifications/messages?limit=-1").await,
        400,
        "negative limit",
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn malformed_http_is_400_not_a_crash() {
    let app = spawn_app().await;
    let addr = app.url.trim_start_matches("http://").to_owned();
    for raw in [
        b"GET /users/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /users/%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"NOT A REQUEST\r\n\r\n".to_vec(),
        b"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(&raw).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let status_line = String::from_utf8_lossy(&answer);
        let status_line = status_line.lines().next().unwrap_or_default();
        let shown = String::from_utf8_lossy(&raw);
        assert!(
            status_line.starts_with("HTTP/1.1 4"),
            "{shown:?} answered {status_line:?}"
        );
    }
    assert_still_healthy(&app).await;
}

async fn assert_still_healthy(app: &TestApp) {
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);
}

/// Abuse that a parser could be made to pay for: JSON nested deeper than
/// serde_json follows is refused with a 4xx, and a websocket client sending
/// a frame over its limit is disconnected; the stack goes on serving.
#[tokio::test]
async fn deep_json_and_big_websocket_frames_are_refused() {
    let app = spawn_app().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in ["/users", "/notifications/messages", "/kv/roundtrip"] {
        let response = post_raw(&app, path, "application/json", deep.clone()).await;
        assert!(
            matches!(response.status().as_u16(), 400 | 422),
            "{path}: {}",
            response.status()
        );
    }
    let mut feed = app.websocket("/kv/ws").await;
    let _ = feed.send_text("x".repeat(64 * 1024)).await;
    assert!(
        feed.closed_within(Duration::from_secs(5)).await,
        "a 64 KiB frame was taken"
    );
    let mut small = app.websocket("/kv/ws").await;
    small.send_text("hello".to_owned()).await.unwrap();
    let id = app.roundtrip("after-abuse", "v").await;
    small.wait_for(&id, Duration::from_secs(10)).await;
    assert_still_healthy(&app).await;
}
