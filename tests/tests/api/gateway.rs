//! The gateway: routing, aliases, health aggregation.

use flotilla_gateway::{Config, Gateway, service_routes};
use flotilla_tests::spawn_app;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn health_aggregates_every_service_with_pong_and_time() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "pass");
    for service in ["users", "notifications", "motus", "score"] {
        let entry = &health["services"][service];
        assert_eq!(entry["status"], "pass", "{service}");
        assert_eq!(entry["response"], "pong", "{service}");
        // Relayed from the service's own report, with its checks.
        assert_eq!(entry["checks"]["database"]["status"], "pass", "{service}");
        assert!(entry["time"].is_u64(), "{service}");
        assert_eq!(entry["instances"].as_array().unwrap().len(), 1);
    }
    let direct: Value = app.get("/users/health").await.json().await.unwrap();
    assert_eq!(direct["status"], "pass");
    assert_eq!(direct["response"], "pong");
}

#[tokio::test]
async fn health_is_503_when_a_service_does_not_answer() {
    let app = spawn_app().await;
    // A gateway in front of the real users service and a dead notifications instance.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config::default();
    config
        .routes
        .extend(service_routes("users", app.instances("users")));
    config
        .routes
        .extend(service_routes("notifications", vec![dead_url.clone()]));
    let gateway = Gateway::new(config, None).await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(gateway.serve(listener, shutdown.clone()));

    let response = reqwest::get(format!("{url}/health")).await.unwrap();
    assert_eq!(response.status(), 503);
    let health: Value = response.json().await.unwrap();
    assert_eq!(health["status"], "fail");
    assert_eq!(health["services"]["users"]["status"], "pass");
    assert_eq!(health["services"]["notifications"]["status"], "fail");
    assert!(
        health["services"]["notifications"]
            .get("response")
            .is_none()
    );
    assert_eq!(
        health["services"]["notifications"]["instances"][0]["url"],
        dead_url.as_str()
    );

    let proxied = reqwest::get(format!("{url}/notifications/messages"))
        .await
        .unwrap();
    assert_eq!(proxied.status(), 502);
    assert_eq!(
        proxied.headers()["content-type"],
        "application/problem+json"
    );
    shutdown.cancel();
}

#[tokio::test]
async fn the_web_ui_is_served_at_the_root_and_lists_services() {
    let app = spawn_app().await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for asset in ["/_flotilla/ui/app.js", "/_flotilla/ui/style.css"] {
        assert!(html.contains(asset), "{asset}");
        let served = app.get(asset).await;
        assert_eq!(served.status(), 200, "{asset}");
        let kind = served.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{kind}"
        );
    }
    let index: Value = app
        .get("/_flotilla/api/services")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(index["services"]["users"]["docs"], "/users/docs/");
    assert_eq!(index["services"]["notifications"]["url"], "/notifications");
    assert_eq!(index["services"]["kv"]["openapi"], "/kv/openapi.json");
}

#[tokio::test]
async fn unknown_services_are_404_problems() {
    let app = spawn_app().await;
    for path in ["/nope", "/nope/deeper", "/api/v1/nope", "/api/v1"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:flotilla:problem:not-found");
    }
}

#[tokio::test]
async fn docs_and_openapi_work_behind_the_prefix() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for service in ["users", "notifications"] {
        let redirect = client
            .get(format!("{}/{service}/docs", app.url))
            .send()
            .await
            .unwrap();
        assert!(redirect.status().is_redirection());
        assert_eq!(
            redirect.headers()["location"],
            format!("/{service}/docs/").as_str()
        );

        let page = app.get(&format!("/{service}/docs/")).await;
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("swagger-ui"));
        let init = app
            .get(&format!("/{service}/docs/swagger-initializer.js"))
            .await
            .text()
            .await
            .unwrap();
        assert!(init.contains("../openapi.json"), "{init}");

        let doc: Value = app
            .get(&format!("/api/v1/{service}/openapi.json"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(doc["servers"][0]["url"], format!("/{service}").as_str());
        assert!(
            doc["paths"].as_object().unwrap().len() >= 2,
            "{service}: {doc}"
        );
    }
}

#[tokio::test]
async fn replicas_share_the_load_and_notify_exactly_once() {
    let app = flotilla_tests::spawn_app_with(|args| args.replicas = 2).await;
    let health: Value = app.get("/health").await.json().await.unwrap();
    for service in ["users", "notifications"] {
        assert_eq!(
            health["services"][service]["instances"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
    let mut expected = Vec::new();
    for i in 0..20 {
        let user = app.create_user("foo", &format!("foo{i}@example.com")).await;
        expected.push(format!("User {} created", user["id"].as_str().unwrap()));
    }
    // Round robin: each users instance served half of the creations.
    for instance in app.instances("users") {
        let metrics = reqwest::get(format!("{instance}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(r#"route="/",status="201"} 10"#),
            "{instance}: {metrics}"
        );
    }
    // Two consumers and two senders, yet one message per user, sent once.
    app.slack
        .wait_for(20, std::time::Duration::from_secs(10))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut sent: Vec<String> = app
        .slack
        .accepted()
        .iter()
        .map(|d| d.body["text"].as_str().unwrap().to_owned())
        .collect();
    sent.sort();
    expected.sort();
    assert_eq!(sent, expected);
    assert_eq!(app.messages().await.len(), 20);
}
