//! Fields several services parse at their edge: a person's display name
//! and e-mail address. No I/O.

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
