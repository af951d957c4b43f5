//! Session scenarios: `has-privilege` and `get-session` on a pool of cached
//! sessions, and `create-session`. Also the pool itself, which other
//! scenarios use: WEB_USER sessions holding role Manager.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use sessiond_api::v1::privilege_service_client::PrivilegeServiceClient;
use sessiond_api::v1::session_ref::Ref;
use sessiond_api::v1::session_service_client::SessionServiceClient;
use sessiond_api::v1::{CreateSessionRequest, GetSessionRequest, HasPrivilegeRequest, SessionKind, SessionRef};
use tonic::Status;
use tonic::transport::Channel;

use super::{Context, Scenario};
use crate::load::{self, Caller, Outcome};
use crate::report::LoadReport;

/// The privilege `has-privilege` asks for; Manager holds it through
/// editSales ⊃ viewSales ⊃ viewBasic.
const PRIVILEGE: &str = "viewBasic";

/// The request that creates session `i` of a pool: a web user with role
/// Manager.
pub fn web_user(i: usize) -> CreateSessionRequest {
    CreateSessionRequest {
        kind: SessionKind::WebUser as i32,
        user_id: format!("bench-user-{i}"),
        roles: vec!["Manager".into()],
        ..CreateSessionRequest::default()
    }
}

/// Names a session by its token.
pub fn by_token(token: &str) -> Option<SessionRef> {
    Some(SessionRef { r#ref: Some(Ref::Token(token.to_owned())), min_sequence: 0 })
}

/// Creates `count` sessions, `request(i)` for each, and answers their tokens.
pub async fn create_all(
    ctx: &Context,
    channels: &[Channel],
    count: usize,
    request: fn(usize) -> CreateSessionRequest,
) -> anyhow::Result<Vec<String>> {
    load::prepare(count, ctx.plan.concurrency, channels, move |i, channel| async move {
        let answer = SessionServiceClient::new(channel).create_session(request(i)).await?;
        Ok(answer.into_inner().token)
    })
    .await
}

/// Reads every session once, which puts it in sessiond's cache.
pub async fn touch_all(ctx: &Context, channels: &[Channel], tokens: &Arc<[String]>) -> anyhow::Result<()> {
    let pool = tokens.clone();
    load::prepare(tokens.len(), ctx.plan.concurrency, channels, move |i, channel| {
        let pool = pool.clone();
        async move {
            SessionServiceClient::new(channel).get_session(GetSessionRequest { session: by_token(&pool[i]) }).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// A fresh sessiond with a pool of cached sessions.
async fn with_cached_pool(
    ctx: &Context,
) -> anyhow::Result<(crate::server::ServerProcess, Vec<Channel>, Arc<[String]>)> {
    let server = ctx.launcher.sessiond(&[]).await?;
    let channels = server.channels(ctx.plan.connections).await?;
    let tokens: Arc<[String]> = create_all(ctx, &channels, ctx.plan.pool_sessions, web_user).await?.into();
    touch_all(ctx, &channels, &tokens).await?;
    Ok((server, channels, tokens))
}

struct HasPrivilegeCaller {
    client: PrivilegeServiceClient<Channel>,
    tokens: Arc<[String]>,
    rng: SmallRng,
}

impl Caller for HasPrivilegeCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let token = &self.tokens[self.rng.random_range(0..self.tokens.len())];
        let request = HasPrivilegeRequest { session: by_token(token), privilege: PRIVILEGE.into() };
        if !self.client.has_privilege(request).await?.into_inner().granted {
            return Err(Status::internal(format!("HasPrivilege {PRIVILEGE} answered not granted to a Manager")));
        }
        Ok(Outcome::ONE)
    }
}

/// `has-privilege`: HasPrivilege viewBasic by token, on a random session.
pub async fn has_privilege(ctx: &Context) -> anyhow::Result<LoadReport> {
    let (mut server, channels, tokens) = with_cached_pool(ctx).await?;
    ctx.measure_load(Scenario::HasPrivilege, &mut server, &channels, |i, channel| HasPrivilegeCaller {
        client: PrivilegeServiceClient::new(channel),
        tokens: tokens.clone(),
        rng: SmallRng::seed_from_u64(i as u64),
    })
    .await
}

struct GetSessionCaller {
    client: SessionServiceClient<Channel>,
    tokens: Arc<[String]>,
    rng: SmallRng,
}

impl Caller for GetSessionCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let token = &self.tokens[self.rng.random_range(0..self.tokens.len())];
        self.client.get_session(GetSessionRequest { session: by_token(token) }).await?;
        Ok(Outcome::ONE)
    }
}

/// `get-session`: GetSession by token, on a random session.
pub async fn get_session(ctx: &Context) -> anyhow::Result<LoadReport> {
    let (mut server, channels, tokens) = with_cached_pool(ctx).await?;
    ctx.measure_load(Scenario::GetSession, &mut server, &channels, |i, channel| GetSessionCaller {
        client: SessionServiceClient::new(channel),
        tokens: tokens.clone(),
        rng: SmallRng::seed_from_u64(i as u64),
    })
    .await
}

struct CreateSessionCaller {
    client: SessionServiceClient<Channel>,
    caller: usize,
    created: usize,
}

impl Caller for CreateSessionCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        self.created += 1;
        let mut request = web_user(self.created);
        request.user_id = format!("bench-user-{}-{}", self.caller, self.created);
        self.client.create_session(request).await?;
        Ok(Outcome::ONE)
    }
}

/// `create-session-postgres`: `create-session` with sessiond storing in the
/// run's Postgres; answered after the transaction commits.
pub async fn create_session_postgres(ctx: &Context) -> anyhow::Result<LoadReport> {
    let mut server = ctx.launcher.sessiond(&postgres_flags(ctx)?).await?;
    let channels = server.channels(ctx.plan.connections).await?;
    ctx.measure_load(Scenario::CreateSessionPostgres, &mut server, &channels, |caller, channel| CreateSessionCaller {
        client: SessionServiceClient::new(channel),
        caller,
        created: 0,
    })
    .await
}

/// The flags that make sessiond store in the run's Postgres.
pub fn postgres_flags(ctx: &Context) -> anyhow::Result<[&str; 4]> {
    let url = ctx.plan.database_url.as_deref().ok_or_else(|| anyhow::anyhow!("needs --database-url"))?;
    Ok(["--database-url", url, "--db-pool-size", "32"])
}

/// `create-session`: CreateSession of a web user with role Manager; sessiond
/// answers once the store has committed it.
pub async fn create_session(ctx: &Context) -> anyhow::Result<LoadReport> {
    let mut server = ctx.launcher.sessiond(&[]).await?;
    let channels = server.channels(ctx.plan.connections).await?;
    ctx.measure_load(Scenario::CreateSession, &mut server, &channels, |caller, channel| CreateSessionCaller {
        client: SessionServiceClient::new(channel),
        caller,
        created: 0,
    })
    .await
}
