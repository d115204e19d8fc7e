//! Every service's inputs, through its real extractors and handlers: each
//! service runs alone (temporary SQLite, in-process bus) as in its own
//! tests, and each input becomes one request to one of the operations its
//! OpenAPI document lists, with fuzzed path parameters, query string and
//! body (JSON or a form, as the operation takes), as a signed-in caller or
//! not. No input may get a 5xx (a kv batch's 504, which only says it is
//! still being stored, aside) or panic a handler.

#![no_main]

use std::sync::LazyLock;

use flotilla_kit::Configure;
use flotilla_kit::testing::TestService;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct Operation {
    method: reqwest::Method,
    path: String,
    form: bool,
}

struct Service {
    url: String,
    operations: Vec<Operation>,
}

struct Stack {
    runtime: tokio::runtime::Runtime,
    services: Vec<Service>,
    client: reqwest::Client,
}

async fn service<S: Configure>(args: &[&str]) -> Service {
    let app = TestService::start::<S>(args).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<reqwest::Method>() else {
                continue;
            };
            let form = operation
                .pointer("/requestBody/content/application~1x-www-form-urlencoded")
                .is_some();
            operations.push(Operation {
                method,
                path: path.clone(),
                form,
            });
        }
    }
    let url = app.url.clone();
    // Kept running for the whole fuzzing process.
    std::mem::forget(app);
    Service { url, operations }
}

static STACK: LazyLock<Stack> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let services = runtime.block_on(async {
        vec![
            service::<flotilla_users::Users>(&[]).await,
            service::<flotilla_notifications::Notifications>(&[]).await,
            service::<flotilla_kv::Kv>(&["--kv-batch-timeout-ms", "200"]).await,
            service::<flotilla_auth::Auth>(&[]).await,
            service::<flotilla_motus::Motus>(&[]).await,
            service::<flotilla_score::Score>(&[]).await,
        ]
    });
    Stack {
        runtime,
        services,
        client: reqwest::Client::new(),
    }
});

fuzz_target!(|input: &[u8]| {
    let [which, operation, flags, rest @ ..] = input else {
        return;
    };
    let stack = &*STACK;
    let service = &stack.services[usize::from(*which) % stack.services.len()];
    let operation = &service.operations[usize::from(*operation) % service.operations.len()];
    // Up to the first 0xff: path parameters (each `{…}` in turn, split on
    // 0xfe) and the query; after it, the body.
    let (head, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (params, query) = head.split_once('?').unwrap_or((&head, ""));
    let mut params = params.split('\u{fe}');
    let mut path = String::new();
    for segment in operation.path.split('/').skip(1) {
        path.push('/');
        if segment.starts_with('{') {
            let value = params.next().unwrap_or("x");
            path.push_str(&encode(value));
        } else {
            path.push_str(segment);
        }
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&encode_query(query));
    }
    let mut request = stack
        .client
        .request(operation.method.clone(), format!("{}{path}", service.url))
        .body(body.to_vec());
    request = match (operation.form, flags & 1) {
        (true, 0) => request.header("content-type", "application/x-www-form-urlencoded"),
        (_, 0) | (false, _) => request.header("content-type", "application/json"),
        _ => request,
    };
    if flags & 2 != 0 {
        request = request
            .header("x-user-id", "0190a1b2-0000-7000-8000-000000000001")
            .header("x-user-email", "fuzz@example.com")
            .header("x-user-scopes", "openid profile email");
    }
    stack.runtime.block_on(async {
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let still_storing = status == 504 && operation.path == "/batch";
        assert!(
            !status.is_server_error() || still_storing,
            "{} {path} answered {status}: {}",
            operation.method,
            response.text().await.unwrap_or_default()
        );
    });
});

/// Percent-encodes what a path segment cannot hold as it is.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query as given, with the bytes a URL cannot hold percent-encoded.
fn encode_query(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'#' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
