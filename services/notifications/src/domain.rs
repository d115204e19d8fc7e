//! What a message is, and the retry schedule of its delivery. No I/O.

use std::time::Duration;

use flotilla_kit::fields::{CONTROL_CLASS, SPACE_CLASS};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A Slack channel name: 1 to 80 characters, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel(String);

impl Channel {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let channel = raw.trim();
        if channel.is_empty() {
            return Err("must not be empty");
        }
        if channel.chars().count() > 80 {
            return Err("must be at most 80 characters");
        }
        if channel.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace");
        }
        Ok(Self(channel.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Channel {
    fn schema() -> RefOr<Schema> {
        let (space, control) = (SPACE_CLASS, CONTROL_CLASS);
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A Slack channel: 1 to 80 characters, none of them whitespace or a \
                 control character, once leading and trailing whitespace is trimmed.",
            ))
            .pattern(Some(format!(
                "^[{space}]*[^{control}{space}]{{1,80}}[{space}]*$"
            )))
            .examples(["#user"])
            .into()
    }
}

impl utoipa::ToSchema for Channel {}

/// A message text: 1 to 4,000 characters, the length Slack recommends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.trim().is_empty() {
            return Err("must not be empty");
        }
        if raw.chars().count() > 4000 {
            return Err("must be at most 4000 characters");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Text {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A message: at most 4,000 characters, not all of them whitespace.",
            ))
            .max_length(Some(4000))
            .pattern(Some(format!("[^{SPACE_CLASS}]")))
            .examples(["User 42 created"])
            .into()
    }
}

impl utoipa::ToSchema for Text {}

/// Delivery states, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Sent,
    Failed,
    /// Kept without sending: no webhook is configured.
    Stored,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Stored => "stored",
        }
    }
}

/// When to try again after failed attempt number `attempts` (1-based):
/// `base` doubled per attempt, capped at five minutes, with jitter.
pub fn retry_delay(base: Duration, attempts: u32) -> Duration {
    flotilla_bus::consumer::backoff(base, Duration::from_secs(300), attempts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_and_text() {
        assert_eq!(Channel::parse(" #user ").unwrap().as_str(), "#user");
        assert!(Channel::parse("").is_err());
        assert!(Channel::parse("two words").is_err());
        assert!(Text::parse("User 1 created").is_ok());
        assert!(Text::parse("  ").is_err());
        assert!(Text::parse(&"x".repeat(4001)).is_err());
    }
}
