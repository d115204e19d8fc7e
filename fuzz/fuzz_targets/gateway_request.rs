//! Requests through the gateway: routing (prefixes, hosts, stripping),
//! header rewriting (forwarded headers, trace context, request ids, sticky
//! cookies, identity headers, CORS) and HTTP/1 parsing, end to end. One
//! gateway in front of an upstream that answers with what it received;
//! every input is sent as a raw request on a new connection. Whatever it
//! is, the gateway answers with HTTP (or closes), never 500 and never
//! panics, and goes on serving.

#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Stack {
    runtime: tokio::runtime::Runtime,
    gateway: SocketAddr,
}

static STACK: LazyLock<Stack> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gateway = runtime.block_on(async {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
        let echo = axum::Router::new().fallback(|request: axum::extract::Request| async move {
            let (parts, _) = request.into_parts();
            let mut head = format!("{} {}\n", parts.method, parts.uri);
            for (name, value) in &parts.headers {
                head.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            ([("location", "/moved"), ("set-cookie", "a=b")], head)
        });
        tokio::spawn(async move { axum::serve(upstream, echo).await });
        let config = format!(
            r#"
[gateway]
access_log = false
header_timeout_ms = 200
body_timeout_ms = 200
cors_origins = ["https://app.example"]
body_limit = 65536

[[route]]
prefix = "/"
upstreams = ["{upstream_url}"]
health = {{ path = "" }}

[[route]]
prefix = "/api/v1/things"
strip_prefix = true
service = "things"
upstreams = ["{upstream_url}"]
health = {{ path = "" }}
balance = "sticky"

[[route]]
prefix = "/hosted"
host = "api.example.com"
strip_prefix = true
service = "hosted"
upstreams = ["{upstream_url}"]
health = {{ path = "" }}
rate_limit = {{ per_second = 100000, burst = 100000 }}
"#
        );
        let config = flotilla_gateway::Config::parse(&config).unwrap();
        let gateway = flotilla_gateway::Gateway::new(config, None).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(gateway.serve(listener, CancellationToken::new()));
        addr
    });
    Stack { runtime, gateway }
});

/// The input as a request: its first line picks the target, the rest are
/// header lines (a body follows an empty line), with CRLF line ends.
fn request(input: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut raw = format!("GET {target} HTTP/1.1\r\n").into_bytes();
    for line in lines {
        raw.extend_from_slice(line.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// Sends `raw` on a new connection; what came back until the end of the
/// answer's head, the connection's end, or a second.
async fn send(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(raw).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buffer = [0; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    answer
}

fuzz_target!(|input: &[u8]| {
    let stack = &*STACK;
    stack.runtime.block_on(async {
        let answer = send(stack.gateway, &request(input)).await;
        if !answer.is_empty() {
            assert!(
                answer.starts_with(b"HTTP/1.1 "),
                "not HTTP: {:?}",
                String::from_utf8_lossy(&answer)
            );
            assert!(
                !answer.starts_with(b"HTTP/1.1 500"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        let check = send(
            stack.gateway,
            b"GET /alive HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            check.starts_with(b"HTTP/1.1 200"),
            "the gateway stopped serving: {:?}",
            String::from_utf8_lossy(&check)
        );
    });
});
