-- sessiond's Postgres schema, version 3: log entries without a foreign key.
--
-- The foreign key from log_entries to sessions checked every inserted entry
-- with a lookup of its session, which doubled the cost of storing a log
-- entry. sessiond appends only to a session it has just locked and found
-- open, so the check never refuses anything; what the key still did, taking
-- a session's entries with it when the session is purged, the purge now
-- does itself.

ALTER TABLE log_entries DROP CONSTRAINT log_entries_session_id_fkey;
