//! The errors every service has: not found, a conflict (such as a unique
//! violation), invalid input naming the field, and an opaque internal
//! error. A service with cases of its own wraps [`Error`] in its enum.

use axum::response::{IntoResponse, Response};

use crate::Problem;

/// A handler's error, answered as problem+json.
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
    /// 409: the request contradicts what is stored.
    #[error("{0}")]
    Conflict(String),
    /// 500: logged, never shown.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl Error {
    /// 422 for `field`.
    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            detail: detail.into(),
        }
    }

    /// A function for `map_err` that makes a parse error of `field` a 422.
    pub fn field<D: Into<String>>(field: &'static str) -> impl FnOnce(D) -> Self {
        move |detail| Self::invalid(field, detail)
    }

    /// Maps a unique violation to 409 with `detail`; other database errors
    /// are internal.
    pub fn unique(detail: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Self {
        move |error| match error {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(detail.into()),
            other => Self::from(other),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(error.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Invalid { field, detail } => Problem::invalid_field(field, detail),
            Error::BadQuery(detail) => Problem::bad_request(detail),
            Error::NotFound(detail) => Problem::not_found(detail),
            Error::Conflict(detail) => Problem::conflict(detail),
            Error::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                Problem::internal()
            }
        }
        .into_response()
    }
}
