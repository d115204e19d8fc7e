//! Password hashes: argon2id with its default parameters (19 MiB, two
//! passes, one lane, as OWASP recommends), computed off the async threads.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::domain::Password;

/// The PHC string of `password` (algorithm, parameters, salt and hash).
pub async fn hash(password: Password) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_str().as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("cannot hash a password: {e}"))
    })
    .await?
}

/// Whether `password` matches `hash`. With no hash (an unknown account), the
/// same work is done against a hash of nothing anyone can type, so that the
/// answer takes as long as for a wrong password.
pub async fn verify(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let (hash, known) = match hash {
            Some(hash) => (hash, true),
            None => (UNKNOWN.clone(), false),
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok();
        known && matches
    })
    .await
    .unwrap_or(false)
}

/// A hash with the default parameters, verified against for unknown accounts.
static UNKNOWN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"\0 no account has this password \0")
        .expect("argon2 hashes with its default parameters")
        .to_string()
});
