//! The provider's clients: the two built into every stack (the web console
//! and seed 002's game, public) and those of `--auth-clients-file`, which
//! may be confidential (a secret, kept as its SHA-256) and use
//! `client_credentials`.

use std::path::Path;

use anyhow::Context as _;
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use serde::Deserialize;

/// A registered client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    pub id: String,
    /// Hex SHA-256 of the secret of a confidential client; none for a
    /// public one (which must use PKCE).
    #[serde(default)]
    pub secret_sha256: Option<String>,
    /// Exact redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Exact URIs to come back to after signing out (`end_session`).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// `authorization_code`, `refresh_token`, `client_credentials`.
    #[serde(default = "user_grants")]
    pub grants: Vec<String>,
    /// Scopes it may ask for with `client_credentials` (its own API's).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// The grants the token endpoint knows.
pub const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

fn user_grants() -> Vec<String> {
    vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
}

impl Client {
    fn public(id: &str, redirect_uri: String, post_logout: String) -> Self {
        Self {
            id: id.to_owned(),
            secret_sha256: None,
            redirect_uris: vec![redirect_uri],
            post_logout_redirect_uris: vec![post_logout],
            grants: user_grants(),
            scopes: Vec::new(),
        }
    }

    pub fn is_confidential(&self) -> bool {
        self.secret_sha256.is_some()
    }

    pub fn allows(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }

    /// Whether `secret` is this client's, compared by hash in constant time.
    fn secret_matches(&self, secret: &str) -> bool {
        let Some(expected) = &self.secret_sha256 else {
            return false;
        };
        crate::session::same(
            &crate::session::hash(secret),
            &expected.to_ascii_lowercase(),
        )
    }
}

/// The built-in clients at `public_url`, then those of `file`.
pub fn load(public_url: &str, file: Option<&Path>) -> anyhow::Result<Vec<Client>> {
    let mut clients = vec![
        Client::public(
            CONSOLE,
            format!("{public_url}/callback"),
            format!("{public_url}/"),
        ),
        Client::public(
            "motus_app",
            format!("{public_url}/motus/callback"),
            format!("{public_url}/motus/"),
        ),
    ];
    if let Some(file) = file {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            client: Vec<Client>,
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let parsed: File = toml::from_str(&text)
            .with_context(|| format!("{} is not a clients file", file.display()))?;
        for client in parsed.client {
            if clients.iter().any(|c| c.id == client.id) {
                anyhow::bail!("{}: client {} is defined twice", file.display(), client.id);
            }
            if let Some(grant) = client.grants.iter().find(|g| !GRANTS.contains(&g.as_str())) {
                anyhow::bail!(
                    "{}: client {}: unknown grant {grant}",
                    file.display(),
                    client.id
                );
            }
            if client.allows("client_credentials") && !client.is_confidential() {
                anyhow::bail!(
                    "{}: client {} uses client_credentials without a secret",
                    file.display(),
                    client.id
                );
            }
            clients.push(client);
        }
    }
    Ok(clients)
}

/// The web console's client id.
pub const CONSOLE: &str = "flotilla-console";

/// Why a client is not who it says.
#[derive(Debug)]
pub enum Refused {
    /// No client named, or an unknown one.
    Unknown,
    /// A confidential client without its secret, or with another.
    BadSecret,
}

/// The client a request comes from: HTTP Basic (`client_id:client_secret`),
/// or `client_id` (and `client_secret`) in the form. A confidential client
/// must prove its secret; a public one only names itself.
pub fn authenticate<'a>(
    clients: &'a [Client],
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<&'a Client, Refused> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    // RFC 6749, 2.3.1: the id and secret are form-urlencoded before Base64.
    let decoded = basic.as_deref().and_then(|pair| {
        let (id, secret) = pair.split_once(':')?;
        Some((form_decode(id)?, form_decode(secret)?))
    });
    let (id, secret) = match &decoded {
        Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
        None if basic.is_some() => (None, None),
        None => (form_id, form_secret),
    };
    let client = id
        .and_then(|id| clients.iter().find(|c| c.id == id))
        .ok_or(Refused::Unknown)?;
    if client.is_confidential() && !secret.is_some_and(|s| client.secret_matches(s)) {
        return Err(Refused::BadSecret);
    }
    Ok(client)
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(value: &str) -> Option<String> {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> anyhow::Result<Vec<Client>> {
        let dir = std::env::temp_dir().join(format!("clients-{}", uuid::Uuid::now_v7()));
        std::fs::write(&dir, text)?;
        let loaded = load("http://site", Some(&dir));
        std::fs::remove_file(&dir)?;
        loaded
    }

    #[test]
    fn a_bad_clients_file_is_an_error_at_start_up() {
        let builtin = load("http://site", None).unwrap();
        assert_eq!(builtin[0].redirect_uris, ["http://site/callback"]);
        assert_eq!(builtin[1].redirect_uris, ["http://site/motus/callback"]);
        let ok =
            "[[client]]\nid = \"r\"\nsecret_sha256 = \"00\"\ngrants = [\"client_credentials\"]\n";
        assert_eq!(load_text(ok).unwrap().len(), 3);
        for bad in [
            "[[client]]\nid = \"r\"\ngrants = [\"client_credentials\"]\n",
            "[[client]]\nid = \"flotilla-console\"\n",
            "[[client]]\nid = \"r\"\nsecret = \"plain\"\n",
            "[[client]]\nid = \"r\"\nsecret_sha256 = \"00\"\ngrants = [\"password\"]\n",
            "not toml [",
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn basic_credentials_are_form_urlencoded_before_base64() {
        use base64::Engine as _;
        let secret = "a:b+c/d=";
        let hash = crate::session::hex(&<sha2::Sha256 as sha2::Digest>::digest(secret));
        let text = format!(
            "[[client]]\nid = \"svc-a\"\nsecret_sha256 = \"{hash}\"\ngrants = [\"client_credentials\"]\n"
        );
        let clients = load_text(&text).unwrap();
        let basic = |pair: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                format!("Basic {encoded}").parse().unwrap(),
            );
            headers
        };
        let encoded = basic("svc%2Da:a%3Ab%2Bc%2Fd%3D");
        assert_eq!(
            authenticate(&clients, &encoded, None, None).unwrap().id,
            "svc-a"
        );
        let wrong = basic("svc%2Da:a%3Ab+c%2Fd%3D");
        assert!(matches!(
            authenticate(&clients, &wrong, None, None),
            Err(Refused::BadSecret)
        ));
    }
}
