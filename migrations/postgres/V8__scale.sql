-- sessiond's Postgres schema, version 8: listings that cost a page, not
-- the table.
--
-- An admin's ListSessions across users walked sessions_by_tenant and
-- filtered every row by state or kind: a filter matching nothing read the
-- whole tenant. Each filter now has an index in page order
-- ((created_at, id) newest first, after an equality on its prefix), so a
-- page reads its own rows and the keyset bound of the next:
--
-- - state open / ended: sessions_open_by_tenant / sessions_ended_by_tenant;
-- - kind: sessions_by_tenant_kind, and with state open
--   sessions_open_by_kind (kind and ended together walk the kind's rows);
-- - the request-scoped sessions left open that start-up and shutdown end,
--   across tenants, are found through sessions_open_by_kind, which holds
--   open sessions only: start-up reads no row in proportion to the store.
--
-- sessions_by_creation served only those listings across tenants and goes.
--
-- The sweeper reads due sessions in (expires_at, id) order, a batch at a
-- time: sessions_by_expiry held expires_at alone, so each batch sorted every
-- due session to take its first thousand, and ending N sessions cost N²/1000
-- rows sorted. sessions_due holds the order itself.
--
-- The indexes are built inside the migration's transaction, so writes to
-- sessions wait for them (seconds at a million sessions).

CREATE INDEX sessions_open_by_tenant ON sessions (tenant, created_at, id) WHERE ended_at IS NULL;
CREATE INDEX sessions_ended_by_tenant ON sessions (tenant, created_at, id) WHERE ended_at IS NOT NULL;
CREATE INDEX sessions_by_tenant_kind ON sessions (tenant, kind, created_at, id);
CREATE INDEX sessions_open_by_kind ON sessions (kind, tenant, created_at, id) WHERE ended_at IS NULL;
DROP INDEX sessions_by_creation;
CREATE INDEX sessions_due ON sessions (expires_at, id) WHERE ended_at IS NULL;
DROP INDEX sessions_by_expiry;
