-- One schema for SQLite and PostgreSQL: BIGINT is SQLite's INTEGER, BYTEA holds blobs in both.

-- Every verified counter record, once per (node, seq).
CREATE TABLE records (
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    project TEXT NOT NULL,
    function TEXT NOT NULL,
    window_start_ms BIGINT NOT NULL,
    window_ms BIGINT NOT NULL,
    invocations BIGINT NOT NULL,
    errors BIGINT NOT NULL,
    wall_micros BIGINT NOT NULL,
    cpu_micros BIGINT NOT NULL,
    peak_memory BIGINT NOT NULL,
    bytes_in BIGINT NOT NULL,
    bytes_out BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX records_by_window ON records (window_start_ms);

-- Per node, the next sequence number to ask for: moves in the same transaction as its records.
CREATE TABLE cursors (
    node TEXT PRIMARY KEY,
    next_seq BIGINT NOT NULL
);

-- Records kept aside and never counted: bad signature, signed by another node than the one
-- asked, unknown node, a second version of a stored (node, seq).
CREATE TABLE rejected (
    hash BYTEA PRIMARY KEY,
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    reason TEXT NOT NULL,
    record BYTEA NOT NULL,
    seen_ms BIGINT NOT NULL
);

-- Sequence numbers a node skipped or pruned before q read them.
CREATE TABLE gaps (
    node TEXT NOT NULL,
    from_seq BIGINT NOT NULL,
    to_seq BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL,
    PRIMARY KEY (node, from_seq)
);
