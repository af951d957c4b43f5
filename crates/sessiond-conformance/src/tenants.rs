//! Tenants: what each session, event and entry carries, and what each
//! tenant sees.

use sessiond::clock::UnixMillis;
use sessiond::domain::{
    EncodedStorage, EndReason, EventType, Grants, LogLevel, LogQuery, SessionKind, StorageMap, TenantId,
};
use sessiond::store::{EndOutcome, PageRequest, SessionFilter, Stores};

use crate::*;

/// A session, its events and its log keep the tenant they were written with.
pub async fn sessions_events_and_logs_carry_their_tenant(store: Stores) {
    let acme = tenant("acme");
    let theirs = session_of(&acme, SessionKind::WebUser, Some("alice"), T0);
    let ours = session(SessionKind::WebUser, Some("alice"), T0);
    let mut answered = Vec::new();
    for s in [&theirs, &ours] {
        answered.push(create(&*store.sessions, s, &StorageMap::new()).await);
        let changed = event(EventType::PrivilegesChanged, s, T0);
        let (_, granted) = store.sessions.update_grants(&s.id, 0, &Grants::default(), &changed).await.expect("granted");
        answered.push(granted);
        let changed = event(EventType::StorageChanged, s, T0);
        let (_, replaced) = store
            .storage
            .replace_storage(&s.id, 0, EncodedStorage::encode(&StorageMap::new()), changed.clone())
            .await
            .expect("replaced");
        answered.push(replaced);
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, s.tenant.as_str(), T0)]).await.expect("appended");
        let (end, end_event) = ending(s, EndReason::Closed, UnixMillis(T0.0 + 1), true);
        let EndOutcome::Ended(ended) = store.sessions.end_session(&s.id, &end, &end_event).await.expect("ended") else {
            panic!("the session was open");
        };
        answered.push(ended);
    }

    let stored = store.sessions.session_by_id(&theirs.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, acme);
    let stored =
        store.sessions.session_by_token(&theirs.token_hash).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, acme);
    let stored = store.sessions.session_by_id(&ours.id).await.expect("lookup works").expect("the session exists");
    assert_eq!(stored.tenant, TenantId::default());
    let page = PageRequest { after: None, limit: 10 };
    let listed = store.sessions.list_sessions(&SessionFilter::default(), &page).await.expect("sessions are listed");
    let mut tenants: Vec<_> = listed.iter().map(|s| (s.id.clone(), s.tenant.clone())).collect();
    tenants.sort();
    let mut expected = vec![(theirs.id.clone(), acme.clone()), (ours.id.clone(), TenantId::default())];
    expected.sort();
    assert_eq!(tenants, expected, "listing across tenants answers each session's own");

    let recorded = store.events.events_after(0, 100).await.expect("events are readable");
    assert_eq!(recorded, answered, "events read back as recorded, tenant included");
    for e in &recorded {
        let owner = if e.event.session_id == theirs.id { &acme } else { &TenantId::default() };
        assert_eq!(&e.event.tenant, owner, "event {} carries its session's tenant", e.sequence);
    }

    for s in [&theirs, &ours] {
        let query = LogQuery { tenant: Some(s.tenant.clone()), ..all_logs() };
        let records = store.logs.query_logs(&query).await.expect("logs are queryable").records;
        let found: Vec<_> = records.iter().map(|r| (&r.session_id, r.entry.message.as_str())).collect();
        assert_eq!(found, [(&s.id, s.tenant.as_str())], "the log is found in its session's tenant");
    }
}

/// Tenants do not see each other's sessions or logs, even of the same user id.
pub async fn list_sessions_and_query_logs_filter_by_tenant(store: Stores) {
    let at = |n: i64| UnixMillis(T0.0 + n);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let acme_alice = session_of(&acme, SessionKind::WebUser, Some("alice"), at(1));
    let acme_bob = session_of(&acme, SessionKind::WebCall, Some("bob"), at(2));
    let globex_alice = session_of(&globex, SessionKind::WebUser, Some("alice"), at(3));
    let default_alice = session(SessionKind::WebUser, Some("alice"), at(4));
    for s in [&acme_alice, &acme_bob, &globex_alice, &default_alice] {
        create(&*store.sessions, s, &StorageMap::new()).await;
        let message = format!("{} {}", s.tenant, s.user_id.as_deref().unwrap_or("-"));
        store.logs.append_logs(&s.id, vec![entry(LogLevel::Info, &message, at(5))]).await.expect("appended");
        end(&*store.sessions, s, EndReason::Closed, at(6), true).await;
    }

    let list = |filter: SessionFilter| {
        let store = store.clone();
        async move {
            let page = PageRequest { after: None, limit: 100 };
            ids(&store.sessions.list_sessions(&filter, &page).await.expect("sessions are listed"))
        }
    };
    let of = |t: &TenantId| SessionFilter { tenant: Some(t.clone()), ..SessionFilter::default() };
    let alice_of = |t: &TenantId| SessionFilter { user_id: Some("alice".into()), ..of(t) };
    assert_eq!(list(of(&acme)).await, ids([&acme_bob, &acme_alice]));
    assert_eq!(list(of(&globex)).await, ids([&globex_alice]));
    assert_eq!(list(of(&TenantId::default())).await, ids([&default_alice]));
    assert_eq!(list(of(&tenant("initech"))).await, []);
    assert_eq!(list(alice_of(&acme)).await, ids([&acme_alice]));
    assert_eq!(list(alice_of(&globex)).await, ids([&globex_alice]));
    assert_eq!(list(alice_of(&TenantId::default())).await, ids([&default_alice]));
    let users = SessionFilter { kinds: vec![SessionKind::WebUser], open: Some(false), ..of(&acme) };
    assert_eq!(list(users).await, ids([&acme_alice]));
    // Naming another tenant's session by id finds nothing.
    let named = SessionFilter { ids: ids([&globex_alice, &acme_bob]), ..of(&acme) };
    assert_eq!(list(named).await, ids([&acme_bob]));
    let alice_anywhere = SessionFilter { user_id: Some("alice".into()), ..SessionFilter::default() };
    assert_eq!(list(alice_anywhere).await, ids([&default_alice, &globex_alice, &acme_alice]), "no tenant: all");

    // Paging within a tenant walks only its sessions.
    let page = PageRequest { after: Some((acme_bob.created_at, acme_bob.id.clone())), limit: 100 };
    let rest = store.sessions.list_sessions(&of(&acme), &page).await.expect("sessions are listed");
    assert_eq!(ids(&rest), ids([&acme_alice]));

    let logs_of = |t: &TenantId| LogQuery { tenant: Some(t.clone()), ..LogQuery::default() };
    assert_eq!(logged(&store, logs_of(&acme)).await, ["acme alice", "acme bob"]);
    assert_eq!(logged(&store, logs_of(&globex)).await, ["globex alice"]);
    assert_eq!(logged(&store, logs_of(&tenant("initech"))).await, Vec::<String>::new());
    let alice_logs = |t: &TenantId| LogQuery { user_id: Some("alice".into()), ..logs_of(t) };
    assert_eq!(logged(&store, alice_logs(&acme)).await, ["acme alice"]);
    assert_eq!(logged(&store, alice_logs(&globex)).await, ["globex alice"]);
    assert_eq!(logged(&store, alice_logs(&TenantId::default())).await, ["default alice"]);
    let named = LogQuery { session_id: Some(globex_alice.id.clone()), ..logs_of(&acme) };
    assert_eq!(logged(&store, named).await, Vec::<String>::new(), "another tenant's log is not found by session id");
    let everyone = LogQuery { user_id: Some("alice".into()), ..LogQuery::default() };
    assert_eq!(logged(&store, everyone).await, ["acme alice", "globex alice", "default alice"], "no tenant: all");
}
