-- sessiond's Postgres schema, version 10: a log search by time range
-- starts where its entries can be.
--
-- A continuous entry is given its position (the id of the transaction that
-- stores it) when it is logged, so the latest one logged well before a
-- range's start bounds from below every entry the range can match
-- (store::log_sql). This index finds it in one probe. Built inside the
-- migration's transaction, so writes to log_entries wait for it.

CREATE INDEX log_entries_continuous_by_time ON log_entries (logged_at, position)
    WHERE continuous AND position IS NOT NULL;
