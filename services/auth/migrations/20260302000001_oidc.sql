-- The keys ID and access tokens are signed with (ES256). Kept so that every
-- instance signs with the same key and tokens outlive restarts.
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    pkcs8_der TEXT NOT NULL,         -- the private key, PKCS #8 DER, hex
    created_at_ms BIGINT NOT NULL
);

-- Authorization codes: single use, a minute long. Only their SHA-256 is kept.
CREATE TABLE authorization_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,                      -- echoed in the ID token
    code_challenge TEXT NOT NULL,    -- PKCE S256
    auth_time_ms BIGINT NOT NULL,    -- when the account signed in
    expires_at_ms BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0   -- 1 once exchanged: a second exchange revokes what the first gave
);

-- Refresh tokens, rotated at each use. A family is every token descended
-- from one code; a rotated token presented again revokes its family.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,            -- the hash of the code the family started from
    client_id TEXT NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    auth_time_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    rotated BIGINT NOT NULL DEFAULT 0,
    revoked BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
