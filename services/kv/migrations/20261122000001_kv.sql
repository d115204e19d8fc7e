-- Pairs stored by roundtrips: the latest value of each key.
CREATE TABLE pairs (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    correlation_id TEXT NOT NULL,   -- the roundtrip that stored this value
    stored_at TEXT NOT NULL         -- RFC 3339, UTC
);

-- Batches asked for over HTTP. A resubmission with the same id finds its row
-- here and waits for the first one instead of publishing the items again.
CREATE TABLE batch_requests (
    id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    requested_at TEXT NOT NULL
);

-- Items of batches still arriving, one row per item: a redelivered item
-- finds its row and counts once.
CREATE TABLE batch_staging (
    batch_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
);

-- How many distinct items of a batch have arrived; the item that makes
-- `received` reach `total` stores the batch.
CREATE TABLE batch_progress (
    batch_id TEXT PRIMARY KEY,
    total BIGINT NOT NULL,
    received BIGINT NOT NULL
);

-- Stored batches. A batch appears here, with all its items, in the one
-- transaction that handles its last item: whole or not at all.
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    stored_at TEXT NOT NULL         -- RFC 3339, UTC
);
CREATE INDEX batches_newest ON batches (stored_at, id);

CREATE TABLE batch_items (
    batch_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
);
