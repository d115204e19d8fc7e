//! Integration events: the messages services exchange on the bus.
//!
//! Each event is a versioned wire type, separate from any service's internal
//! types. A breaking change gets a new type and a new `SCHEMA` name; the old
//! one stays until no service publishes it.

use serde::{Deserialize, Serialize};

/// The `type` URIs of flotilla's problem+json errors; each one is stable.
pub mod problem {
    pub const BAD_REQUEST: &str = "urn:flotilla:problem:bad-request";
    pub const VALIDATION: &str = "urn:flotilla:problem:validation";
    pub const NOT_FOUND: &str = "urn:flotilla:problem:not-found";
    pub const METHOD_NOT_ALLOWED: &str = "urn:flotilla:problem:method-not-allowed";
    pub const CONFLICT: &str = "urn:flotilla:problem:conflict";
    pub const REQUEST_TIMEOUT: &str = "urn:flotilla:problem:request-timeout";
    pub const PAYLOAD_TOO_LARGE: &str = "urn:flotilla:problem:payload-too-large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "urn:flotilla:problem:unsupported-media-type";
    pub const INTERNAL: &str = "urn:flotilla:problem:internal";
    pub const BAD_GATEWAY: &str = "urn:flotilla:problem:bad-gateway";
    pub const GATEWAY_TIMEOUT: &str = "urn:flotilla:problem:gateway-timeout";
    pub const RATE_LIMITED: &str = "urn:flotilla:problem:rate-limited";
    pub const FORBIDDEN: &str = "urn:flotilla:problem:forbidden";
    pub const UNAUTHORIZED: &str = "urn:flotilla:problem:unauthorized";
}

/// The header naming the schema of a message's payload.
pub const SCHEMA_HEADER: &str = "schema";

/// An event type: its subject and schema name.
pub trait Event: Serialize {
    const SUBJECT: &'static str;
    const SCHEMA: &'static str;
}

/// A user account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreatedV1 {
    pub id: String,
    pub name: String,
    pub email: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl Event for UserCreatedV1 {
    const SUBJECT: &'static str = "user.created";
    const SCHEMA: &'static str = "user.created.v1";
}

/// An account was created in the auth service: someone signed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreatedV1 {
    pub id: String,
    pub email: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl Event for AccountCreatedV1 {
    const SUBJECT: &'static str = "account.created";
    const SCHEMA: &'static str = "account.created.v1";
}

/// A user account was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeletedV1 {
    pub id: String,
}

impl Event for UserDeletedV1 {
    const SUBJECT: &'static str = "user.deleted";
    const SCHEMA: &'static str = "user.deleted.v1";
}

/// A player finished the day's Motus game: found the word, or used their
/// six attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotusGameFinishedV1 {
    pub game_id: String,
    /// The account id of the player.
    pub player_id: String,
    /// The game's day, YYYY-MM-DD in the game's time zone.
    pub date: String,
    pub won: bool,
    /// Counted guesses, 1 to 6.
    pub attempts: u32,
    /// Letters in the word.
    pub length: u32,
    /// RFC 3339, UTC.
    pub finished_at: String,
}

impl Event for MotusGameFinishedV1 {
    const SUBJECT: &'static str = "motus.game.finished";
    const SCHEMA: &'static str = "motus.game.finished.v1";
}
