//! The gallery on a real PostgreSQL server: one fresh database per test,
//! dropped at the end. The server is found at `FACEGATE_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`); if it does not
//! answer, the tests fail (.ci/run starts one).

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{faces, ManualClock, Rng, MODEL};
use facegate_store::{FaceRecord, Gallery, GalleryOptions, KeyRing, MasterKey, StoreError};

const T: &str = "tenant-a";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test and dropped (with its connections) at
/// the end.
struct TestDb {
    admin_url: String,
    name: String,
    url: String,
    key: MasterKey,
    clock: Arc<ManualClock>,
}

fn admin_url() -> String {
    std::env::var("FACEGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// `url` with its database name replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

fn admin(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for these tests and is not reachable at {url} ({e}); \
             start one (see .ci/run) or set FACEGATE_TEST_POSTGRES_URL"
        )
    })
}

impl TestDb {
    fn new() -> Self {
        let admin_url = admin_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("facegate_test_{}_{:x}", std::process::id(), nanos);
        admin(&admin_url)
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        TestDb {
            url: with_db(&admin_url, &name),
            admin_url,
            name,
            key: MasterKey::generate().unwrap(),
            clock: ManualClock::new(),
        }
    }

    fn options(&self) -> GalleryOptions {
        GalleryOptions {
            token_ttl: Duration::from_secs(3600),
            clock: self.clock.clone(),
            rotation_batch_size: 500,
        }
    }

    fn open(&self) -> Gallery {
        Gallery::open(&self.url, KeyRing::new(&self.key), self.options()).unwrap()
    }

    fn client(&self) -> postgres::Client {
        admin(&self.url)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Ok(mut c) = postgres::Client::connect(&self.admin_url, postgres::NoTls) else {
            return;
        };
        let _ = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&self.name],
        );
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}

fn all_faces(g: &Gallery, tenant: &str, group: &str) -> Vec<FaceRecord> {
    let mut out = Vec::new();
    let mut page = g.list_faces(tenant, group, 7, None).unwrap();
    loop {
        out.extend(page.items);
        if page.next_token.is_empty() {
            return out;
        }
        page = g
            .list_faces(tenant, group, 7, Some(&page.next_token))
            .unwrap();
    }
}

/// Polls `cond` for up to `within`; panics with `what` if it never holds.
fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > within {
            panic!("not within {within:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn restart_keeps_groups_faces_and_search_answers() {
    let db = TestDb::new();
    let mut rng = Rng(1);
    let queries: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(32)).collect();
    let (groups, faces_a, searches) = {
        let g = db.open();
        for (tenant, group) in [(T, "g1"), (T, "g2"), ("tenant-b", "g1")] {
            g.create_group(tenant, group, MODEL).unwrap();
            for _ in 0..3 {
                db.clock.advance(5);
                let vs = (0..4).map(|_| rng.vector(32)).collect();
                g.add_faces(tenant, group, faces(vs), 1000).unwrap();
            }
        }
        let searches: Vec<_> = queries
            .iter()
            .map(|q| g.search(T, "g1", q, 10, -1.0, None).unwrap())
            .collect();
        (
            g.list_groups(T, 200, None).unwrap(),
            all_faces(&g, T, "g1"),
            searches,
        )
    };
    let g = db.open();
    assert_eq!(g.list_groups(T, 200, None).unwrap(), groups);
    assert_eq!(groups.items.len(), 2);
    assert_eq!(groups.items[0].face_count, 12);
    assert_eq!(all_faces(&g, T, "g1"), faces_a);
    assert_eq!(faces_a.len(), 12);
    assert_eq!(all_faces(&g, "tenant-b", "g1").len(), 12);
    for (q, want) in queries.iter().zip(&searches) {
        assert_eq!(&g.search(T, "g1", q, 10, -1.0, None).unwrap(), want);
    }
    // Starting with the wrong key fails instead of looking empty.
    let other = MasterKey::generate().unwrap();
    assert!(Gallery::open(&db.url, KeyRing::new(&other), db.options()).is_err());
}

#[test]
fn stored_rows_never_hold_plaintext_embeddings() {
    let db = TestDb::new();
    let mut rng = Rng(2);
    let mut stored = Vec::new();
    let g = db.open();
    g.create_group(T, "g", MODEL).unwrap();
    for _ in 0..20 {
        let vs: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(128)).collect();
        stored.extend(vs.clone());
        g.add_faces(T, "g", faces(vs), 100_000).unwrap();
    }
    let mut bytes = Vec::new();
    for row in db
        .client()
        .query("SELECT nonce, ciphertext, faces::text FROM faces", &[])
        .unwrap()
    {
        bytes.extend(row.get::<_, Vec<u8>>(0));
        bytes.extend(row.get::<_, Vec<u8>>(1));
        bytes.extend(row.get::<_, String>(2).into_bytes());
    }
    assert!(bytes.len() > 10_000, "rows suspiciously small");
    assert!(!holds_plaintext(&bytes, &stored), "embedding bytes in rows");
    // The detector itself works: a planted vector is found.
    bytes.extend(stored[3].iter().flat_map(|v| v.to_le_bytes()));
    assert!(holds_plaintext(&bytes, &stored));
}

fn holds_plaintext(bytes: &[u8], embeddings: &[Vec<f32>]) -> bool {
    let windows: HashSet<&[u8]> = bytes.windows(8).collect();
    embeddings.iter().any(|e| {
        let raw: Vec<u8> = e.iter().flat_map(|v| v.to_le_bytes()).collect();
        // Any two consecutive floats (8 bytes) of any vector would be a leak.
        raw.windows(8).step_by(4).any(|w| windows.contains(w))
    })
}

#[test]
fn quota_partial_and_none() {
    let db = TestDb::new();
    let mut rng = Rng(5);
    let g = db.open();
    g.create_group(T, "g", MODEL).unwrap();
    let vs = |rng: &mut Rng, n| (0..n).map(|_| rng.vector(8)).collect::<Vec<_>>();
    let full = g.add_faces(T, "g", faces(vs(&mut rng, 3)), 5).unwrap();
    assert!(!full.is_partial());
    let input = vs(&mut rng, 4);
    let part = g.add_faces(T, "g", faces(input.clone()), 5).unwrap();
    assert_eq!(part.added.len(), 2);
    assert_eq!(part.not_added, vec![2, 3]);
    for (rec, v) in part.added.iter().zip(&input) {
        assert_eq!(&g.embedding_of(T, "g", &rec.face_id).unwrap(), v);
    }
    assert!(matches!(
        g.add_faces(T, "g", faces(vs(&mut rng, 1)), 5),
        Err(StoreError::QuotaExceeded {
            max_faces_per_group: 5
        })
    ));
    assert_eq!(g.get_group(T, "g").unwrap().face_count, 5);
    g.delete_face(T, "g", &part.added[0].face_id).unwrap();
    assert!(matches!(
        g.delete_face(T, "g", &part.added[0].face_id),
        Err(StoreError::FaceNotFound)
    ));
    let again = g.add_faces(T, "g", faces(vs(&mut rng, 2)), 5).unwrap();
    assert_eq!((again.added.len(), again.not_added.len()), (1, 1));
    assert!(matches!(
        g.create_group(T, "g", MODEL),
        Err(StoreError::DuplicatedGroupId)
    ));
    g.delete_group(T, "g").unwrap();
    assert!(matches!(
        g.get_group(T, "g"),
        Err(StoreError::GroupNotFound)
    ));
}

#[test]
fn paging_newest_first_with_tokens() {
    let db = TestDb::new();
    let g = db.open();
    let mut ids = Vec::new();
    for i in 0..9 {
        // Pairs share a millisecond, so the id tie-break is exercised.
        if i % 2 == 0 {
            db.clock.advance(1000);
        }
        let id = format!("group-{i}");
        g.create_group(T, &id, MODEL).unwrap();
        ids.push(id);
    }
    g.create_group("other", "x", MODEL).unwrap();
    let mut seen = Vec::new();
    let mut page = g.list_groups(T, 4, None).unwrap();
    loop {
        seen.extend(page.items.iter().map(|g| g.group_id.clone()));
        if page.next_token.is_empty() {
            break;
        }
        page = g.list_groups(T, 1, Some(&page.next_token)).unwrap();
    }
    ids.reverse();
    assert_eq!(seen, ids);
    // Faces: ids sort by bytes (the "C" collation), as with SQLite.
    let mut rng = Rng(9);
    g.create_group(T, "f", MODEL).unwrap();
    for _ in 0..5 {
        let vs = (0..4).map(|_| rng.vector(8)).collect();
        g.add_faces(T, "f", faces(vs), 1000).unwrap();
    }
    let listed = all_faces(&g, T, "f");
    let mut want = listed.clone();
    want.sort_by(|a, b| (b.created_at.0, &b.face_id).cmp(&(a.created_at.0, &a.face_id)));
    assert_eq!(listed.len(), 20);
    assert_eq!(listed, want);
    let token = g.list_faces(T, "f", 3, None).unwrap().next_token;
    assert!(matches!(
        g.list_faces(T, "g", 3, Some(&token)),
        Err(StoreError::InvalidToken(_))
    ));
}

#[test]
fn two_nodes_see_each_others_changes_within_a_second() {
    let db = TestDb::new();
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
    let db = TestDb::new();
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
    let db = TestDb::new();
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
    let db = TestDb::new();
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
        Gallery::open(&db.url, KeyRing::new(&db.key), db.options()),
        Err(StoreError::SchemaTooNew { found: 999, .. })
    ));
}
