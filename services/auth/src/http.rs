//! HTTP handlers of the auth service: sign-up (JSON API and form), the
//! login and logout forms, the current session, and roles.

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use flotilla_contracts::AccountCreatedV1;
use flotilla_kit::fields::{DisplayName, Email};
use flotilla_kit::{Context, Error, Form, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{self, Password, Role};
use crate::session::{self, Cookies};
use crate::store::{self, Account};
use crate::{Config, end_session, oidc, pages, password, revocation, token};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub config: Config,
    pub oidc: std::sync::Arc<crate::oidc::Provider>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/signup", get(signup_page).post(signup))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/session", get(current))
        .route("/accounts/{id}/roles/{role}", put(grant_role))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/jwks.json", get(oidc::jwks))
        .route("/authorize", get(oidc::authorize))
        .route("/token", post(token::token))
        .route("/revoke", post(revocation::revoke))
        .route("/introspect", post(revocation::introspect))
        .route("/userinfo", get(oidc::userinfo).post(oidc::userinfo_post))
        .route(
            "/end_session",
            get(end_session::confirm).post(end_session::end),
        )
        .with_state(state)
}

/// The body of `POST /auth/signup`; other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupRequest {
    #[schema(value_type = EmailAddress)]
    email: String,
    #[schema(value_type = DisplayName)]
    name: String,
    #[schema(value_type = Password)]
    password: String,
}

/// An e-mail address as `Email::parse` takes it, in one pattern whose
/// lookaheads bound the lengths (the kit's `Email` schema bounds them with
/// two more patterns, which generators draw examples from slowly).
pub struct EmailAddress;

impl PartialSchema for EmailAddress {
    fn schema() -> RefOr<Schema> {
        let space = flotilla_kit::fields::SPACE_CLASS;
        let local = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
        let label = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An e-mail address `local@domain.tld`, leading and trailing whitespace \
                 trimmed: at most 254 bytes, a local part of at most 64 bytes without a \
                 leading, trailing or doubled dot, a domain of two or more labels that \
                 neither start nor end with a hyphen. Letters and digits of any script \
                 are accepted as well as the ASCII ones the pattern names.",
            ))
            .pattern(Some(format!(
                "^[{space}]*(?![^@]{{65}})(?![^{space}]{{255}})\
                 {local}(?:\\.{local})*@{label}(?:\\.{label})+[{space}]*$"
            )))
            .examples(["ada@example.com"])
            .into()
    }
}

impl ToSchema for EmailAddress {}

/// An account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountBody {
    id: String,
    email: String,
    name: String,
    /// RFC 3339, UTC.
    created_at: String,
    roles: Vec<String>,
}

impl AccountBody {
    fn new(account: Account, roles: Vec<String>) -> Self {
        Self {
            id: account.id,
            email: account.email,
            name: account.name,
            created_at: account.created_at,
            roles,
        }
    }
}

/// The sign-up form's fields, checked as those of the JSON body are.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupForm {
    /// The value of the page's `flotilla_csrf` cookie.
    #[serde(default)]
    #[schema(required = true)]
    csrf: String,
    #[serde(default)]
    #[schema(value_type = EmailAddress, required = true)]
    email: String,
    #[serde(default)]
    #[schema(value_type = DisplayName, required = true)]
    name: String,
    #[serde(default)]
    #[schema(value_type = Password, required = true)]
    password: String,
}

/// Creates an account: JSON in, 201 with the account out; or, from the
/// sign-up page's form, a redirection to the login page.
#[utoipa::path(post, path = "/signup",
    request_body(content(
        (SignupRequest = "application/json"),
        (SignupForm = "application/x-www-form-urlencoded"),
    )),
    responses(
    (status = 201, body = AccountBody),
    (status = 303, description = "From the form: created, go and sign in"),
    (status = 400, description = "A body that does not parse", body = Problem),
    (status = 415, description = "Another content type", body = Problem),
    (status = 403, description = "From the form: the CSRF token is missing or wrong", body = Problem),
    (status = 409, description = "The email has an account: a problem, or the form again", content(
        (Problem = "application/problem+json"),
        (String = "text/html"),
    )),
    (status = 422, description = "Email, name or password invalid: a problem, or the form again", content(
        (Problem = "application/problem+json"),
        (String = "text/html"),
    )),
))]
pub async fn signup(State(state): State<AppState>, request: Request) -> Response {
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| {
            t.as_bytes()
                .starts_with(b"application/x-www-form-urlencoded")
        });
    if !form {
        let Json(body) = match Json::<SignupRequest>::from_request(request, &state).await {
            Ok(body) => body,
            Err(rejection) => return rejection.into_response(),
        };
        return match create(&state, &body.email, &body.name, &body.password).await {
            Ok(account) => (
                StatusCode::CREATED,
                Json(AccountBody::new(account, Vec::new())),
            )
                .into_response(),
            Err(error) => error.into_response(),
        };
    }
    let cookies = Cookies::from(request.headers());
    let form = match Form::<SignupForm>::from_request(request, &state).await {
        Ok(Form(form)) => form,
        Err(problem) => return problem.into_response(),
    };
    if !session::csrf_matches(&cookies, &form.csrf) {
        return session::csrf_refused();
    }
    match create(&state, &form.email, &form.name, &form.password).await {
        Ok(_) => Redirect::to("login?signed_up=1").into_response(),
        Err(error) => {
            let (status, message) = match &error {
                Error::Invalid { .. } | Error::Conflict(_) => {
                    (error_status(&error), error.to_string())
                }
                _ => return error.into_response(),
            };
            let csrf = cookies.csrf().unwrap_or_default();
            let html = pages::signup(&pages::Signup {
                csrf: &csrf,
                email: &form.email,
                name: &form.name,
                error: Some(&message),
            });
            (status, Html(html)).into_response()
        }
    }
}

fn error_status(error: &Error) -> StatusCode {
    match error {
        Error::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Checks the fields, hashes the password and stores the account, staging
/// `account.created` with it.
async fn create(state: &AppState, email: &str, name: &str, raw: &str) -> Result<Account, Error> {
    let email = Email::parse(email).map_err(Error::field("email"))?;
    let name = DisplayName::parse(name).map_err(Error::field("name"))?;
    let password = Password::parse(raw).map_err(Error::field("password"))?;
    if store::account_id_by_email(&state.ctx.db, &email.key())
        .await?
        .is_some()
    {
        return Err(Error::Conflict(
            "an account with this email exists".to_owned(),
        ));
    }
    let hash = password::hash(password).await.map_err(Error::Internal)?;
    let mut tx = state.ctx.begin().await?;
    let account =
        store::insert_account(&mut tx, email.as_str(), &email.key(), name.as_str(), &hash)
            .await
            .map_err(Error::unique("an account with this email exists"))?;
    tx.stage(&AccountCreatedV1 {
        id: account.id.clone(),
        email: account.email.clone(),
        name: account.name.clone(),
        created_at: account.created_at.clone(),
    })
    .await?;
    tx.commit().await?;
    state
        .ctx
        .metrics
        .record(|| metrics::counter!("auth_signups_total").increment(1));
    Ok(account)
}

/// The sign-up page.
#[utoipa::path(get, path = "/signup", responses((status = 200, body = String, content_type = "text/html")))]
pub async fn signup_page(headers: HeaderMap) -> Response {
    let cookies = Cookies::from(&headers);
    let (csrf, cookie) = session::csrf_token(&cookies, &headers);
    let html = pages::signup(&pages::Signup {
        csrf: &csrf,
        email: "",
        name: "",
        error: None,
    });
    with_cookies(Html(html).into_response(), cookie.into_iter().collect())
}

/// The login page's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginParams {
    /// A path on this site to go to once signed in (default `/`).
    return_to: Option<String>,
    /// Set, to any value, after a sign-up, to say so on the page.
    signed_up: Option<String>,
}

/// The login page.
#[utoipa::path(get, path = "/login", params(LoginParams), responses((status = 200, body = String, content_type = "text/html")))]
pub async fn login_page(headers: HeaderMap, Query(params): Query<LoginParams>) -> Response {
    let cookies = Cookies::from(&headers);
    let (csrf, cookie) = session::csrf_token(&cookies, &headers);
    let html = pages::login(&pages::Login {
        csrf: &csrf,
        return_to: domain::return_to(params.return_to.as_deref()),
        email: "",
        error: None,
        notice: params
            .signed_up
            .is_some()
            .then_some("Your account is ready: sign in."),
    });
    with_cookies(Html(html).into_response(), cookie.into_iter().collect())
}

/// The login form's fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginForm {
    /// The value of the page's `flotilla_csrf` cookie.
    #[serde(default)]
    #[schema(required = true)]
    csrf: String,
    #[serde(default)]
    #[schema(required = true)]
    email: String,
    #[serde(default)]
    #[schema(required = true)]
    password: String,
    /// A path on this site to go to once signed in (default `/`).
    #[schema(nullable = false)]
    return_to: Option<String>,
}

/// Signs in: a session cookie and a redirection to `return_to`; the form
/// again with 401 for a wrong email or password (the same answer, after the
/// same work, for both); 429 once failures are over the limit.
#[utoipa::path(post, path = "/login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    params(("flotilla_csrf" = String, Cookie,
        description = "The CSRF cookie the form's `csrf` field repeats", pattern = "^[0-9A-Fa-f]{64}$")),
    responses(
    (status = 303, description = "Signed in: the session cookie is set"),
    (status = 400, description = "A body that does not parse", body = Problem),
    (status = 415, description = "Another content type", body = Problem),
    (status = 401, description = "Wrong email or password: the form again", body = String, content_type = "text/html"),
    (status = 403, description = "The CSRF token is missing or wrong", body = Problem),
    (status = 429, description = "Too many failed logins for this account or address", body = Problem,
        headers(("retry-after" = u64, description = "Seconds until a login may be tried again"))),
))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Error> {
    let cookies = Cookies::from(&headers);
    if !session::csrf_matches(&cookies, &form.csrf) {
        return Ok(session::csrf_refused());
    }
    let db = &state.ctx.db;
    let now = flotilla_kit::now_ms();
    let window = Duration::from_secs(state.config.login_window_secs);
    let email_key = form.email.trim().to_lowercase();
    let keys = [
        format!("account:{email_key}"),
        format!("address:{}", session::client_address(&headers)),
    ];
    for key in &keys {
        let Some((failures, start)) = store::failures(db, key).await? else {
            continue;
        };
        let limited =
            domain::retry_after(failures, start, now, state.config.login_attempts, window);
        if let Some(wait) = limited {
            state.ctx.metrics.record(|| {
                metrics::counter!("auth_logins_total", "result" => "limited").increment(1);
            });
            return Ok(too_many(wait));
        }
    }
    let credentials = store::credentials(db, &email_key).await?;
    let hash = credentials.as_ref().map(|c| c.password_hash.clone());
    let ok = password::verify(form.password, hash).await;
    let return_to = domain::return_to(form.return_to.as_deref()).to_owned();
    let (Some(account), true) = (credentials, ok) else {
        for key in &keys {
            let (failures, start) = store::failures(db, key).await?.unwrap_or((0, now));
            let (failures, start) = domain::count_failure(failures, start, now, window);
            let expired = now - window.as_millis() as i64;
            store::set_failures(db, key, failures, start, expired).await?;
        }
        state.ctx.metrics.record(|| {
            metrics::counter!("auth_logins_total", "result" => "failure").increment(1);
        });
        let csrf = cookies.csrf().unwrap_or_default();
        let html = pages::login(&pages::Login {
            csrf: &csrf,
            return_to: &return_to,
            email: &form.email,
            error: Some("Wrong email or password."),
            notice: None,
        });
        return Ok((StatusCode::UNAUTHORIZED, Html(html)).into_response());
    };
    store::clear_failures(db, &keys[0]).await?;
    let lifetime = Duration::from_secs(state.config.session_hours * 3600);
    let token = session::new_token();
    let expires = now + lifetime.as_millis() as i64;
    store::create_session(db, &session::hash(&token), &account.id, now, expires).await?;
    state.ctx.metrics.record(|| {
        metrics::counter!("auth_logins_total", "result" => "success").increment(1);
    });
    let cookies = vec![
        session::session_cookie(&token, lifetime, &headers),
        access_cookie(&state, &account.id, &headers).await?,
    ];
    let to = session::site_url(&headers, &return_to);
    Ok(with_cookies(Redirect::to(&to).into_response(), cookies))
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        flotilla_kit::problem::kind::RATE_LIMITED,
        format!("too many failed logins; try again in {seconds} s"),
    );
    let mut response = problem.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The logout form's fields.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutForm {
    /// The value of the page's `flotilla_csrf` cookie.
    #[serde(default)]
    #[schema(required = true)]
    csrf: String,
}

/// Signs out: the session ends and its cookie is cleared.
#[utoipa::path(post, path = "/logout",
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    params(("flotilla_csrf" = String, Cookie,
        description = "The CSRF cookie the form's `csrf` field repeats", pattern = "^[0-9A-Fa-f]{64}$")),
    responses(
    (status = 200, description = "Signed out", body = String, content_type = "text/html"),
    (status = 400, description = "A body that does not parse", body = Problem),
    (status = 415, description = "Another content type", body = Problem),
    (status = 403, description = "The CSRF token is missing or wrong", body = Problem),
))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Result<Response, Error> {
    let cookies = Cookies::from(&headers);
    if !session::csrf_matches(&cookies, &form.csrf) {
        return Ok(session::csrf_refused());
    }
    if let Some(token) = cookies.session() {
        store::delete_session(&state.ctx.db, &session::hash(&token)).await?;
    }
    Ok(with_cookies(
        Html(pages::signed_out()).into_response(),
        session::signed_out_cookies(&headers),
    ))
}

/// The account of the session cookie, with its roles.
#[utoipa::path(get, path = "/session", security(("session" = [])), responses(
    (status = 200, body = AccountBody),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn current(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    let Some(account) = signed_in(&state, &headers).await? else {
        return Ok(unauthorized());
    };
    let roles = store::roles(&state.ctx.db, &account.id).await?;
    let renewed = access_cookie(&state, &account.id, &headers).await?;
    let response = Json(AccountBody::new(account, roles)).into_response();
    Ok(with_cookies(response, vec![renewed]))
}

/// Seed 000's `auth_token` for a browser signed in here: a fresh access
/// token of the console's, renewed each time the console asks who is
/// signed in.
async fn access_cookie(
    state: &AppState,
    account_id: &str,
    headers: &HeaderMap,
) -> Result<HeaderValue, Error> {
    let token = token::first_party(state, account_id)
        .await
        .map_err(Error::Internal)?;
    Ok(session::access_cookie(&token, token::ACCESS_TTL, headers))
}

/// Grants `role` to the account `id`; only an admin may.
#[utoipa::path(put, path = "/accounts/{id}/roles/{role}",
    security(("session" = [])),
    params(
        ("id" = String, Path),
        ("role" = String, Path, description = "1 to 64 of a-z, 0-9, -, _, . and :",
            pattern = "^[a-z0-9._:-]{1,64}$"),
    ),
    responses(
        (status = 201, description = "Granted"),
        (status = 204, description = "The account had it already"),
        (status = 401, description = "Not signed in", body = Problem),
        (status = 403, description = "Not an admin", body = Problem),
        (status = 404, description = "No account with this id", body = Problem),
        (status = 422, description = "Not a role name", body = Problem),
))]
pub async fn grant_role(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, role)): Path<(String, String)>,
) -> Result<Response, Error> {
    let Some(caller) = signed_in(&state, &headers).await? else {
        return Ok(unauthorized());
    };
    let caller_roles = store::roles(&state.ctx.db, &caller.id).await?;
    if !caller_roles.iter().any(|r| r == Role::ADMIN) {
        let problem = Problem::new(
            StatusCode::FORBIDDEN,
            flotilla_kit::problem::kind::FORBIDDEN,
            "only an admin grants roles",
        );
        return Ok(problem.into_response());
    }
    let role = Role::parse(&role).map_err(Error::field("role"))?;
    if store::account(&state.ctx.db, &id).await?.is_none() {
        return Err(Error::NotFound(format!("no account with id {id}")));
    }
    let granted = store::grant_role(&state.ctx.db, &id, role.as_str()).await?;
    Ok(if granted {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<Option<Account>, Error> {
    let Some(token) = Cookies::from(headers).session() else {
        return Ok(None);
    };
    let session = store::session(
        &state.ctx.db,
        &session::hash(&token),
        flotilla_kit::now_ms(),
    )
    .await?;
    Ok(session.map(|(account, _signed_in)| account))
}

fn unauthorized() -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        flotilla_kit::problem::kind::UNAUTHORIZED,
        "not signed in",
    )
    .into_response()
}

pub fn with_cookies(mut response: Response, cookies: Vec<HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}
