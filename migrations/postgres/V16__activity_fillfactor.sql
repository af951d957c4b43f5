-- sessiond's Postgres schema, version 16: room on session_activity's pages
-- for its updates.
--
-- Every activity write after a session's first updates its row: with full
-- pages (fillfactor 100, the default) the new version goes to another page
-- and needs a new entry in the primary key; with half of each page left
-- free it stays on its page (a HOT update) and the key is not touched. A
-- flush of a million existing rows took 6.1-6.5 s with full pages and
-- 4.0 s with half-free ones (BENCHMARKS.md). The rows are narrow (an id
-- and a time), so the table's size doubles to a few dozen bytes more per
-- session. Pages already full keep their rows until vacuum frees room on
-- them; only pages filled from now on leave room.

ALTER TABLE session_activity SET (fillfactor = 50);
