//! `fan-out`: one publisher, 100 subscribers of one channel; the time from
//! a post being sent to each subscriber receiving it (p50/p99/max), and
//! deliveries per second from the first post to the last delivery, and
//! the CPU time the servers and this loader spent per delivery over that
//! window. The
//! publisher posts one message after the other, each once the previous
//! was acknowledged; every message carries its send time.
//!
//! - `global`: two sessiond replicas on the run's Postgres, 50 subscribers
//!   on each, the publisher on the first (MESSAGE_SCOPE_GLOBAL);
//! - `global, 16 publishers`: the same with the messages posted by 16
//!   publishers at once (each posting one after the other), on another
//!   channel: posts made together share a commit;
//! - `local`: one sessiond, 100 subscribers, MESSAGE_SCOPE_LOCAL;
//! - `redis`: the anchor, Redis PUBLISH/SUBSCRIBE on the same machine
//!   (`redis-server` from the PATH; skipped when missing).
//!
//! Then the correctness check: the second replica is killed and started
//! again, and a subscriber resuming on it from sequence 0 must receive
//! every message of the window exactly once, in order, then the next live
//! one. A miss or a duplicate fails the run. Needs `--database-url`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sessiond_api::v1::message_service_client::MessageServiceClient;
use sessiond_api::v1::subscribe_response::Item;
use sessiond_api::v1::{ChannelSubscription, MessageScope, PostRequest, SubscribeRequest};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::Context;
use crate::procfs::Process;
use crate::redis::{Connection, RedisServer, Reply};
use crate::report::{FanOutReport, FanOutRow};

const SUBSCRIBERS: usize = 100;
/// HTTP/2 connections the subscribers of one replica share.
const CONNECTIONS_PER_REPLICA: usize = 5;
/// Longest a phase may take before the run fails.
const GIVE_UP: Duration = Duration::from_secs(120);
/// Publishers posting at once in the `global, 16 publishers` phase.
const MANY_PUBLISHERS: usize = 16;

/// Flags of the sessiond replicas: the one publisher may post as fast as it
/// can, and no subscriber is cut off while the loader catches up.
const FLAGS: [&str; 4] = ["--message-post-rate", "1000000", "--message-subscriber-buffer", "1000000"];

/// What each subscriber measured: a latency per message, in microseconds,
/// and when it received its last one.
struct Received {
    latencies: Vec<u64>,
    last_at: Instant,
}

fn micros_since(origin: Instant) -> u64 {
    origin.elapsed().as_micros() as u64
}

pub async fn run(ctx: &Context) -> anyhow::Result<FanOutReport> {
    let Some(url) = ctx.plan.database_url.as_deref() else {
        return Ok(FanOutReport { rows: Vec::new(), resume: None, skipped: Some("no --database-url".into()) });
    };
    let messages = if ctx.plan.quick { 100 } else { 2_000 };
    let mut flags: Vec<&str> = vec!["--database-url", url];
    flags.extend(FLAGS);
    let a = ctx.launcher.sessiond(&flags).await?;
    let b = ctx.launcher.sessiond(&flags).await?;
    let (on_a, on_b) = (a.channels(CONNECTIONS_PER_REPLICA).await?, b.channels(CONNECTIONS_PER_REPLICA).await?);
    let mut rows = Vec::new();

    let spread: Vec<Channel> = on_a.iter().chain(&on_b).cloned().collect();
    rows.push(
        sessiond_phase(
            "sessiond global, 2 replicas",
            &[a.process(), b.process()],
            &spread,
            &on_a[0],
            "bench/global",
            MessageScope::Global,
            (messages, 1),
        )
        .await?,
    );
    rows.push(
        sessiond_phase(
            "sessiond global, 2 replicas, 16 publishers",
            &[a.process(), b.process()],
            &spread,
            &on_a[0],
            "bench/global-many",
            MessageScope::Global,
            (messages, MANY_PUBLISHERS),
        )
        .await?,
    );

    let local = ctx.launcher.sessiond(&FLAGS).await?;
    let on_local = local.channels(CONNECTIONS_PER_REPLICA * 2).await?;
    rows.push(
        sessiond_phase(
            "sessiond local, 1 replica",
            &[local.process()],
            &on_local,
            &on_local[0],
            "bench/local",
            MessageScope::Local,
            (messages, 1),
        )
        .await?,
    );
    drop(local);

    let redis_note = match RedisServer::start().await? {
        Some(redis) => {
            rows.push(redis_phase(&redis, messages).await?);
            None
        }
        None => Some("redis-server not found: no anchor"),
    };

    // Restart B and resume there from 0: the window holds every message.
    drop(b);
    let b = ctx.launcher.sessiond(&flags).await?;
    let resume = resume_check(&b.channels(1).await?[0], &on_a[0], messages as u64).await?;
    Ok(FanOutReport { rows, resume: Some(resume), skipped: redis_note.map(String::from) })
}

/// CPU time used so far by `servers` and by this loader.
fn cpu_times(servers: &[Process]) -> anyhow::Result<(Duration, Duration)> {
    let mut server = Duration::ZERO;
    for process in servers {
        server += process.cpu_time()?;
    }
    Ok((server, Process::This.cpu_time()?))
}

async fn sessiond_phase(
    name: &str,
    servers: &[Process],
    subscribers: &[Channel],
    publisher: &Channel,
    channel: &str,
    scope: MessageScope,
    (messages, publishers): (usize, usize),
) -> anyhow::Result<FanOutRow> {
    let origin = Instant::now();
    let mut tasks = JoinSet::new();
    let (ready, mut readiness) = tokio::sync::mpsc::channel::<()>(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        let mut client = MessageServiceClient::new(subscribers[i % subscribers.len()].clone());
        let request =
            SubscribeRequest { channels: vec![ChannelSubscription { channel: channel.into(), after_sequence: None }] };
        let ready = ready.clone();
        tasks.spawn(async move {
            let mut items = client.subscribe(request).await?.into_inner();
            let mut latencies = Vec::with_capacity(messages);
            let mut last_at = Instant::now();
            while latencies.len() < messages {
                match items.message().await?.and_then(|m| m.item) {
                    Some(Item::Subscribed(_)) => {
                        let _ = ready.send(()).await;
                    }
                    Some(Item::Message(message)) => {
                        let sent = message.payload.and_then(|p| match p.kind {
                            Some(prost_types::value::Kind::NumberValue(n)) => Some(n as u64),
                            _ => None,
                        });
                        let now = micros_since(origin);
                        latencies.push(now.saturating_sub(sent.unwrap_or(now)));
                        last_at = Instant::now();
                    }
                    other => bail!("unexpected item {other:?}"),
                }
            }
            Ok::<_, anyhow::Error>(Received { latencies, last_at })
        });
    }
    drop(ready);
    // Every subscriber in place, or the first one's failure (a refused
    // subscription ends its task before it is ready).
    let subscribed = async {
        for _ in 0..SUBSCRIBERS {
            tokio::select! {
                ready = readiness.recv() => ready.context("a subscriber failed before it was in place")?,
                Some(ended) = tasks.join_next() => {
                    ended.context("a subscriber panicked")??;
                    bail!("a subscriber ended before it was in place");
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(GIVE_UP, subscribed).await.context("subscribers not in place")??;
    let cpu = cpu_times(servers)?;
    let started = Instant::now();
    let mut posting = JoinSet::new();
    for p in 0..publishers {
        let mut client = MessageServiceClient::new(publisher.clone());
        let (channel, count) = (channel.to_owned(), messages / publishers + usize::from(p < messages % publishers));
        posting.spawn(async move {
            for _ in 0..count {
                let payload = prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(micros_since(origin) as f64)),
                };
                let request = PostRequest {
                    channel: channel.clone(),
                    payload: Some(payload),
                    type_name: String::new(),
                    scope: scope.into(),
                };
                client.post(request).await?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(posted) = posting.join_next().await {
        posted.context("a publisher panicked")??;
    }
    let posted_in = started.elapsed();
    collect(name, tasks, Window { started, posted_in, servers, cpu }, messages).await
}

async fn redis_phase(redis: &RedisServer, messages: usize) -> anyhow::Result<FanOutRow> {
    let origin = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..SUBSCRIBERS {
        let mut connection = Connection::open(redis.addr).await?;
        connection.command(&[b"SUBSCRIBE", b"bench"]).await?;
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            let mut last_at = Instant::now();
            while latencies.len() < messages {
                let Reply::Array(items) = connection.reply().await? else { bail!("not a pushed message") };
                let Some(Reply::Bulk(Some(payload))) = items.get(2) else { bail!("a message without payload") };
                let sent: u64 = std::str::from_utf8(payload)?.parse()?;
                latencies.push(micros_since(origin).saturating_sub(sent));
                last_at = Instant::now();
            }
            Ok::<_, anyhow::Error>(Received { latencies, last_at })
        });
    }
    let mut publisher = Connection::open(redis.addr).await?;
    let servers = [redis.process()];
    let cpu = cpu_times(&servers)?;
    let started = Instant::now();
    for _ in 0..messages {
        let sent = micros_since(origin).to_string();
        match publisher.command(&[b"PUBLISH", b"bench", sent.as_bytes()]).await? {
            Reply::Integer(n) if n as usize == SUBSCRIBERS => {}
            other => bail!("PUBLISH reached {other:?} subscribers, not {SUBSCRIBERS}"),
        }
    }
    let posted_in = started.elapsed();
    collect("redis PUBLISH/SUBSCRIBE", tasks, Window { started, posted_in, servers: &servers, cpu }, messages).await
}

/// A phase's measured window: from the first post, with the CPU times
/// read then.
struct Window<'a> {
    started: Instant,
    posted_in: Duration,
    servers: &'a [Process],
    cpu: (Duration, Duration),
}

async fn collect(
    name: &str,
    mut tasks: JoinSet<anyhow::Result<Received>>,
    window: Window<'_>,
    messages: usize,
) -> anyhow::Result<FanOutRow> {
    let Window { started, posted_in, servers, cpu } = window;
    let mut latencies = Vec::with_capacity(messages * SUBSCRIBERS);
    let mut last = started;
    let collected = async {
        while let Some(joined) = tasks.join_next().await {
            let received = joined.context("a subscriber panicked")??;
            latencies.extend(received.latencies);
            last = last.max(received.last_at);
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(GIVE_UP, collected).await.context("subscribers still waiting")??;
    let (server_cpu, loader_cpu) = cpu_times(servers)?;
    latencies.sort_unstable();
    let micros = |q: f64| Duration::from_micros(latencies[((latencies.len() - 1) as f64 * q) as usize]);
    let deliveries = latencies.len();
    Ok(FanOutRow {
        name: name.to_owned(),
        messages,
        deliveries,
        p50: micros(0.5),
        p99: micros(0.99),
        max: micros(1.0),
        deliveries_per_sec: deliveries as f64 / last.duration_since(started).as_secs_f64(),
        posts_per_sec: messages as f64 / posted_in.as_secs_f64(),
        server_cpu_per_delivery: server_cpu.saturating_sub(cpu.0) / deliveries as u32,
        loader_cpu_per_delivery: loader_cpu.saturating_sub(cpu.1) / deliveries as u32,
    })
}

/// Subscribes on the restarted replica from sequence 0: every message of
/// the window once, in order, then a live one posted on the other replica.
async fn resume_check(restarted: &Channel, publisher: &Channel, posted: u64) -> anyhow::Result<String> {
    let channel = "bench/global";
    let mut client = MessageServiceClient::new(restarted.clone());
    let request =
        SubscribeRequest { channels: vec![ChannelSubscription { channel: channel.into(), after_sequence: Some(0) }] };
    let mut items = client.subscribe(request).await?.into_inner();
    let mut sequences = Vec::new();
    let mut poster = MessageServiceClient::new(publisher.clone());
    let collected = async {
        while sequences.len() < posted as usize + 1 {
            match items.message().await?.and_then(|m| m.item) {
                Some(Item::Subscribed(_)) => {}
                Some(Item::Message(message)) => {
                    sequences.push(message.sequence);
                    if sequences.len() == posted as usize {
                        let payload = prost_types::Value { kind: Some(prost_types::value::Kind::NullValue(0)) };
                        let request = PostRequest {
                            channel: channel.into(),
                            payload: Some(payload),
                            type_name: String::new(),
                            scope: MessageScope::Global.into(),
                        };
                        poster.post(request).await?;
                    }
                }
                other => bail!("unexpected item {other:?}"),
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(GIVE_UP, collected).await.context("the resumed subscriber is still waiting")??;
    let expected: Vec<u64> = (1..=posted + 1).collect();
    if sequences != expected {
        let duplicates = sequences.len() - sequences.iter().collect::<std::collections::BTreeSet<_>>().len();
        bail!(
            "resume after a replica restart: {} messages, {duplicates} duplicated, expected 1..={}",
            sequences.len(),
            posted + 1
        );
    }
    Ok(format!(
        "resume after a replica restart: all {posted} kept messages once, in order, then the next live one (OK)"
    ))
}
