//! The kv domain: what a valid key, value, batch id and batch are, with
//! the JSON Schemas that say what `parse` accepts. No I/O.

use std::collections::HashSet;

use flotilla_kit::fields::CONTROL_CLASS;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// A key: 1 to 256 bytes of text without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub const MAX_BYTES: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("must not be empty");
        }
        if raw.len() > Self::MAX_BYTES {
            return Err("must be at most 256 bytes");
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl utoipa::PartialSchema for Key {
    /// JSON Schema counts characters, not bytes: a key of 256 characters
    /// is longer than 256 bytes as soon as one of them is not ASCII.
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 256 bytes of UTF-8 without control characters (Unicode `Cc`).",
            ))
            .min_length(Some(1))
            .max_length(Some(Self::MAX_BYTES))
            .pattern(Some(format!("^[^{CONTROL_CLASS}]*$")))
            .examples(["greeting"])
            .into()
    }
}

impl utoipa::ToSchema for Key {}

/// A value: any text up to 64 KiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    pub const MAX_BYTES: usize = 64 * 1024;

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.len() > Self::MAX_BYTES {
            return Err("must be at most 65536 bytes");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl utoipa::PartialSchema for Value {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("At most 65,536 bytes of UTF-8."))
            .max_length(Some(Self::MAX_BYTES))
            .examples(["hello"])
            .into()
    }
}

impl utoipa::ToSchema for Value {}

/// A batch id, given by the client for idempotent resubmission or made up:
/// 1 to 100 characters among letters, digits, `-`, `_`, `.` and `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchId(String);

impl BatchId {
    pub const MAX_CHARS: usize = 100;

    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > Self::MAX_CHARS {
            return Err("must be 1 to 100 characters");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if !raw.chars().all(allowed) {
            return Err("may hold only letters, digits, `-`, `_`, `.` and `:`");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for BatchId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 100 characters among letters, digits, `-`, `_`, `.` and `:`.",
            ))
            .min_length(Some(1))
            .max_length(Some(Self::MAX_CHARS))
            .pattern(Some("^[A-Za-z0-9._:-]+$"))
            .examples(["order-2026.11:a_b"])
            .into()
    }
}

impl utoipa::ToSchema for BatchId {}

/// The largest batch accepted.
pub const MAX_BATCH: usize = 100_000;

/// A pair stored by a roundtrip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: String,
    /// RFC 3339, UTC.
    pub stored_at: String,
    /// The roundtrip that stored it.
    pub correlation_id: String,
}

/// One key/value pair of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: String,
    pub value: String,
}

/// The items of a batch: generated for a size, or given, keys unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Items(Vec<Item>);

impl Items {
    /// `size` generated items, `item-000000` = `value-000000` and so on;
    /// at most `max`.
    pub fn generate(size: u64, max: usize) -> Result<Self, String> {
        if size == 0 || size > max as u64 {
            return Err(format!("must be between 1 and {max}"));
        }
        Ok(Self(
            (0..size)
                .map(|i| Item {
                    key: format!("item-{i:06}"),
                    value: format!("value-{i:06}"),
                })
                .collect(),
        ))
    }

    /// Given items, at most `max`; the error names the offending item.
    pub fn given(items: Vec<(String, String)>, max: usize) -> Result<Self, String> {
        if items.is_empty() || items.len() > max {
            return Err(format!("must hold between 1 and {max} items"));
        }
        let mut keys = HashSet::with_capacity(items.len());
        let mut checked = Vec::with_capacity(items.len());
        for (i, (key, value)) in items.into_iter().enumerate() {
            let key = Key::parse(&key).map_err(|e| format!("item {i}: key {e}"))?;
            let value = Value::parse(&value).map_err(|e| format!("item {i}: value {e}"))?;
            if !keys.insert(key.0.clone()) {
                return Err(format!("item {i}: key `{}` appears twice", key.0));
            }
            checked.push(Item {
                key: key.into_string(),
                value: value.into_string(),
            });
        }
        Ok(Self(checked))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn into_vec(self) -> Vec<Item> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_ids() {
        assert!(Key::parse("").is_err());
        assert!(Key::parse(&"k".repeat(257)).is_err());
        assert!(Key::parse("a\u{0}b").is_err());
        assert!(Key::parse("user:42/name ü").is_ok());
        assert!(Value::parse("").is_ok());
        assert!(Value::parse(&"v".repeat(65_537)).is_err());
        assert!(BatchId::parse("order-2026.11:a_b").is_ok());
        assert!(BatchId::parse("no spaces").is_err());
        assert!(BatchId::parse(&"x".repeat(101)).is_err());
        assert!(BatchId::parse(BatchId::new().as_str()).is_ok());
    }

    #[test]
    fn batches_are_bounded_and_keys_unique() {
        assert!(Items::generate(0, MAX_BATCH).is_err());
        assert!(Items::generate(100_001, MAX_BATCH).is_err());
        assert!(Items::generate(11, 10).is_err());
        let items = Items::generate(3, MAX_BATCH).unwrap().into_vec();
        assert_eq!(items[2].key, "item-000002");
        assert_eq!(items[2].value, "value-000002");
        let pair = |k: &str| (k.to_owned(), "v".to_owned());
        assert!(Items::given(vec![], MAX_BATCH).is_err());
        assert!(Items::given(vec![pair("a"), pair("b")], MAX_BATCH).is_ok());
        assert!(Items::given(vec![pair("a"), pair("b")], 1).is_err());
        let twice = Items::given(vec![pair("a"), pair("a")], MAX_BATCH).unwrap_err();
        assert!(twice.contains("item 1"), "{twice}");
    }
}
