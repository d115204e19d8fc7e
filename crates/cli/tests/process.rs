//! The `flotilla` binary as a user runs it: start-up errors, graceful stop,
//! restarts on the same data, and a crash (SIGKILL) that loses nothing.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(20);

/// The PostgreSQL and bus URLs when the suite runs on the scale-out engines:
/// `FLOTILLA_TEST_BACKEND=scale-out` (NATS JetStream) or `scale-out-amqp`
/// (RabbitMQ).
fn scale_out() -> Option<(String, String)> {
    let bus = match std::env::var("FLOTILLA_TEST_BACKEND").as_deref() {
        Ok("scale-out") => "FLOTILLA_TEST_NATS_URL",
        Ok("scale-out-amqp") => "FLOTILLA_TEST_AMQP_URL",
        _ => return None,
    };
    Some((var("FLOTILLA_TEST_POSTGRES_URL"), var(bus)))
}

/// The engines of process mode, whose instances need a shared database and
/// bus: those of FLOTILLA_TEST_BACKEND, else PostgreSQL and NATS JetStream.
/// The tests that use it are ignored unless asked for.
fn shared_engines() -> (String, String) {
    scale_out().unwrap_or_else(|| {
        (
            var("FLOTILLA_TEST_POSTGRES_URL"),
            var("FLOTILLA_TEST_NATS_URL"),
        )
    })
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: this test needs its server"))
}

/// A `flotilla up` child process and its gateway URL.
struct Up {
    child: Child,
    url: String,
}

async fn up(data: &std::path::Path, webhook: Option<&str>) -> Up {
    up_with(data, webhook, &[]).await
}

async fn up_with(data: &std::path::Path, webhook: Option<&str>, extra: &[&str]) -> Up {
    start(
        data,
        webhook,
        extra,
        &[
            ("FLOTILLA_SLACK_RETRY_BASE_MS", "50"),
            ("FLOTILLA_SLACK_TIMEOUT_MS", "1000"),
            ("FLOTILLA_BUS_ACK_WAIT_MS", "2000"),
        ],
    )
    .await
}

/// `flotilla up` with `env` set and its other settings at their defaults.
async fn start(
    data: &std::path::Path,
    webhook: Option<&str>,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["up", "--port", "0", "--data"])
        .arg(data)
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("FLOTILLA_SLACK_WEBHOOK_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(webhook) = webhook {
        command.env("FLOTILLA_SLACK_WEBHOOK_URL", webhook);
    }
    let engines = if extra.contains(&"--processes") {
        Some(shared_engines())
    } else {
        scale_out()
    };
    if let Some((db, bus)) = engines {
        // Schemas and stream follow the data directory, so a restart finds them.
        let name = data.file_name().unwrap().to_string_lossy().to_lowercase();
        let tag: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        command.args(["--db", &db, "--db-schema-prefix", &format!("p{tag}_")]);
        command.args(["--bus", &bus, "--bus-namespace", &format!("p{tag}")]);
    }
    launch(command).await
}

/// Runs `command` (a `flotilla up` with its stdout piped) until it prints
/// its table: the stack and its gateway URL.
async fn launch(mut command: Command) -> Up {
    let mut child = command.spawn().expect("flotilla starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("gateway") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("flotilla exited before printing its table");
    })
    .await
    .expect("flotilla prints its table");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up { child, url }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

async fn create_user(client: &reqwest::Client, base: &str, email: &str) -> Value {
    client
        .post(format!("{base}/users"))
        .json(&json!({"name": "foo", "email": email}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

impl Up {
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    async fn crash(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }
}

#[tokio::test]
async fn a_port_in_use_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["up", "--port", &port, "--data"])
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is already in use")),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn sigterm_exits_0_and_a_restart_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = up(data.path(), None).await;
    let created = create_user(&client, &first.url, "foo@example.com").await;
    let status = first.terminate().await;
    assert!(status.success(), "{status}");

    let second = up(data.path(), None).await;
    let id = created["id"].as_str().unwrap();
    let fetched = get_json(&client, &format!("{}/users/{id}", second.url)).await;
    assert_eq!(fetched, created);
    assert!(second.terminate().await.success());
}

/// Slack as seen by the crash test: down or up, and what it accepted.
#[derive(Default)]
struct Slack {
    down: Mutex<bool>,
    /// Calls received while hanging, which never get an answer.
    hanging: Mutex<Option<usize>>,
    accepted: Mutex<Vec<String>>,
}

async fn slack_webhook(
    State(slack): State<Arc<Slack>>,
    axum::Json(body): axum::Json<Value>,
) -> StatusCode {
    if *slack.down.lock().unwrap() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let hangs = slack
        .hanging
        .lock()
        .unwrap()
        .as_mut()
        .map(|n| *n += 1)
        .is_some();
    if hangs {
        std::future::pending::<()>().await;
    }
    slack
        .accepted
        .lock()
        .unwrap()
        .push(body["text"].as_str().unwrap_or_default().to_owned());
    StatusCode::OK
}

/// Ids of the processes whose command line matches `pattern`.
fn pids(pattern: &str) -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// A webhook receiver at `<url>/hook`, standing in for Slack.
async fn slack_receiver() -> (Arc<Slack>, String) {
    let slack = Arc::new(Slack::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(slack_webhook))
        .with_state(slack.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (slack, url)
}

/// Every notification message of the stack at `url`, following pages.
async fn all_messages(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let page = get_json(
            client,
            &format!("{url}/notifications/messages?limit=1000&after={after}"),
        )
        .await;
        all.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return all,
        }
    }
}

#[tokio::test]
async fn a_crash_before_delivery_loses_no_notification_and_duplicates_none() {
    let (slack, receiver) = slack_receiver().await;
    *slack.down.lock().unwrap() = true;
    let webhook = format!("{receiver}/hook");

    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = up(data.path(), Some(&webhook)).await;
    let mut expected = Vec::new();
    for i in 0..50 {
        let user = create_user(&client, &first.url, &format!("foo{i}@example.com")).await;
        expected.push(format!("User {} created", user["id"].as_str().unwrap()));
    }
    // The kill lands with every notification stored and none delivered.
    let deadline = Instant::now() + WAIT;
    while all_messages(&client, &first.url).await.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "the notifications were never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(slack.accepted.lock().unwrap().is_empty());
    first.crash().await;

    *slack.down.lock().unwrap() = false;
    let second = up(data.path(), Some(&webhook)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let page = get_json(
            &client,
            &format!("{}/notifications/messages?limit=1000", second.url),
        )
        .await;
        let messages = page["items"].as_array().unwrap();
        if messages.len() == expected.len() && messages.iter().all(|m| m["status"] == "sent") {
            break;
        }
        assert!(Instant::now() < deadline, "not all delivered: {page:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut accepted = slack.accepted.lock().unwrap().clone();
    accepted.sort();
    expected.sort();
    assert_eq!(
        accepted, expected,
        "every notification delivered exactly once"
    );
    assert!(second.terminate().await.success());
}

#[tokio::test]
async fn after_a_crash_mid_call_at_the_shipped_defaults_the_notification_goes_out_within_seconds() {
    let (slack, receiver) = slack_receiver().await;
    *slack.hanging.lock().unwrap() = Some(0);
    let webhook = format!("{receiver}/hook");
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = start(data.path(), Some(&webhook), &[], &[]).await;
    let user = create_user(&client, &first.url, "mid@example.com").await;
    // The call is under way (the webhook holds it) when the process dies.
    let deadline = Instant::now() + WAIT;
    while *slack.hanging.lock().unwrap() == Some(0) {
        assert!(Instant::now() < deadline, "the webhook was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.crash().await;
    *slack.hanging.lock().unwrap() = None;

    let restarted = Instant::now();
    let second = start(data.path(), Some(&webhook), &[], &[]).await;
    let expected = format!("User {} created", user["id"].as_str().unwrap());
    while !slack.accepted.lock().unwrap().contains(&expected) {
        assert!(
            Instant::now() < restarted + WAIT,
            "never delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = restarted.elapsed();
    // The lease of the dead sender is two seconds; the start itself takes
    // some of the rest.
    assert!(
        took < Duration::from_secs(5),
        "delivered {took:?} after the restart"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(slack.accepted.lock().unwrap().len(), 1, "sent once");
    assert!(second.terminate().await.success());
}

#[tokio::test]
async fn a_crash_under_traffic_leaves_exactly_one_notification_per_user() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let first = up(data.path(), None).await;
    let mut creating = tokio::task::JoinSet::new();
    let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..400 {
        let (client, url, created) = (client.clone(), first.url.clone(), created.clone());
        creating.spawn(async move {
            let sent = client
                .post(format!("{url}/users"))
                .json(&json!({"name": "foo", "email": format!("foo{i}@example.com")}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 201 => {
                    created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    r.json::<Value>()
                        .await
                        .ok()
                        .map(|u| u["id"].as_str().unwrap().to_owned())
                }
                _ => None,
            }
        });
    }
    // Kill the stack while requests, events and notifications are in flight.
    while created.load(std::sync::atomic::Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.crash().await;
    let at_the_kill = created.load(std::sync::atomic::Ordering::SeqCst);
    assert!(at_the_kill < 400, "the kill came after the load ended");
    let acknowledged: Vec<String> = creating.join_all().await.into_iter().flatten().collect();

    let second = up(data.path(), None).await;
    let users = get_json(&client, &format!("{}/users?limit=500", second.url)).await;
    let mut user_texts: Vec<String> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| format!("User {} created", u["id"].as_str().unwrap()))
        .collect();
    for id in &acknowledged {
        assert!(
            user_texts.contains(&format!("User {id} created")),
            "user {id} got a 201 but is gone"
        );
    }
    user_texts.sort();
    eprintln!(
        "{} of 400 acknowledged, {} stored",
        acknowledged.len(),
        user_texts.len()
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let page = get_json(
            &client,
            &format!("{}/notifications/messages?limit=1000", second.url),
        )
        .await;
        let mut texts: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect();
        texts.sort();
        if texts == user_texts {
            break;
        }
        assert!(
            Instant::now() < deadline && texts.len() <= user_texts.len(),
            "{} users, {} messages",
            user_texts.len(),
            texts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(second.terminate().await.success());
}

/// Starts `flotilla serve ...` and returns it with the URL it printed.
async fn serve(args: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("flotilla starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("prints its address")
        .unwrap()
        .expect("a line");
    let url = line.rsplit(' ').next().unwrap().to_owned();
    Up { child, url }
}

#[tokio::test]
async fn a_service_run_alone_registers_with_the_gateway_and_leaves_on_stop() {
    let gateway = serve(&["gateway", "--port", "0"]).await;
    let data = tempfile::tempdir().unwrap();
    let users = serve(&[
        "users",
        "--port",
        "0",
        "--gateway",
        &gateway.url,
        "--data",
        data.path().to_str().unwrap(),
    ])
    .await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = client
            .get(format!("{}/users", gateway.url))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never routed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = create_user(&client, &gateway.url, "foo@example.com").await;
    assert_eq!(created["email"], "foo@example.com");

    assert!(users.terminate().await.success());
    let after = client
        .get(format!("{}/users", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 503, "a stopped instance deregisters");
    assert!(gateway.terminate().await.success());
}

#[tokio::test]
#[ignore = "process mode needs PostgreSQL and NATS (or FLOTILLA_TEST_BACKEND)"]
async fn killing_a_service_process_under_load_fails_no_get_and_loses_no_post() {
    let data = tempfile::tempdir().unwrap();
    let stack = up_with(data.path(), None, &["--processes", "--replicas", "2"]).await;
    let client = reqwest::Client::new();
    let marker = data.path().to_str().unwrap().to_owned();
    let users_pids = || pids(&format!("serve users .*{marker}"));
    assert_eq!(users_pids().len(), 2);

    let mut load = tokio::task::JoinSet::new();
    let gets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for worker in 0..4 {
        let (client, url, gets) = (client.clone(), stack.url.clone(), gets.clone());
        load.spawn(async move {
            let (mut failed_gets, mut created) = (0, Vec::new());
            for i in 0..150 {
                gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match client.get(format!("{url}/users?limit=1")).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => failed_gets += 1,
                }
                if i % 5 == 0 {
                    let email = format!("w{worker}-{i}@example.com");
                    if let Ok(r) = client
                        .post(format!("{url}/users"))
                        .json(&json!({"name": "w", "email": email}))
                        .send()
                        .await
                        && r.status() == 201
                    {
                        created.push(
                            r.json::<Value>().await.unwrap()["id"]
                                .as_str()
                                .unwrap()
                                .to_owned(),
                        );
                    }
                }
            }
            (failed_gets, created)
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let victim = users_pids()[0].clone();
    std::process::Command::new("kill")
        .args(["-9", &victim])
        .status()
        .unwrap();
    let at_the_kill = gets.load(std::sync::atomic::Ordering::SeqCst);
    assert!(at_the_kill < 600, "the kill came after the load ended");
    let results = load.join_all().await;
    let failed: usize = results.iter().map(|(f, _)| f).sum();
    assert_eq!(failed, 0, "GETs failed while an instance died");
    for id in results.iter().flat_map(|(_, c)| c) {
        let got = client
            .get(format!("{}/users/{id}", stack.url))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "a created user is missing");
    }
    // The supervisor starts a new instance, which registers.
    let deadline = Instant::now() + WAIT;
    while users_pids().len() != 2 || users_pids().contains(&victim) {
        assert!(
            Instant::now() < deadline,
            "the killed instance was not replaced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stack.terminate().await.success());
    assert!(users_pids().is_empty(), "instances outlived the stack");
}

/// `flotilla up` on the embedded defaults, sending to `webhook`, trusting
/// the certificates of `ca` (PEM) or else only the system's.
async fn up_for_webhook(data: &std::path::Path, webhook: &str, ca: Option<&str>) -> Up {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(["up", "--port", "0", "--data"])
        .arg(data)
        .env("FLOTILLA_SLACK_WEBHOOK_URL", webhook)
        .env("FLOTILLA_SLACK_RETRY_BASE_MS", "50")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("FLOTILLA_DB")
        .env_remove("FLOTILLA_BUS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    launch(command).await
}

#[tokio::test]
async fn notifications_reach_an_https_webhook_that_verifies() {
    // The webhook is HTTPS: a TLS gateway (a certificate signed by a test CA)
    // in front of a plain receiver; the stack trusts that CA only.
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/tests/fixtures");
    let (slack, receiver) = slack_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ntls_cert = \"{fixtures}/leaf.crt\"\ntls_key = \"{fixtures}/leaf.key\"\n\
             [[route]]\nprefix = \"/\"\nupstreams = [\"{receiver}\"]\nhealth = {{ path = \"\" }}\n"
        ),
    )
    .unwrap();
    let tls = serve(&[
        "gateway",
        "--port",
        "0",
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    let port = tls.url.rsplit(':').next().unwrap().to_owned();
    let webhook = format!("https://localhost:{port}/hook");

    // A stack that trusts only the system's roots refuses the test CA's
    // certificate: the message stays pending with the error recorded.
    let untrusting = up_for_webhook(&dir.path().join("untrusting"), &webhook, None).await;
    let client = reqwest::Client::new();
    create_user(&client, &untrusting.url, "untrusted@example.com").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let list = get_json(
            &client,
            &format!("{}/notifications/messages", untrusting.url),
        )
        .await;
        let refused = list["items"].as_array().into_iter().flatten().any(|m| {
            m["status"] == "pending"
                && m["attempts"].as_i64() >= Some(1)
                && m["last_error"].as_str().is_some_and(|e| !e.is_empty())
        });
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no refused attempt recorded: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slack.accepted.lock().unwrap().is_empty(),
        "an untrusted certificate was accepted"
    );
    assert!(untrusting.terminate().await.success());

    let ca = format!("{fixtures}/ca.crt");
    let stack = up_for_webhook(&dir.path().join("data"), &webhook, Some(&ca)).await;
    let user = create_user(&client, &stack.url, "tls@example.com").await;
    let expected = format!("User {} created", user["id"].as_str().unwrap());
    let deadline = Instant::now() + WAIT;
    while !slack.accepted.lock().unwrap().contains(&expected) {
        assert!(
            Instant::now() < deadline,
            "the message never arrived over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stack.terminate().await.success());
    assert!(tls.terminate().await.success());
}

#[tokio::test]
#[ignore = "process mode needs PostgreSQL and NATS (or FLOTILLA_TEST_BACKEND)"]
async fn killing_the_consumer_process_with_10000_events_in_flight_leaves_each_effect_once() {
    const USERS: usize = 10_000;
    let data = tempfile::tempdir().unwrap();
    let stack = up_with(data.path(), None, &["--processes"]).await;
    let client = reqwest::Client::new();
    let marker = data.path().to_str().unwrap().to_owned();
    let consumer_pid = || {
        pids(&format!("serve notifications .*{marker}"))
            .into_iter()
            .next()
    };

    let mut creating = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (client, url) = (client.clone(), stack.url.clone());
        creating.spawn(async move {
            for i in (worker..USERS).step_by(32) {
                let body = json!({"name": "n", "email": format!("u{i}@example.com")});
                let created = client
                    .post(format!("{url}/users"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(created.status(), 201);
            }
        });
    }
    // Kill the consumer once it is part-way through.
    let first = consumer_pid().expect("a notifications process");
    let deadline = Instant::now() + Duration::from_secs(120);
    let before_the_kill = loop {
        let stored = all_messages(&client, &stack.url).await.len();
        if stored >= 2_000 {
            break stored;
        }
        assert!(Instant::now() < deadline, "notifications never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    std::process::Command::new("kill")
        .args(["-9", &first])
        .status()
        .unwrap();
    assert!(
        before_the_kill < USERS,
        "the kill came after the last effect"
    );
    creating.join_all().await;

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let total = all_messages(&client, &stack.url).await.len();
        if total >= USERS {
            assert_eq!(total, USERS, "an event had a second effect");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {USERS} notifications"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_ne!(
        consumer_pid(),
        Some(first),
        "the consumer was not restarted"
    );
    // Every notification names a different user.
    let mut texts = std::collections::HashSet::new();
    for m in all_messages(&client, &stack.url).await {
        assert!(
            texts.insert(m["message"].as_str().unwrap().to_owned()),
            "duplicate notification"
        );
    }
    assert_eq!(texts.len(), USERS);
    assert!(stack.terminate().await.success());
}

/// Kills the process that consumes `kv.batch` part-way through a batch of
/// 10,000 items: `flotilla up` itself on the embedded defaults, the kv
/// process in process mode. The batch is then stored whole exactly once or
/// not at all, and sending it again with the same id completes it.
#[tokio::test]
async fn a_crash_in_the_middle_of_a_10000_item_batch_stores_it_whole_once() {
    const SIZE: i64 = 10_000;
    let data = tempfile::tempdir().unwrap();
    let processes = scale_out().is_some();
    let extra: &[&str] = if processes { &["--processes"] } else { &[] };
    let stack = up_with(data.path(), None, extra).await;
    let client = reqwest::Client::new();
    let batch = json!({"id": "crash-10000", "size": SIZE});
    let url = format!("{}/kv/batch", stack.url);
    // The request dies with the process, or times out: either is fine.
    let sending = tokio::spawn(client.post(&url).json(&batch).send());

    let status = format!("{}/kv/batches/crash-10000", stack.url);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let progress: Value = get_json(&client, &status).await;
        if progress["received"].as_i64().is_some_and(|n| n >= 1_000) {
            assert_eq!(progress["status"], "pending", "killed too late: {progress}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never started: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marker = data.path().to_str().unwrap().to_owned();
    let stack = if processes {
        let kv = pids(&format!("serve kv .*{marker}"));
        let kv = kv.first().expect("a kv process");
        std::process::Command::new("kill")
            .args(["-9", kv])
            .status()
            .unwrap();
        stack
    } else {
        stack.crash().await;
        up(data.path(), None).await
    };
    // The request was still waiting for the batch when its process died.
    let answer = sending.await.unwrap().map(|r| r.status());
    assert!(
        !matches!(answer, Ok(status) if status == 200),
        "the kill came after the batch was stored"
    );

    // Whole or not at all, whenever it is looked at.
    let url = format!("{}/kv/batch", stack.url);
    let status = format!("{}/kv/batches/crash-10000", stack.url);
    let check = |body: &Value| match &body["status"] {
        Value::String(s) if s == "done" => {
            assert_eq!(body["items"].as_array().map(Vec::len), Some(SIZE as usize))
        }
        Value::String(s) if s == "pending" => assert!(body.get("items").is_none()),
        // The gateway, while the only kv process is being restarted.
        Value::Number(n) if n.as_u64() == Some(502) => {}
        _ => panic!("unexpected {body}"),
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let done = loop {
        // A retry answers once the batch is stored (504 while it is not).
        let retry = client.post(&url).json(&batch).send().await;
        if let Ok(retry) = retry
            && retry.status() == 200
        {
            break retry.json::<Value>().await.unwrap();
        }
        check(&get_json(&client, &status).await);
        assert!(Instant::now() < deadline, "the batch never completed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (done["status"].as_str(), done["size"].as_i64()),
        (Some("done"), Some(SIZE))
    );
    let stored = get_json(&client, &status).await;
    check(&stored);
    let keys: std::collections::HashSet<&str> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), SIZE as usize, "every item once");
    let list = get_json(&client, &format!("{}/kv/batches", stack.url)).await;
    let listed: Vec<&Value> = list["items"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1, "stored once: {list}");
    assert_eq!(listed[0]["size"], SIZE);
    assert!(stack.terminate().await.success());
}

#[tokio::test]
async fn the_first_admin_is_made_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let app = up(data.path(), None).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signup = client
        .post(format!("{}/auth/signup", app.url))
        .json(&json!({"email": "root@example.com", "name": "Root", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);

    // The same storage settings as the running stack.
    let mut grant = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    grant
        .args(["auth", "grant-role", "ROOT@example.com", "admin", "--data"])
        .arg(data.path());
    if let Some((db, _)) = scale_out() {
        let name = data
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase();
        let tag: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        grant.args(["--db", &db, "--db-schema-prefix", &format!("p{tag}_")]);
    }
    let output = grant.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "root@example.com is now admin\n"
    );
    let unknown = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args([
            "auth",
            "grant-role",
            "nobody@example.com",
            "admin",
            "--data",
        ])
        .arg(data.path())
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());

    // Signed in, the account has the role.
    let page = client
        .get(format!("{}/auth/login", app.url))
        .send()
        .await
        .unwrap();
    let csrf_cookie = page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = csrf_cookie.split_once('=').unwrap().1.to_owned();
    let login = client
        .post(format!("{}/auth/login", app.url))
        .header("cookie", &csrf_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={csrf}&email=root%40example.com&password=correct+horse+battery"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let session = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let me: Value = client
        .get(format!("{}/auth/session", app.url))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!(["admin"]));
    assert_eq!(app.terminate().await.code(), Some(0));
}

/// Signs up and in through the login form; the `auth_token` cookie.
async fn player(client: &reqwest::Client, base: &str, email: &str) -> String {
    let signup = client
        .post(format!("{base}/auth/signup"))
        .json(&json!({"email": email, "name": "Ada", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let page = client
        .get(format!("{base}/auth/login"))
        .send()
        .await
        .unwrap();
    let csrf = set_cookie(&page, "flotilla_csrf");
    let signed_in = client
        .post(format!("{base}/auth/login"))
        .header("cookie", &csrf)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&email={}&password=correct+horse+battery",
            csrf.split_once('=').unwrap().1,
            email.replace('@', "%40")
        ))
        .send()
        .await
        .unwrap();
    set_cookie(&signed_in, "auth_token")
}

/// The cookie `name` a response sets, as `name=value`.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

#[tokio::test]
#[ignore = "process mode needs PostgreSQL and NATS (or FLOTILLA_TEST_BACKEND)"]
async fn killing_motus_instances_in_the_middle_of_a_game_loses_no_guess() {
    let data = tempfile::tempdir().unwrap();
    let stack = up_with(data.path(), None, &["--processes", "--replicas", "2"]).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = player(&client, &stack.url, "ada@example.com").await;
    let marker = data.path().to_str().unwrap().to_owned();
    let motus_pids = || pids(&format!("serve motus .*{marker}"));
    let first_two = motus_pids();
    assert_eq!(first_two.len(), 2);

    let today = |client: reqwest::Client| {
        let (url, token) = (stack.url.clone(), token.clone());
        async move {
            let response = client
                .get(format!("{url}/motus/today"))
                .header("cookie", &token)
                .send()
                .await
                .unwrap();
            response.json::<Value>().await.unwrap()
        }
    };
    let game = today(client.clone()).await;
    let list = get_json_with(
        &client,
        &format!(
            "{}/motus/words?length={}&first={}",
            stack.url,
            game["length"],
            game["first_letter"].as_str().unwrap()
        ),
        &token,
    )
    .await;
    let words: Vec<&str> = list["words"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // Both instances die during the game, one after the second guess and
    // the other after the fourth, once the first is replaced (two
    // instances pass the health check): whichever served the player, it died.
    for (played, word) in words.iter().take(6).enumerate() {
        if played == 4 {
            let deadline = Instant::now() + WAIT;
            while motus_pids().len() != 2 || passing(&client, &stack.url, "motus").await != 2 {
                assert!(
                    Instant::now() < deadline,
                    "the first instance was not replaced"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if played == 2 || played == 4 {
            let victim = &first_two[played / 2 - 1];
            std::process::Command::new("kill")
                .args(["-9", victim])
                .status()
                .unwrap();
        }
        // A guess sent to the instance just killed may come back 502 (the
        // service did not answer, so nothing was played): sent again, as a
        // player would.
        let mut response = guess(&client, &stack.url, &token, word).await;
        if response.status() == 502 {
            response = guess(&client, &stack.url, &token, word).await;
        }
        assert_eq!(response.status(), 200, "guess {} ({word})", played + 1);
        let game: Value = response.json().await.unwrap();
        assert_eq!(
            game["attempts"].as_array().unwrap().len(),
            played + 1,
            "{game}"
        );
        if game["status"] != "playing" {
            break;
        }
    }
    let game = today(client.clone()).await;
    assert_ne!(game["status"], "playing", "{game}");
    assert!(
        motus_pids().iter().all(|pid| !first_two.contains(pid)),
        "both original instances were killed"
    );
    assert!(stack.terminate().await.success());
}

async fn guess(client: &reqwest::Client, base: &str, token: &str, word: &str) -> reqwest::Response {
    client
        .post(format!("{base}/motus/today/guesses"))
        .header("cookie", token)
        .json(&json!({ "guess": word }))
        .send()
        .await
        .unwrap()
}

/// How many instances of `service` answer the gateway's health check now.
async fn passing(client: &reqwest::Client, base: &str, service: &str) -> usize {
    let health = get_json(client, &format!("{base}/health")).await;
    health["services"][service]["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["status"] == "pass")
        .count()
}

async fn get_json_with(client: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = client
        .get(url)
        .header("cookie", token)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

#[tokio::test]
#[ignore = "process mode needs PostgreSQL and NATS (or FLOTILLA_TEST_BACKEND)"]
async fn the_instances_of_a_killed_stack_do_not_outlive_it() {
    let data = tempfile::tempdir().unwrap();
    let stack = up_with(data.path(), None, &["--processes"]).await;
    let marker = data.path().to_str().unwrap().to_owned();
    let instances = || pids(&format!("serve .*{marker}"));
    assert!(!instances().is_empty());
    stack.crash().await;
    let deadline = Instant::now() + WAIT;
    while !instances().is_empty() {
        assert!(
            Instant::now() < deadline,
            "instances outlived a SIGKILLed stack: {:?}",
            instances()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
