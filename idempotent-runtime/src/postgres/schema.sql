-- The table of a PostgresStore, as `PostgresStore::migrate` creates it (idempotent: safe to
-- run again). Run it yourself if your migrations are owned by a tool; for another table
-- name, replace every `idempotency_records` below (the store's `table` option).
--
-- One row per key. A claim has `value IS NULL` and `until` = the end of its lease; a
-- completed record has its encoded result in `value` and `until` = the end of its TTL. A
-- row past its `until` counts as vacant, and the reaper deletes it.

CREATE SEQUENCE IF NOT EXISTS idempotency_records_token AS bigint;

CREATE TABLE IF NOT EXISTS idempotency_records (
    -- The record's 16-byte key (no argument value, no client key in clear).
    key          bytea       PRIMARY KEY CHECK (octet_length(key) = 16),
    -- The function's or the route's namespace, for people reading the table.
    namespace    text        NOT NULL,
    -- The payload fingerprint the record was claimed with (16 bytes).
    fingerprint  bytea       NOT NULL,
    -- The fencing token of the current claim, from the sequence: never reused.
    token        bigint      NOT NULL,
    -- The encoded result; NULL while the record is claimed.
    value        bytea,
    -- When the claim's lease lapses, or when the completed record expires.
    until        timestamptz NOT NULL
);

-- The reaper's scan: the oldest expired rows first.
CREATE INDEX IF NOT EXISTS idempotency_records_until ON idempotency_records (until);
