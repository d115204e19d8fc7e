-- Every message the notifications service was asked to send, with its
-- delivery state. A message is only ever marked, never deleted.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,               -- UUIDv7
    channel TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,              -- 'api', or the id of the bus message that caused it
    status TEXT NOT NULL,              -- pending | sent | failed | stored (no webhook configured)
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at BIGINT NOT NULL,   -- unix ms: when a pending message is due
    lease_until BIGINT NOT NULL DEFAULT 0, -- unix ms: a sender holds the message until then
    created_at TEXT NOT NULL,          -- RFC 3339, UTC
    sent_at TEXT                       -- RFC 3339, UTC
);
CREATE INDEX messages_due ON messages (next_attempt_at) WHERE status = 'pending';
