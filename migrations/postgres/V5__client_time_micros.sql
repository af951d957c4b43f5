-- sessiond's Postgres schema, version 5: log entries' client times to the
-- microsecond.
--
-- client_time held milliseconds since the Unix epoch; it now holds
-- microseconds, as precise as the client's timestamp can be kept (the
-- precision of timestamptz).

UPDATE log_entries SET client_time = client_time * 1000 WHERE client_time IS NOT NULL;
