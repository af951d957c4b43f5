-- sessiond's Postgres schema, version 13: the end index holds ended
-- sessions only.
--
-- sessions_by_end held every open session under NULL, an entry each create
-- wrote and each end moved. Only the purge reads it, for ends before a
-- time, which implies an end. Built inside the migration's transaction, so
-- writes to sessions wait for it.

DROP INDEX sessions_by_end;
CREATE INDEX sessions_by_end ON sessions (ended_at) WHERE ended_at IS NOT NULL;
