//! Privileges and roles from the roles file: granting, expanding through
//! includes and roles, checking, time-limited promotions, trusted
//! sessions, and loading or replacing the role book.

use std::time::Duration;

use sessiond::domain::RoleBook;
use sessiond::pb;
use sessiond::pb::SessionKind as Kind;
use sessiond::settings::Settings;
use sessiond::startup::Application;
use tonic::Code;

use crate::helpers::{TestApp, assert_invalid, by_token, error_reason, failure, seconds};

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

async fn create_with_grants(app: &mut TestApp, privileges: &[&str], roles: &[&str]) -> String {
    app.create_with(pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        user_id: "alice".into(),
        privileges: strings(privileges),
        roles: strings(roles),
        ..Default::default()
    })
    .await
    .token
}

async fn privileges_of(app: &mut TestApp, token: &str) -> pb::GetPrivilegesResponse {
    app.privileges
        .get_privileges(pb::GetPrivilegesRequest { session: by_token(token) })
        .await
        .expect("GetPrivileges")
        .into_inner()
}

async fn holds(app: &mut TestApp, token: &str, privilege: &str) -> bool {
    app.privileges
        .has_privilege(pb::HasPrivilegeRequest { session: by_token(token), privilege: privilege.into() })
        .await
        .expect("HasPrivilege")
        .into_inner()
        .granted
}

async fn check(
    app: &mut TestApp,
    token: &str,
    privileges: &[&str],
    mode: pb::CheckMode,
) -> pb::CheckPrivilegesResponse {
    app.privileges
        .check_privileges(pb::CheckPrivilegesRequest {
            session: by_token(token),
            privileges: strings(privileges),
            mode: mode.into(),
        })
        .await
        .expect("CheckPrivileges")
        .into_inner()
}

async fn promote(app: &mut TestApp, token: &str, privilege: &str, secs: i64) -> Result<pb::Promotion, tonic::Status> {
    let answer = app
        .privileges
        .promote(pb::PromoteRequest { session: by_token(token), privilege: privilege.into(), duration: seconds(secs) })
        .await?;
    Ok(answer.into_inner().promotion.expect("a promotion is answered"))
}

#[tokio::test]
async fn privileges_granted_at_creation_expand_through_includes_and_roles() {
    let mut app = TestApp::spawn().await;
    let by_privilege = create_with_grants(&mut app, &["VIEWSALES"], &[]).await;
    let by_role = create_with_grants(&mut app, &[], &["manager"]).await;

    let view = privileges_of(&mut app, &by_privilege).await;
    assert_eq!(view.privileges, ["viewbasic", "viewsales"]);
    assert_eq!(view.granted_privileges, ["viewsales"]);
    assert!(view.roles.is_empty());
    assert!(!view.trusted);

    let view = privileges_of(&mut app, &by_role).await;
    assert_eq!(view.privileges, ["editsales", "viewbasic", "viewsales"]);
    assert!(view.granted_privileges.is_empty());
    assert_eq!(view.roles, ["manager"]);
}

#[tokio::test]
async fn set_privileges_replaces_the_grants_and_answers_the_expanded_set() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["admin"], &[]).await;

    let answer = app
        .privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: by_token(&token),
            privileges: strings(&["ViewBasic"]),
            roles: strings(&["VIEWER", "Manager"]),
        })
        .await
        .expect("SetPrivileges")
        .into_inner();

    assert_eq!(answer.privileges, ["editsales", "viewbasic", "viewsales"]);
    let view = privileges_of(&mut app, &token).await;
    assert_eq!(view.privileges, answer.privileges);
    assert_eq!(view.granted_privileges, ["viewbasic"]);
    assert_eq!(view.roles, ["viewer", "manager"]);
    assert!(!holds(&mut app, &token, "admin").await, "the earlier grant is replaced");
}

#[tokio::test]
async fn clear_privileges_removes_every_grant_and_promotion() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewSales"], &["Manager"]).await;
    promote(&mut app, &token, "admin", 600).await.expect("promoted");

    app.privileges
        .clear_privileges(pb::ClearPrivilegesRequest { session: by_token(&token) })
        .await
        .expect("ClearPrivileges");

    let view = privileges_of(&mut app, &token).await;
    assert!(view.privileges.is_empty() && view.granted_privileges.is_empty() && view.roles.is_empty(), "{view:?}");
    assert!(view.promotions.is_empty());
    assert!(!holds(&mut app, &token, "viewBasic").await);
}

#[tokio::test]
async fn has_privilege_follows_includes_case_insensitively() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &["Viewer"]).await;

    assert!(holds(&mut app, &token, "viewBasic").await);
    assert!(holds(&mut app, &token, "VIEWBASIC").await);
    assert!(!holds(&mut app, &token, "viewSales").await);

    let editor = create_with_grants(&mut app, &["editSales"], &[]).await;
    assert!(holds(&mut app, &editor, "viewbasic").await, "included two levels down");
    assert!(!holds(&mut app, &editor, "admin").await, "includes do not go up");
}

#[tokio::test]
async fn check_privileges_combines_answers_by_any_or_all() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewSales"], &[]).await;
    let names = ["admin", "viewBasic", "editSales"];

    let any = check(&mut app, &token, &names, pb::CheckMode::Any).await;
    assert!(any.granted);
    assert_eq!(any.held, [false, true, false]);
    let all = check(&mut app, &token, &names, pb::CheckMode::All).await;
    assert!(!all.granted);
    assert_eq!(all.held, [false, true, false]);
    let unspecified = check(&mut app, &token, &["viewBasic", "viewSales"], pb::CheckMode::Unspecified).await;
    assert!(unspecified.granted, "unspecified means ALL, and both are held");
    let none = check(&mut app, &token, &["admin"], pb::CheckMode::Any).await;
    assert!(!none.granted);
}

#[tokio::test]
async fn unknown_privileges_and_roles_are_invalid_arguments_naming_them() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;

    let status = failure(
        app.privileges
            .has_privilege(pb::HasPrivilegeRequest { session: by_token(&token), privilege: "fly".into() })
            .await,
    );
    assert_invalid(&status, "privilege");

    let status = failure(
        app.privileges
            .set_privileges(pb::SetPrivilegesRequest {
                session: by_token(&token),
                privileges: strings(&["viewBasic", "fly"]),
                roles: strings(&["Pilot"]),
            })
            .await,
    );
    assert_invalid(&status, "privileges[1]");
    assert_invalid(&status, "roles[0]");
    assert!(privileges_of(&mut app, &token).await.privileges.is_empty(), "nothing was silently granted");

    let status = failure(
        app.privileges
            .check_privileges(pb::CheckPrivilegesRequest {
                session: by_token(&token),
                privileges: strings(&["viewBasic", "fly"]),
                mode: pb::CheckMode::Any.into(),
            })
            .await,
    );
    assert_invalid(&status, "privileges[1]");

    assert_invalid(&failure(promote(&mut app, &token, "fly", 60).await), "privilege");

    let request = pb::CreateSessionRequest {
        kind: Kind::WebUser.into(),
        privileges: strings(&["fly"]),
        roles: strings(&["viewer", "pilot"]),
        ..Default::default()
    };
    let status = failure(app.sessions.create_session(request).await);
    assert_invalid(&status, "privileges[0]");
    assert_invalid(&status, "roles[1]");
}

#[tokio::test]
async fn a_promotion_grants_a_privilege_for_its_duration() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewBasic"], &[]).await;

    let promotion = promote(&mut app, &token, "Admin", 60).await.expect("promoted");

    assert_eq!(promotion.privilege, "admin");
    assert_eq!(promotion.expires_at, Some(prost_types::Timestamp { seconds: app.now().seconds + 60, ..app.now() }));
    assert!(holds(&mut app, &token, "editSales").await, "a promotion follows includes too");
    let view = privileges_of(&mut app, &token).await;
    assert_eq!(view.privileges, ["admin", "editsales", "viewbasic", "viewsales"]);
    assert_eq!(view.promotions, [promotion]);

    app.advance(Duration::from_secs(59));
    assert!(holds(&mut app, &token, "admin").await);
    app.advance(Duration::from_secs(1));
    assert!(!holds(&mut app, &token, "admin").await, "the promotion is over");
    let view = privileges_of(&mut app, &token).await;
    assert_eq!(view.privileges, ["viewbasic"]);
    assert!(view.promotions.is_empty());
}

#[tokio::test]
async fn demote_ends_a_promotion_early() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;
    let promotion = promote(&mut app, &token, "admin", 600).await.expect("promoted");
    let other = promote(&mut app, &token, "viewBasic", 600).await.expect("promoted");

    app.privileges
        .demote(pb::DemoteRequest { session: by_token(&token), promotion_id: promotion.promotion_id.clone() })
        .await
        .expect("Demote");

    assert!(!holds(&mut app, &token, "admin").await);
    assert!(holds(&mut app, &token, "viewBasic").await, "the other promotion stays");
    assert_eq!(privileges_of(&mut app, &token).await.promotions, std::slice::from_ref(&other));
    app.privileges
        .demote(pb::DemoteRequest { session: by_token(&token), promotion_id: promotion.promotion_id.clone() })
        .await
        .expect("demoting again answers OK, as closing again does");
    assert_eq!(privileges_of(&mut app, &token).await.promotions, [other], "and changes nothing");

    let stranger = create_with_grants(&mut app, &[], &[]).await;
    let status = failure(
        app.privileges
            .demote(pb::DemoteRequest { session: by_token(&stranger), promotion_id: promotion.promotion_id })
            .await,
    );
    assert_eq!(status.code(), Code::NotFound, "another session's promotion was never this one's");
    assert_eq!(error_reason(&status).as_deref(), Some("PROMOTION_NOT_FOUND"));
}

#[tokio::test]
async fn demoting_an_unknown_promotion_is_not_found() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;

    let status = failure(
        app.privileges.demote(pb::DemoteRequest { session: by_token(&token), promotion_id: "f".repeat(32) }).await,
    );

    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(error_reason(&status).as_deref(), Some("PROMOTION_NOT_FOUND"));
    let status = failure(
        app.privileges.demote(pb::DemoteRequest { session: by_token(&token), promotion_id: "nope".into() }).await,
    );
    assert_invalid(&status, "promotion_id");
}

#[tokio::test]
async fn a_promotion_needs_a_positive_duration_within_the_maximum() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_promotion = Duration::from_secs(3600)).await;
    let token = create_with_grants(&mut app, &[], &[]).await;

    assert_invalid(&failure(promote(&mut app, &token, "admin", 0).await), "duration");
    assert_invalid(&failure(promote(&mut app, &token, "admin", -1).await), "duration");
    assert_invalid(&failure(promote(&mut app, &token, "admin", 3601).await), "duration");
    promote(&mut app, &token, "admin", 3600).await.expect("the maximum itself is fine");
}

#[tokio::test]
async fn a_trusted_stored_procedure_session_holds_every_privilege() {
    let mut app = TestApp::spawn().await;
    let trusted = app
        .create_with(pb::CreateSessionRequest {
            kind: Kind::StoredProcedure.into(),
            trusted: true,
            ..Default::default()
        })
        .await
        .token;
    let untrusted = app.create(Kind::StoredProcedure, "").await.token;

    assert!(holds(&mut app, &trusted, "admin").await);
    let view = privileges_of(&mut app, &trusted).await;
    assert!(view.trusted);
    assert_eq!(view.privileges, ["admin", "editsales", "viewbasic", "viewsales"]);
    assert!(check(&mut app, &trusted, &["admin", "viewBasic"], pb::CheckMode::All).await.granted);

    assert!(!holds(&mut app, &untrusted, "viewBasic").await);
    assert!(!privileges_of(&mut app, &untrusted).await.trusted);
}

#[tokio::test]
async fn a_roles_file_that_does_not_parse_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let broken = dir.path().join("roles.yaml");
    std::fs::write(&broken, "privileges: [ {privilege: viewBasic").expect("the file is written");
    let undefined = dir.path().join("undefined.yaml");
    std::fs::write(&undefined, "roles:\n  - role: Pilot\n    privileges: [fly]\n").expect("the file is written");

    for roles_file in [broken, undefined, dir.path().join("missing.yaml")] {
        let mut settings =
            Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), dir.path().join("data"));
        settings.auth.roles_file = Some(roles_file.clone());
        let built = Application::build(settings).await;
        assert!(built.is_err(), "{} must stop start-up", roles_file.display());
    }
}

/// A roles file whose `includes` go round in a circle.
const CYCLIC_ROLES: &str = "privileges:
  - privilege: audit
    includes: [review]
  - privilege: review
    includes: [approve]
  - privilege: approve
    includes: [audit]
";

#[tokio::test]
async fn a_cycle_of_includes_stops_start_up_naming_the_cycle() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let cyclic = dir.path().join("roles.yaml");
    std::fs::write(&cyclic, CYCLIC_ROLES).expect("the file is written");
    let mut settings = Settings::for_tests("127.0.0.1:0".parse().expect("a valid address"), dir.path().join("data"));
    settings.auth.roles_file = Some(cyclic);

    let Err(err) = Application::build(settings).await else { panic!("a cyclic roles file must stop start-up") };

    let message = format!("{err:#}");
    assert!(message.contains("cycle: approve -> audit -> review -> approve"), "{message}");
}

#[tokio::test]
async fn a_cyclic_roles_file_on_sighup_is_refused_and_the_previous_book_kept() {
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let roles = dir.path().join("roles.yaml");
    std::fs::copy(crate::helpers::ROLES_FILE, &roles).expect("the shipped roles file is copied");
    let log = dir.path().join("sessiond.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--log-filter", "info", "--log-format", "json"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--roles-file")
        .arg(&roles)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("the log file is created"))
        .spawn()
        .expect("sessiond starts");
    let stop = KillOnDrop(&mut child);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).expect("a valid uri");
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    let channel = loop {
        match endpoint.connect().await {
            Ok(channel) => break channel,
            Err(_) if std::time::Instant::now() < deadline => tokio::task::yield_now().await,
            Err(err) => panic!("sessiond did not accept connections: {err}"),
        }
    };

    // SIGHUP's default action ends a process: send it once sessiond
    // catches it (bit 0 of the caught-signals mask is SIGHUP, signal 1).
    let catches_hangup = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", stop.0.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & 1 == 1)
    };
    while !catches_hangup() {
        assert!(std::time::Instant::now() < deadline, "sessiond never listened for SIGHUP");
        tokio::task::yield_now().await;
    }

    std::fs::write(&roles, CYCLIC_ROLES).expect("the roles file is replaced");
    let hup = Command::new("kill").args(["-HUP", &stop.0.id().to_string()]).status().expect("kill(1) runs");
    assert!(hup.success(), "SIGHUP is sent");
    let deadline = std::time::Instant::now() + crate::helpers::PATIENCE;
    let rejected = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("roles file rejected")) {
            break line.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no rejection was logged: {text}");
        tokio::task::yield_now().await;
    };
    assert!(rejected.contains("approve -> audit -> review -> approve"), "{rejected}");

    let mut sessions = pb::session_service_client::SessionServiceClient::new(channel.clone());
    let created = sessions
        .create_session(pb::CreateSessionRequest {
            kind: Kind::WebUser.into(),
            user_id: "alice".into(),
            privileges: strings(&["editSales"]),
            ..Default::default()
        })
        .await
        .expect("the previous book still grants its privileges")
        .into_inner();
    let mut privileges = pb::privilege_service_client::PrivilegeServiceClient::new(channel);
    let held = privileges
        .has_privilege(pb::HasPrivilegeRequest { session: by_token(&created.token), privilege: "viewBasic".into() })
        .await
        .expect("HasPrivilege")
        .into_inner();
    assert!(held.granted, "the previous book's includes still expand");
}

/// Kills a child process when the test ends, however it ends.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn replacing_the_role_book_takes_effect_for_new_checks() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewSales"], &[]).await;
    assert!(holds(&mut app, &token, "viewBasic").await);

    let book = RoleBook::parse(
        "privileges:\n  - privilege: viewSales\n  - privilege: viewBasic\n  - privilege: reports\n    includes: [viewSales]\n",
    )
    .expect("the new book is valid");
    app.service.replace_roles(book);

    assert!(!holds(&mut app, &token, "viewBasic").await, "viewSales no longer includes viewBasic");
    assert!(holds(&mut app, &token, "viewSales").await);
    let answer = app
        .privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: by_token(&token),
            privileges: strings(&["Reports"]),
            roles: vec![],
        })
        .await
        .expect("a privilege of the new book is known")
        .into_inner();
    assert_eq!(answer.privileges, ["reports", "viewsales"]);
    let status = failure(
        app.privileges
            .has_privilege(pb::HasPrivilegeRequest { session: by_token(&token), privilege: "admin".into() })
            .await,
    );
    assert_invalid(&status, "privilege");
}

#[tokio::test]
async fn set_privileges_keeps_promotions_in_force() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewBasic"], &[]).await;
    let promotion = promote(&mut app, &token, "admin", 600).await.expect("promoted");

    let answer = app
        .privileges
        .set_privileges(pb::SetPrivilegesRequest {
            session: by_token(&token),
            privileges: vec![],
            roles: strings(&["viewer"]),
        })
        .await
        .expect("SetPrivileges")
        .into_inner();

    assert_eq!(answer.privileges, ["admin", "editsales", "viewbasic", "viewsales"]);
    assert_eq!(privileges_of(&mut app, &token).await.promotions, [promotion]);
}

#[tokio::test]
async fn demoting_an_expired_promotion_answers_ok() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;
    let promotion = promote(&mut app, &token, "admin", 60).await.expect("promoted");
    app.advance(Duration::from_secs(60));

    app.privileges
        .demote(pb::DemoteRequest { session: by_token(&token), promotion_id: promotion.promotion_id })
        .await
        .expect("a promotion that is over is demoted already");
    assert!(!holds(&mut app, &token, "admin").await);
}

/// `n` concurrent promotions of one session, each of which must be kept.
async fn concurrent_promotions(n: usize) {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;

    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut client = app.privileges.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let privilege = ["viewBasic", "viewSales", "editSales", "admin"][i % 4];
                let request = pb::PromoteRequest {
                    session: by_token(&token),
                    privilege: privilege.into(),
                    duration: seconds(600),
                };
                client
                    .promote(request)
                    .await
                    .map(|answer| answer.into_inner().promotion.expect("a promotion").promotion_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        match task.await.expect("the task does not panic") {
            Ok(id) => ids.push(id),
            Err(status) => failures.push(status),
        }
    }

    assert!(failures.is_empty(), "{} of {n} promotions failed, e.g. {:?}", failures.len(), failures.first());
    let mut kept: Vec<String> =
        privileges_of(&mut app, &token).await.promotions.into_iter().map(|p| p.promotion_id).collect();
    kept.sort();
    ids.sort();
    assert_eq!(kept, ids, "no promotion was overwritten by a concurrent one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_promotions_are_all_kept() {
    concurrent_promotions(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_promotions_are_all_kept() {
    concurrent_promotions(20).await;
}

#[tokio::test]
async fn check_privileges_needs_at_least_one_name() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &[], &[]).await;

    let status = failure(
        app.privileges
            .check_privileges(pb::CheckPrivilegesRequest { session: by_token(&token), privileges: vec![], mode: 0 })
            .await,
    );

    assert_invalid(&status, "privileges");
}

#[tokio::test]
async fn names_differing_only_in_case_are_granted_once() {
    let mut app = TestApp::spawn().await;
    let token = create_with_grants(&mut app, &["viewBasic", "VIEWBASIC"], &["Viewer", "viewer"]).await;

    let view = privileges_of(&mut app, &token).await;

    assert_eq!(view.granted_privileges, ["viewbasic"]);
    assert_eq!(view.roles, ["viewer"]);
}

#[tokio::test]
async fn clearing_a_trusted_sessions_privileges_leaves_it_trusted() {
    let mut app = TestApp::spawn().await;
    let token = app
        .create_with(pb::CreateSessionRequest { kind: Kind::Standalone.into(), trusted: true, ..Default::default() })
        .await
        .token;

    app.privileges
        .clear_privileges(pb::ClearPrivilegesRequest { session: by_token(&token) })
        .await
        .expect("ClearPrivileges");

    assert!(privileges_of(&mut app, &token).await.trusted);
    assert!(holds(&mut app, &token, "admin").await);
}

#[tokio::test]
async fn promotions_in_force_on_a_session_are_capped_and_expired_ones_make_room() {
    let mut app = TestApp::spawn_with(|s| s.limits.max_promotions_per_session = 3).await;
    let token = create_with_grants(&mut app, &[], &[]).await;
    for _ in 0..3 {
        promote(&mut app, &token, "viewBasic", 60).await.expect("within the cap");
    }
    let refused = failure(promote(&mut app, &token, "admin", 60).await);
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    use tonic_types::StatusExt as _;
    let quota = refused.get_error_details().quota_failure().cloned().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "promotions");
    assert!(!holds(&mut app, &token, "admin").await, "the refused promotion changed nothing");
    assert_eq!(privileges_of(&mut app, &token).await.promotions.len(), 3);

    app.advance(Duration::from_secs(61));
    promote(&mut app, &token, "admin", 60).await.expect("room again");
    assert!(holds(&mut app, &token, "admin").await, "expired promotions no longer count");
}
