//! Unit tests of the domain service on [`MemoryStore`]: the rules a call
//! meets (expiry on a late call, revocation, compare-and-set, permissions,
//! promotions, tenants), stated without a server, a file or a database,
//! under a [`ManualClock`]. Each runs in a few milliseconds.
//! They use the service as its callers do, through its public methods.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::auth::{ApiKeys, Caller, Permission};
use crate::clock::{ManualClock, UnixMillis};
use crate::domain::{EndReason, EventType, Grants, Labels, RoleBook, SessionKind, StorageChange, StorageMap, TenantId};
use crate::service::lifecycle::{CreateSession, RevokeFilter, Timeout};
use crate::service::{Error, Service, ServiceConfig, SessionRef};
use crate::store::Stores;
use crate::store::fixtures::T0;
use crate::store::memory::MemoryStore;

const SECOND: Duration = Duration::from_secs(1);

/// The privileges the tests grant: `editsales` includes `viewsales`.
const ROLES: &str = "
privileges:
  - privilege: viewSales
  - privilege: editSales
    includes: [viewSales]
roles:
  - role: Manager
    privileges: [editSales]
";

/// A service over an empty [`MemoryStore`], as `startup` builds one (its
/// session records cached), with its clock at [`T0`] and `config`.
fn service_with(config: ServiceConfig) -> (Service, ManualClock, Stores) {
    service_over(MemoryStore::new(), config)
}

/// [`service_with`] over `store`, made with limits of its own.
fn service_over(store: MemoryStore, config: ServiceConfig) -> (Service, ManualClock, Stores) {
    let clock = ManualClock::starting_at(T0);
    let roles = RoleBook::parse(ROLES).expect("the test roles parse");
    let stores = Stores::of(store).cached(1_000);
    (Service::new(stores.clone(), Arc::new(clock.clone()), roles, config), clock, stores)
}

fn service() -> (Service, ManualClock, Stores) {
    service_with(ServiceConfig::default())
}

/// The callers of a keys file: `service` keys of `tenant` allowed
/// `allow` each, in order. The hashes are of no key: callers are taken
/// from the entries, not authenticated.
fn callers(keys: &[(&str, &[Permission])]) -> Vec<Caller> {
    let entries: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(n, (tenant, allow))| {
            let allow: Vec<&str> = allow.iter().map(|p| p.as_str()).collect();
            format!(
                "  - {{name: key{n}, tenant: {tenant}, role: service, hash: \"sha256:{n:064x}\", allow: [{}]}}\n",
                allow.join(", ")
            )
        })
        .collect();
    let keys = ApiKeys::parse(&format!("keys:\n{}", entries.concat())).expect("the test keys parse");
    keys.entries().map(|(caller, _)| caller.clone()).collect()
}

/// A create of `kind` for `user` with the given timeouts.
fn create(kind: SessionKind, user: &str, idle_timeout: Timeout, lifetime: Timeout) -> CreateSession {
    CreateSession {
        kind,
        user_id: Some(user.to_owned()),
        labels: Labels::default(),
        idle_timeout,
        lifetime,
        grants: Grants::default(),
        storage: StorageMap::new(),
        trusted: false,
        request_id: None,
    }
}

fn web_user(user: &str) -> CreateSession {
    create(SessionKind::WebUser, user, Timeout::Default, Timeout::Default)
}

/// A session of `service` created by `caller` and how to name it.
async fn open(service: &Service, caller: &Caller, request: CreateSession) -> SessionRef {
    let created = service.create(caller, request).await.expect("the session is created");
    SessionRef::token(created.token)
}

#[tokio::test]
async fn a_late_call_on_an_idle_session_ends_it_as_idle_timed_out_and_it_stays_ended() {
    let (service, clock, stores) = service();
    let admin = Caller::open();
    let request = create(SessionKind::WebCall, "alice", Timeout::After(10 * SECOND), Timeout::Never);
    let alice = open(&service, &admin, request).await;
    clock.advance(9 * SECOND);
    service.touch(&admin, &alice).await.expect("within its idle timeout the session answers");
    clock.advance(10 * SECOND);

    let late = service.get(&admin, &alice).await;
    assert!(matches!(late, Err(Error::SessionEnded(EndReason::IdleTimeout))), "{late:?}");
    let events = stores.events.events_after(0, 10).await.expect("events are readable");
    let kinds: Vec<_> = events.iter().map(|e| (e.event.event_type, e.event.end_reason)).collect();
    assert_eq!(kinds, [(EventType::Created, None), (EventType::Expired, Some(EndReason::IdleTimeout))]);
    let again = service.touch(&admin, &alice).await;
    assert!(matches!(again, Err(Error::SessionEnded(EndReason::IdleTimeout))), "never revived: {again:?}");
    let closed = service.close(&admin, &alice, None, None).await.expect("closing an ended session answers its end");
    assert_eq!(closed.end_reason, EndReason::IdleTimeout);
}

#[tokio::test]
async fn a_session_past_its_lifetime_ends_however_recently_it_was_used() {
    let (service, clock, _) = service();
    let admin = Caller::open();
    let request = create(SessionKind::WebUser, "alice", Timeout::After(60 * SECOND), Timeout::After(3 * SECOND));
    let alice = open(&service, &admin, request).await;
    for _ in 0..2 {
        clock.advance(SECOND);
        service.touch(&admin, &alice).await.expect("the session is in its lifetime");
    }
    clock.advance(SECOND);
    let late = service.touch(&admin, &alice).await;
    assert!(matches!(late, Err(Error::SessionEnded(EndReason::LifetimeReached))), "{late:?}");
}

#[tokio::test]
async fn closing_an_expired_session_ends_it_as_expired_not_closed() {
    let (service, clock, _) = service();
    let admin = Caller::open();
    let request = create(SessionKind::WebCall, "alice", Timeout::After(SECOND), Timeout::Never);
    let alice = open(&service, &admin, request).await;
    clock.advance(SECOND);
    let closed = service.close(&admin, &alice, None, None).await.expect("an expired session closes");
    assert_eq!(closed.end_reason, EndReason::IdleTimeout);
}

#[tokio::test]
async fn calls_on_revoked_sessions_fail_and_other_users_sessions_stay_open() {
    let (service, _, _) = service();
    let admin = Caller::open();
    let first = open(&service, &admin, web_user("alice")).await;
    let second = open(&service, &admin, web_user("alice")).await;
    let bob = open(&service, &admin, web_user("bob")).await;

    let filter = RevokeFilter { user_id: Some("alice".into()), ..RevokeFilter::default() };
    assert_eq!(service.revoke(&admin, filter.clone()).await.expect("revoked").len(), 2);
    for alice in [&first, &second] {
        let refused = service.get_storage(&admin, alice, &[]).await;
        assert!(matches!(refused, Err(Error::SessionEnded(EndReason::Revoked))), "{refused:?}");
    }
    service.touch(&admin, &bob).await.expect("another user's session is still open");
    assert_eq!(service.revoke(&admin, filter).await.expect("revoking again is no error"), []);
}

#[tokio::test]
async fn a_storage_change_at_a_stale_version_fails_naming_the_current_one() {
    let (service, _, _) = service();
    let admin = Caller::open();
    let alice = open(&service, &admin, web_user("alice")).await;
    let put = |n: i64| StorageChange::Put(StorageMap::from([("n".to_owned(), json!(n))]));

    assert_eq!(service.change_storage(&admin, &alice, put(1), Some(0)).await.expect("version 0 is current"), 1);
    let stale = service.change_storage(&admin, &alice, put(2), Some(0)).await;
    assert!(matches!(stale, Err(Error::VersionConflict { current: 1 })), "{stale:?}");
    assert_eq!(service.change_storage(&admin, &alice, put(3), None).await.expect("unconditional"), 2);
    let read = service.get_storage(&admin, &alice, &[]).await.expect("storage is readable");
    assert_eq!((read.version, read.values["n"].clone()), (2, json!(3)));
    let cleared = service.change_storage(&admin, &alice, StorageChange::Clear, Some(2)).await.expect("cleared");
    let nothing = service.change_storage(&admin, &alice, StorageChange::Clear, Some(cleared)).await;
    assert_eq!(nothing.expect("clearing an empty storage changes nothing"), cleared, "no new version");
}

#[tokio::test]
async fn changing_privileges_and_naming_sessions_by_id_need_the_key_to_allow_them() {
    let (service, _, _) = service();
    let tenant = TenantId::default();
    let [plain, allowed] = <[Caller; 2]>::try_from(callers(&[
        (tenant.as_str(), &[]),
        (tenant.as_str(), &[Permission::ChangePrivileges, Permission::SessionIds]),
    ]))
    .expect("two callers");
    let created = service.create(&plain, web_user("alice")).await.expect("a service key creates sessions");
    let alice = SessionRef::token(created.token);
    let grants = Grants { privileges: vec!["viewsales".into()], ..Grants::default() };

    let refused = service.set_privileges(&plain, &alice, grants.clone()).await;
    assert!(matches!(refused, Err(Error::PermissionRequired("change_privileges"))), "{refused:?}");
    let by_id = SessionRef::id(created.session.session.id.clone());
    let refused = service.get(&plain, &by_id).await;
    assert!(matches!(refused, Err(Error::PermissionRequired("session_ids"))), "{refused:?}");

    let expanded = service.set_privileges(&allowed, &alice, grants).await.expect("the key is allowed");
    assert_eq!(expanded.into_iter().collect::<Vec<_>>(), ["viewsales"]);
    assert!(service.has_privilege(&plain, &alice, "viewsales").await.expect("checked"));
    service.get(&allowed, &by_id).await.expect("the key may name sessions by id");
}

#[tokio::test]
async fn a_promotion_grants_its_privilege_with_what_it_includes_until_it_lapses() {
    let (service, clock, _) = service();
    let admin = Caller::open();
    let request = create(SessionKind::WebUser, "alice", Timeout::Never, Timeout::Never);
    let alice = open(&service, &admin, request).await;
    assert!(!service.has_privilege(&admin, &alice, "viewsales").await.expect("checked"));

    let promotion = service.promote(&admin, &alice, "editsales".into(), 60 * SECOND).await.expect("promoted");
    assert_eq!(promotion.expires_at, UnixMillis(T0.0 + 60_000));
    assert!(service.has_privilege(&admin, &alice, "viewsales").await.expect("checked"), "included");
    clock.advance(59 * SECOND);
    assert!(service.has_privilege(&admin, &alice, "editsales").await.expect("checked"));
    clock.advance(SECOND);
    assert!(!service.has_privilege(&admin, &alice, "editsales").await.expect("checked"), "lapsed");
    service.demote(&admin, &alice, &promotion.id).await.expect("demoting a lapsed promotion is no error");
    let view = service.get_privileges(&admin, &alice).await.expect("readable");
    assert!(view.grants.promotions.is_empty() && view.expanded.is_empty(), "{view:?}");
}

#[tokio::test]
async fn another_tenants_session_is_as_unknown_as_a_missing_one() {
    let (service, _, _) = service();
    let all = [Permission::ChangePrivileges, Permission::SessionIds];
    let [acme, globex] = <[Caller; 2]>::try_from(callers(&[("acme", &all), ("globex", &all)])).expect("two callers");
    let created = service.create(&acme, web_user("alice")).await.expect("created");
    for theirs in [SessionRef::token(created.token), SessionRef::id(created.session.session.id)] {
        let refused = service.get(&globex, &theirs).await;
        assert!(matches!(refused, Err(Error::SessionNotFound)), "{refused:?}");
        let refused = service.close(&globex, &theirs, None, None).await;
        assert!(matches!(refused, Err(Error::SessionNotFound)), "{refused:?}");
        service.get(&acme, &theirs).await.expect("its own tenant finds it");
    }
}

#[tokio::test]
async fn a_tenant_at_its_limit_of_open_sessions_creates_again_once_one_ends() {
    let (service, _, _) =
        service_over(MemoryStore::new().with_max_open_sessions_per_tenant(2), ServiceConfig::default());
    let admin = Caller::open();
    let first = open(&service, &admin, web_user("alice")).await;
    open(&service, &admin, web_user("alice")).await;
    let refused = service.create(&admin, web_user("alice")).await;
    assert!(matches!(refused, Err(Error::TenantSessionQuota { limit: 2, .. })), "{refused:?}");
    service.close(&admin, &first, None, None).await.expect("closed");
    service.create(&admin, web_user("alice")).await.expect("room again");
}
