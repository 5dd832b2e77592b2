//! Store tests that only make sense on SQLite: the database file's journal
//! mode and schema table. The backend-independent suite (`suite.rs`) runs on
//! SQLite as well.

mod common;

use common::{eventually, faces, Rng, TestStore, MODEL};
use facegate_store::{Gallery, KeyRing, StoreError, SQLITE_FOLLOW_EVERY};

#[test]
fn schema_is_versioned_and_wal() {
    let db = TestStore::sqlite();
    drop(db.open());
    drop(db.open());
    {
        let conn = db.sqlite_conn();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            versions,
            (1..=facegate_store::SCHEMA_VERSION).collect::<Vec<_>>()
        );
        conn.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (99, 0)",
            [],
        )
        .unwrap();
    }
    assert!(matches!(
        Gallery::open(db.url(), KeyRing::new(&db.key), db.options()),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

/// `facegate import` (another process) writing to the SQLite database of a
/// running server: the server's gallery serves the new group, its faces,
/// and its deletion without a restart.
#[test]
fn another_process_changes_are_followed_without_a_restart() {
    const T: &str = "tenant-a";
    let db = TestStore::sqlite();
    let server = db.open();
    server.create_group(T, "local", MODEL).unwrap();
    let mut rng = Rng(5);
    let vectors: Vec<Vec<f32>> = (0..3).map(|_| rng.vector(16)).collect();
    let importer = db.open();
    importer.create_group(T, "imported", MODEL).unwrap();
    importer
        .add_faces(T, "imported", faces(vectors.clone()), 100)
        .unwrap();
    let within = SQLITE_FOLLOW_EVERY * 10;
    eventually(within, "the imported group and its faces served", || {
        server
            .search(T, "imported", &vectors[1], 10, -1.0, None)
            .is_ok_and(|hits| hits.len() == 3)
    });
    // Local writes go on as before, and do not disturb the followed group.
    server
        .add_faces(T, "local", faces(vec![rng.vector(16)]), 100)
        .unwrap();
    assert_eq!(
        server
            .search(T, "local", &vectors[0], 10, -1.0, None)
            .unwrap()
            .len(),
        1
    );
    importer.delete_group(T, "imported").unwrap();
    eventually(within, "the deleted group gone", || {
        matches!(
            server.search(T, "imported", &vectors[1], 10, -1.0, None),
            Err(StoreError::GroupNotFound)
        )
    });
    assert_eq!(server.totals(), (1, 1));
}
