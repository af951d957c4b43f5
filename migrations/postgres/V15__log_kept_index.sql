-- sessiond's Postgres schema, version 15: a log search by time range
-- bounded on both sides.
--
-- Continuous entries are positioned when they are logged, so a range's
-- continuous entries lie between a floor and a ceiling found by time
-- (log_entries_continuous_by_time, store::log_sql). The entries of a log
-- kept at its session's end may be logged long before they become
-- readable: they are walked apart, on this index, which holds them only.
-- Built inside the migration's transaction, so writes to log_entries wait
-- for it.

CREATE INDEX log_entries_readable_kept ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND NOT continuous;
