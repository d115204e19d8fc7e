//! Who is calling. The gateway verifies a caller's access token and forwards
//! who it belongs to as `x-user-*` headers, after removing any such header
//! the client sent; a service declares what its routes need ([`Access`]) and
//! takes the caller with the [`Caller`] extractor (`Option<Caller>` where
//! signing in is optional).
//!
//! A service trusts these headers because only the gateway reaches it: in
//! `flotilla up` its instances listen on loopback, and the generated
//! Kubernetes manifests admit traffic to a service from the gateway's pods
//! alone.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Problem;

/// Whether the gateway asks a service's callers for an access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Tokens are not looked at (the auth service, which has its own).
    None,
    /// A token, if sent, must be valid; its caller is forwarded.
    Optional,
    /// Only callers with a valid token get through.
    Required,
}

/// What the gateway asks of a service's callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub auth: Auth,
    /// Scopes the token must have.
    pub scopes: &'static [&'static str],
}

impl Access {
    /// Anyone may call; a signed-in caller is known.
    pub const OPTIONAL: Self = Self {
        auth: Auth::Optional,
        scopes: &[],
    };
}

/// The caller of a request, as the gateway verified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The account (or, for a service client, the client) id: the token's `sub`.
    pub id: String,
    pub email: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    fn from_headers(parts: &Parts) -> Option<Self> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let words = |name: &str| {
            header(name)
                .map(|v| v.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        Some(Self {
            id: header("x-user-id").filter(|id| !id.is_empty())?,
            email: header("x-user-email"),
            scopes: words("x-user-scopes"),
            roles: words("x-user-roles"),
        })
    }
}

/// 401: the request has no caller.
#[derive(Debug)]
pub struct SignInRequired;

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        let mut response = Problem::new(
            StatusCode::UNAUTHORIZED,
            crate::problem::kind::UNAUTHORIZED,
            "sign in first: this needs an access token",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="flotilla""#),
        );
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = SignInRequired;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::from_headers(parts).ok_or(SignInRequired)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Self::from_headers(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn the_caller_is_read_from_the_gateways_headers() {
        let mut signed_in = parts(&[
            ("x-user-id", "0190"),
            ("x-user-email", "ada@example.com"),
            ("x-user-scopes", "openid profile"),
            ("x-user-roles", "admin commercial"),
        ]);
        let caller = <Caller as FromRequestParts<()>>::from_request_parts(&mut signed_in, &())
            .await
            .unwrap();
        assert_eq!(caller.id, "0190");
        assert_eq!(caller.email.as_deref(), Some("ada@example.com"));
        assert_eq!(caller.scopes, ["openid", "profile"]);
        assert!(caller.has_role("commercial") && !caller.has_role("root"));

        let mut anonymous = parts(&[("x-user-email", "ada@example.com")]);
        let refused = <Caller as FromRequestParts<()>>::from_request_parts(&mut anonymous, &())
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let optional =
            <Caller as OptionalFromRequestParts<()>>::from_request_parts(&mut anonymous, &())
                .await
                .unwrap();
        assert_eq!(optional, None);
    }
}
