-- Which ingest stored a record: a number that rises with every batch stored (`clock`), taken in
-- the batch's own transaction, so the batches commit in its order. A batch is one node's, so
-- (received, seq) orders every record. A proof notes the number it read up to; a record stored
-- after is late for that proof's period, and `q push` sends records in this order. Records
-- stored before this version count as one ingest per node, numbered from 1 in node order.
ALTER TABLE records ADD COLUMN received BIGINT NOT NULL DEFAULT 0;
UPDATE records SET received = (
    SELECT COUNT(*) FROM (SELECT DISTINCT node FROM records) AS nodes
    WHERE nodes.node <= records.node
);
CREATE INDEX records_by_received ON records (received, seq);
CREATE TABLE clock (
    id BIGINT PRIMARY KEY,
    ingests BIGINT NOT NULL
);
INSERT INTO clock (id, ingests) SELECT 0, COUNT(DISTINCT node) FROM records;

-- Every proof q made: its period, project ('' for all), root, the ingest it read up to, and the
-- root it amends (empty for an original).
CREATE TABLE proofs (
    period_start_ms BIGINT NOT NULL,
    period_end_ms BIGINT NOT NULL,
    project TEXT NOT NULL,
    root BYTEA NOT NULL,
    amends BYTEA NOT NULL,
    through BIGINT NOT NULL,
    made_ms BIGINT NOT NULL,
    PRIMARY KEY (period_start_ms, period_end_ms, project, root)
);

-- Per push target (a hash of format and URL), the last record a receiver acknowledged, in the
-- order records were stored, and how many events were acknowledged in all.
CREATE TABLE push_cursors (
    target TEXT PRIMARY KEY,
    ingest BIGINT NOT NULL,
    node TEXT NOT NULL,
    seq BIGINT NOT NULL,
    events BIGINT NOT NULL
);

-- Per alert rule (as written), whether it fired and has not cleared, and when that last changed:
-- kept here so a restarted `q collect --follow` posts neither state twice.
CREATE TABLE alerts (
    rule TEXT PRIMARY KEY,
    firing BIGINT NOT NULL,
    changed_ms BIGINT NOT NULL
);
