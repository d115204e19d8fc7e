-- Accounts that can sign in.
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,            -- UUIDv7
    email TEXT NOT NULL,            -- as given
    email_key TEXT NOT NULL,        -- lower-cased: one account per address, whatever its case
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,    -- argon2id, PHC string (parameters and salt inside)
    created_at TEXT NOT NULL        -- RFC 3339, UTC
);
CREATE UNIQUE INDEX accounts_email_key ON accounts (email_key);

-- Roles granted to accounts (`admin`, `commercial`, or a service's own).
CREATE TABLE account_roles (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    PRIMARY KEY (account_id, role)
);

-- Signed-in browsers. The cookie carries a random token; only its SHA-256
-- is kept, so that a copy of this table signs nobody in.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at_ms);

-- Failed logins counted per account and per client address, in fixed
-- windows: `account:<email>` or `address:<ip>`.
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_start_ms BIGINT NOT NULL
);
-- Windows that are over are removed as new failures come (see store.rs),
-- so that failures with made-up emails do not pile up.
CREATE INDEX login_failures_window ON login_failures (window_start_ms);
