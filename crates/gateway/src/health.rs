//! `GET /health`: every instance of every service asked at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::Client;
use crate::reply::{self, Body};
use crate::routes::RouteTable;

/// How long an instance has to answer its health check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status":"pass","services":{"users":{"status":"pass","time":3,"response":"pong",
/// "instances":[...]}}}`, with 503 and `"fail"` when a service has no healthy instance.
pub(crate) async fn aggregate(client: &Client, routes: &RouteTable) -> http::Response<Body> {
    let mut checks = JoinSet::new();
    for (s, service) in routes.services.iter().enumerate() {
        for authority in &service.instances {
            let (client, url) = (client.clone(), format!("http://{authority}/health"));
            checks.spawn(async move {
                let started = Instant::now();
                let pong = check(&client, &url).await;
                (s, url, pong, started.elapsed().as_millis() as u64)
            });
        }
    }
    let mut instances: Vec<Vec<(String, bool, u64)>> = vec![Vec::new(); routes.services.len()];
    while let Some(Ok((s, url, pong, time))) = checks.join_next().await {
        instances[s].push((url, pong, time));
    }

    let mut all_pass = true;
    let mut services = Map::new();
    for (service, mut checked) in routes.services.iter().zip(instances) {
        checked.sort();
        let fastest = checked
            .iter()
            .filter(|(_, pong, _)| *pong)
            .map(|(_, _, t)| *t)
            .min();
        all_pass &= fastest.is_some();
        let mut entry = json!({
            "status": if fastest.is_some() { "pass" } else { "fail" },
            "time": fastest.unwrap_or_else(|| checked.iter().map(|c| c.2).max().unwrap_or(0)),
            "instances": checked.iter().map(|(url, pong, time)| json!({
                "url": url.trim_end_matches("/health"),
                "status": if *pong { "pass" } else { "fail" },
                "time": time,
            })).collect::<Vec<_>>(),
        });
        if fastest.is_some() {
            entry["response"] = Value::from("pong");
        }
        services.insert(service.name.clone(), entry);
    }
    let status = if all_pass { "pass" } else { "fail" };
    let code = if all_pass {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply::json(
        code,
        &json!({ "status": status, "services": services }),
        "application/json",
    )
}

/// Whether the instance answers its `/health` with `"response":"pong"` in time.
async fn check(client: &Client, url: &str) -> bool {
    let Ok(request) = Request::get(url).body(reply::full(Bytes::new())) else {
        return false;
    };
    let answered = tokio::time::timeout(CHECK_TIMEOUT, async {
        let response = client.request(request).await.ok()?;
        let ok = response.status().is_success();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let value: Value = serde_json::from_slice(&body).ok()?;
        Some(ok && value["response"] == "pong")
    })
    .await;
    matches!(answered, Ok(Some(true)))
}
