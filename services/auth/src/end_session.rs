//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): a client
//! sends the browser to `/end_session`; once the person confirms, the
//! session ends and the browser goes back to one of the client's
//! registered post-logout URIs.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use flotilla_kit::{Error, Form, Problem, Query};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::http::{AppState, with_cookies};
use crate::oidc::with_query;
use crate::session::{self, Cookies};
use crate::{pages, store};

/// Where to go after signing out, and the confirmation form's token.
#[derive(Debug, Default, Deserialize, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
pub struct EndSession {
    /// The client whose post-logout URI is asked for.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// One of the client's registered post-logout URIs; with `client_id`.
    #[schema(nullable = false)]
    post_logout_redirect_uri: Option<String>,
    /// Given back with the redirection.
    #[schema(nullable = false)]
    state: Option<String>,
    /// Accepted; the client is named by `client_id`.
    #[allow(dead_code)]
    #[schema(nullable = false)]
    id_token_hint: Option<String>,
    /// The confirmation form's CSRF token: the value of the `flotilla_csrf`
    /// cookie. Read from the form only.
    #[serde(default)]
    #[schema(required = true)]
    #[param(ignore)]
    csrf: String,
}

/// The registered post-logout URI asked for, `Ok(None)` if none was, or
/// `Err` if the one asked for is not registered for the client.
fn target<'a>(state: &AppState, request: &'a EndSession) -> Result<Option<&'a str>, ()> {
    let Some(uri) = request.post_logout_redirect_uri.as_deref() else {
        return Ok(None);
    };
    let client = request
        .client_id
        .as_deref()
        .and_then(|id| state.oidc.client(id));
    match client {
        Some(client) if client.post_logout_redirect_uris.iter().any(|u| u == uri) => Ok(Some(uri)),
        _ => Err(()),
    }
}

/// Asks the signed-in person to confirm signing out.
#[utoipa::path(get, path = "/end_session", params(EndSession), responses(
    (status = 200, description = "The confirmation form", body = String, content_type = "text/html"),
    (status = 400, description = "A post-logout URI not registered for the client: an error page; or a \
        query that does not parse", content(
        (String = "text/html"),
        (Problem = "application/problem+json"),
    )),
))]
pub async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(request): Query<EndSession>,
) -> Response {
    if target(&state, &request).is_err() {
        return refused();
    }
    let (csrf, cookie) = session::csrf_token(&Cookies::from(&headers), &headers);
    let html = pages::end_session(&pages::EndSession {
        csrf: &csrf,
        client_id: request.client_id.as_deref().unwrap_or_default(),
        post_logout_redirect_uri: request
            .post_logout_redirect_uri
            .as_deref()
            .unwrap_or_default(),
        state: request.state.as_deref().unwrap_or_default(),
    });
    with_cookies(Html(html).into_response(), cookie.into_iter().collect())
}

/// Ends the session, then goes back to the client (with its `state`), or
/// shows that the person is signed out.
#[utoipa::path(post, path = "/end_session",
    request_body(content = EndSession, content_type = "application/x-www-form-urlencoded"),
    params(("flotilla_csrf" = String, Cookie,
        description = "The CSRF cookie the form's `csrf` field repeats", pattern = "^[0-9A-Fa-f]{64}$")),
    responses(
        (status = 303, description = "Signed out, back to the client", headers(("location" = String))),
        (status = 200, description = "Signed out", body = String, content_type = "text/html"),
        (status = 400, description = "A post-logout URI not registered for the client: an error page; or a \
            body that does not parse", content(
            (String = "text/html"),
            (Problem = "application/problem+json"),
        )),
        (status = 403, description = "The CSRF token is missing or wrong", body = Problem),
        (status = 415, description = "Not a form", body = Problem),
))]
pub async fn end(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(request): Form<EndSession>,
) -> Result<Response, Error> {
    let cookies = Cookies::from(&headers);
    if !session::csrf_matches(&cookies, &request.csrf) {
        return Ok(session::csrf_refused());
    }
    let Ok(target) = target(&state, &request) else {
        return Ok(refused());
    };
    if let Some(token) = cookies.session() {
        store::delete_session(&state.ctx.db, &session::hash(&token)).await?;
    }
    let cleared = session::signed_out_cookies(&headers);
    let response = match target {
        Some(uri) => {
            // The form carries an empty `state` when the client sent none.
            let state: Vec<(&str, &str)> = request
                .state
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| ("state", s))
                .into_iter()
                .collect();
            Redirect::to(&with_query(uri, &state)).into_response()
        }
        None => Html(pages::signed_out()).into_response(),
    };
    Ok(with_cookies(response, cleared))
}

fn refused() -> Response {
    let html =
        pages::authorize_error("This address to return to is not registered for the application.");
    (StatusCode::BAD_REQUEST, Html(html)).into_response()
}
