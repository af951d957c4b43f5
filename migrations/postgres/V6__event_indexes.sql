-- sessiond's Postgres schema, version 6: watchers' events by index.
--
-- A watcher catches up on its tenant's events, by session or by user; the
-- store filters on these indexes instead of reading every event in
-- batches. Built inside the migration's transaction, so event writes wait
-- for them.

CREATE INDEX events_by_tenant ON events (tenant, sequence);
CREATE INDEX events_by_session ON events (session_id, sequence);
CREATE INDEX events_by_tenant_user ON events (tenant, user_id, sequence);
