//! `storage-cas`: a counter in each of 8 sessions that every caller
//! increments, by GetStorage then PutStorage with `expected_version`,
//! re-reading and retrying on ABORTED. One call is one applied increment.
//!
//! At the end the counters must sum to the increments sessiond
//! acknowledged, warm-up included; a PutStorage that failed otherwise than
//! ABORTED may or may not have applied, so it widens the range allowed. A
//! sum outside it is a MISMATCH: a lost or invented write.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost_types::Value;
use prost_types::value::Kind;
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use sessiond_api::v1::storage_service_client::StorageServiceClient;
use sessiond_api::v1::{CreateSessionRequest, GetStorageRequest, PutStorageRequest};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::sessions::{by_token, create_all, web_user};
use super::{Context, Scenario};
use crate::load::{Caller, Outcome};
use crate::report::LoadReport;

/// Sessions every caller shares: few, so that writes conflict.
const SESSIONS: usize = 8;
const KEY: &str = "counter";

fn number(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

/// A pool session whose storage starts with the counter at zero.
fn with_counter(i: usize) -> CreateSessionRequest {
    CreateSessionRequest { storage: HashMap::from([(KEY.to_owned(), number(0.0))]), ..web_user(i) }
}

/// Acknowledged and uncertain increments, over every phase of the run.
#[derive(Debug, Default)]
struct Tally {
    applied: AtomicU64,
    uncertain: AtomicU64,
}

struct CasCaller {
    client: StorageServiceClient<Channel>,
    tokens: Arc<[String]>,
    tally: Arc<Tally>,
    rng: SmallRng,
}

impl CasCaller {
    async fn read(&mut self, token: &str) -> Result<(f64, u64), Status> {
        let request = GetStorageRequest { session: by_token(token), keys: vec![KEY.into()] };
        let storage = self.client.get_storage(request).await?.into_inner();
        match storage.values.get(KEY).and_then(|v| v.kind.as_ref()) {
            Some(Kind::NumberValue(n)) => Ok((*n, storage.version)),
            _ => Err(Status::internal("the counter is missing or not a number")),
        }
    }
}

impl Caller for CasCaller {
    async fn call(&mut self) -> Result<Outcome, Status> {
        let token = self.tokens[self.rng.random_range(0..self.tokens.len())].clone();
        let mut retries = 0;
        loop {
            let (counter, version) = self.read(&token).await?;
            let request = PutStorageRequest {
                session: by_token(&token),
                values: HashMap::from([(KEY.to_owned(), number(counter + 1.0))]),
                expected_version: Some(version),
            };
            match self.client.put_storage(request).await {
                Ok(_) => {
                    self.tally.applied.fetch_add(1, Ordering::Relaxed);
                    return Ok(Outcome { units: 1, retries });
                }
                Err(status) if status.code() == Code::Aborted => retries += 1,
                Err(status) => {
                    self.tally.uncertain.fetch_add(1, Ordering::Relaxed);
                    return Err(status);
                }
            }
        }
    }
}

/// Starts sessiond, creates the shared counters, measures, and checks them.
pub async fn run(ctx: &Context) -> anyhow::Result<LoadReport> {
    let mut server = ctx.launcher.sessiond(&[]).await?;
    let channels = server.channels(ctx.plan.connections).await?;
    let tokens: Arc<[String]> = create_all(ctx, &channels, SESSIONS, with_counter).await?.into();
    let tally = Arc::new(Tally::default());
    let mut report = ctx
        .measure_load(Scenario::StorageCas, &mut server, &channels, |i, channel| CasCaller {
            client: StorageServiceClient::new(channel),
            tokens: tokens.clone(),
            tally: tally.clone(),
            rng: SmallRng::seed_from_u64(i as u64),
        })
        .await?;

    let mut checker = CasCaller {
        client: StorageServiceClient::new(channels[0].clone()),
        tokens: tokens.clone(),
        tally: tally.clone(),
        rng: SmallRng::seed_from_u64(0),
    };
    let mut sum = 0.0;
    for token in tokens.iter() {
        sum += checker
            .read(token)
            .await
            .map_err(|s| anyhow::anyhow!("reading a counter: {}", crate::load::describe(&s)))?
            .0;
    }
    let sum = sum as u64;
    let applied = tally.applied.load(Ordering::Relaxed);
    let uncertain = tally.uncertain.load(Ordering::Relaxed);

    let s = &report.summary;
    let attempts = s.units + s.retries;
    let aborted = if attempts == 0 { 0.0 } else { 100.0 * s.retries as f64 / attempts as f64 };
    report.unit = Some("increments");
    report.notes.push(format!("{aborted:.1}% of writes aborted"));
    match check_counters(sum, applied, uncertain) {
        Ok(()) => report.notes.push(format!("counters verified ({sum})")),
        Err(why) => report.mismatch = Some(why),
    }
    Ok(report)
}

/// The counters must sum to the acknowledged increments, plus at most the
/// uncertain ones.
fn check_counters(sum: u64, applied: u64, uncertain: u64) -> Result<(), String> {
    if (applied..=applied + uncertain).contains(&sum) {
        Ok(())
    } else {
        Err(format!("the counters sum to {sum}, but {applied} increments were acknowledged ({uncertain} uncertain)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_invented_increment_is_a_mismatch() {
        assert!(check_counters(10, 10, 0).is_ok());
        assert!(check_counters(11, 10, 1).is_ok());
        assert!(check_counters(9, 10, 0).is_err());
        assert!(check_counters(12, 10, 1).is_err());
    }
}
