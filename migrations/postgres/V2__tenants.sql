-- sessiond's Postgres schema, version 2: tenants.
--
-- Every session and event belongs to a tenant, the tenant of the API key
-- that created the session; rows from before are the default tenant's.
-- Adding a NOT NULL column with a constant default rewrites no rows.
--
-- Callers always list sessions within their tenant, newest first, by user
-- or not: sessions_by_tenant serves the listings by tenant (walking
-- (created_at, id) in page order), sessions_by_tenant_user those by user,
-- which replace sessions_by_user since user filters never come without a
-- tenant. Listings across tenants (recovery, shutdown) keep
-- sessions_by_creation. The indexes are built inside the migration's
-- transaction, so writes to sessions wait for them.

ALTER TABLE sessions ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';

DROP INDEX sessions_by_user;
CREATE INDEX sessions_by_tenant ON sessions (tenant, created_at, id);
CREATE INDEX sessions_by_tenant_user ON sessions (tenant, user_id, created_at, id);
