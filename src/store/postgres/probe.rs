//! Whether Postgres can commit now: a prober on a connection of its own
//! commits a tiny transaction every [`PROBE_INTERVAL`] and publishes the
//! answer as [`Availability`].
//!
//! A server that stops answering without closing its sockets (its processes
//! stopped, a paused VM, a network partition TCP has not noticed) would
//! otherwise hold every call until the client's deadline, or forever. A
//! probe that does not commit within the connect timeout marks the store
//! unavailable: calls in flight are answered UNAVAILABLE at once (their
//! writes may still commit if the server resumes; a transaction is never
//! half-applied), and health says NOT_SERVING. Calls made while it is
//! unavailable still try, in case it is back before the next probe, but
//! give up after the connect timeout. The first probe that commits again
//! marks it available.
//!
//! The probe is `SELECT txid_current()`: it takes a transaction id, so its
//! commit writes and flushes a WAL record (and waits for a synchronous
//! standby) like any write's. It also reads `transaction_read_only`: a
//! server that stopped taking writes (a primary turned read-only in place,
//! its connections left open) fails the probe like one that does not answer.
//!
//! When the store becomes unavailable, the pool's connections are retired
//! (see `connect`): they reach a server that does not commit, and would be
//! lent to the next calls, which would wait on it in turn. New connections
//! try the hosts afresh, and find the primary wherever it now is.

use std::time::Duration;

use tokio::sync::watch;
use tracing::Level;

use super::connect::{Connector, Retirement};
use crate::telemetry::throttle::{self, Admitted, Cause};

/// How often the prober commits.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Whether the store can commit now. Cheap to clone; clones follow the
/// same prober.
#[derive(Debug, Clone)]
pub struct Availability {
    receiver: watch::Receiver<bool>,
    /// How long a call made while the store is unavailable may try.
    patience: Duration,
}

impl Availability {
    /// Whether the last probe committed.
    pub fn is_available(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes when a call begun now should give up: once the store is
    /// found unavailable, or, when it is already, after the connect
    /// timeout.
    pub async fn given_up(&self) {
        if !self.is_available() {
            return tokio::time::sleep(self.patience).await;
        }
        let mut receiver = self.receiver.clone();
        // The prober stops only with the store; then nothing is lost.
        if receiver.wait_for(|available| !available).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Follows every change, for health reporting.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.receiver.clone()
    }
}

/// The line of a failed probe, logged at debug (and throttled): an outage
/// is logged once, at warn, when the store becomes unavailable.
const FAILED: &str = "the postgres probe failed";

/// Starts the prober; it stops when the returned handle is aborted.
/// Available until a probe says otherwise: the store connected just now.
pub(super) fn start(
    connector: Connector,
    deadline: Duration,
    retirement: Retirement,
) -> (Availability, tokio::task::JoinHandle<()>) {
    let (sender, receiver) = watch::channel(true);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PROBE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut client = None;
        loop {
            ticks.tick().await;
            let committed = match tokio::time::timeout(deadline, probe(&connector, &mut client)).await {
                Ok(Ok(())) => true,
                Ok(Err(Failure::Postgres(err))) => {
                    if let Some(Admitted { repeated }) = throttle::admit(Cause::new(Level::DEBUG, FAILED, "failed")) {
                        tracing::debug!(error = super::described(&err), cause = "failed", repeated, "{FAILED}");
                    }
                    false
                }
                Ok(Err(Failure::ReadOnly)) => {
                    if let Some(Admitted { repeated }) = throttle::admit(Cause::new(Level::DEBUG, FAILED, "read-only"))
                    {
                        tracing::debug!(cause = "read-only", repeated, "{FAILED}: the server takes no writes");
                    }
                    false
                }
                Err(_) => {
                    if let Some(Admitted { repeated }) = throttle::admit(Cause::new(Level::DEBUG, FAILED, "timeout")) {
                        tracing::debug!(?deadline, cause = "timeout", repeated, "{FAILED}: it did not commit in time");
                    }
                    false
                }
            };
            if !committed {
                // A silent connection may never answer again: start afresh.
                client = None;
            }
            let was = sender.send_replace(committed);
            match (was, committed) {
                (true, false) => {
                    tracing::warn!(?deadline, "postgres is not committing: the store is unavailable");
                    retirement.retire("postgres is not committing");
                }
                (false, true) => tracing::info!("postgres commits again: the store is available"),
                _ => {}
            }
        }
    });
    (Availability { receiver, patience: deadline }, task)
}

/// Why a probe did not commit, when it was answered.
enum Failure {
    Postgres(tokio_postgres::Error),
    /// The server answered that it takes no writes.
    ReadOnly,
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Postgres(e)
    }
}

/// Commits one probe transaction, connecting first when needed.
async fn probe(connector: &Connector, client: &mut Option<tokio_postgres::Client>) -> Result<(), Failure> {
    if client.as_ref().is_none_or(tokio_postgres::Client::is_closed) {
        let (connected, connection) = connector.connect().await?;
        tokio::spawn(async move {
            // Ends with the client; its error shows as the next probe's.
            let _ = connection.await;
        });
        *client = Some(connected);
    }
    let client = client.as_ref().expect("connected just above");
    let answers = client.simple_query("SELECT txid_current(), current_setting('transaction_read_only')").await?;
    let read_only = answers.iter().any(|answer| match answer {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(1) == Some("on"),
        _ => false,
    });
    if read_only { Err(Failure::ReadOnly) } else { Ok(()) }
}
