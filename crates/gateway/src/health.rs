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

/// What an instance said to `GET <health path>`: whether it passes, and its
/// own report when it gave one in JSON (`status`, `response`, `checks`).
struct Answer {
    url: String,
    passed: bool,
    time: u64,
    report: Option<Value>,
}

/// GETs `path` on the instance for the aggregate: a 2xx whose JSON body
/// does not say `"status": "fail"` passes.
async fn ask(client: &Client, instance: &Instance, path: &str, timeout: Duration) -> Answer {
    let started = Instant::now();
    let answered = tokio::time::timeout(timeout, async {
        let request = Request::get(format!("{}{path}", instance.url))
            .header(http::header::USER_AGENT, "flotilla-health")
            .body(reply::full(Bytes::new()))
            .ok()?;
        let response = client.request(request).await.ok()?;
        let ok = response.status().is_success();
        let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some((ok, serde_json::from_slice::<Value>(&body).ok()))
    })
    .await;
    let (ok, report) = answered.ok().flatten().unwrap_or((false, None));
    let said_fail = report.as_ref().is_some_and(|r| r["status"] == "fail");
    Answer {
        url: instance.url.clone(),
        passed: ok && !said_fail,
        time: started.elapsed().as_millis() as u64,
        report: report.filter(Value::is_object),
    }
}

/// Every service as its instances report it: `{"status":"pass","services":
/// {"users":{"status":"pass","time":3,"response":"pong","checks":{...},
/// "instances":[{"url","status","time","response","checks"}]}}}`. A
/// service passes while one of its instances does, and shows what its
/// fastest passing instance said; 503 and `"fail"` when a service has none.
pub(crate) async fn aggregate(table: &RouteTable) -> http::Response<Body> {
    let mut pools: Vec<Arc<Pool>> = Vec::new();
    for route in &table.routes {
        if !pools.iter().any(|p| Arc::ptr_eq(p, &route.pool)) {
            pools.push(route.pool.clone());
        }
    }
    let mut asked = JoinSet::new();
    for (p, pool) in pools.iter().enumerate() {
        let config = pool.config.load_full();
        let path = if config.health.path.is_empty() {
            "/".to_owned()
        } else {
            config.health.path.clone()
        };
        let timeout = Duration::from_millis(config.health.timeout_ms.max(1000));
        for instance in pool.instances().iter() {
            let (client, path, instance) = (pool.client(), path.clone(), instance.clone());
            asked.spawn(async move { (p, ask(&client, &instance, &path, timeout).await) });
        }
    }
    let mut answers: Vec<Vec<Answer>> = pools.iter().map(|_| Vec::new()).collect();
    while let Some(Ok((p, answer))) = asked.join_next().await {
        answers[p].push(answer);
    }

    let mut all_pass = true;
    let mut services = Map::new();
    for (pool, mut answers) in pools.iter().zip(answers) {
        answers.sort_by(|a, b| a.url.cmp(&b.url));
        let fastest = answers.iter().filter(|a| a.passed).min_by_key(|a| a.time);
        all_pass &= fastest.is_some();
        let relayed = |answer: &Answer, entry: &mut Value| {
            if let Some(report) = &answer.report {
                for field in ["response", "checks"] {
                    if let Some(value) = report.get(field) {
                        entry[field] = value.clone();
                    }
                }
            }
        };
        let instances: Vec<Value> = answers
            .iter()
            .map(|answer| {
                let mut entry = json!({
                    "url": answer.url,
                    "status": match &answer.report {
                        Some(report) if answer.passed && report["status"] == "warn" => "warn",
                        _ if answer.passed => "pass",
                        _ => "fail",
                    },
                    "time": answer.time,
                });
                relayed(answer, &mut entry);
                entry
            })
            .collect();
        // A passing instance may warn (a check of its own failing while it serves).
        let status = match fastest {
            Some(a) if a.report.as_ref().is_some_and(|r| r["status"] == "warn") => "warn",
            Some(_) => "pass",
            None => "fail",
        };
        let mut entry = json!({
            "status": status,
            "time": fastest.map_or_else(|| answers.iter().map(|a| a.time).max().unwrap_or(0), |a| a.time),
        });
        if let Some(answer) = fastest {
            relayed(answer, &mut entry);
        }
        entry["instances"] = Value::from(instances);
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
