//! Store tests that only make sense on SQLite: the database file's journal
//! mode and schema table. The backend-independent suite (`suite.rs`) runs on
//! SQLite as well.

mod common;

use common::TestStore;
use facegate_store::{Gallery, KeyRing, StoreError};

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
