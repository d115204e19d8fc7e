//! Benchmark of the kv service through the gateway of a running stack,
//! next to its anchors, direct inserts into the same database:
//!
//! - roundtrip latency, from the start of `POST /kv/roundtrip` to the pair's
//!   arrival on `/kv/ws`, at a steady rate, after a second at that rate
//!   that is not counted (connections being opened, statements prepared);
//!   anchor: one single-row insert (its own transaction) at a time;
//! - the time of `POST /kv/batch` for N items, until its reply; anchor: N
//!   rows inserted in one transaction (no batch with a size of 0).
//!
//!   kv_bench <gateway URL> <database URL> [rate/s] [seconds] [batch size]
//!
//! With `KV_BENCH_EVERY=S`, the roundtrips are also reported per S seconds
//! of their sending, to show whether a run slows down as it goes.
//!
//! The database URL is the kv service's own: `sqlite://DATA/kv.db`, or
//! `postgres://…?options=-csearch_path%3D<schema>`. The anchors open it with
//! the service's own code (`flotilla_kit::db::Storage::open`), so they run
//! with the same connection settings (on SQLite: WAL, `synchronous =
//! NORMAL`, the busy timeout), and write a table of their own there,
//! `bench_anchor`, dropped afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flotilla_kit::db::Storage;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The roundtrips of `timeline` by `every` seconds of their sending since
/// `started`: where each window starts, its count, p50 and p99.
fn per_window(
    timeline: &[(Instant, Duration)],
    started: Instant,
    every: u64,
) -> Vec<(u64, usize, Duration, Duration)> {
    let mut windows: std::collections::BTreeMap<u64, Vec<Duration>> = Default::default();
    for (sent, took) in timeline {
        let window = sent.saturating_duration_since(started).as_secs() / every * every;
        windows.entry(window).or_default().push(*took);
    }
    windows
        .into_iter()
        .map(|(from, mut took)| {
            took.sort_unstable();
            let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
            (from, took.len(), p50, p99)
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The database behind `db` as the service opens it: the kit's
/// [`Storage::open`], which sets the service's connection settings.
/// `sqlite://DIR/NAME.db` is service NAME's file in DIR; on PostgreSQL the
/// `search_path` option names the schema, opened as a service of that name
/// with an empty prefix.
async fn open_as_the_service(db: &str) -> anyhow::Result<sqlx::AnyPool> {
    if let Some(path) = db.strip_prefix("sqlite://") {
        let path = Path::new(path.split('?').next().unwrap_or(path));
        let (dir, service) = path
            .parent()
            .zip(path.file_stem().and_then(|s| s.to_str()))
            .filter(|_| path.extension().is_some_and(|e| e == "db"))
            .with_context(|| format!("{db}: expected sqlite://DIR/NAME.db"))?;
        return Ok(Storage::Sqlite(dir.to_owned()).open(service).await?);
    }
    let (base, query) = db.split_once('?').unwrap_or((db, ""));
    let (mut schema, mut rest) = (None, Vec::new());
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param
            .strip_prefix("options=-csearch_path%3D")
            .or_else(|| param.strip_prefix("options=-csearch_path="))
        {
            Some(name) => schema = Some(name),
            None => rest.push(param),
        }
    }
    let schema = schema.with_context(|| {
        format!("{db}: expected the schema as ?options=-csearch_path%3D<schema>")
    })?;
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let storage = Storage::Postgres {
        url,
        schema_prefix: String::new(),
    };
    Ok(storage.open(schema).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, db) = (args[1].trim_end_matches('/').to_owned(), args[2].clone());
    let rate: u64 = args.get(3).map_or(Ok(1000), |a| a.parse())?;
    let seconds: u64 = args.get(4).map_or(Ok(10), |a| a.parse())?;
    let batch: u64 = args.get(5).map_or(Ok(10_000), |a| a.parse())?;
    let run = std::process::id();

    // Roundtrips at a steady rate; the key tells the frame's roundtrip.
    let ws_url = format!("{}/kv/ws", url.replacen("http", "ws", 1));
    let (socket, _) = tokio_tungstenite::connect_async(ws_url).await?;
    let (mut sink, mut frames) = socket.split();
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // When each counted roundtrip was sent, and how long it took.
    let latencies: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let reader = {
        let (sent, latencies) = (sent.clone(), latencies.clone());
        tokio::spawn(async move {
            while let Some(Ok(frame)) = frames.next().await {
                if let Message::Text(text) = frame {
                    let arrived = Instant::now();
                    let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                    let key = frame["key"].as_str().unwrap_or_default();
                    if let Some(start) = sent.lock().unwrap().remove(key) {
                        latencies.lock().unwrap().push((start, arrived - start));
                    }
                }
            }
        })
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (warm_up, total) = (rate, rate * seconds);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    let mut started = Instant::now();
    for i in 0..warm_up + total {
        ticks.tick().await;
        let counted = i >= warm_up;
        let key = format!("bench-{run}-{i}");
        if i == warm_up {
            started = Instant::now();
        }
        if counted {
            sent.lock().unwrap().insert(key.clone(), Instant::now());
        }
        let (client, url) = (client.clone(), url.clone());
        requests.spawn(async move {
            let body = json!({ "key": key, "value": "v" });
            let response = client
                .post(format!("{url}/kv/roundtrip"))
                .json(&body)
                .send()
                .await;
            counted && matches!(response, Ok(r) if r.status() == 202)
        });
    }
    let accepted = requests
        .join_all()
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    let offered = total as f64 / started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sent.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lost = sent.lock().unwrap().len();
    let _ = sink.close().await;
    reader.abort();
    let timeline = std::mem::take(&mut *latencies.lock().unwrap());
    let mut rt: Vec<Duration> = timeline.iter().map(|(_, took)| *took).collect();
    rt.sort_unstable();
    let every: Option<u64> = std::env::var("KV_BENCH_EVERY")
        .ok()
        .and_then(|s| s.parse().ok());
    let windows = every.map(|every| per_window(&timeline, started, every.max(1)));

    // One batch, until its reply.
    let batch_time = if batch > 0 {
        let id = format!("bench-{run}");
        let batch_started = Instant::now();
        let reply = client
            .post(format!("{url}/kv/batch"))
            .json(&json!({ "id": id, "size": batch }))
            .timeout(Duration::from_secs(600))
            .send()
            .await?;
        let batch_time = batch_started.elapsed();
        anyhow::ensure!(reply.status() == 200, "batch: {}", reply.text().await?);
        batch_time
    } else {
        Duration::ZERO
    };

    // The anchors, in the same database, on one connection opened as the
    // service opens its own.
    let pool = open_as_the_service(&db).await?;
    let mut conn = pool.acquire().await?;
    sqlx::query("DROP TABLE IF EXISTS bench_anchor")
        .execute(&mut *conn)
        .await?;
    sqlx::query("CREATE TABLE bench_anchor (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    let mut single = Vec::new();
    for i in 0..1000 {
        let start = Instant::now();
        sqlx::query("INSERT INTO bench_anchor (key, value) VALUES ($1, $2)")
            .bind(format!("single-{i}"))
            .bind("v")
            .execute(&mut *conn)
            .await?;
        single.push(start.elapsed());
    }
    single.sort_unstable();
    let bulk_started = Instant::now();
    let mut tx = conn.begin().await?;
    for i in 0..batch {
        sqlx::query("INSERT INTO bench_anchor (key, value) VALUES ($1, $2)")
            .bind(format!("item-{i:06}"))
            .bind(format!("value-{i:06}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let bulk = bulk_started.elapsed();
    sqlx::query("DROP TABLE bench_anchor")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    pool.close().await;

    let (p50, p99) = (percentile(&rt, 0.5), percentile(&rt, 0.99));
    let (s50, s99) = (percentile(&single, 0.5), percentile(&single, 0.99));
    println!(
        "roundtrip  {accepted}/{total} accepted at {offered:.0}/s, {} arrived, {lost} lost",
        rt.len()
    );
    println!(
        "           HTTP -> websocket p50 {:.2} ms  p99 {:.2} ms | single-row insert p50 {:.3} ms  p99 {:.3} ms | ratio p50 {:.1}x  p99 {:.1}x",
        ms(p50),
        ms(p99),
        ms(s50),
        ms(s99),
        ms(p50) / ms(s50),
        ms(p99) / ms(s99),
    );
    for (from, count, p50, p99) in windows.into_iter().flatten() {
        println!(
            "           from {from:>4} s: {count} arrived, p50 {:.2} ms  p99 {:.2} ms",
            ms(p50),
            ms(p99)
        );
    }
    if batch > 0 {
        println!(
            "batch      {batch} items stored whole in {:.0} ms | {batch}-row insert in one transaction {:.0} ms | ratio {:.1}x",
            ms(batch_time),
            ms(bulk),
            ms(batch_time) / ms(bulk),
        );
    }
    Ok(())
}
