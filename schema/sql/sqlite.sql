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

-- Packet ids the aggregator counted, with the FACTS sequence of the fact it counted: a fact
-- for a counted id at another sequence is a late duplicate and counts nothing.
CREATE TABLE IF NOT EXISTS aggregator_counted (
    id  TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;

-- Chat.
CREATE TABLE IF NOT EXISTS chat_rooms (
    room_id    TEXT PRIMARY KEY,
    name       TEXT,
    created_ms INTEGER NOT NULL,
    owner      TEXT  -- the creating user; NULL: made with the admin token (or before owners)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS chat_members (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chat_members_by_user ON chat_members (user_id, room_id);

CREATE TABLE IF NOT EXISTS chat_messages (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT, -- persist order: the order live delivery used
    id         TEXT NOT NULL UNIQUE,              -- packet id: re-inserts are no-ops
    room_id    TEXT NOT NULL,
    sender_id  TEXT NOT NULL,
    message    TEXT NOT NULL,
    timestamp  TEXT NOT NULL,                     -- RFC 3339 UTC, as clients see it
    sent_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chat_messages_by_room ON chat_messages (room_id, seq);

-- Ephemeral events (configured names, e.g. rickroll): a tally row each, so a recount keeps
-- counting them in the totals and hours; never listed, never counted per user.
CREATE TABLE IF NOT EXISTS frust_ephemeral_events (
    id        TEXT PRIMARY KEY,
    user      TEXT NOT NULL,
    name      TEXT NOT NULL,
    timestamp INTEGER NOT NULL
) WITHOUT ROWID;

-- Counters of the rows `switchyard import` brought from an original Frust database (ids
-- `frust-import-*`): absolute values written at the end of each import, added to the
-- aggregator's counters when served. The aggregator and its checkpoint never see them.
CREATE TABLE IF NOT EXISTS frust_imported_totals (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    click_total INTEGER NOT NULL,
    event_total INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS frust_imported_hours (
    hour        INTEGER PRIMARY KEY,
    click_count INTEGER NOT NULL,
    event_count INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS frust_imported_users (
    name        TEXT PRIMARY KEY,
    click_count INTEGER NOT NULL,
    event_count INTEGER NOT NULL
) WITHOUT ROWID;
