//! Channel messages on one server: posts reach every subscriber in
//! sequence order, session channels end with their session, a subscriber
//! resumes without gap or duplicate (across a restart too), a slow one is
//! cut off without holding the others back, tenants never meet, and bad
//! input is refused naming its field. (Across replicas: tests/replicas.rs.)

use std::time::Duration;

use sessiond::auth::{generate_key, hash_key};
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::pb::message_service_client::MessageServiceClient;
use sessiond::pb::subscribe_response::Item;
use tonic::transport::Channel;
use tonic::{Code, Streaming};
use tonic_types::StatusExt as _;

use crate::helpers::{TestApp, bad_fields, error_metadata, error_reason, failure, number, text, with_key};

/// Longest a test waits for something that should take milliseconds.
const PATIENCE: Duration = Duration::from_secs(10);

type Items = Streaming<pb::SubscribeResponse>;

fn from(channels: &[(&str, Option<u64>)]) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        channels: channels
            .iter()
            .map(|(channel, after)| pb::ChannelSubscription { channel: (*channel).into(), after_sequence: *after })
            .collect(),
    }
}

/// Subscribes and waits until the subscription is in place.
pub async fn subscribe(
    client: &mut MessageServiceClient<Channel>,
    request: impl tonic::IntoRequest<pb::SubscribeRequest>,
) -> Items {
    let mut items = client.subscribe(request).await.expect("subscribed").into_inner();
    match next(&mut items).await {
        Item::Subscribed(_) => items,
        other => panic!("the first item is Subscribed, not {other:?}"),
    }
}

/// The next item, within [`PATIENCE`].
pub async fn next(items: &mut Items) -> Item {
    let item = tokio::time::timeout(PATIENCE, items.message()).await.expect("an item in time");
    item.expect("the stream goes on").expect("the stream has not ended").item.expect("an item")
}

/// The next item's message.
pub async fn next_message(items: &mut Items) -> pb::ChannelMessage {
    match next(items).await {
        Item::Message(message) => message,
        other => panic!("a message, not {other:?}"),
    }
}

fn post(channel: &str, n: f64) -> pb::PostRequest {
    pb::PostRequest { channel: channel.into(), payload: Some(number(n)), ..Default::default() }
}

fn payload_number(message: &pb::ChannelMessage) -> f64 {
    crate::helpers::as_number(message.payload.as_ref().expect("a payload"))
}

#[tokio::test]
async fn a_post_reaches_every_subscriber_in_sequence_order_and_local_ones_are_not_numbered() {
    let mut app = TestApp::spawn().await;
    let mut first = subscribe(&mut app.messages, from(&[("chat/room-1", None)])).await;
    let mut second = subscribe(&mut app.messages, from(&[("chat/room-1", None), ("other", None)])).await;

    for n in 1..=3 {
        let request = pb::PostRequest { type_name: "chat.Line".into(), ..post("chat/room-1", f64::from(n)) };
        let posted = app.messages.post(request).await.expect("posted").into_inner();
        assert_eq!((posted.sequence, posted.local_deliveries), (u64::from(n as u32), 2));
    }
    let local = pb::PostRequest { scope: pb::MessageScope::Local.into(), ..post("chat/room-1", 4.0) };
    assert_eq!(app.messages.post(local).await.expect("posted").into_inner().sequence, 0, "local: not numbered");

    for items in [&mut first, &mut second] {
        for n in 1..=3u64 {
            let message = next_message(items).await;
            assert_eq!((message.channel.as_str(), message.sequence), ("chat/room-1", n));
            assert_eq!((payload_number(&message), message.type_name.as_str()), (n as f64, "chat.Line"));
            assert_eq!(message.scope, i32::from(pb::MessageScope::Global));
        }
        let local = next_message(items).await;
        assert_eq!((local.sequence, local.scope), (0, i32::from(pb::MessageScope::Local)));
    }
}

#[tokio::test]
async fn a_session_channel_ends_with_its_session_and_the_user_channel_is_told() {
    let mut app = TestApp::spawn().await;
    let created = app.create(Kind::WebUser, "alice").await;
    let id = created.session.expect("a session").session_id;
    let session_channel = format!("session:{id}");
    let mut bound = subscribe(&mut app.messages, from(&[(session_channel.as_str(), None)])).await;
    let mut user = subscribe(&mut app.messages, from(&[("user:alice", None)])).await;

    app.messages.post(post(&session_channel, 1.0)).await.expect("posted to an open session's channel");
    assert_eq!(next_message(&mut bound).await.sequence, 1);

    app.sessions
        .revoke_sessions(pb::RevokeSessionsRequest { user_id: "alice".into(), ..Default::default() })
        .await
        .expect("revoked");
    match next(&mut bound).await {
        Item::SessionEnded(ended) => {
            assert_eq!((ended.session_id.as_str(), ended.ends_subscription), (id.as_str(), true));
            assert_eq!(ended.end_reason, i32::from(pb::EndReason::Revoked));
        }
        other => panic!("the session's end, not {other:?}"),
    }
    let end = tokio::time::timeout(PATIENCE, bound.message()).await.expect("the stream ends in time");
    assert!(matches!(end, Ok(None)), "the subscription ends with OK: {end:?}");
    match next(&mut user).await {
        Item::SessionEnded(ended) => assert!(!ended.ends_subscription, "a user channel goes on"),
        other => panic!("the session's end, not {other:?}"),
    }

    let refused = failure(app.messages.post(post(&session_channel, 2.0)).await);
    assert_eq!(
        (refused.code(), error_reason(&refused).as_deref()),
        (Code::FailedPrecondition, Some("SESSION_REVOKED"))
    );
    let refused = failure(app.messages.subscribe(from(&[(session_channel.as_str(), None)])).await);
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let unknown = format!("session:{}", "0".repeat(32));
    let refused = failure(app.messages.subscribe(from(&[(unknown.as_str(), None)])).await);
    assert_eq!((refused.code(), error_reason(&refused).as_deref()), (Code::NotFound, Some("SESSION_NOT_FOUND")));
}

#[tokio::test]
async fn a_subscriber_resuming_after_a_restart_gets_every_kept_message_once_then_live_ones() {
    let mut app = TestApp::spawn().await;
    for n in 1..=5 {
        app.messages.post(post("feed", f64::from(n))).await.expect("posted");
    }
    let mut resumed = subscribe(&mut app.messages, from(&[("feed", Some(2))])).await;
    for n in 3..=5 {
        assert_eq!(next_message(&mut resumed).await.sequence, n);
    }
    drop(resumed);

    let mut app = app.restart().await;
    app.messages.post(post("feed", 6.0)).await.expect("posted after the restart");
    let mut resumed = subscribe(&mut app.messages, from(&[("feed", Some(4))])).await;
    app.messages.post(post("feed", 7.0)).await.expect("posted while resuming");
    let received: Vec<u64> =
        [next_message(&mut resumed).await, next_message(&mut resumed).await, next_message(&mut resumed).await]
            .iter()
            .map(|m| m.sequence)
            .collect();
    assert_eq!(received, [5, 6, 7], "no gap, no duplicate, numbering carried on");
    app.messages.post(post("feed", 8.0)).await.expect("posted");
    assert_eq!(next_message(&mut resumed).await.sequence, 8);
}

#[tokio::test]
async fn a_cursor_beyond_the_channel_or_older_than_the_window_is_out_of_range() {
    let mut app = TestApp::spawn_with(|s| s.messages.message_replay_window = Duration::from_secs(2)).await;
    for n in 1..=3 {
        app.messages.post(post("feed", f64::from(n))).await.expect("posted");
    }
    let ahead = failure(app.messages.subscribe(from(&[("feed", Some(9))])).await);
    assert_eq!((ahead.code(), error_reason(&ahead).as_deref()), (Code::OutOfRange, Some("CURSOR_AHEAD")));
    assert_eq!(error_metadata(&ahead, "latest_sequence").as_deref(), Some("3"));
    assert_eq!(error_metadata(&ahead, "channel").as_deref(), Some("feed"));
    subscribe(&mut app.messages, from(&[("feed", Some(3))])).await;

    // Past the window, the purge (every second) removes the three.
    app.advance(Duration::from_secs(3));
    let deadline = std::time::Instant::now() + PATIENCE;
    let expired = loop {
        match app.messages.subscribe(from(&[("feed", Some(1))])).await {
            Err(status) => break status,
            Ok(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(_) => panic!("messages older than the window are still kept"),
        }
    };
    assert_eq!((expired.code(), error_reason(&expired).as_deref()), (Code::OutOfRange, Some("CURSOR_EXPIRED")));
    assert_eq!(error_metadata(&expired, "oldest_sequence").as_deref(), Some("4"));
    let posted = app.messages.post(post("feed", 4.0)).await.expect("posted").into_inner();
    assert_eq!(posted.sequence, 4, "numbering never restarts");
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_off_without_holding_back_the_others() {
    let mut app = TestApp::spawn_with(|s| s.messages.message_subscriber_buffer = 8).await;
    // Its own connection, as another client would have (an unread stream
    // must not stall the others' connection), with HTTP/2's default window
    // of 64 KiB rather than tonic's megabytes, so the transport stops
    // taking its messages early.
    let slow_connection = Channel::from_shared(app.address.clone())
        .expect("a uri")
        .initial_stream_window_size(Some(65_535))
        .initial_connection_window_size(Some(65_535))
        .connect()
        .await
        .expect("connects");
    let mut slow = subscribe(&mut MessageServiceClient::new(slow_connection), from(&[("ticks", None)])).await;
    let mut quick = subscribe(&mut app.messages, from(&[("ticks", None)])).await;

    let big = "x".repeat(8192);
    let mut posting = app.messages.clone();
    let poster = tokio::spawn(async move {
        for n in 1..=300 {
            let request = pb::PostRequest {
                channel: "ticks".into(),
                payload: Some(text(&big)),
                type_name: format!("{n}"),
                ..Default::default()
            };
            posting.post(request).await.expect("posted");
        }
    });
    for n in 1..=300 {
        assert_eq!(next_message(&mut quick).await.sequence, n, "the quick one gets every message");
    }
    poster.await.expect("the poster finishes");

    let mut last = 0;
    let status = loop {
        match tokio::time::timeout(PATIENCE, slow.message()).await.expect("answered in time") {
            Ok(Some(pb::SubscribeResponse { item: Some(Item::Message(message)) })) => last = message.sequence,
            Ok(other) => panic!("the slow one is cut off, not {other:?}"),
            Err(status) => break status,
        }
    };
    assert!(last < 300, "cut off before the end: {last}");
    assert_eq!(
        (status.code(), error_reason(&status).as_deref()),
        (Code::ResourceExhausted, Some("SUBSCRIBER_TOO_SLOW"))
    );
    let mut resumed = subscribe(&mut app.messages, from(&[("ticks", Some(last))])).await;
    assert_eq!(next_message(&mut resumed).await.sequence, last + 1, "it resumes where it was cut off");
}

/// `message` with `authorization: Bearer <key>`.

#[tokio::test]
async fn tenants_never_see_each_others_channels() {
    let (acme, globex) = (generate_key().0, generate_key().0);
    let keys = format!(
        "keys:\n  - {{name: acme, tenant: acme, role: service, hash: \"{}\", allow: [session_ids]}}\n  - {{name: globex, tenant: globex, role: service, hash: \"{}\", allow: [session_ids]}}\n",
        hash_key(&acme),
        hash_key(&globex)
    );
    let mut app = TestApp::spawn_with_keys(&keys).await;

    let mut acme_items = subscribe(&mut app.messages, with_key(from(&[("room", None)]), &acme)).await;
    let theirs = app.messages.post(with_key(post("room", 1.0), &globex)).await.expect("posted").into_inner();
    assert_eq!((theirs.sequence, theirs.local_deliveries), (1, 0), "globex's room is its own");
    let ours = app.messages.post(with_key(post("room", 2.0), &acme)).await.expect("posted").into_inner();
    assert_eq!((ours.sequence, ours.local_deliveries), (1, 1), "numbered apart too");
    let message = next_message(&mut acme_items).await;
    assert_eq!(payload_number(&message), 2.0, "acme never sees globex's message");

    let created = app
        .sessions
        .create_session(with_key(pb::CreateSessionRequest { kind: Kind::WebUser.into(), ..Default::default() }, &acme))
        .await
        .expect("created")
        .into_inner();
    let channel = format!("session:{}", created.session.expect("a session").session_id);
    let refused = failure(app.messages.subscribe(with_key(from(&[(channel.as_str(), None)]), &globex)).await);
    assert_eq!(refused.code(), Code::NotFound, "another tenant's session is unknown");
    let refused = failure(app.messages.post(with_key(post(&channel, 1.0), &globex)).await);
    assert_eq!(refused.code(), Code::NotFound);
}

#[tokio::test]
async fn bad_input_is_refused_with_every_field_named_and_limits_with_their_quota() {
    let mut app = TestApp::spawn_with(|s| {
        s.messages.message_max_channels = 2;
        s.messages.message_max_bytes = 100;
        s.messages.message_post_rate = 3;
        s.messages.message_max_subscribers = 1;
    })
    .await;
    let long = "a".repeat(201);
    for (channel, why) in [
        ("", "empty"),
        (long.as_str(), "too long"),
        ("team:x", "unknown kind"),
        ("a b", "a space"),
        ("session:42", "not an id"),
        ("user:", "no user"),
    ] {
        let refused = failure(app.messages.post(post(channel, 1.0)).await);
        assert_eq!(refused.code(), Code::InvalidArgument, "{why}");
        assert_eq!(bad_fields(&refused), ["channel"], "{why}");
    }
    let everything = pb::PostRequest {
        channel: "ok".into(),
        payload: Some(text(&"y".repeat(200))),
        type_name: "bad\nname".into(),
        scope: 9,
    };
    let refused = failure(app.messages.post(everything).await);
    assert_eq!(bad_fields(&refused), ["payload", "type_name", "scope"]);
    let refused = failure(app.messages.post(pb::PostRequest { channel: "ok".into(), ..Default::default() }).await);
    assert_eq!(bad_fields(&refused), ["payload"], "a payload is required");

    let refused = failure(app.messages.subscribe(from(&[])).await);
    assert_eq!(bad_fields(&refused), ["channels"]);
    let refused = failure(app.messages.subscribe(from(&[("a", None), ("b", None), ("c", None)])).await);
    assert_eq!(bad_fields(&refused), ["channels"], "over --message-max-channels");
    let refused = failure(app.messages.subscribe(from(&[("a", None), ("a", None)])).await);
    assert_eq!(bad_fields(&refused), ["channels[1].channel"], "named twice");

    let _only = subscribe(&mut app.messages, from(&[("a", None)])).await;
    let refused = failure(app.messages.subscribe(from(&[("b", None)])).await);
    assert_eq!(refused.code(), Code::ResourceExhausted, "over --message-max-subscribers");

    // Three posts were refused before the rate was counted; three more fit.
    for n in 1..=3 {
        app.messages.post(post("ok", f64::from(n))).await.expect("within the rate");
    }
    let refused = failure(app.messages.post(post("ok", 4.0)).await);
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let details = refused.get_error_details();
    let quota = details.quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "message-post-rate");
}
