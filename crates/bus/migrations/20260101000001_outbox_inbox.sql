-- Tables of the bus that live in every service's own database, so that a
-- state change and its messages commit together.

-- Messages staged by the service, waiting for the relay to hand them to the bus.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,          -- message id (UUIDv7: sorts in staging order)
    subject TEXT NOT NULL,
    headers TEXT NOT NULL,        -- JSON object of string values
    payload TEXT NOT NULL,        -- the message body (JSON)
    created_at BIGINT NOT NULL,   -- unix milliseconds
    published_at BIGINT           -- set once the bus confirmed the message
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Ids of messages a consumer has handled, written in the same transaction as
-- the effect of the message: a redelivered message finds its id here.
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    handled_at BIGINT NOT NULL,   -- unix milliseconds
    PRIMARY KEY (consumer, message_id)
);

-- Messages a consumer gave up on after its bounded retries.
CREATE TABLE dead_letters (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    headers TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    error TEXT NOT NULL,          -- the last failure
    failed_at BIGINT NOT NULL,    -- unix milliseconds
    PRIMARY KEY (consumer, message_id)
);
