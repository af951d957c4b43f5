//! Baselines: what a scenario is compared with, measured in the same run,
//! by the same loader, at the same concurrency, so that the ratio says what
//! sessiond adds rather than what the machine is.
//!
//! To compare with another baseline (a Postgres INSERT for the durable
//! writes, say): add a variant, its `name` and its `measure` (starting its
//! server as a child, as [`crate::server`] does), and list it in
//! [`crate::scenarios::Scenario::baselines`] of the scenarios it fits. The
//! report grows a pair of ratio columns per variant by itself.

use crate::report::LoadReport;
use crate::scenarios::{self, Context};
use crate::stats::Summary;

/// A reference measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// A bare tonic unary echo on sessiond's server stack: the floor of any
    /// unary call through tonic, h2 and the loopback on this machine.
    Echo,
    /// Single-row INSERTs of a session-sized row straight into the same
    /// Postgres: what a service gets writing Postgres itself.
    PostgresInsert,
}

impl Baseline {
    /// Every baseline, in the order the report shows them.
    pub const ALL: [Baseline; 2] = [Baseline::Echo, Baseline::PostgresInsert];

    pub fn name(self) -> &'static str {
        match self {
            Baseline::Echo => "echo",
            Baseline::PostgresInsert => "postgres-insert",
        }
    }

    /// Measures the baseline under the run's load.
    pub async fn measure(self, ctx: &Context) -> anyhow::Result<LoadReport> {
        match self {
            Baseline::Echo => scenarios::echo::run(ctx).await,
            Baseline::PostgresInsert => scenarios::postgres_insert::run(ctx).await,
        }
    }
}

/// A scenario's figures divided by its baseline's.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub baseline: Baseline,
    /// Scenario calls/s ÷ baseline calls/s: below 1 is slower.
    pub calls_per_sec: f64,
    /// Scenario p99 ÷ baseline p99: above 1 is slower.
    pub p99: f64,
}

impl Ratio {
    pub fn between(baseline: Baseline, scenario: &Summary, reference: &Summary) -> Self {
        Self {
            baseline,
            calls_per_sec: scenario.calls_per_sec / reference.calls_per_sec,
            p99: scenario.p99.as_secs_f64() / reference.p99.as_secs_f64(),
        }
    }
}
