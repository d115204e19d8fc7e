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
    let docs = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
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

/// `{"status":"pass","response":"pong",...}`, or 503 with `"fail"` when the
/// database does not answer.
async fn health(ctx: Context) -> Response {
    let started = Instant::now();
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&ctx.db),
    )
    .await;
    let db_ok = matches!(db, Ok(Ok(_)));
    let status = if db_ok { "pass" } else { "fail" };
    let body = json!({
        "status": status,
        "response": "pong",
        "service": ctx.name,
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "database": { "status": status, "time": started.elapsed().as_millis() as u64 },
            "bus": { "status": "pass", "backend": ctx.bus.backend() },
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
