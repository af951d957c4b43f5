//! The Postgres schema, as versioned SQL files in `migrations/postgres/`
//! (`V<n>__<name>.sql`) compiled into sessiond, and the runner that applies
//! the ones a database lacks.
//!
//! The runner works in one transaction that first takes a fixed advisory
//! lock, so replicas starting together apply each step once: the others
//! wait, then find it recorded in `schema_migrations`. Append new steps,
//! never edit applied ones.

use tokio_postgres::Client;

use super::{Connector, PgSettings, internal};
use crate::store::StoreResult;

/// One step of the schema.
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V1__initial.sql")),
    },
    Migration {
        version: 2,
        name: "tenants",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V2__tenants.sql")),
    },
    Migration {
        version: 3,
        name: "log_entries_unconstrained",
        sql: include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/V3__log_entries_unconstrained.sql"
        )),
    },
    Migration {
        version: 4,
        name: "request_ids",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V4__request_ids.sql")),
    },
    Migration {
        version: 5,
        name: "client_time_micros",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V5__client_time_micros.sql")),
    },
    Migration {
        version: 6,
        name: "event_indexes",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V6__event_indexes.sql")),
    },
    Migration {
        version: 7,
        name: "messages",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V7__messages.sql")),
    },
    Migration {
        version: 8,
        name: "scale",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V8__scale.sql")),
    },
    Migration {
        version: 9,
        name: "logs",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V9__logs.sql")),
    },
    Migration {
        version: 10,
        name: "log_endpoints",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V10__log_endpoints.sql")),
    },
    Migration {
        version: 11,
        name: "quotas",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V11__quotas.sql")),
    },
    Migration {
        version: 12,
        name: "log_time_floor",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V12__log_time_floor.sql")),
    },
    Migration {
        version: 13,
        name: "ended_index",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V13__ended_index.sql")),
    },
    Migration {
        version: 14,
        name: "session_activity",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V14__session_activity.sql")),
    },
    Migration {
        version: 15,
        name: "log_kept_index",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V15__log_kept_index.sql")),
    },
    Migration {
        version: 16,
        name: "activity_fillfactor",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V16__activity_fillfactor.sql")),
    },
    Migration {
        version: 17,
        name: "tenant_log_entries",
        sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/V17__tenant_log_entries.sql")),
    },
];

/// The schema version this sessiond brings a database to.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The advisory lock held while migrating: "sessiond" in ASCII.
const LOCK_KEY: i64 = 0x7365_7373_696f_6e64;

/// Brings the database of `settings` to [`SCHEMA_VERSION`]; answers how
/// many steps this call applied. Safe to run from several replicas at once.
pub async fn migrate(settings: &PgSettings) -> StoreResult<u32> {
    run(&settings.connector()?).await
}

/// [`migrate`] on a connection of its own.
pub(super) async fn run(connector: &Connector) -> StoreResult<u32> {
    let (mut client, connection) = connector.connect().await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = super::described(&e), "the postgres migration connection failed");
        }
    });
    let applied = apply(&mut client).await;
    drop(client);
    // The connection ends with its client; its own failure was logged.
    let _ = connection.await;
    applied
}

async fn apply(client: &mut Client) -> StoreResult<u32> {
    let tx = client.transaction().await?;
    // A step may take long, and waiting for another replica's lock too.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY]).await?;
    // Created only when missing: `CREATE TABLE IF NOT EXISTS` would send a
    // notice ("already exists") on every start. Under the lock, no other
    // replica creates it meanwhile.
    let exists: bool = tx.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.try_get(0)?;
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_migrations (\
             version INTEGER PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    }
    let current: Option<i32> = tx.query_one("SELECT max(version) FROM schema_migrations", &[]).await?.try_get(0)?;
    let current =
        u32::try_from(current.unwrap_or(0)).map_err(|_| internal("schema_migrations holds a negative version"))?;
    if current > SCHEMA_VERSION {
        return Err(internal(format!(
            "the database has schema version {current}, newer than this sessiond's {SCHEMA_VERSION}"
        )));
    }
    let mut applied = 0;
    for step in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(step.sql).await?;
        let version = i32::try_from(step.version).map_err(|_| internal("a migration version exceeds INTEGER"))?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await?;
        tracing::info!(version = step.version, name = step.name, "migrated the postgres schema");
        applied += 1;
    }
    tx.commit().await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_follow_each_other() {
        for (i, step) in MIGRATIONS.iter().enumerate() {
            assert_eq!(step.version as usize, i + 1, "migration {} is out of order", step.name);
        }
    }
}
