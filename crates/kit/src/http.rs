//! The HTTP side of an instance: the service's routes wrapped in the standard
//! endpoints and middleware, and the server with graceful shutdown.

use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::Context;
use crate::metrics;
use crate::problem::{Problem, kind};

/// Largest request body a service accepts.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The service's `routes` plus `/health`, `/metrics`, `/openapi.json`, `/docs`,
/// problem+json for unknown routes and methods, metrics and request ids.
pub fn app(routes: Router, mut openapi: utoipa::openapi::OpenApi, ctx: &Context) -> Router {
    let registry = ctx.metrics.clone();
    // The page loads the document relative to itself, so that it works both
    // directly and behind the gateway's `/<service>` prefix.
    openapi.servers = Some(vec![utoipa::openapi::Server::new(format!("/{}", ctx.name))]);
    let openapi = crate::openapi::complete(openapi);
    let docs = SwaggerUi::new("/docs")
        .external_url_unchecked("/openapi.json", openapi)
        .config(Config::new(["../openapi.json"]));
    let health_ctx = ctx.clone();
    let metrics_registry = registry.clone();
    routes
        .route("/health", get(move || health(health_ctx.clone())))
        .route(
            "/metrics",
            get(move || async move { metrics_registry.render() }),
        )
        .route(
            "/admin/dead-letters",
            get(dead_letters).with_state(ctx.db.clone()),
        )
        .merge(docs)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                kind::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn_with_state(registry, metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// How long `/health` waits for the database and for the bus.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status":"pass","response":"pong",...,"checks":{"database":{..},"bus":{..}}}`.
/// A database that does not answer within [`CHECK_TIMEOUT`] fails the
/// instance (503); a bus that does not is a `"warn"` (200), its check
/// `"fail"` with the reason in `detail`.
///
/// The bus only warns: an instance without it still answers reads and
/// takes writes, whose events wait in its outbox until the bus is back
/// (that is what the outbox is for); taking every instance out of rotation
/// during a broker outage would turn a delay into an outage.
async fn health(ctx: Context) -> Response {
    let database = async {
        let started = Instant::now();
        let answered =
            tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(&ctx.db)).await;
        let pass = matches!(answered, Ok(Ok(_)));
        (pass, started.elapsed())
    };
    let bus = async {
        let started = Instant::now();
        (ctx.bus.probe(CHECK_TIMEOUT).await, started.elapsed())
    };
    let ((db_ok, db_time), (probed, bus_time)) = tokio::join!(database, bus);
    let mut bus = json!({
        "status": if probed.is_ok() { "pass" } else { "fail" },
        "backend": ctx.bus.backend(),
        "time": bus_time.as_millis() as u64,
    });
    if let Err(error) = &probed {
        bus["detail"] = json!(error.to_string());
    }
    let status = match (db_ok, probed.is_ok()) {
        (false, _) => "fail",
        (true, false) => "warn",
        (true, true) => "pass",
    };
    let body = json!({
        "status": status,
        "response": "pong",
        "service": ctx.name,
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "database": {
                "status": if db_ok { "pass" } else { "fail" },
                "time": db_time.as_millis() as u64,
            },
            "bus": bus,
        },
    });
    let code = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /admin/dead-letters`: the messages this service's consumers gave up on.
async fn dead_letters(axum::extract::State(db): axum::extract::State<sqlx::AnyPool>) -> Response {
    match flotilla_bus::consumer::dead_letters(&db).await {
        Ok(letters) => {
            let items: Vec<_> = letters
                .into_iter()
                .map(|d| {
                    json!({
                        "consumer": d.consumer,
                        "message_id": d.message_id,
                        "subject": d.subject,
                        "payload": d.payload,
                        "attempts": d.attempts,
                        "error": d.error,
                        "failed_at_ms": d.failed_at,
                    })
                })
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "cannot list dead letters");
            Problem::internal().into_response()
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets in-flight requests
/// finish.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "server stopped");
    }
}
