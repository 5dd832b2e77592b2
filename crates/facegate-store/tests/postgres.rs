//! Store tests that only make sense on PostgreSQL: several galleries (nodes)
//! on one database following each other through LISTEN/NOTIFY, and the
//! schema table. Each test gets a fresh database (see `common::TestStore`
//! for where the server is found). The backend-independent suite
//! (`suite.rs`) runs on PostgreSQL as well.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{all_faces, eventually, faces, Rng, TestStore, MODEL};
use facegate_store::{Gallery, KeyRing, StoreError};

const T: &str = "tenant-a";

#[test]
fn two_nodes_see_each_others_changes_within_a_second() {
    let db = TestStore::postgres();
    let a = db.open();
    let b = db.open();
    let mut rng = Rng(7);
    a.create_group(T, "g", MODEL).unwrap();
    let v = rng.vector(16);
    let added = a.add_faces(T, "g", faces(vec![v.clone()]), 100).unwrap();
    let id = added.added[0].face_id.clone();
    eventually(
        Duration::from_secs(1),
        "registration on A searchable on B",
        || {
            b.search(T, "g", &v, 5, 0.99, None)
                .unwrap()
                .iter()
                .any(|h| h.face.face_id == id)
        },
    );
    b.delete_face(T, "g", &id).unwrap();
    eventually(Duration::from_secs(1), "deletion on B gone on A", || {
        a.search(T, "g", &v, 5, -1.0, None).unwrap().is_empty()
    });
    b.delete_group(T, "g").unwrap();
    eventually(
        Duration::from_secs(1),
        "group deletion on B seen by A",
        || {
            matches!(
                a.search(T, "g", &v, 5, -1.0, None),
                Err(StoreError::GroupNotFound)
            )
        },
    );
    // A group created on B a moment ago is usable on A at once.
    b.create_group(T, "fresh", MODEL).unwrap();
    a.add_faces(T, "fresh", faces(vec![rng.vector(16)]), 10)
        .unwrap();
}

#[test]
fn concurrent_registrations_on_two_nodes_respect_the_quota() {
    let db = TestStore::postgres();
    let nodes = [Arc::new(db.open()), Arc::new(db.open())];
    nodes[0].create_group(T, "race", MODEL).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let g = nodes[t % 2].clone();
            std::thread::spawn(move || {
                let mut rng = Rng(100 + t as u64);
                let mut added = Vec::new();
                for _ in 0..6 {
                    let vs = (0..3).map(|_| rng.vector(8)).collect();
                    match g.add_faces(T, "race", faces(vs), 20) {
                        Ok(o) => added.extend(o.added.into_iter().map(|f| f.face_id)),
                        Err(StoreError::QuotaExceeded { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                added
            })
        })
        .collect();
    let added: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(added.len(), 20);
    let unique: HashSet<&String> = added.iter().collect();
    assert_eq!(unique.len(), 20);
    for g in &nodes {
        assert_eq!(g.get_group(T, "race").unwrap().face_count, 20);
        let listed: HashSet<String> = all_faces(g, T, "race")
            .into_iter()
            .map(|f| f.face_id)
            .collect();
        assert_eq!(listed, added.iter().cloned().collect());
        let q = vec![1.0; 8];
        eventually(Duration::from_secs(1), "both indexes hold all 20", || {
            g.search(T, "race", &q, 100, -1.0, None).unwrap().len() == 20
        });
    }
}

#[test]
fn node_catches_up_after_losing_its_listener_connection() {
    let db = TestStore::postgres();
    let a = db.open();
    let b = db.open();
    let mut rng = Rng(11);
    a.create_group(T, "g", MODEL).unwrap();
    b.refresh_group(T, "g").unwrap();
    // Cut every listening connection (both nodes'), then change data while
    // they are down: those notifications are lost.
    db.client()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'facegate-listener'",
            &[],
        )
        .unwrap();
    let v = rng.vector(16);
    let id = a
        .add_faces(T, "g", faces(vec![v.clone()]), 100)
        .unwrap()
        .added[0]
        .face_id
        .clone();
    eventually(
        Duration::from_secs(5),
        "B catches up after reconnecting",
        || {
            b.search(T, "g", &v, 5, 0.99, None)
                .unwrap()
                .iter()
                .any(|h| h.face.face_id == id)
        },
    );
}

#[test]
fn schema_is_versioned() {
    let db = TestStore::postgres();
    drop(db.open());
    drop(db.open());
    let version: i64 = db
        .client()
        .query_one("SELECT MAX(version) FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, facegate_store::POSTGRES_SCHEMA_VERSION);
    db.client()
        .execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (999, 0)",
            &[],
        )
        .unwrap();
    assert!(matches!(
        Gallery::open(db.url(), KeyRing::new(&db.key), db.options()),
        Err(StoreError::SchemaTooNew { found: 999, .. })
    ));
}
