//! Edge policies and protocol handling: rate limits, CORS, trace context,
//! websockets, metrics, malformed HTTP.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Upstream, gateway, get_many, route};

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(
        &[&a],
        "health = { path = \"\" }\nrate_limit = { per_second = 1, burst = 3 }",
    ))
    .await;
    let client = reqwest::Client::new();
    assert_eq!(get_many(&client, &gw.url, 3).await, [200, 200, 200]);
    let limited = client.get(&gw.url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after));
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(a.hits(), 3);
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        "access_log = false\ncors_origins = [\"https://app.example\"]",
    );
    let gw = gateway(&toml).await;
    let client = reqwest::Client::new();
    let allowed = client
        .get(&gw.url)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = client
        .get(&gw.url)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &gw.url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-headers"], "content-type");
    assert_eq!(
        preflight("https://evil.example").await.unwrap().status(),
        403
    );
    assert_eq!(a.hits(), 2, "preflights are answered by the gateway");
}

#[tokio::test]
async fn trace_context_request_id_and_forwarded_headers_reach_the_upstream() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let client = reqwest::Client::new();
    let fresh: serde_json::Value = client
        .get(format!("{}/headers", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let traceparent = fresh["traceparent"].as_str().unwrap();
    assert_eq!(traceparent.len(), 55, "{traceparent}");
    assert!(traceparent.starts_with("00-"));
    assert!(fresh["x-request-id"].is_string());
    assert_eq!(fresh["x-forwarded-for"], "127.0.0.1");
    assert_eq!(fresh["x-forwarded-proto"], "http");

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = client
        .get(format!("{}/headers", gw.url))
        .header("traceparent", incoming)
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let continued: serde_json::Value = response.json().await.unwrap();
    let forwarded = continued["traceparent"].as_str().unwrap();
    assert!(
        forwarded.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{forwarded}"
    );
    assert_ne!(forwarded, incoming);
    assert_eq!(continued["x-request-id"], "abc-123");
}

#[tokio::test]
async fn websockets_are_proxied() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let (mut socket, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through the gateway"] {
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(text))
            .await
            .unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
}

#[tokio::test]
async fn metrics_count_what_was_sent() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let client = reqwest::Client::new();
    get_many(&client, &gw.url, 7).await;
    get_many(&client, &format!("{}/status/404", gw.url), 2).await;
    let text = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "gateway_requests_total{route=\"/\",service=\"app\",class=\"2xx\"} 7",
        "gateway_requests_total{route=\"/\",service=\"app\",class=\"4xx\"} 2",
        "gateway_request_duration_seconds_count{route=\"/\",service=\"app\"} 9",
        &format!(
            "gateway_upstream_responses_total{{service=\"app\",instance=\"{}\",class=\"2xx\"}} 7",
            a.url
        ),
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let stats: serde_json::Value = reqwest::get(format!("{}/_flotilla/api/stats", gw.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["routes"][0]["requests"], 9);
    let dashboard = reqwest::get(format!("{}/dashboard", gw.url)).await.unwrap();
    assert_eq!(dashboard.status(), 200);
    assert!(
        dashboard
            .text()
            .await
            .unwrap()
            .contains("/_flotilla/api/stats")
    );
}

#[tokio::test]
async fn malformed_http_is_answered_400_or_431() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    for (raw, expected) in [
        (b"NOT A REQUEST\r\n\r\n".to_vec(), "400"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            "400",
        ),
        (huge_header.into_bytes(), "431"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let _ = stream.write_all(&raw).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        let status = text.lines().next().unwrap_or_default();
        assert!(
            status.starts_with(&format!("HTTP/1.1 {expected}")),
            "{:?} answered {status:?}",
            String::from_utf8_lossy(&raw[..20.min(raw.len())])
        );
    }
    assert_eq!(
        reqwest::get(&gw.url).await.unwrap().status(),
        200,
        "the gateway still serves"
    );
}

/// Requests whose framing two parsers could read differently (the ground of
/// request smuggling): refused with 400, or, with both `Content-Length` and
/// `Transfer-Encoding`, read as chunked and the connection closed after the
/// answer (RFC 9112 §6.3 allows either). Either way nothing sent after them
/// on that connection is taken as a request.
#[tokio::test]
async fn ambiguous_framing_is_never_read_two_ways() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for (head, status) in [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked", "200"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", "200"),
        ("Content-Length: 5\r\nContent-Length: 41", "400"),
        ("Content-Length: 5, 41", "400"),
        ("Content-Length: +5", "400"),
        ("Transfer-Encoding: xchunked", "400"),
        ("Transfer-Encoding: chunked, identity", "400"),
        ("X-Folded: a\r\n b\r\nContent-Length: 5", "400"),
    ] {
        let hits = a.hits();
        let raw = format!("POST /x HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n0\r\n\r\n{smuggled}");
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let _ = stream.write_all(raw.as_bytes()).await;
        let mut answer = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status}")),
            "{head:?} answered {text:?}"
        );
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "{head:?}: {text}");
        assert!(closed.is_ok(), "{head:?}: the connection stayed open");
        let reached = a.hits() - hits;
        assert_eq!(reached, usize::from(status == "200"), "{head:?}");
    }
}

#[tokio::test]
async fn http2_without_tls_is_served() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = client.get(&gw.url).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "a");
}

#[tokio::test]
async fn bodies_reach_the_upstream_intact_whatever_their_framing() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello world"), "{answer}");

    let client = reqwest::Client::new();
    for size in [10, 200_000] {
        let body = "x".repeat(size);
        let echoed = client
            .post(format!("{}/echo", gw.url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.text().await.unwrap(), body, "{size} bytes");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        "access_log = false\nbody_limit = 1000",
    );
    let gw = gateway(&toml).await;
    let response = reqwest::Client::new()
        .post(format!("{}/echo", gw.url))
        .body("x".repeat(1001))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn tls_clients_get_http2_or_http1_by_alpn() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: curl, the TLS client of this test, is not installed");
        return;
    }
    let a = Upstream::start("a").await;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        &format!("access_log = false\ntls_cert = \"{fixtures}/localhost.crt\"\ntls_key = \"{fixtures}/localhost.key\""),
    );
    let gw = gateway(&toml).await;
    let url = format!("https://localhost:{}/headers", gw.addr.port());
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        // curl is the client: a real TLS stack, independent of the gateway's.
        let output = tokio::process::Command::new("curl")
            .args([
                "-sS",
                flag,
                "--cacert",
                &format!("{fixtures}/localhost.crt"),
                "-w",
                "\n%{http_version}",
                &url,
            ])
            .output()
            .await
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, used) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(used, version);
        let seen: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(seen["x-forwarded-proto"], "https");
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() {
    let toml = "[gateway]\ntls_cert = \"/nonexistent.crt\"\n";
    assert!(flotilla_gateway::Config::parse(toml).is_err());
    let both = "[gateway]\ntls_cert = \"/nonexistent.crt\"\ntls_key = \"/nonexistent.key\"\n";
    let config = flotilla_gateway::Config::parse(both).unwrap();
    assert!(flotilla_gateway::Gateway::new(config, None).await.is_err());
}

#[tokio::test]
#[ignore = "needs Redis: FLOTILLA_TEST_REDIS_URL"]
async fn gateways_sharing_redis_share_the_rate_limit() {
    let redis = std::env::var("FLOTILLA_TEST_REDIS_URL")
        .expect("FLOTILLA_TEST_REDIS_URL is not set: this test needs its server");
    let a = Upstream::start("a").await;
    // A prefix of its own, so the buckets are this test's alone.
    let prefix = format!("/shared{}", std::process::id());
    let toml = format!(
        "[gateway]\naccess_log = false\nredis_url = \"{redis}\"\n[[route]]\nprefix = \"{prefix}\"\nupstreams = [\"{}\"]\n\
         health = {{ path = \"\" }}\nrate_limit = {{ per_second = 1, burst = 4 }}\n",
        a.url
    );
    let (one, two) = (gateway(&toml).await, gateway(&toml).await);
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..6 {
        let gw = if i % 2 == 0 { &one } else { &two };
        statuses.push(
            client
                .get(format!("{}{prefix}", gw.url))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "the two gateways drew from one bucket"
    );
    assert_eq!(a.hits(), 4);
}

/// An upstream that refuses a body by its size answers before reading it
/// and closes the connection; the client gets that answer, not a 502, and
/// the instance is not held to blame for it.
#[tokio::test]
async fn an_upstreams_early_413_reaches_the_client_and_ejects_nothing() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "")).await;
    let client = reqwest::Client::new();
    // Over axum's default limit (2 MiB), under the gateway's (10 MiB).
    let big = "x".repeat(9 * 1024 * 1024);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let sent = client
            .post(format!("{}/echo", gw.url))
            .body(big.clone())
            .send()
            .await;
        *statuses
            .entry(sent.map_or(0, |r| r.status().as_u16()))
            .or_insert(0) += 1;
    }
    assert_eq!(statuses, [(413, 20)].into(), "{statuses:?}");
    let text = client
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ejections = format!(
        "gateway_ejections_total{{service=\"app\",instance=\"{}\"}} 0",
        a.url
    );
    assert!(text.contains(&ejections), "{text}");
}

/// A route's own limit (here from its service's entry, as `flotilla` gives
/// it) is applied by the gateway: the instance never sees the body.
#[tokio::test]
async fn a_body_over_the_services_limit_is_refused_before_forwarding() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "").replace(
        "access_log = false",
        "access_log = false\n[gateway.services.app]\nbody_limit = 1000",
    );
    let gw = gateway(&toml).await;
    let client = reqwest::Client::new();
    let over = client
        .post(format!("{}/x", gw.url))
        .body("x".repeat(1001))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 413);
    assert_eq!(over.headers()["content-type"], "application/problem+json");
    assert_eq!(a.hits(), 0, "the instance was called");
    // Chunked, without a length: cut at the limit all the same.
    let mut stream = tokio::net::TcpStream::connect(gw.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut request =
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(format!("258\r\n{}\r\n", "x".repeat(600)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.unwrap();
    let mut answer = vec![0; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    let under = client
        .post(format!("{}/echo", gw.url))
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(under.status(), 200);
}

/// A client that trickles its headers, or stops sending its body, is not
/// waited for: 408 for the body, the connection closed for the headers.
#[tokio::test]
async fn slow_clients_time_out() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        "access_log = false\nheader_timeout_ms = 300\nbody_timeout_ms = 300",
    );
    let gw = gateway(&toml).await;

    let mut headers = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    headers
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let ended =
        tokio::time::timeout(Duration::from_secs(3), headers.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "a connection with unfinished headers stayed open"
    );

    for (framing, first_part) in [
        ("Content-Length: 10", "hello".to_owned()),
        ("Content-Length: 100000", "x".repeat(70_000)),
        ("Transfer-Encoding: chunked", "5\r\nhello\r\n".to_owned()),
    ] {
        let mut body = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let head = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{first_part}");
        body.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 12];
        tokio::time::timeout(Duration::from_secs(3), body.read_exact(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{framing}: no answer while the body stalled"))
            .unwrap();
        assert_eq!(&answer, b"HTTP/1.1 408", "{framing}");
    }
}

/// With `max_connections` open, one more is closed as it comes (and
/// counted), while those open go on being served.
#[tokio::test]
async fn connections_over_the_limit_are_closed() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        "access_log = false\nmax_connections = 2",
    );
    let gw = gateway(&toml).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = vec![0; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 200");
        open.push(stream);
    }
    let mut third = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), third.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the third connection was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = reqwest::get(format!("{}/metrics", gw.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_connections_refused_total 1"),
        "{metrics}"
    );
}

/// HTTP/2 clients are told how many streams they may open at once.
#[tokio::test]
async fn http2_clients_get_a_stream_limit() {
    let a = Upstream::start("a").await;
    let toml = route(&[&a], "health = { path = \"\" }").replace(
        "access_log = false",
        "access_log = false\nhttp2_max_streams = 7",
    );
    let gw = gateway(&toml).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0; 9];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "the server's first frame is SETTINGS");
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(3, 7)), "{settings:?}");
}

/// An HTTP/2 client that opens streams and resets each at once (the "rapid
/// reset" attack) has its connection closed; none of its requests reaches
/// the upstream. (Without the gateway's reset limits the server keeps
/// serving it.)
#[tokio::test]
async fn http2_rapid_reset_ends_the_connection() {
    let a = Upstream::start("a").await;
    let gw = gateway(&route(&[&a], "health = { path = \"\" }")).await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    for i in 0..2_000 {
        let request = http::Request::get(format!("http://x/{i}"))
            .body(())
            .unwrap();
        let Ok((_, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closed the connection")
        .unwrap();
    assert!(ended.is_err(), "the connection ended cleanly: {ended:?}");
    assert_eq!(a.hits(), 0, "reset requests reached the upstream");
}
