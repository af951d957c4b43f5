//! Tenants' open-session counts for the quota check of creates, read
//! together: one statement answers every create that asked while the
//! previous one ran, instead of one statement per create (about 100 µs of
//! Postgres CPU each under load, a third of the creates' throughput).
//!
//! A create asks, and is answered by the first read that starts after it
//! asked, so its count is as committed at some instant after the create
//! started: never older than the create, as the quota promises. When that
//! read fails, every create it served fails the same way (unavailable, full
//! or internal), as its own read would have, at the same moment.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::Reads;
use crate::domain::TenantId;
use crate::store::sql;
use crate::store::{StoreError, StoreResult};

/// Creates whose counts one statement reads at most.
const MAX_ASKS: usize = 256;

const COUNTS: &str = "SELECT tenant, open FROM tenant_sessions WHERE tenant = ANY($1)";
const COUNT: &str = "SELECT open FROM tenant_sessions WHERE tenant = $1";

/// A create's question: its tenant, and where to answer.
struct Ask {
    tenant: TenantId,
    answer: oneshot::Sender<Result<u64, Failed>>,
}

/// How a read of counts failed, for every create it served to fail alike:
/// its kind, and its cause with its sources, as its own read would log it.
#[derive(Debug, Clone)]
enum Failed {
    Unavailable(String),
    Full(String),
    Internal(String),
}

impl Failed {
    fn of(err: &StoreError) -> Self {
        let cause = crate::probe::error_chain(err);
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(cause),
            StoreError::Full(_) => Self::Full(cause),
            _ => Self::Internal(cause),
        }
    }

    fn error(self) -> StoreError {
        match self {
            Self::Unavailable(cause) => StoreError::Unavailable(cause.into()),
            Self::Full(cause) => StoreError::Full(cause.into()),
            Self::Internal(cause) => StoreError::Internal(cause.into()),
        }
    }
}

/// The reader of counts, a task of its own; stops with the store.
#[derive(Debug)]
pub(super) struct TenantCounts {
    asks: mpsc::UnboundedSender<Ask>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TenantCounts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TenantCounts {
    pub(super) fn start(reads: Reads) -> Self {
        let (asks, waiting) = mpsc::unbounded_channel();
        Self { asks, task: tokio::spawn(answer(reads, waiting)) }
    }

    /// Open sessions of `tenant`, as committed at some instant after the call.
    pub(super) async fn open_sessions_of(&self, reads: &Reads, tenant: &TenantId) -> StoreResult<u64> {
        let (answer, answered) = oneshot::channel();
        // A create gives up when its own read would have (the store found
        // unavailable, or its read deadline passed), not when a read
        // started before it gives up.
        let given_up = reads.given_up();
        if self.asks.send(Ask { tenant: tenant.clone(), answer }).is_ok() {
            tokio::select! {
                answer = answered => if let Ok(answer) = answer {
                    return answer.map_err(Failed::error);
                },
                () = given_up => return Err(super::not_committing()),
            }
        }
        // The reader is gone (the store is closing): read alone.
        let rows = reads.query(COUNT, &[&tenant.as_str()]).await?;
        rows.first().map_or(Ok(0), |row| sql::unsigned(row, "open"))
    }
}

/// Answers the asks in turn: each read serves every ask waiting when it
/// starts.
async fn answer(reads: Reads, mut waiting: mpsc::UnboundedReceiver<Ask>) {
    while let Some(first) = waiting.recv().await {
        let mut asks = vec![first];
        while asks.len() < MAX_ASKS
            && let Ok(ask) = waiting.try_recv()
        {
            asks.push(ask);
        }
        let mut tenants: Vec<&str> = asks.iter().map(|ask| ask.tenant.as_str()).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let counts = read(&reads, &tenants).await.map_err(|err| Failed::of(&err));
        for Ask { tenant, answer } in asks {
            let open = counts.as_ref().map(|counts| counts.get(tenant.as_str()).copied().unwrap_or(0));
            // A create that gave up waiting is no one's concern.
            let _ = answer.send(open.map_err(Failed::clone));
        }
    }
}

/// The counts of `tenants` (absent: none open).
async fn read(reads: &Reads, tenants: &[&str]) -> StoreResult<HashMap<String, u64>> {
    let rows = reads.query(COUNTS, &[&tenants]).await?;
    rows.iter().map(|row| Ok((row.try_get::<_, String>("tenant")?, sql::unsigned(row, "open")?))).collect()
}
