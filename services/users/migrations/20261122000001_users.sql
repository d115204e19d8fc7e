-- Accounts known to the users service.
CREATE TABLE users (
    id TEXT PRIMARY KEY,          -- UUIDv7: ids sort by creation time, which keyset pagination uses
    name TEXT NOT NULL,
    email TEXT NOT NULL,          -- as given
    email_key TEXT NOT NULL,      -- lower-cased email: addresses are unique regardless of case
    created_at TEXT NOT NULL      -- RFC 3339, UTC
);
CREATE UNIQUE INDEX users_email_key ON users (email_key);
