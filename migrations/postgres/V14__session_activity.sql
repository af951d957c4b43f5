-- sessiond's Postgres schema, version 14: activity written apart from the
-- session.
--
-- Moving last_active_at in sessions also moved expires_at, which
-- sessions_due indexes: every activity write was an update that could not
-- stay on its page (not HOT), a new version of the whole row (storage
-- included) and an entry in each of the table's indexes. Activity now goes
-- to a narrow table of its own; a session's last activity is the later of
-- the two (an activity after its end does not count). Its expires_at, and
-- so sessions_due, follows its own last_active_at only: the sweeper moves
-- the expiry of a session it finds used since. Rows go with their session
-- when the purge deletes it (no foreign key: its check would lock the
-- session's row on every first write). Its id compares as sessions.id does
-- (collation "C"): with another collation a session read could not look
-- its activity up by key.

CREATE TABLE session_activity (
    id TEXT COLLATE "C" PRIMARY KEY,
    last_active_at BIGINT NOT NULL
);
