//! Where instances come from: the watched file, self-registration, DNS.

use std::time::Duration;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flotilla_gateway::{BoxFuture, Config, Gateway, Resolve};
use serde_json::json;
use tokio::net::TcpListener;

use crate::support::{Upstream, get_many, route, serve, start};

#[tokio::test]
async fn a_config_change_is_picked_up_under_traffic_without_a_failed_request() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, route(&[&a], "health = { path = \"\" }")).unwrap();
    let gw = start(Config::default(), Some(path.clone())).await;
    let client = reqwest::Client::new();
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), gw.url.clone());
        load.spawn(async move {
            let mut statuses = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_millis(1500);
            while std::time::Instant::now() < deadline {
                statuses.extend(get_many(&client, &url, 1).await);
            }
            statuses
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Written elsewhere, then renamed: the gateway never reads half a file.
    let next = dir.path().join("gateway.toml.new");
    std::fs::write(&next, route(&[&b], "# now b\nhealth = { path = \"\" }")).unwrap();
    std::fs::rename(&next, &path).unwrap();
    let statuses: Vec<u16> = load.join_all().await.concat();
    assert!(
        statuses.iter().all(|&s| s == 200),
        "failed requests during reload"
    );
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "a {} b {}",
        a.hits(),
        b.hits()
    );
    let before = a.hits();
    get_many(&client, &gw.url, 10).await;
    assert_eq!(a.hits(), before, "the old upstream still gets traffic");
}

#[tokio::test]
async fn a_broken_file_keeps_the_running_configuration() {
    let a = Upstream::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, route(&[&a], "health = { path = \"\" }")).unwrap();
    let gw = start(Config::default(), Some(path.clone())).await;
    std::fs::write(&path, "[[route]]\nprefix = 42\n").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let statuses = get_many(&reqwest::Client::new(), &gw.url, 5).await;
    assert_eq!(statuses, [200; 5]);
}

/// The status of `GET url`.
async fn status(client: &reqwest::Client, url: String) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn registered_instances_are_routed_until_their_ttl_lapses() {
    let a = Upstream::start("a").await;
    let gw = start(Config::default(), None).await;
    let client = reqwest::Client::new();
    let registry = format!("{}/_flotilla/registry/instances", gw.url);
    let body = json!({ "service": "things", "url": a.url, "ttl_ms": 600 });
    let created = client.post(&registry).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 200);
    assert_eq!(
        status(&client, format!("{}/api/v1/things/x", gw.url)).await,
        200
    );

    // Heartbeats keep it.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            client
                .post(&registry)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 200);

    // Silence drops it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 404);

    // DELETE drops it at once.
    client.post(&registry).json(&body).send().await.unwrap();
    let deleted = client
        .delete(format!("{registry}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 404);
}

/// A service the gateway was told of (`[gateway.services]`, as `flotilla`
/// gives every service) keeps its routes while none of its instances is
/// registered: its callers get 503 with Retry-After, not 404.
#[tokio::test]
async fn a_known_service_without_instances_is_503() {
    let a = Upstream::start("a").await;
    let config =
        Config::parse("[gateway]\naccess_log = false\n[gateway.services.things]\n").unwrap();
    let gw = start(config, None).await;
    let client = reqwest::Client::new();
    let unknown = client
        .get(format!("{}/things/x", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 503);
    assert_eq!(unknown.headers()["retry-after"], "1");
    assert_eq!(
        unknown.headers()["content-type"],
        "application/problem+json"
    );
    let registry = format!("{}/_flotilla/registry/instances", gw.url);
    let body = json!({ "service": "things", "url": a.url, "ttl_ms": 600 });
    let created = client.post(&registry).json(&body).send().await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(status(&client, format!("{}/things/x", gw.url)).await, 503);
    assert_eq!(status(&client, format!("{}/nothing/x", gw.url)).await, 404);
}

#[tokio::test]
async fn bad_registrations_are_422() {
    let gw = start(Config::default(), None).await;
    let client = reqwest::Client::new();
    let registry = format!("{}/_flotilla/registry/instances", gw.url);
    for body in [
        json!({ "service": "Bad Name", "url": "http://127.0.0.1:1" }),
        json!({ "service": "ok", "url": "ftp://x" }),
        json!({ "service": "ok" }),
    ] {
        let response = client.post(&registry).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 422, "{body}");
    }
}

/// A name server whose answers the test changes.
#[derive(Clone, Default)]
struct Zone(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

impl Resolve for Zone {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let answer = self.0.lock().unwrap().get(name).cloned();
        Box::pin(async move { answer.ok_or_else(|| std::io::Error::other("NXDOMAIN")) })
    }
}

#[tokio::test]
async fn a_host_name_is_resolved_again_and_balanced_over_every_address() {
    // Two instances on two loopback addresses, behind one name.
    let a = Upstream::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), "a").await;
    let port = a.addr.port();
    let b = match TcpListener::bind(("127.0.0.2", port)).await {
        Ok(listener) => Upstream::on(listener, "b").await,
        Err(error) => {
            eprintln!("skipped: cannot listen on 127.0.0.2:{port} ({error})");
            return;
        }
    };
    let zone = Zone::default();
    zone.0
        .lock()
        .unwrap()
        .insert(format!("app.internal:{port}"), vec![a.addr]);
    let toml = format!(
        "[gateway]\naccess_log = false\ndns_refresh_ms = 100\n[[route]]\nprefix = \"/\"\nupstreams = [\"http://app.internal:{port}\"]\nhealth = {{ path = \"\" }}\n"
    );
    let gw = serve(
        Gateway::with_resolver(Config::parse(&toml).unwrap(), None, zone.clone())
            .await
            .unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    get_many(&client, &gw.url, 10).await;
    assert_eq!((a.hits(), b.hits()), (10, 0));

    // The name now answers two addresses, as a scaled-up headless service does.
    zone.0
        .lock()
        .unwrap()
        .insert(format!("app.internal:{port}"), vec![a.addr, b.addr]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let statuses = get_many(&client, &gw.url, 40).await;
    assert!(statuses.iter().all(|&s| s == 200));
    assert_eq!((a.hits(), b.hits()), (30, 20));

    // A resolver failure keeps the last answer.
    zone.0.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        get_many(&client, &gw.url, 10)
            .await
            .iter()
            .all(|&s| s == 200)
    );
}

#[tokio::test]
async fn the_system_resolver_finds_localhost() {
    let a = Upstream::start("a").await;
    let toml = format!(
        "[gateway]\naccess_log = false\n[[route]]\nprefix = \"/\"\nupstreams = [\"http://localhost:{}\"]\nhealth = {{ path = \"\" }}\n",
        a.addr.port()
    );
    let gw = start(Config::parse(&toml).unwrap(), None).await;
    let statuses = get_many(&reqwest::Client::new(), &gw.url, 5).await;
    // Wherever localhost also resolves to ::1 (not listening), that address
    // is ejected after one refused connection and the retry succeeds.
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(a.hits(), 5);
}
