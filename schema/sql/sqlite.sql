-- switchyard, embedded store (SQLite). Same logical tables as the CQL schema.
-- Idempotent: applied on every start.

CREATE TABLE IF NOT EXISTS frust_clicks (
    id        TEXT PRIMARY KEY,      -- packet id (UUIDv7): re-inserts are no-ops
    user      TEXT NOT NULL,
    comment   TEXT,
    style     TEXT,
    timestamp INTEGER NOT NULL       -- Unix seconds, UTC
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frust_clicks_by_time ON frust_clicks (timestamp, id);

CREATE TABLE IF NOT EXISTS frust_events (
    id        TEXT PRIMARY KEY,
    user      TEXT NOT NULL,
    name      TEXT NOT NULL,
    timestamp INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS frust_events_by_time ON frust_events (timestamp, id);

-- Aggregator output: absolute counts, written together with the checkpoint.
CREATE TABLE IF NOT EXISTS frust_hours (
    hour        INTEGER PRIMARY KEY, -- hour start, Unix seconds
    click_count INTEGER NOT NULL,
    event_count INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS frust_users (
    name        TEXT PRIMARY KEY,
    click_count INTEGER NOT NULL,
    event_count INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS aggregator_checkpoint (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL,
    click_total INTEGER NOT NULL,
    event_total INTEGER NOT NULL
);
