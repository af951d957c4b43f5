-- sessiond's Postgres schema, version 4: idempotency records.
--
-- A CreateSession, Log or StreamLog message carrying a request_id stores
-- one row here in the same transaction as its write; a retry with the same
-- key finds it and is answered from it instead of writing again. `lookup`
-- is SHA-256 of the request id with its tenant (and, for logs, its
-- session), `digest` SHA-256 of the request; a create's token is kept only
-- sealed with a pad derived from the request id, which is not stored.
-- Rows older than the idempotency window are purged by `at`.

CREATE TABLE request_ids (
    lookup BYTEA PRIMARY KEY,
    digest BYTEA NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    sealed_token BYTEA,
    accepted BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX request_ids_by_time ON request_ids (at);
