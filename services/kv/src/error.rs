//! The kv service's errors, each with its HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_kit::Problem;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: a field of the request is invalid.
    #[error("invalid `{field}`: {detail}")]
    Invalid { field: &'static str, detail: String },
    /// 400: a query parameter is invalid.
    #[error("{0}")]
    BadQuery(String),
    /// 404
    #[error("{0}")]
    NotFound(String),
    /// 409: the id names another batch, or the batch failed.
    #[error("{0}")]
    Conflict(String),
    /// 504: the batch's reply did not come in time. It may still complete.
    #[error(
        "batch {id} was not confirmed within {timeout_ms} ms; it may still complete: \
         send it again with the same id to learn its outcome"
    )]
    Timeout { id: String, timeout_ms: u64 },
    /// 500, logged and not shown.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Store(StoreError::Sql(error))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = match &self {
            Error::Invalid { field, detail } => Problem::invalid_field(field, detail.clone()),
            Error::BadQuery(detail) => Problem::bad_request(detail.clone()),
            Error::NotFound(detail) => Problem::not_found(detail.clone()),
            Error::Conflict(detail) => Problem::conflict(detail.clone()),
            // The id, for a client that let the server choose it.
            Error::Timeout { id, .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                flotilla_kit::problem::kind::GATEWAY_TIMEOUT,
                self.to_string(),
            )
            .with("batch_id", id.as_str()),
            Error::Store(error) => {
                tracing::error!(%error, "storage error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
