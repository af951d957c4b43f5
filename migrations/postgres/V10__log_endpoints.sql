-- sessiond's Postgres schema, version 10: log entries carry their
-- session's endpoint (SessionLabels.endpoint, '' for none), copied when
-- they are stored like tenant, user and kind, so that QueryLogs and
-- FollowLogs filter by endpoint through an index of their own: it leads
-- with the tenant and the endpoint, then the level, then the order
-- (position, entry_id), like the other readable-entry indexes (V9).
-- Entries stored before take their session's endpoint here. The index is
-- built inside the migration's transaction, so writes to log_entries wait
-- for it.

ALTER TABLE log_entries ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';

UPDATE log_entries AS e SET endpoint = s.endpoint
FROM sessions AS s WHERE s.id = e.session_id AND s.endpoint <> '';

CREATE INDEX log_entries_readable_by_endpoint ON log_entries (tenant, endpoint, level, position, entry_id)
    WHERE position IS NOT NULL;
