//! HTTP handlers of the users service.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use flotilla_contracts::{UserCreatedV1, UserDeletedV1};
use flotilla_kit::page::{Page, PageParams};
use flotilla_kit::{Caller, Context, Error, Json, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{self, User};
use flotilla_kit::fields::{DisplayName, Email};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(list).post(create))
        .route("/me", get(me))
        .route("/{id}", get(fetch).delete(remove))
        .with_state(state)
}

/// The body of `POST /users`; other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUser {
    #[schema(value_type = DisplayName)]
    name: String,
    #[schema(value_type = Email)]
    email: String,
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserBody {
    id: String,
    name: String,
    email: String,
    /// RFC 3339, UTC.
    created_at: String,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            name: user.name,
            email: user.email,
            created_at: user.created_at,
        }
    }
}

/// Creates a user and announces it with a `user.created` event.
#[utoipa::path(post, path = "/", request_body = CreateUser, responses(
    (status = 201, body = UserBody),
    (status = 409, description = "The email is taken", body = flotilla_kit::Problem),
    (status = 422, description = "Invalid name or email", body = flotilla_kit::Problem),
))]
pub async fn create(
    State(AppState { ctx }): State<AppState>,
    Json(body): Json<CreateUser>,
) -> Result<impl IntoResponse, Error> {
    let name = DisplayName::parse(&body.name).map_err(Error::field("name"))?;
    let email = Email::parse(&body.email).map_err(Error::field("email"))?;
    let mut tx = ctx.begin().await?;
    let user = store::insert(&mut tx, &name, &email)
        .await
        .map_err(Error::unique("a user with this email already exists"))?;
    let event = UserCreatedV1 {
        id: user.id.clone(),
        name: user.name.clone(),
        email: user.email.clone(),
        created_at: user.created_at.clone(),
    };
    tx.stage(&event).await?;
    tx.commit().await?;
    // Absolute within the service; the gateway adds its `/users` prefix.
    let mut headers = HeaderMap::new();
    if let Ok(location) = HeaderValue::from_str(&format!("/{}", user.id)) {
        headers.insert(header::LOCATION, location);
    }
    Ok((StatusCode::CREATED, headers, Json(UserBody::from(user))))
}

/// Returns one user.
#[utoipa::path(get, path = "/{id}", params(("id" = String, Path)), responses(
    (status = 200, body = UserBody),
    (status = 404, body = flotilla_kit::Problem),
))]
pub async fn fetch(
    State(AppState { ctx }): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<UserBody>, Error> {
    match store::get(&ctx.db, &id).await? {
        Some(user) => Ok(Json(user.into())),
        None => Err(Error::NotFound(format!("no user with id {id}"))),
    }
}

/// The signed-in caller's own profile (found by the email the gateway
/// verified).
#[utoipa::path(get, path = "/me", responses(
    (status = 200, body = UserBody),
    (status = 401, description = "Not signed in", body = flotilla_kit::Problem),
    (status = 404, description = "No profile with the caller's email (yet)", body = flotilla_kit::Problem),
))]
pub async fn me(
    State(AppState { ctx }): State<AppState>,
    caller: Caller,
) -> Result<Json<UserBody>, Error> {
    let email = caller.email.as_deref().and_then(|e| Email::parse(e).ok());
    let user = match &email {
        Some(email) => store::by_email(&ctx.db, email).await?,
        None => None,
    };
    user.map(|user| Json(user.into()))
        .ok_or_else(|| Error::NotFound("no profile has the caller's email".to_owned()))
}

/// Lists users in creation order, a page at a time.
#[utoipa::path(get, path = "/", params(PageParams), responses(
    (status = 200, body = Page<UserBody>),
    (status = 400, body = flotilla_kit::Problem),
))]
pub async fn list(
    State(AppState { ctx }): State<AppState>,
    Query(params): Query<PageParams>,
) -> Result<Json<Page<UserBody>>, Error> {
    let request = params.validate(50)?;
    let users = store::list(&ctx.db, &request.after, request.fetch()).await?;
    Ok(Json(request.page(users, |u| &u.id)))
}

/// Deletes a user and announces it with a `user.deleted` event.
#[utoipa::path(delete, path = "/{id}", params(("id" = String, Path)), responses(
    (status = 204),
    (status = 404, body = flotilla_kit::Problem),
))]
pub async fn remove(
    State(AppState { ctx }): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let mut tx = ctx.begin().await?;
    if !store::delete(&mut tx, &id).await? {
        return Err(Error::NotFound(format!("no user with id {id}")));
    }
    tx.stage(&UserDeletedV1 { id }).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
