//! Channel messages across two replicas on one Postgres database: global
//! messages reach every replica's subscribers (large ones through the
//! `messages` table), local ones only their own replica's; a session
//! channel followed on one replica ends when the session is revoked on the
//! other; a subscriber resuming on a restarted replica receives every
//! message of the window exactly once while both replicas keep posting;
//! and posts made at once (committed together) are numbered without gaps,
//! each answered with the sequence its message carries.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/postgres.rs"]
mod postgres_support;

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use fixtures::PATIENCE;
use helpers::{TestApp, number, text};
use postgres_support::fresh_database;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::pb::message_service_client::MessageServiceClient;
use sessiond::pb::subscribe_response::Item;
use tonic::Streaming;
use tonic::transport::Channel;

type Items = Streaming<pb::SubscribeResponse>;

async fn two_replicas() -> (TestApp, TestApp) {
    let mut a = TestApp::spawn_on(fresh_database().await, |_| {}).await;
    let mut b = a.replica().await;
    following(&mut a, &mut b).await;
    following(&mut b, &mut a).await;
    (a, b)
}

/// Waits until `follower` receives what `poster` posts: a replica listens for other
/// replicas' messages from a moment after it starts.
async fn following(poster: &mut TestApp, follower: &mut TestApp) {
    let mut items = subscribe(&mut follower.messages, from("ready", None)).await;
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        poster.messages.post(post("ready", number(0.0), pb::MessageScope::Global)).await.expect("posted");
        if let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_millis(200), items.message()).await {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the replicas never followed each other");
    }
}

fn from(channel: &str, after_sequence: Option<u64>) -> pb::SubscribeRequest {
    pb::SubscribeRequest { channels: vec![pb::ChannelSubscription { channel: channel.into(), after_sequence }] }
}

async fn subscribe(client: &mut MessageServiceClient<Channel>, request: pb::SubscribeRequest) -> Items {
    let mut items = client.subscribe(request).await.expect("subscribed").into_inner();
    match next(&mut items).await {
        Item::Subscribed(_) => items,
        other => panic!("the first item is Subscribed, not {other:?}"),
    }
}

async fn next(items: &mut Items) -> Item {
    let item = tokio::time::timeout(PATIENCE, items.message()).await.expect("an item in time");
    item.expect("the stream goes on").expect("the stream has not ended").item.expect("an item")
}

async fn next_message(items: &mut Items) -> pb::ChannelMessage {
    match next(items).await {
        Item::Message(message) => message,
        other => panic!("a message, not {other:?}"),
    }
}

fn post(channel: &str, payload: prost_types::Value, scope: pb::MessageScope) -> pb::PostRequest {
    pb::PostRequest { channel: channel.into(), payload: Some(payload), type_name: String::new(), scope: scope.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_message_reaches_every_replica_and_a_local_one_only_its_own() {
    let (mut a, mut b) = two_replicas().await;
    let mut on_a = subscribe(&mut a.messages, from("room", None)).await;
    let mut on_b = subscribe(&mut b.messages, from("room", None)).await;

    let posted = a.messages.post(post("room", number(1.0), pb::MessageScope::Global)).await.expect("posted");
    assert_eq!(posted.into_inner().sequence, 1);
    for items in [&mut on_a, &mut on_b] {
        let message = next_message(items).await;
        assert_eq!((message.sequence, message.scope), (1, i32::from(pb::MessageScope::Global)));
    }

    let local = b.messages.post(post("room", number(2.0), pb::MessageScope::Local)).await.expect("posted");
    assert_eq!(local.into_inner().local_deliveries, 1);
    assert_eq!(next_message(&mut on_b).await.sequence, 0, "B's subscriber gets B's local message");

    // Larger than a notification carries: announced by its key, read from
    // the table by A.
    let large = "z".repeat(20_000);
    b.messages.post(post("room", text(&large), pb::MessageScope::Global)).await.expect("posted");
    for items in [&mut on_a, &mut on_b] {
        let message = next_message(items).await;
        assert_eq!(message.sequence, 2, "A never saw B's local message: its next is the large one");
        assert_eq!(message.payload, Some(text(&large)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_channel_followed_on_one_replica_ends_when_the_session_is_revoked_on_the_other() {
    let (mut a, mut b) = two_replicas().await;
    let created = a.create(Kind::WebUser, "alice").await;
    let id = created.session.expect("a session").session_id;
    let channel = format!("session:{id}");
    let mut bound = subscribe(&mut b.messages, from(&channel, None)).await;

    a.messages.post(post(&channel, number(1.0), pb::MessageScope::Global)).await.expect("posted on A");
    assert_eq!(next_message(&mut bound).await.sequence, 1, "a message for alice's session reaches B");

    a.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() })
        .await
        .expect("revoked on A");
    match next(&mut bound).await {
        Item::SessionEnded(ended) => {
            assert_eq!((ended.session_id.as_str(), ended.ends_subscription), (id.as_str(), true));
            assert_eq!(ended.end_reason, i32::from(pb::EndReason::Revoked));
        }
        other => panic!("the session's end, not {other:?}"),
    }
    let end = tokio::time::timeout(PATIENCE, bound.message()).await.expect("the stream ends in time");
    assert!(matches!(end, Ok(None)), "B's subscription ends: {end:?}");
}

/// Posts up to `count` numbered messages to `channel`, one after the
/// other, until one fails (its replica stopped); answers how many were
/// acknowledged.
fn poster(app: &TestApp, channel: &'static str, count: u32) -> tokio::task::JoinHandle<u32> {
    let mut messages = app.messages.clone();
    tokio::spawn(async move {
        for n in 0..count {
            if messages.post(post(channel, number(f64::from(n)), pb::MessageScope::Global)).await.is_err() {
                return n;
            }
        }
        count
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resuming_on_a_restarted_replica_gets_every_message_exactly_once() {
    let (mut a, b) = two_replicas().await;
    let mut live = subscribe(&mut a.messages, from("feed", None)).await;

    // Both replicas post at once: the subscriber on A sees one gapless
    // sequence, A's own messages and B's merged.
    let (from_a, from_b) = (poster(&a, "feed", 40), poster(&b, "feed", 40));
    let mut seen = Vec::new();
    for _ in 0..30 {
        seen.push(next_message(&mut live).await.sequence);
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
    drop(live);

    // B restarts while both keep posting; the subscriber resumes on the new B.
    let home = b.stop().await;
    from_b.await.expect("B's poster ends, with B stopped or before");
    let mut b = TestApp::start(home).await;
    following(&mut a, &mut b).await;
    let more_b = poster(&b, "feed", 20);
    let mut resumed = subscribe(&mut b.messages, from("feed", Some(30))).await;
    assert_eq!(from_a.await.expect("A's poster ends"), 40);
    assert_eq!(more_b.await.expect("B's poster ends"), 20);
    let total = a.messages.post(post("feed", number(-1.0), pb::MessageScope::Global)).await.expect("posted");
    let last = total.into_inner().sequence;

    let mut after = Vec::new();
    while after.last() != Some(&last) {
        after.push(next_message(&mut resumed).await.sequence);
    }
    assert_eq!(after, (31..=last).collect::<Vec<_>>(), "every message of the window once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_made_at_once_are_numbered_without_gaps_and_each_answered_with_its_own_sequence() {
    let (a, mut b) = two_replicas().await;
    let mut burst = subscribe(&mut b.messages, from("burst", None)).await;
    let mut other = subscribe(&mut b.messages, from("other", None)).await;

    // Posts made together, to two channels, some too large to travel in a
    // notification: they are committed while others wait, several in one
    // transaction.
    let mut posting = tokio::task::JoinSet::new();
    for n in 0..60u32 {
        let mut messages = a.messages.clone();
        let channel = if n % 6 == 5 { "other" } else { "burst" };
        let payload = if n % 20 == 7 { text(&format!("{n}:{}", "z".repeat(9_000))) } else { text(&n.to_string()) };
        posting.spawn(async move {
            let posted = messages.post(post(channel, payload, pb::MessageScope::Global)).await.expect("posted");
            (channel, n, posted.into_inner().sequence)
        });
    }
    let mut answered = std::collections::HashMap::new();
    while let Some(done) = posting.join_next().await {
        let (channel, n, sequence) = done.expect("a poster");
        assert!(answered.insert((channel, sequence), n).is_none(), "{channel} sequence {sequence} answered twice");
    }
    for (channel, items, count) in [("burst", &mut burst, 50), ("other", &mut other, 10)] {
        let mut sequences: Vec<u64> =
            answered.keys().filter(|(to, _)| *to == channel).map(|(_, sequence)| *sequence).collect();
        sequences.sort_unstable();
        assert_eq!(sequences, (1..=count).collect::<Vec<_>>(), "{channel}: numbered from 1 without gaps");
        for sequence in 1..=count {
            let message = next_message(items).await;
            assert_eq!(message.sequence, sequence, "{channel}: B receives them in sequence order");
            let Some(prost_types::value::Kind::StringValue(payload)) = message.payload.and_then(|p| p.kind) else {
                panic!("a text payload")
            };
            let n = answered[&(channel, sequence)];
            assert!(
                payload == n.to_string() || payload.starts_with(&format!("{n}:")),
                "{channel} {sequence}: post {n}"
            );
        }
    }
}
