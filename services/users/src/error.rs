//! The users service's errors, each with its HTTP status.

use axum::response::{IntoResponse, Response};
use flotilla_kit::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422: a field of the request is invalid.
    #[error("invalid `{field}`: {detail}")]
    Invalid {
        field: &'static str,
        detail: &'static str,
    },
    /// 400: a query parameter is invalid.
    #[error("{0}")]
    BadQuery(String),
    /// 404
    #[error("no user with id {0}")]
    NotFound(String),
    /// 409
    #[error("a user with this email already exists")]
    DuplicateEmail,
    /// 500, logged and not shown.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = match &self {
            Error::Invalid { field, detail } => Problem::invalid_field(field, *detail),
            Error::BadQuery(detail) => Problem::bad_request(detail.clone()),
            Error::NotFound(_) => Problem::not_found(self.to_string()),
            Error::DuplicateEmail => Problem::conflict(self.to_string()),
            Error::Db(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Problem::conflict(Error::DuplicateEmail.to_string())
            }
            Error::Db(error) => {
                tracing::error!(%error, "database error");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
