-- sessiond's Postgres schema, version 10: open sessions counted per tenant,
-- for --max-open-sessions-per-tenant.
--
-- The count is kept by a trigger on the events every opening and ending
-- records (created: one more; closed, expired, revoked: one fewer), in the
-- same transaction as the session, whichever write recorded the event. A
-- transaction recording events already holds event_counter's row lock when
-- it inserts them, so the tenants' rows are locked after it, in tenant
-- order, by one transaction at a time: no new waits, no deadlocks.
--
-- The trigger is created before the count is taken: creating it locks
-- events against inserts, so a session whose event is inserted after this
-- migration commits is counted by the trigger, and one whose event was
-- committed before is counted here.

CREATE TABLE tenant_sessions (
    tenant TEXT COLLATE "C" PRIMARY KEY,
    open BIGINT NOT NULL
);

CREATE FUNCTION count_tenant_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenant_sessions AS t (tenant, open)
    SELECT tenant, sum(CASE event_type WHEN 'created' THEN 1 ELSE -1 END)
    FROM recorded WHERE event_type IN ('created', 'closed', 'expired', 'revoked')
    GROUP BY tenant ORDER BY tenant
    ON CONFLICT (tenant) DO UPDATE SET open = t.open + EXCLUDED.open;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_count_tenant_sessions AFTER INSERT ON events
    REFERENCING NEW TABLE AS recorded
    FOR EACH STATEMENT EXECUTE FUNCTION count_tenant_sessions();

INSERT INTO tenant_sessions (tenant, open)
SELECT tenant, count(*) FROM sessions WHERE ended_at IS NULL GROUP BY tenant;
