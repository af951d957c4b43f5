//! `revocation`: with two sessiond replicas on one Postgres database, the
//! time from a revoke on replica A being acknowledged to replica B refusing
//! the session it had cached. One sample per session: create on A, read it
//! on B (now cached there), revoke on A, then read on B until refused.
//! Needs `--database-url`; skipped without one.

use std::time::{Duration, Instant};

use anyhow::bail;
use sessiond_api::v1::session_ref::Ref;
use sessiond_api::v1::session_service_client::SessionServiceClient;
use sessiond_api::v1::{CreateSessionRequest, GetSessionRequest, RevokeSessionsRequest, SessionKind, SessionRef};
use tonic::Code;

use super::Context;
use crate::report::RevocationReport;

/// Longest a sample may take before the run fails: propagation is expected
/// in milliseconds.
const GIVE_UP: Duration = Duration::from_secs(5);

pub async fn run(ctx: &Context) -> anyhow::Result<RevocationReport> {
    let Some(url) = ctx.plan.database_url.as_deref() else {
        return Ok(RevocationReport { samples: Vec::new(), skipped: Some("no --database-url".into()) });
    };
    let flags = ["--database-url", url];
    let a = ctx.launcher.sessiond(&flags).await?;
    let b = ctx.launcher.sessiond(&flags).await?;
    let mut on_a = SessionServiceClient::new(a.channels(1).await?.remove(0));
    let mut on_b = SessionServiceClient::new(b.channels(1).await?.remove(0));
    let mut samples = Vec::with_capacity(ctx.plan.revocations);
    for i in 0..ctx.plan.revocations {
        let request = CreateSessionRequest {
            kind: SessionKind::WebUser.into(),
            user_id: format!("revoked-{i}"),
            ..Default::default()
        };
        let created = on_a.create_session(request).await?.into_inner();
        let id = created.session.map(|s| s.session_id).unwrap_or_default();
        let by_token = || GetSessionRequest {
            session: Some(SessionRef { r#ref: Some(Ref::Token(created.token.clone())), min_sequence: 0 }),
        };
        on_b.get_session(by_token()).await?;
        on_b.get_session(by_token()).await?;
        on_a.revoke_sessions(RevokeSessionsRequest { session_ids: vec![id], ..Default::default() }).await?;
        let revoked = Instant::now();
        loop {
            match on_b.get_session(by_token()).await {
                Err(status) if status.code() == Code::FailedPrecondition => break,
                Err(status) => bail!("replica B failed instead of refusing: {status}"),
                Ok(_) if revoked.elapsed() > GIVE_UP => bail!("replica B still answered {GIVE_UP:?} after the revoke"),
                Ok(_) => {}
            }
        }
        samples.push(revoked.elapsed());
    }
    Ok(RevocationReport { samples, skipped: None })
}
