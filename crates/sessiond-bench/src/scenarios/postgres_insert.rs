//! The durable-write baseline: single-row INSERTs of a session-sized row
//! issued directly to the same Postgres, one connection per caller, at the
//! run's concurrency, with `synchronous_commit` on — what a service would
//! get writing Postgres itself. `create-session-postgres` is compared with
//! it.

use tokio_postgres::NoTls;
use tonic::Status;
use tonic::transport::Channel;

use super::Context;
use crate::load::{Caller, Outcome};
use crate::report::LoadReport;
use crate::stats::Summary;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS bench_insert_baseline (
    id TEXT PRIMARY KEY, token_hash BYTEA NOT NULL UNIQUE, tenant TEXT NOT NULL, kind TEXT NOT NULL,
    user_id TEXT, created_at BIGINT NOT NULL, last_active_at BIGINT NOT NULL, expires_at BIGINT,
    grants TEXT NOT NULL, storage TEXT NOT NULL)";

const INSERT: &str = "INSERT INTO bench_insert_baseline
    (id, token_hash, tenant, kind, user_id, created_at, last_active_at, expires_at, grants, storage)
    VALUES ($1, $2, 'default', 'web_user', $3, $4, $4, $5, '{\"privileges\":[],\"roles\":[\"manager\"],\"promotions\":[]}', '{}')";

struct InsertCaller {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
}

impl Caller for InsertCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let hash = rand::random::<[u8; 32]>().to_vec();
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        self.client
            .execute(&self.statement, &[&id, &hash, &"bench-user", &now, &(now + 3_600_000)])
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Outcome::ONE)
    }
}

pub async fn run(ctx: &Context) -> anyhow::Result<LoadReport> {
    let url =
        ctx.plan.database_url.as_deref().ok_or_else(|| anyhow::anyhow!("the INSERT baseline needs --database-url"))?;
    let mut callers = Vec::with_capacity(ctx.plan.concurrency);
    for _ in 0..ctx.plan.concurrency {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(TABLE).await?;
        let statement = client.prepare(INSERT).await?;
        callers.push(Some(InsertCaller { client, statement }));
    }
    // The loader hands each caller a gRPC channel; these callers talk to
    // Postgres instead and never use it.
    let unused = [Channel::from_static("http://127.0.0.1:9").connect_lazy()];
    // Every caller is taken exactly once, by index.
    let (recorded, cpu) = ctx.drive(None, &unused, |i, _| callers[i].take().expect("one caller per index")).await?;
    let mut report = LoadReport::new("postgres-insert", Summary::of(&recorded), 0);
    cpu.fill(&mut report);
    Ok(report)
}
