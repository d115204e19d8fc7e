//! Fields several services parse at their edge: a person's display name
//! and e-mail address, with the JSON Schemas that say what `parse` accepts.
//! No I/O.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};

/// What `str::trim` removes (Unicode `White_Space`), as the inside of a
/// regular expression's character class.
pub const SPACE_CLASS: &str =
    r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// What `char::is_control` is true of (Unicode `Cc`), as the inside of a
/// character class.
pub const CONTROL_CLASS: &str = r"\u0000-\u001f\u007f-\u009f";

/// A person's display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("must not be empty");
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err("must be at most 100 characters");
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for DisplayName {
    fn schema() -> RefOr<Schema> {
        let (space, control) = (SPACE_CLASS, CONTROL_CLASS);
        let inner = Self::MAX_CHARS - 2;
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A display name: 1 to 100 characters and no control characters once \
                 leading and trailing whitespace is trimmed.",
            ))
            .pattern(Some(format!(
                "^[{space}]*[^{control}{space}](?:[^{control}]{{0,{inner}}}[^{control}{space}])?[{space}]*$"
            )))
            .examples(["Ada Lovelace"])
            .into()
    }
}

impl utoipa::ToSchema for DisplayName {}

/// An e-mail address, checked for the shape `local@domain.tld` (the only
/// real check of an address is a message that arrives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("must not be empty");
        }
        if email.len() > Self::MAX_LEN {
            return Err("must be at most 254 bytes");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("must look like name@example.com");
        };
        let domain_ok = domain.len() >= 3
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
        if !(local_ok && domain_ok) {
            return Err("must look like name@example.com");
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form two addresses are compared in.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl utoipa::PartialSchema for Email {
    /// The address's shape, its local part's length and its whole length,
    /// each a pattern, all allowing the whitespace `parse` trims.
    fn schema() -> RefOr<Schema> {
        let space = SPACE_CLASS;
        let local = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
        let label = "[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?";
        let pattern = |pattern: String| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(pattern))
        };
        AllOfBuilder::new()
            .description(Some(
                "An e-mail address `local@domain.tld`, leading and trailing whitespace \
                 trimmed: at most 254 bytes, a local part of at most 64 bytes without \
                 a leading, trailing or doubled dot, a domain of two or more labels \
                 that neither start nor end with a hyphen. Letters and digits of any \
                 script are accepted as well as the ASCII ones the patterns name.",
            ))
            .item(pattern(format!(
                r"^[{space}]*{local}(?:\.{local})*@{label}(?:\.{label})+[{space}]*$"
            )))
            .item(pattern(format!("^[{space}]*[^@]{{1,64}}@")))
            .item(pattern(format!(
                "^[{space}]*[^{space}]{{1,{}}}[{space}]*$",
                Self::MAX_LEN
            )))
            .examples(["ada@example.com"])
            .into()
    }
}

impl utoipa::ToSchema for Email {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(DisplayName::parse("  foo ").unwrap().as_str(), "foo");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(101)).is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn emails() {
        for ok in [
            "foo@example.com",
            "a.b+tag@sub.example.org",
            "Foo@Example.COM",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "bar",
            "@example.com",
            "foo@",
            "foo@example",
            "foo@@example.com",
            "foo bar@example.com",
            "foo@exa mple.com",
            ".foo@example.com",
            "foo..x@example.com",
            "foo@-example.com",
            "foo@example..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Email::parse("Foo@Example.COM").unwrap().key(),
            "foo@example.com"
        );
    }
}
