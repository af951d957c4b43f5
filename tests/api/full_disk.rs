//! A full disk under the embedded store: writes are refused with
//! RESOURCE_EXHAUSTED (`STORE_FULL`), reads still answer, and writes succeed
//! again by themselves once space is freed.
//!
//! The data directory is a real 2 MiB tmpfs, filled by real writes; the
//! embedded store is used whatever `SESSIOND_TEST_STORE` says.

use std::path::{Path, PathBuf};
use std::process::Command;

use sessiond::pb;
use tonic::Code;

use crate::helpers::{TestApp, by_token, entry, error_reason, text};

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount(8) runs");
        assert!(
            output.status.success(),
            "this test needs to mount a tmpfs (it runs as root): mount refused: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a server still holding files cannot keep it mounted.
        let _ = Command::new("umount").arg("--lazy").arg(self.dir.path()).status();
    }
}

/// 48 KiB of text, under the value and message limits.
fn filler_text(seed: usize) -> String {
    format!("{seed:08}").repeat(6 * 1024)
}

#[tokio::test]
async fn a_full_disk_refuses_writes_as_store_full_keeps_reads_and_recovers_once_space_is_freed() {
    let disk = Tmpfs::mount("2m");
    // Space held back, freed later to let writes through again.
    let filler: PathBuf = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).expect("the filler file is written");
    let data_dir = disk.path().join("data");
    let mut app = TestApp::spawn_with(|s| {
        s.store.data_dir = data_dir;
        s.store.database_url = None;
    })
    .await;

    let kept = app.create(pb::SessionKind::WebUser, "alice").await;
    app.storage
        .put_storage(pb::PutStorageRequest {
            session: by_token(&kept.token),
            values: [("greeting".to_owned(), text("hello"))].into(),
            expected_version: None,
        })
        .await
        .expect("a write succeeds while there is space");

    // Fill the disk: storage values and log entries, new sessions as each
    // one's storage quota fills, until a write is refused.
    let mut refused = None;
    let mut token = app.create(pb::SessionKind::WebUser, "filler").await.token;
    for round in 0..400 {
        let put = app
            .storage
            .put_storage(pb::PutStorageRequest {
                session: by_token(&token),
                values: [(format!("k{round}"), text(&filler_text(round)))].into(),
                expected_version: None,
            })
            .await;
        let logged = match put {
            Ok(_) => {
                let entries = (0..4).map(|i| entry(pb::LogLevel::Info, &filler_text(round * 4 + i))).collect();
                app.logs
                    .log(pb::LogRequest { session: by_token(&token), entries, ..Default::default() })
                    .await
                    .map(|_| ())
            }
            Err(status) => Err(status),
        };
        match logged {
            Ok(()) => {}
            // The session's own storage quota is full: go on with another.
            Err(status) if status.code() == Code::ResourceExhausted && error_reason(&status).is_none() => {
                match app
                    .sessions
                    .create_session(pb::CreateSessionRequest {
                        kind: pb::SessionKind::WebUser.into(),
                        user_id: "filler".into(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(created) => token = created.into_inner().token,
                    Err(status) => {
                        refused = Some(status);
                        break;
                    }
                }
            }
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a 2 MiB disk fills up");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(error_reason(&refused).as_deref(), Some("STORE_FULL"), "{refused:?}");
    assert!(!refused.message().contains("sessiond.db"), "no internals are answered: {refused:?}");

    let read = app
        .storage
        .get_storage(pb::GetStorageRequest { session: by_token(&kept.token), keys: vec![] })
        .await
        .expect("reads still answer on a full disk")
        .into_inner();
    assert_eq!(read.values.get("greeting"), Some(&text("hello")));
    app.get(&kept.token).await.expect("a session is still read on a full disk");

    std::fs::remove_file(&filler).expect("the filler file is removed");
    app.storage
        .put_storage(pb::PutStorageRequest {
            session: by_token(&kept.token),
            values: [("after".to_owned(), text("space was freed"))].into(),
            expected_version: None,
        })
        .await
        .expect("writes succeed again once space is freed");
    app.create(pb::SessionKind::WebUser, "bob").await;
    let read = app
        .storage
        .get_storage(pb::GetStorageRequest { session: by_token(&kept.token), keys: vec!["after".into()] })
        .await
        .expect("the new value reads back")
        .into_inner();
    assert_eq!(read.values.get("after"), Some(&text("space was freed")));
    drop(app);
}
