//! Helpers shared by the integration tests, and [`TestStore`], the fixture
//! that gives each test a fresh database on either backend.
//!
//! PostgreSQL is found at `FACEGATE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, a role that may create
//! databases); if it does not answer, the PostgreSQL tests fail (.ci/run
//! starts one).
#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_store::{
    Clock, FaceBox, FaceRecord, Gallery, GalleryOptions, KeyRing, MasterKey, NewFace, NewFaces,
    PageRequest, SqliteStore, UtcMillis,
};

pub const MODEL: &str = "test-model-1";

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(1_700_000_000_000)))
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UtcMillis {
        UtcMillis(self.0.load(Ordering::SeqCst))
    }
}

#[allow(unused_imports)]
pub use facegate_test_support::rng::SplitMix64 as Rng;

/// Which database a [`TestStore`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

enum Location {
    /// `data/facegate.db` in a temporary directory (`data/` does not exist
    /// until the gallery creates it).
    Sqlite { dir: tempfile::TempDir },
    /// A database created for this store on the test server.
    Postgres { admin_url: String, name: String },
}

/// A fresh, empty database on one backend, with its own master key and a
/// manual clock. Dropping it removes the database: the temporary directory
/// for SQLite; for PostgreSQL the database, after ending its connections.
pub struct TestStore {
    pub backend: Backend,
    location: Location,
    url: String,
    pub key: MasterKey,
    pub clock: Arc<ManualClock>,
}

impl TestStore {
    pub fn new(backend: Backend) -> Self {
        let (location, url) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", sqlite_path(dir.path()).display());
                (Location::Sqlite { dir }, url)
            }
            Backend::Postgres => {
                static SERIAL: AtomicU64 = AtomicU64::new(0);
                let admin_url = postgres_admin_url();
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let name = format!(
                    "facegate_test_{}_{}_{:x}",
                    std::process::id(),
                    SERIAL.fetch_add(1, Ordering::Relaxed),
                    nanos
                );
                pg_connect(&admin_url)
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .unwrap();
                let url = with_db(&admin_url, &name);
                (Location::Postgres { admin_url, name }, url)
            }
        };
        TestStore {
            backend,
            location,
            url,
            key: MasterKey::generate().unwrap(),
            clock: ManualClock::new(),
        }
    }

    pub fn sqlite() -> Self {
        Self::new(Backend::Sqlite)
    }

    pub fn postgres() -> Self {
        Self::new(Backend::Postgres)
    }

    /// The database URL to give [`Gallery::open`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options with the manual clock, a one-hour token lifetime and
    /// rotation batches of 500.
    pub fn options(&self) -> GalleryOptions {
        GalleryOptions {
            token_ttl: Duration::from_secs(3600),
            clock: self.clock.clone(),
            rotation_batch_size: 500,
            ..GalleryOptions::default()
        }
    }

    /// Opens (or reopens) a gallery on this database with the store's key.
    pub fn open(&self) -> Gallery {
        self.open_with(KeyRing::new(&self.key))
    }

    pub fn open_with(&self, keys: KeyRing) -> Gallery {
        Gallery::open(&self.url, keys, self.options()).unwrap()
    }

    /// The SQLite database file. Panics on PostgreSQL.
    pub fn db_path(&self) -> PathBuf {
        match &self.location {
            Location::Sqlite { dir } => sqlite_path(dir.path()),
            Location::Postgres { .. } => panic!("db_path() on a PostgreSQL test store"),
        }
    }

    /// A raw connection to the SQLite file. Panics on PostgreSQL.
    pub fn sqlite_conn(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db_path()).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }

    /// A raw client of the PostgreSQL database. Panics on SQLite.
    pub fn client(&self) -> postgres::Client {
        match &self.location {
            Location::Postgres { .. } => pg_connect(&self.url),
            Location::Sqlite { .. } => panic!("client() on a SQLite test store"),
        }
    }

    /// Runs SQL statements (separated by `;`) directly on the database,
    /// behind the gallery's back. Keep to SQL both backends accept.
    pub fn execute_batch(&self, sql: &str) {
        match self.backend {
            Backend::Sqlite => self.sqlite_conn().execute_batch(sql).unwrap(),
            Backend::Postgres => self.client().batch_execute(sql).unwrap(),
        }
    }

    /// The single integer (BIGINT) that `sql` selects.
    pub fn query_i64(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => self.sqlite_conn().query_row(sql, [], |r| r.get(0)).unwrap(),
            Backend::Postgres => self.client().query_one(sql, &[]).unwrap().get(0),
        }
    }

    /// The first (TEXT) column of every row `sql` selects.
    pub fn query_strings(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Sqlite => self
                .sqlite_conn()
                .prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap(),
            Backend::Postgres => self
                .client()
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect(),
        }
    }

    /// Every stored byte that could leak an embedding. SQLite: the database
    /// file with its WAL, shared-memory and journal files. PostgreSQL: each
    /// face row's nonce and ciphertext columns and the whole row as text.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match self.backend {
            Backend::Sqlite => read_db_files(&self.db_path()),
            Backend::Postgres => {
                let mut bytes = Vec::new();
                for row in self
                    .client()
                    .query("SELECT nonce, ciphertext, faces::text FROM faces", &[])
                    .unwrap()
                {
                    bytes.extend(row.get::<_, Vec<u8>>(0));
                    bytes.extend(row.get::<_, Vec<u8>>(1));
                    bytes.extend(row.get::<_, String>(2).into_bytes());
                }
                bytes
            }
        }
    }

    /// SQLite: moves the WAL into the main file. PostgreSQL: nothing
    /// ([`Self::stored_bytes`] reads the rows through SQL either way).
    pub fn checkpoint(&self) {
        if self.backend == Backend::Sqlite {
            SqliteStore::open(&self.db_path())
                .unwrap()
                .checkpoint()
                .unwrap();
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let Location::Postgres { admin_url, name } = &self.location else {
            return;
        };
        let Ok(mut c) = postgres::Client::connect(admin_url, postgres::NoTls) else {
            return;
        };
        let _ = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[name],
        );
        let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
    }
}

fn sqlite_path(dir: &Path) -> PathBuf {
    dir.join("data").join("facegate.db")
}

use facegate_test_support::pg::{admin_url as postgres_admin_url, connect as pg_connect, with_db};

pub fn face(v: Vec<f32>) -> NewFace {
    NewFace {
        bbox: FaceBox {
            x0: 0.1,
            y0: 0.2,
            x1: 0.6,
            y1: 0.7,
        },
        confidence: 0.99,
        embedding: v,
    }
}

pub fn faces(vs: Vec<Vec<f32>>) -> NewFaces {
    NewFaces {
        external_image_id: Some("image01.jpg".into()),
        model_version: MODEL.into(),
        faces: vs.into_iter().map(face).collect(),
    }
}

/// Every face of a group, newest first, fetched in pages of 7.
pub fn all_faces(g: &Gallery, tenant: &str, group: &str) -> Vec<FaceRecord> {
    let mut out = Vec::new();
    let mut page = g.list_faces(tenant, group, &PageRequest::First(7)).unwrap();
    loop {
        out.extend(page.items);
        if page.next_token.is_empty() {
            return out;
        }
        page = g
            .list_faces(tenant, group, &PageRequest::Next(page.next_token.clone()))
            .unwrap();
    }
}

/// Every byte of the database, its WAL and shared-memory files.
pub fn read_db_files(db: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(b) = std::fs::read(&p) {
            all.extend_from_slice(&b);
        }
    }
    all
}

/// Asserts that `bytes` (a sizeable dump of stored data) holds no two
/// consecutive floats of any embedding, and that the detector would have
/// found a planted one.
pub fn check_no_plaintext(bytes: &[u8], embeddings: &[Vec<f32>]) {
    assert!(bytes.len() > 10_000, "stored data suspiciously small");
    assert!(
        !holds_plaintext(bytes, embeddings),
        "embedding bytes found in stored data"
    );
    // The detector itself works: a planted vector is found.
    let mut planted = bytes.to_vec();
    planted.extend(embeddings[3].iter().flat_map(|v| v.to_le_bytes()));
    assert!(holds_plaintext(&planted, embeddings));
}

/// Whether any two consecutive floats (8 bytes, little-endian) of any
/// embedding appear anywhere in `bytes`.
pub fn holds_plaintext(bytes: &[u8], embeddings: &[Vec<f32>]) -> bool {
    let windows: HashSet<&[u8]> = bytes.windows(8).collect();
    embeddings.iter().any(|e| {
        let raw: Vec<u8> = e.iter().flat_map(|v| v.to_le_bytes()).collect();
        raw.windows(8).step_by(4).any(|w| windows.contains(w))
    })
}

/// Polls `cond` for up to `within`; panics with `what` if it never holds.
pub fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
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
