-- Counter records of version 2 (tau/counter/2): key-value calls, storage bytes and outgoing
-- HTTP. Records stored before are version 1: all of these 0.
ALTER TABLE records ADD COLUMN kv_reads BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN kv_writes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN storage_read_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN storage_written_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN outbound_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN outbound_sent_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE records ADD COLUMN outbound_received_bytes BIGINT NOT NULL DEFAULT 0;
