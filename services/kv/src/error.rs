//! The kv service's errors: the kit's, and a batch that was not confirmed
//! in time.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_kit::Problem;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400, 404, 409 (the id names another batch, or the batch failed), 422, 500.
    #[error(transparent)]
    Kit(#[from] flotilla_kit::Error),
    /// 504: the batch's reply did not come in time. It may still complete.
    #[error(
        "batch {id} was not confirmed within {timeout_ms} ms; it may still complete: \
         send it again with the same id to learn its outcome"
    )]
    Timeout { id: String, timeout_ms: u64 },
}

impl Error {
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Kit(flotilla_kit::Error::invalid(field, detail))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Kit(flotilla_kit::Error::Conflict(detail.into()))
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::Kit(flotilla_kit::Error::NotFound(detail.into()))
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Kit(error.into())
    }
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        Self::Kit(flotilla_kit::Error::Internal(error.into()))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Kit(error) => error.into_response(),
            // The id, for a client that let the server choose it.
            Error::Timeout { ref id, .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                flotilla_kit::problem::kind::GATEWAY_TIMEOUT,
                self.to_string(),
            )
            .with("batch_id", id.as_str())
            .into_response(),
        }
    }
}
