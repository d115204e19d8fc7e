//! What a valid password, role and return address are, and the window in
//! which failed logins are counted. No I/O.

use std::time::Duration;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A password as chosen at sign-up: at least 10 characters, at most 1,024
/// bytes (argon2 hashes any length; the cap bounds the work per request),
/// and not one of the passwords most often seen in leaks.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(…)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err("must be at least 10 characters");
        }
        if raw.len() > Self::MAX_BYTES {
            return Err("must be at most 1024 bytes");
        }
        if is_common(raw) {
            return Err("is too common: pick one that is not in lists of leaked passwords");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Password {
    /// The length in characters (no more than 1,024 fit in 1,024 bytes), and
    /// a pattern for the repeated character, which spells the minimum out
    /// again for generators to draw from. The byte limit and the list of
    /// common passwords are only described.
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "At least 10 characters and at most 1,024 bytes of UTF-8; not one \
                 character repeated, nor (ignoring case) one of the passwords most \
                 often seen in leaks.",
            ))
            .min_length(Some(Self::MIN_CHARS))
            .max_length(Some(Self::MAX_BYTES))
            .pattern(Some(r"^(?!([\s\S])\1*$)[\s\S]{10}"))
            .examples(["correct horse battery staple"])
            .into()
    }
}

impl utoipa::ToSchema for Password {}

/// Whether `password` is, ignoring case, one of the most common passwords of
/// ten characters or more, or a run of one repeated character.
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return true;
    }
    COMMON.lines().any(|common| common == lower)
}

/// Frequent passwords of ten characters or more, from public breach
/// statistics, lower-cased.
const COMMON: &str = include_str!("common-passwords.txt");

/// A role name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.` and `:` (services
/// namespace their own, as `motus:editor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role(String);

impl Role {
    pub const ADMIN: &'static str = "admin";

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b));
        if !ok {
            return Err("must be 1 to 64 of a-z, 0-9, -, _, . and :");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where to send the browser after signing in: a path on this site only
/// (`/…`, not `//host` nor a URL), so that the login page cannot be used to
/// send someone elsewhere.
pub fn return_to(raw: Option<&str>) -> &str {
    match raw {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path
        }
        _ => "/",
    }
}

/// The count of failed logins in the current window of `window`, starting
/// at `start_ms`, after one more failure at `now_ms`: a window that is over
/// starts again.
pub fn count_failure(failures: i64, start_ms: i64, now_ms: i64, window: Duration) -> (i64, i64) {
    if now_ms - start_ms >= window.as_millis() as i64 {
        (1, now_ms)
    } else {
        (failures + 1, start_ms)
    }
}

/// How long until a limited key may try again, or `None` if it may now.
pub fn retry_after(
    failures: i64,
    start_ms: i64,
    now_ms: i64,
    limit: u32,
    window: Duration,
) -> Option<Duration> {
    let end = start_ms + window.as_millis() as i64;
    (failures >= i64::from(limit) && now_ms < end)
        .then(|| Duration::from_millis((end - now_ms) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        assert!(Password::parse("correct horse battery").is_ok());
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("123456789").is_err());
        assert!(Password::parse("1234567890").is_err());
        assert!(Password::parse("Password123").is_err());
        assert!(Password::parse("aaaaaaaaaaaa").is_err());
        assert!(Password::parse(&"é".repeat(10)).is_err());
        assert!(Password::parse(&"x1".repeat(513)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("correct horse battery").unwrap()),
            "Password(…)"
        );
    }

    #[test]
    fn roles() {
        assert!(Role::parse("admin").is_ok());
        assert!(Role::parse("motus:editor").is_ok());
        for bad in ["", "Admin", "a b", &"x".repeat(65)] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(return_to(Some("/motus/")), "/motus/");
        for other in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "evil",
            "",
        ] {
            assert_eq!(return_to(Some(other)), "/", "{other}");
        }
        assert_eq!(return_to(None), "/");
    }

    #[test]
    fn failures_are_counted_in_windows() {
        let window = Duration::from_secs(60);
        assert_eq!(count_failure(0, 0, 1_000, window), (1, 0));
        assert_eq!(count_failure(4, 0, 59_999, window), (5, 0));
        assert_eq!(count_failure(5, 0, 60_000, window), (1, 60_000));
        assert_eq!(retry_after(4, 0, 1_000, 5, window), None);
        assert_eq!(
            retry_after(5, 0, 1_000, 5, window),
            Some(Duration::from_secs(59))
        );
        assert_eq!(retry_after(9, 0, 60_000, 5, window), None);
    }
}
