-- sessiond's Postgres schema, version 17: log entries counted per tenant,
-- for --max-log-entries-per-tenant.
--
-- A tenant holds the entries of its open sessions' logs and the kept logs
-- of its ended ones, until the purge. Each transaction that appends or
-- deletes entries adds its change, per tenant, at its end, in one
-- statement over its tenants in order (store::postgres::entries), to one
-- of sixteen rows of each tenant picked at random: writers appending for
-- one tenant at once then seldom wait for each other's row lock until
-- they commit. A tenant's count is the sum of its rows; an append is
-- checked against it as committed when the append's batch begins.
--
-- The count starts from the entries stored now, with log_entries locked
-- against writes until this migration commits, so nothing is counted twice
-- or missed by sessionds of this version. Replicas of versions before this
-- one do not count what they append or delete: replace them at once.

CREATE TABLE tenant_log_entries (
    tenant TEXT COLLATE "C" NOT NULL,
    stripe SMALLINT NOT NULL,
    entries BIGINT NOT NULL,
    PRIMARY KEY (tenant, stripe)
);

LOCK TABLE log_entries IN SHARE MODE;

INSERT INTO tenant_log_entries (tenant, stripe, entries)
SELECT tenant, 0, count(*) FROM log_entries GROUP BY tenant;
