//! Health: active checks of every instance, which take it out of rotation
//! after `fall` failures and back after `rise` passes, and `GET /health`,
//! which asks every instance now and aggregates per service.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::Gateway;
use crate::pool::{Client, Instance, Pool};
use crate::reply::{self, Body};
use crate::table::RouteTable;

/// Checks the pool's instances every interval until the pool or the gateway is gone.
pub(crate) fn spawn_checks(pool: Weak<Pool>, gateway: Weak<Gateway>) {
    tokio::spawn(async move {
        loop {
            let (interval, checks) = {
                let (Some(pool), Some(_)) = (pool.upgrade(), gateway.upgrade()) else {
                    return;
                };
                let config = pool.config.load_full();
                let interval = Duration::from_millis(config.health.interval_ms.max(50));
                if config.health.path.is_empty() {
                    (interval, None)
                } else {
                    (interval, Some((pool.clone(), config)))
                }
            };
            tokio::time::sleep(interval).await;
            let Some((pool, config)) = checks else {
                continue;
            };
            let client = pool.client();
            let timeout = Duration::from_millis(config.health.timeout_ms);
            let mut running = JoinSet::new();
            for instance in pool.instances().iter().cloned() {
                let (client, path) = (client.clone(), config.health.path.clone());
                running.spawn(async move {
                    let passed = check(&client, &instance, &path, timeout).await.is_some();
                    (instance, passed)
                });
            }
            while let Some(Ok((instance, passed))) = running.join_next().await {
                if instance.check_result(passed, &config.health) {
                    if passed {
                        tracing::info!(service = %pool.service, instance = %instance.url, "instance healthy");
                    } else {
                        tracing::warn!(service = %pool.service, instance = %instance.url, "instance unhealthy");
                    }
                }
            }
        }
    });
}

/// GETs `path` on the instance; the time it took when it answered 2xx.
async fn check(client: &Client, instance: &Instance, path: &str, timeout: Duration) -> Option<u64> {
    let request = Request::get(format!("{}{path}", instance.url))
        .header(http::header::USER_AGENT, "flotilla-health")
        .body(reply::full(Bytes::new()))
        .ok()?;
    let started = Instant::now();
    let answered = tokio::time::timeout(timeout, async {
        let response = client.request(request).await.ok()?;
        let ok = response.status().is_success();
        response.into_body().collect().await.ok()?;
        ok.then_some(())
    })
    .await;
    matches!(answered, Ok(Some(()))).then(|| started.elapsed().as_millis() as u64)
}

/// `{"status":"pass","services":{"users":{"status":"pass","time":3,"response":"pong",
/// "instances":[...]}}}`, 503 and `"fail"` when a service has no instance that answers.
pub(crate) async fn aggregate(table: &RouteTable) -> http::Response<Body> {
    let mut pools: Vec<Arc<Pool>> = Vec::new();
    for route in &table.routes {
        if !pools.iter().any(|p| Arc::ptr_eq(p, &route.pool)) {
            pools.push(route.pool.clone());
        }
    }
    let mut checks = JoinSet::new();
    for (p, pool) in pools.iter().enumerate() {
        let config = pool.config.load_full();
        let path = if config.health.path.is_empty() {
            "/".to_owned()
        } else {
            config.health.path.clone()
        };
        let timeout = Duration::from_millis(config.health.timeout_ms.max(1000));
        for instance in pool.instances().iter().cloned() {
            let (client, path) = (pool.client(), path.clone());
            checks.spawn(async move {
                let started = Instant::now();
                let passed = check(&client, &instance, &path, timeout).await;
                (
                    p,
                    instance.url.clone(),
                    passed,
                    started.elapsed().as_millis() as u64,
                )
            });
        }
    }
    let mut results: Vec<Vec<(String, Option<u64>, u64)>> = vec![Vec::new(); pools.len()];
    while let Some(Ok((p, url, passed, elapsed))) = checks.join_next().await {
        results[p].push((url, passed, elapsed));
    }

    let mut all_pass = true;
    let mut services = Map::new();
    for (pool, mut checked) in pools.iter().zip(results) {
        checked.sort();
        let fastest = checked.iter().filter_map(|c| c.1).min();
        all_pass &= fastest.is_some();
        let mut entry = json!({
            "status": if fastest.is_some() { "pass" } else { "fail" },
            "time": fastest.unwrap_or_else(|| checked.iter().map(|c| c.2).max().unwrap_or(0)),
            "instances": checked.iter().map(|(url, passed, elapsed)| json!({
                "url": url,
                "status": if passed.is_some() { "pass" } else { "fail" },
                "time": elapsed,
            })).collect::<Vec<_>>(),
        });
        if fastest.is_some() {
            entry["response"] = Value::from("pong");
        }
        services.insert(pool.service.clone(), entry);
    }
    let code = if all_pass {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if all_pass { "pass" } else { "fail" };
    reply::json(code, &json!({ "status": status, "services": services }))
}
