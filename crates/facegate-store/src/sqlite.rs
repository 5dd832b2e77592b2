//! The SQLite backend.
//!
//! Two connections: one writer (SQLite allows a single writer anyway; a
//! mutex queues writers in-process instead of spinning on SQLITE_BUSY) and
//! one read-only reader, which WAL lets run beside a write transaction.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::error::{Result, StoreError};
use crate::keys::{SealedEmbedding, NONCE_LEN};
use crate::store::{Cursor, FaceBox, FaceRecord, FaceStore, GroupInfo, RekeyItem, StoredFace};
use crate::time::{Clock, SystemClock, UtcMillis};

/// Schema migrations, applied in order, each in its own transaction. Never
/// edit a released entry; append a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE groups (
        tenant        TEXT    NOT NULL,
        group_id      TEXT    NOT NULL,
        created_at_ms INTEGER NOT NULL,
        model_version TEXT    NOT NULL,
        face_count    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, group_id)
    );
    CREATE INDEX groups_by_time ON groups (tenant, created_at_ms DESC, group_id DESC);
    CREATE TABLE faces (
        seq               INTEGER PRIMARY KEY,
        tenant            TEXT    NOT NULL,
        group_id          TEXT    NOT NULL,
        face_id           TEXT    NOT NULL,
        image_id          TEXT    NOT NULL,
        external_image_id TEXT,
        x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
        confidence        REAL    NOT NULL,
        created_at_ms     INTEGER NOT NULL,
        model_version     TEXT    NOT NULL,
        key_id            TEXT    NOT NULL,
        nonce             BLOB    NOT NULL,
        ciphertext        BLOB    NOT NULL,
        UNIQUE (tenant, group_id, face_id),
        FOREIGN KEY (tenant, group_id) REFERENCES groups (tenant, group_id) ON DELETE CASCADE
    );
    CREATE INDEX faces_by_time ON faces (tenant, group_id, created_at_ms DESC, face_id DESC);",
    ),
    (
        2,
        // The keys the store was initialised and rotated under (faces
        // already sealed name theirs), and a per-creation id of each group
        // that paging tokens bind to.
        "CREATE TABLE store_keys (
            key_id      TEXT    PRIMARY KEY,
            added_at_ms INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO store_keys (key_id, added_at_ms)
            SELECT DISTINCT key_id, 0 FROM faces;
        ALTER TABLE groups ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';",
    ),
];

/// Highest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 2;

const FACE_COLUMNS: &str = "face_id, image_id, external_image_id, x0, y0, x1, y1, confidence, \
     created_at_ms, model_version, key_id, nonce, ciphertext";

/// [`FaceStore`] on an SQLite file (WAL, `synchronous=FULL`, foreign keys,
/// `secure_delete` so deleted rows are zeroed in the file).
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a connection leaves no half-applied state: an
    // open transaction is rolled back when it is dropped.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn configure(conn: &Connection, busy_timeout: Duration) -> Result<()> {
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Database(
            format!("could not enable WAL (journal_mode is {mode})").into(),
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON;",
    )?;
    Ok(())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, creating its
    /// parent directories, and applies pending migrations; waits up to the
    /// default store timeout for locks.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_timeout(path, crate::gallery::DEFAULT_STORE_TIMEOUT)
    }

    /// [`SqliteStore::open`] waiting up to `busy_timeout` for another
    /// connection's lock before failing with [`StoreError::Timeout`].
    ///
    /// A new file is created readable by its owner only (SQLite gives the
    /// WAL and shared-memory files the database's mode), in directories
    /// created likewise. Problems SQLite would report as "unable to open
    /// database file" are reported with the path and the OS's reason.
    pub fn open_with_timeout(path: &Path, busy_timeout: Duration) -> Result<Self> {
        prepare_file(path)?;
        let mut writer = Connection::open(path)?;
        configure(&writer, busy_timeout)?;
        migrate(&mut writer, &SystemClock)?;
        let reader = Connection::open(path)?;
        configure(&reader, busy_timeout)?;
        reader.execute_batch("PRAGMA query_only=ON;")?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the WAL into the main file and truncates the WAL.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = lock(&self.writer);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// Creates the database file (mode 0600) and its directories (0700) if
/// missing, and checks that the file can be written and the directory can
/// take the WAL beside it, naming what fails and why.
fn prepare_file(path: &Path) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    crate::files::create_private_dir(&dir).map_err(io(&dir))?;
    crate::files::open_private(path).map_err(io(path))?;
    // SQLite creates `-wal` and `-shm` next to the file on first write.
    crate::files::check_writable_dir(&dir).map_err(io(&dir))?;
    Ok(())
}

fn migrate(conn: &mut Connection, clock: &dyn Clock) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version       INTEGER PRIMARY KEY,
            applied_at_ms INTEGER NOT NULL
        );",
    )?;
    for &(version, sql) in MIGRATIONS {
        // IMMEDIATE: two processes opening a new file at once must not both
        // apply the same migration.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported: SCHEMA_VERSION,
            });
        }
        if current >= version {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES (?1, ?2)",
            params![version, clock.now().0],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// A face row as read, before its blobs are checked.
struct RawFace {
    face_id: String,
    image_id: String,
    external_image_id: Option<String>,
    bbox: [f64; 4],
    confidence: f64,
    created_at_ms: i64,
    model_version: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn raw_face(r: &Row<'_>) -> rusqlite::Result<RawFace> {
    Ok(RawFace {
        face_id: r.get(0)?,
        image_id: r.get(1)?,
        external_image_id: r.get(2)?,
        bbox: [r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
        confidence: r.get(7)?,
        created_at_ms: r.get(8)?,
        model_version: r.get(9)?,
        key_id: r.get(10)?,
        nonce: r.get(11)?,
        ciphertext: r.get(12)?,
    })
}

fn sealed_from(key_id: String, nonce: Vec<u8>, ciphertext: Vec<u8>) -> Result<SealedEmbedding> {
    let nonce = <[u8; NONCE_LEN]>::try_from(nonce.as_slice())
        .map_err(|_| StoreError::Corrupt("nonce is not 12 bytes".into()))?;
    Ok(SealedEmbedding {
        key_id,
        nonce,
        ciphertext,
    })
}

impl RawFace {
    fn into_stored(self) -> Result<StoredFace> {
        let sealed = sealed_from(self.key_id, self.nonce, self.ciphertext)?;
        let [x0, y0, x1, y1] = self.bbox.map(|v| v as f32);
        Ok(StoredFace {
            record: FaceRecord {
                face_id: self.face_id,
                image_id: self.image_id,
                external_image_id: self.external_image_id,
                bbox: FaceBox { x0, y0, x1, y1 },
                confidence: self.confidence as f32,
                created_at: UtcMillis(self.created_at_ms),
                model_version: self.model_version,
            },
            sealed,
        })
    }
}

fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupInfo> {
    Ok(GroupInfo {
        group_id: r.get(0)?,
        created_at: UtcMillis(r.get(1)?),
        model_version: r.get(2)?,
        face_count: r.get::<_, i64>(3)?.max(0) as u64,
        incarnation: r.get(4)?,
    })
}

fn group_exists(conn: &Connection, tenant: &str, group_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM groups WHERE tenant = ?1 AND group_id = ?2")?
        .query_row(params![tenant, group_id], |_| Ok(()))
        .optional()?
        .is_some())
}

impl FaceStore for SqliteStore {
    fn known_key_ids(&self) -> Result<Vec<String>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached("SELECT key_id FROM store_keys ORDER BY key_id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    fn record_key_id(&self, key_id: &str, at: UtcMillis) -> Result<()> {
        lock(&self.writer).execute(
            "INSERT OR IGNORE INTO store_keys (key_id, added_at_ms) VALUES (?1, ?2)",
            params![key_id, at.0],
        )?;
        Ok(())
    }

    fn create_group(&self, tenant: &str, group: &GroupInfo) -> Result<()> {
        let conn = lock(&self.writer);
        let n = conn.execute(
            "INSERT INTO groups (tenant, group_id, created_at_ms, model_version, face_count, incarnation)
             VALUES (?1, ?2, ?3, ?4, 0, ?5) ON CONFLICT DO NOTHING",
            params![
                tenant,
                group.group_id,
                group.created_at.0,
                group.model_version,
                group.incarnation
            ],
        )?;
        if n == 0 {
            return Err(StoreError::DuplicatedGroupId);
        }
        Ok(())
    }

    fn get_group(&self, tenant: &str, group_id: &str) -> Result<Option<GroupInfo>> {
        let conn = lock(&self.reader);
        let group = conn
            .prepare_cached(
                "SELECT group_id, created_at_ms, model_version, face_count, incarnation FROM groups
                 WHERE tenant = ?1 AND group_id = ?2",
            )?
            .query_row(params![tenant, group_id], group_row)
            .optional()?;
        Ok(group)
    }

    fn list_groups(
        &self,
        tenant: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>> {
        let conn = lock(&self.reader);
        let limit = to_i64(limit as u64);
        let rows = match after {
            None => conn
                .prepare_cached(
                    "SELECT group_id, created_at_ms, model_version, face_count, incarnation FROM groups
                     WHERE tenant = ?1
                     ORDER BY created_at_ms DESC, group_id DESC LIMIT ?2",
                )?
                .query_map(params![tenant, limit], group_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Some(c) => conn
                .prepare_cached(
                    "SELECT group_id, created_at_ms, model_version, face_count, incarnation FROM groups
                     WHERE tenant = ?1 AND (created_at_ms, group_id) < (?2, ?3)
                     ORDER BY created_at_ms DESC, group_id DESC LIMIT ?4",
                )?
                .query_map(params![tenant, c.created_at.0, c.id, limit], group_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    fn all_groups(&self) -> Result<Vec<(String, GroupInfo)>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(
            "SELECT group_id, created_at_ms, model_version, face_count, incarnation, tenant FROM groups",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(5)?, group_row(r)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn change_counter(&self) -> Result<Option<i64>> {
        let conn = lock(&self.reader);
        let version = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok(Some(version))
    }

    fn delete_group(&self, tenant: &str, group_id: &str) -> Result<bool> {
        let conn = lock(&self.writer);
        // Faces go with it through ON DELETE CASCADE, in the same statement.
        let n = conn.execute(
            "DELETE FROM groups WHERE tenant = ?1 AND group_id = ?2",
            params![tenant, group_id],
        )?;
        Ok(n > 0)
    }

    fn insert_faces(
        &self,
        tenant: &str,
        group_id: &str,
        faces: &[StoredFace],
        max_faces_per_group: u64,
    ) -> Result<usize> {
        let mut conn = lock(&self.writer);
        // IMMEDIATE takes the write lock before the count is read, so no
        // other writer (even in another process) can insert in between.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let count: Option<i64> = tx
            .query_row(
                "SELECT face_count FROM groups WHERE tenant = ?1 AND group_id = ?2",
                params![tenant, group_id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(count) = count else {
            return Err(StoreError::GroupNotFound);
        };
        let room = max_faces_per_group.saturating_sub(count.max(0) as u64);
        let n = faces.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO faces (tenant, group_id, {FACE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
            ))?;
            for f in &faces[..n] {
                let r = &f.record;
                stmt.execute(params![
                    tenant,
                    group_id,
                    r.face_id,
                    r.image_id,
                    r.external_image_id,
                    f64::from(r.bbox.x0),
                    f64::from(r.bbox.y0),
                    f64::from(r.bbox.x1),
                    f64::from(r.bbox.y1),
                    f64::from(r.confidence),
                    r.created_at.0,
                    r.model_version,
                    f.sealed.key_id,
                    &f.sealed.nonce[..],
                    f.sealed.ciphertext,
                ])?;
            }
        }
        tx.execute(
            "UPDATE groups SET face_count = face_count + ?3 WHERE tenant = ?1 AND group_id = ?2",
            params![tenant, group_id, to_i64(n as u64)],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn get_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<Option<StoredFace>> {
        let mut conn = lock(&self.reader);
        // One read transaction so "group exists" and the face read agree.
        let tx = conn.transaction()?;
        if !group_exists(&tx, tenant, group_id)? {
            return Err(StoreError::GroupNotFound);
        }
        let raw = tx
            .prepare_cached(&format!(
                "SELECT {FACE_COLUMNS} FROM faces
                 WHERE tenant = ?1 AND group_id = ?2 AND face_id = ?3"
            ))?
            .query_row(params![tenant, group_id, face_id], raw_face)
            .optional()?;
        raw.map(RawFace::into_stored).transpose()
    }

    fn list_faces(
        &self,
        tenant: &str,
        group_id: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>> {
        let mut conn = lock(&self.reader);
        let tx = conn.transaction()?;
        if !group_exists(&tx, tenant, group_id)? {
            return Err(StoreError::GroupNotFound);
        }
        let limit = to_i64(limit as u64);
        let raws = match after {
            None => tx
                .prepare_cached(&format!(
                    "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = ?1 AND group_id = ?2
                     ORDER BY created_at_ms DESC, face_id DESC LIMIT ?3"
                ))?
                .query_map(params![tenant, group_id, limit], raw_face)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            Some(c) => tx
                .prepare_cached(&format!(
                    "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = ?1 AND group_id = ?2
                     AND (created_at_ms, face_id) < (?3, ?4)
                     ORDER BY created_at_ms DESC, face_id DESC LIMIT ?5"
                ))?
                .query_map(
                    params![tenant, group_id, c.created_at.0, c.id, limit],
                    raw_face,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        raws.into_iter()
            .map(|r| r.into_stored().map(|s| s.record))
            .collect()
    }

    fn for_each_face(
        &self,
        tenant: &str,
        group_id: &str,
        f: &mut dyn FnMut(StoredFace) -> Result<()>,
    ) -> Result<()> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare(&format!(
            "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = ?1 AND group_id = ?2"
        ))?;
        let mut rows = stmt.query(params![tenant, group_id])?;
        while let Some(row) = rows.next()? {
            f(raw_face(row)?.into_stored()?)?;
        }
        Ok(())
    }

    fn delete_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<bool> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM faces WHERE tenant = ?1 AND group_id = ?2 AND face_id = ?3",
            params![tenant, group_id, face_id],
        )?;
        if n == 0 {
            return if group_exists(&tx, tenant, group_id)? {
                Ok(false)
            } else {
                Err(StoreError::GroupNotFound)
            };
        }
        tx.execute(
            "UPDATE groups SET face_count = face_count - ?3 WHERE tenant = ?1 AND group_id = ?2",
            params![tenant, group_id, to_i64(n as u64)],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn records_not_under_key(
        &self,
        key_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<RekeyItem>> {
        let conn = lock(&self.reader);
        let mut stmt = conn.prepare_cached(
            "SELECT seq, tenant, group_id, face_id, key_id, nonce, ciphertext FROM faces
             WHERE seq > ?1 AND key_id <> ?2 ORDER BY seq LIMIT ?3",
        )?;
        let raws = stmt
            .query_map(params![after_seq, key_id, to_i64(limit as u64)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Vec<u8>>(6)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter()
            .map(|(seq, tenant, group_id, face_id, key_id, nonce, ct)| {
                Ok(RekeyItem {
                    seq,
                    tenant,
                    group_id,
                    face_id,
                    sealed: sealed_from(key_id, nonce, ct)?,
                })
            })
            .collect()
    }

    fn replace_sealed(&self, updates: &[(RekeyItem, SealedEmbedding)]) -> Result<usize> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut done = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE faces SET key_id = ?1, nonce = ?2, ciphertext = ?3
                 WHERE seq = ?4 AND key_id = ?5 AND nonce = ?6",
            )?;
            for (item, new) in updates {
                done += stmt.execute(params![
                    new.key_id,
                    &new.nonce[..],
                    new.ciphertext,
                    item.seq,
                    item.sealed.key_id,
                    &item.sealed.nonce[..],
                ])?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    fn count_not_under_key(&self, key_id: &str) -> Result<u64> {
        let conn = lock(&self.reader);
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM faces WHERE key_id <> ?1",
            params![key_id],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}
