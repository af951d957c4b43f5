-- sessiond's Postgres schema, version 6: log entries readable while their
-- session is open, searched without reading what a filter skips.
--
-- Each entry carries what QueryLogs filters by: its session's tenant, user
-- and kind (copied when it is stored), failed and slow (set when its log is
-- kept at the end). `position` is set when the entry becomes readable —
-- stored under continuous logging, or its log kept at the end — to the id
-- of the transaction that made it so (pg_current_xact_id()); NULL while it
-- is not readable. A reader reads only positions below the oldest
-- transaction still running (pg_snapshot_xmin), which are final: a
-- follower resuming after what it read misses nothing and reads nothing
-- twice. Entries of kept logs from before are readable at position 0, in
-- their old order.
--
-- Each readable-entry index leads with the filter's equalities, then the
-- level, then (position, entry_id): a page is read in order from the cursor
-- and stops after the page, one walk per level at or above the minimum.
-- The indexes are built inside the migration's transaction, so writes to
-- log_entries wait for them.

ALTER TABLE log_entries
    ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    ADD COLUMN user_id TEXT,
    ADD COLUMN kind TEXT NOT NULL DEFAULT '',
    ADD COLUMN continuous BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN failed BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN slow BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN position BIGINT;

UPDATE log_entries AS e
SET tenant = s.tenant, user_id = s.user_id, kind = s.kind, failed = s.end_reason IS NOT DISTINCT FROM 'failed',
    slow = s.slow, position = CASE WHEN s.log_id IS NOT NULL THEN 0 END
FROM sessions AS s WHERE s.id = e.session_id;

CREATE INDEX log_entries_readable ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_session ON log_entries (session_id, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_user ON log_entries (tenant, user_id, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_by_kind ON log_entries (tenant, kind, level, position, entry_id)
    WHERE position IS NOT NULL;
CREATE INDEX log_entries_readable_failed ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND failed;
CREATE INDEX log_entries_readable_slow ON log_entries (tenant, level, position, entry_id)
    WHERE position IS NOT NULL AND slow;
