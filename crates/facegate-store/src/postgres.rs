//! The PostgreSQL backend, and the change feed that keeps several facegate
//! processes sharing one database in step.
//!
//! * [`PostgresStore`] implements [`FaceStore`] with the blocking
//!   `postgres` client over a small connection pool. Embeddings stay
//!   AES-GCM ciphertext in the database, exactly as with SQLite; search runs
//!   in facegate's memory.
//! * Every transaction that changes a group or its faces also runs
//!   `pg_notify('facegate_changes', '<tenant>/<group>')`, so the
//!   notification is sent if and only if the change commits.
//! * [`ChangeListener`] holds its own connection, `LISTEN`s on that channel
//!   and reports [`Change`]s from a background thread; after a lost
//!   connection it reconnects with backoff and reports [`Change::All`],
//!   because notifications sent while it was away are gone.
//!
//! Connections are plain TCP (or a Unix socket): TLS is not supported yet,
//! so a URL with `sslmode=require` fails to connect. Run facegate next to
//! its database or over a trusted network.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::postgres::error::SqlState;
use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::types::ToSql;
use ::postgres::{Client, Config, IsolationLevel, NoTls, Row, Transaction};

use crate::error::{Result, StoreError};
use crate::keys::{SealedEmbedding, NONCE_LEN};
use crate::store::{Cursor, FaceBox, FaceRecord, FaceStore, GroupInfo, RekeyItem, StoredFace};
use crate::time::{Clock, SystemClock, UtcMillis};

/// The notification channel every change is announced on.
pub const CHANGE_CHANNEL: &str = "facegate_changes";

/// Highest PostgreSQL schema version this build knows.
pub const POSTGRES_SCHEMA_VERSION: i64 = 2;

/// Schema migrations, applied in order. Never edit a released entry; append
/// a new one. Text keys use the "C" collation so keyset paging orders ids
/// by bytes, as SQLite does, whatever the database's locale.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE groups (
        tenant        TEXT COLLATE "C" NOT NULL,
        group_id      TEXT COLLATE "C" NOT NULL,
        created_at_ms BIGINT NOT NULL,
        model_version TEXT   NOT NULL,
        face_count    BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, group_id)
    );
    CREATE INDEX groups_by_time ON groups (tenant, created_at_ms DESC, group_id DESC);
    CREATE TABLE faces (
        seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant            TEXT COLLATE "C" NOT NULL,
        group_id          TEXT COLLATE "C" NOT NULL,
        face_id           TEXT COLLATE "C" NOT NULL,
        image_id          TEXT NOT NULL,
        external_image_id TEXT,
        x0 DOUBLE PRECISION NOT NULL, y0 DOUBLE PRECISION NOT NULL,
        x1 DOUBLE PRECISION NOT NULL, y1 DOUBLE PRECISION NOT NULL,
        confidence        DOUBLE PRECISION NOT NULL,
        created_at_ms     BIGINT NOT NULL,
        model_version     TEXT   NOT NULL,
        key_id            TEXT   NOT NULL,
        nonce             BYTEA  NOT NULL,
        ciphertext        BYTEA  NOT NULL,
        UNIQUE (tenant, group_id, face_id),
        FOREIGN KEY (tenant, group_id) REFERENCES groups (tenant, group_id) ON DELETE CASCADE
    );
    CREATE INDEX faces_by_time ON faces (tenant, group_id, created_at_ms DESC, face_id DESC);
    CREATE INDEX faces_by_key ON faces (key_id, seq);"#,
    ),
    (
        2,
        // As SQLite's migration 2: the store's keys, group incarnations.
        r#"CREATE TABLE store_keys (
        key_id      TEXT COLLATE "C" PRIMARY KEY,
        added_at_ms BIGINT NOT NULL
    );
    INSERT INTO store_keys (key_id, added_at_ms)
        SELECT DISTINCT key_id, 0 FROM faces ON CONFLICT DO NOTHING;
    ALTER TABLE groups ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';"#,
    ),
];

const FACE_COLUMNS: &str = "face_id, image_id, external_image_id, x0, y0, x1, y1, confidence, \
     created_at_ms, model_version, key_id, nonce, ciphertext";

/// Idle connections kept for reuse; more may be open while busy.
const MAX_IDLE: usize = 8;
/// A pooled connection idle longer than this is pinged before reuse, so a
/// database restart costs no failed request.
const PING_AFTER_IDLE: Duration = Duration::from_secs(5);
/// Attempts of a transaction that failed on a deadlock or serialisation
/// conflict (PostgreSQL rolled it back, so retrying is safe).
const TX_ATTEMPTS: usize = 5;
/// Rows fetched per round trip when streaming a group.
const STREAM_BATCH: i32 = 1000;

trait PgResultExt<T> {
    fn db(self) -> Result<T>;
}

impl<T> PgResultExt<T> for std::result::Result<T, ::postgres::Error> {
    fn db(self) -> Result<T> {
        self.map_err(|e| {
            // statement_timeout cancels with 57014, lock_timeout fails with
            // 55P03: both mean the store deadline passed.
            let timed_out = e.code().is_some_and(|c| {
                *c == SqlState::QUERY_CANCELED || *c == SqlState::LOCK_NOT_AVAILABLE
            });
            if timed_out {
                StoreError::Timeout
            } else {
                StoreError::Database(Box::new(e))
            }
        })
    }
}

/// The PostgreSQL error behind a [`StoreError`], if any.
fn pg_error(e: &StoreError) -> Option<&::postgres::Error> {
    match e {
        StoreError::Database(inner) => inner.downcast_ref::<::postgres::Error>(),
        _ => None,
    }
}

fn is_retryable(e: &StoreError) -> bool {
    pg_error(e).and_then(|e| e.code()).is_some_and(|c| {
        *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The pool is a plain Vec; a panic elsewhere cannot leave it half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Parses a `postgres://` URL, adding a connect timeout and an application
/// name when the URL sets none, and the store deadline: every statement and
/// lock wait is cut at `timeout` by the server, and a connection whose
/// packets go unacknowledged that long (a partition) is dropped by the OS.
fn parse_config_with_timeout(
    url: &str,
    application_name: &str,
    timeout: Duration,
) -> Result<Config> {
    let mut config = parse_config(url, application_name)?;
    let ms = timeout.as_millis().max(1);
    let mut options = config.get_options().unwrap_or_default().to_string();
    options.push_str(&format!(" -c statement_timeout={ms} -c lock_timeout={ms}"));
    config.options(options.trim());
    config.keepalives(true);
    config.keepalives_idle(timeout.max(Duration::from_secs(1)));
    #[cfg(target_os = "linux")]
    config.tcp_user_timeout(timeout.max(Duration::from_secs(1)));
    Ok(config)
}

/// Parses a `postgres://` URL, adding a connect timeout and an application
/// name when the URL sets none.
fn parse_config(url: &str, application_name: &str) -> Result<Config> {
    // The parser's message could echo parts of the URL (a password), so
    // report a fixed reason.
    let mut config: Config = url
        .parse()
        .map_err(|_| StoreError::InvalidDatabaseUrl("cannot parse the postgres:// URL".into()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    Ok(config)
}

/// Host and database name of a `postgres://` URL, without credentials.
pub(crate) fn describe_url(url: &str) -> String {
    parse_config(url, "facegate")
        .map(|c| describe(&c))
        .unwrap_or_else(|_| "(unparseable postgres:// URL)".into())
}

/// A short description of where `config` points, without credentials.
fn describe(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            ::postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            ::postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

/// [`FaceStore`] on a PostgreSQL database, shareable by several facegate
/// processes. Quotas hold across processes: a registration locks its group
/// row (`SELECT ... FOR UPDATE`) before counting.
pub struct PostgresStore {
    config: Config,
    pool: Mutex<Vec<(Client, Instant)>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &describe(&self.config))
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user[:password]@host
    /// [:port]/dbname[?options]`, no TLS) and applies pending migrations,
    /// with the default store timeout.
    pub fn connect(url: &str) -> Result<Self> {
        Self::connect_with_timeout(url, crate::gallery::DEFAULT_STORE_TIMEOUT)
    }

    /// [`PostgresStore::connect`] with every statement and lock wait cut
    /// at `timeout` ([`StoreError::Timeout`]).
    pub fn connect_with_timeout(url: &str, timeout: Duration) -> Result<Self> {
        let config = parse_config_with_timeout(url, "facegate", timeout)?;
        let store = PostgresStore {
            config,
            pool: Mutex::new(Vec::new()),
        };
        let mut client = store.checkout()?;
        migrate(&mut client, &SystemClock)?;
        store.give_back(client);
        Ok(store)
    }

    /// Whether the database at `url` holds facegate data (its tables exist
    /// and one has a row), without migrating or changing anything.
    pub fn holds_data(url: &str) -> Result<bool> {
        let mut client = parse_config(url, "facegate")?.connect(NoTls).db()?;
        for table in ["store_keys", "groups"] {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .db()?
                .try_get(0)
                .db()?;
            if exists {
                let any: bool = client
                    .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                    .db()?
                    .try_get(0)
                    .db()?;
                if any {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// An idle pooled connection that still works, or a new one.
    fn checkout(&self) -> Result<Client> {
        loop {
            let pooled = lock(&self.pool).pop();
            let Some((mut client, idle_since)) = pooled else {
                break;
            };
            if client.is_closed() {
                continue;
            }
            if idle_since.elapsed() > PING_AFTER_IDLE
                && client.is_valid(Duration::from_secs(2)).is_err()
            {
                continue;
            }
            return Ok(client);
        }
        self.config.connect(NoTls).db()
    }

    /// Returns a connection to the pool unless it was lost or the pool is
    /// full.
    fn give_back(&self, client: Client) {
        if client.is_closed() {
            return;
        }
        let mut pool = lock(&self.pool);
        if pool.len() < MAX_IDLE {
            pool.push((client, Instant::now()));
        }
    }

    /// Runs `f` in a read-committed transaction, again when PostgreSQL
    /// aborted it for a deadlock or serialisation conflict. Not retried on
    /// a lost connection: the commit may or may not have happened.
    fn write_tx<T>(&self, mut f: impl FnMut(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut client = self.checkout()?;
            let result = (|| {
                let mut tx = client.transaction().db()?;
                let v = f(&mut tx)?;
                tx.commit().db()?;
                Ok(v)
            })();
            self.give_back(client);
            match result {
                Err(e) if attempt < TX_ATTEMPTS && is_retryable(&e) => continue,
                other => return other,
            }
        }
    }

    /// Runs a read-only `f`, once more on a fresh connection when the first
    /// one turned out to be dead (reads are safe to repeat).
    fn read<T>(&self, mut f: impl FnMut(&mut Client) -> Result<T>) -> Result<T> {
        let mut client = self.checkout()?;
        let mut result = f(&mut client);
        if result.is_err() && client.is_closed() {
            client = self.checkout()?;
            result = f(&mut client);
        }
        self.give_back(client);
        result
    }
}

fn migrate(client: &mut Client, clock: &dyn Clock) -> Result<()> {
    let mut tx = client.transaction().db()?;
    // Serialises migrations of processes starting at once; released at
    // commit or rollback.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('facegate-schema-migration'))",
        &[],
    )
    .db()?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version       BIGINT PRIMARY KEY,
            applied_at_ms BIGINT NOT NULL
        )",
    )
    .db()?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .db()?
        .try_get(0)
        .db()?;
    if current > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: POSTGRES_SCHEMA_VERSION,
        });
    }
    for &(version, sql) in MIGRATIONS {
        if version <= current {
            continue;
        }
        tx.batch_execute(sql).db()?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, $2)",
            &[&version, &clock.now().0],
        )
        .db()?;
    }
    tx.commit().db()
}

fn notify(tx: &mut Transaction<'_>, tenant: &str, group_id: &str) -> Result<()> {
    // Group ids cannot hold '/', so the listener splits at the last one.
    let payload = format!("{tenant}/{group_id}");
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANGE_CHANNEL, &payload])
        .db()?;
    Ok(())
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

/// A row of `SELECT {FACE_COLUMNS}`.
fn stored_face(r: &Row) -> Result<StoredFace> {
    let f = |i: usize| r.try_get::<_, f64>(i).db().map(|v| v as f32);
    Ok(StoredFace {
        record: FaceRecord {
            face_id: r.try_get(0).db()?,
            image_id: r.try_get(1).db()?,
            external_image_id: r.try_get(2).db()?,
            bbox: FaceBox {
                x0: f(3)?,
                y0: f(4)?,
                x1: f(5)?,
                y1: f(6)?,
            },
            confidence: f(7)?,
            created_at: UtcMillis(r.try_get(8).db()?),
            model_version: r.try_get(9).db()?,
        },
        sealed: sealed_from(
            r.try_get(10).db()?,
            r.try_get(11).db()?,
            r.try_get(12).db()?,
        )?,
    })
}

/// A row of `SELECT {GROUP_COLUMNS}`.
fn group_row(r: &Row) -> Result<GroupInfo> {
    Ok(GroupInfo {
        group_id: r.try_get(0).db()?,
        created_at: UtcMillis(r.try_get(1).db()?),
        model_version: r.try_get(2).db()?,
        face_count: r.try_get::<_, i64>(3).db()?.max(0) as u64,
        incarnation: r.try_get(4).db()?,
    })
}

const GROUP_COLUMNS: &str = "group_id, created_at_ms, model_version, face_count, incarnation";

/// Locks the group row until the end of the transaction; `false` if the
/// group does not exist. Taking this lock first in every face write keeps
/// one lock order (group, then faces), so face writes cannot deadlock with
/// a group deletion.
fn lock_group(tx: &mut Transaction<'_>, tenant: &str, group_id: &str) -> Result<Option<i64>> {
    let row = tx
        .query_opt(
            "SELECT face_count FROM groups WHERE tenant = $1 AND group_id = $2 FOR UPDATE",
            &[&tenant, &group_id],
        )
        .db()?;
    row.map(|r| r.try_get(0).db()).transpose()
}

fn group_exists(
    c: &mut impl ::postgres::GenericClient,
    tenant: &str,
    group_id: &str,
) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM groups WHERE tenant = $1 AND group_id = $2",
        &[&tenant, &group_id],
    )
    .db()?
    .is_some())
}

fn read_tx(client: &mut Client) -> Result<Transaction<'_>> {
    // One snapshot, so "the group exists" and the rows read agree.
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .db()
}

impl FaceStore for PostgresStore {
    fn known_key_ids(&self) -> Result<Vec<String>> {
        let rows = self.read(|c| {
            c.query("SELECT key_id FROM store_keys ORDER BY key_id", &[])
                .db()
        })?;
        rows.iter().map(|r| r.try_get(0).db()).collect()
    }

    fn record_key_id(&self, key_id: &str, at: UtcMillis) -> Result<()> {
        self.write_tx(|tx| {
            tx.execute(
                "INSERT INTO store_keys (key_id, added_at_ms) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
                &[&key_id, &at.0],
            )
            .db()?;
            Ok(())
        })
    }

    fn create_group(&self, tenant: &str, group: &GroupInfo) -> Result<()> {
        self.write_tx(|tx| {
            let n = tx
                .execute(
                    "INSERT INTO groups
                         (tenant, group_id, created_at_ms, model_version, face_count, incarnation)
                     VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING",
                    &[
                        &tenant,
                        &group.group_id,
                        &group.created_at.0,
                        &group.model_version,
                        &group.incarnation,
                    ],
                )
                .db()?;
            if n == 0 {
                return Err(StoreError::DuplicatedGroupId);
            }
            notify(tx, tenant, &group.group_id)
        })
    }

    fn get_group(&self, tenant: &str, group_id: &str) -> Result<Option<GroupInfo>> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE tenant = $1 AND group_id = $2"),
                &[&tenant, &group_id],
            )
            .db()?
            .as_ref()
            .map(group_row)
            .transpose()
        })
    }

    fn list_groups(
        &self,
        tenant: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>> {
        let limit = to_i64(limit as u64);
        let rows = self.read(|c| {
            match after {
                None => c.query(
                    &format!(
                        "SELECT {GROUP_COLUMNS} FROM groups WHERE tenant = $1
                         ORDER BY created_at_ms DESC, group_id DESC LIMIT $2"
                    ),
                    &[&tenant, &limit],
                ),
                Some(cur) => c.query(
                    &format!(
                        "SELECT {GROUP_COLUMNS} FROM groups
                         WHERE tenant = $1 AND (created_at_ms, group_id) < ($2, $3)
                         ORDER BY created_at_ms DESC, group_id DESC LIMIT $4"
                    ),
                    &[&tenant, &cur.created_at.0, &cur.id, &limit],
                ),
            }
            .db()
        })?;
        rows.iter().map(group_row).collect()
    }

    fn all_groups(&self) -> Result<Vec<(String, GroupInfo)>> {
        let rows = self.read(|c| {
            c.query(&format!("SELECT {GROUP_COLUMNS}, tenant FROM groups"), &[])
                .db()
        })?;
        rows.iter()
            .map(|r| Ok((r.try_get(5).db()?, group_row(r)?)))
            .collect()
    }

    fn delete_group(&self, tenant: &str, group_id: &str) -> Result<bool> {
        self.write_tx(|tx| {
            // Faces go with it through ON DELETE CASCADE, in this statement.
            let n = tx
                .execute(
                    "DELETE FROM groups WHERE tenant = $1 AND group_id = $2",
                    &[&tenant, &group_id],
                )
                .db()?;
            if n > 0 {
                notify(tx, tenant, group_id)?;
            }
            Ok(n > 0)
        })
    }

    fn insert_faces(
        &self,
        tenant: &str,
        group_id: &str,
        faces: &[StoredFace],
        max_faces_per_group: u64,
    ) -> Result<usize> {
        self.write_tx(|tx| {
            // The row lock makes registrations on every node queue here, so
            // the count read below stays true until commit.
            let Some(count) = lock_group(tx, tenant, group_id)? else {
                return Err(StoreError::GroupNotFound);
            };
            let room = max_faces_per_group.saturating_sub(count.max(0) as u64);
            let n = faces.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            if n == 0 {
                return Ok(0);
            }
            let stmt = tx
                .prepare(&format!(
                    "INSERT INTO faces (tenant, group_id, {FACE_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .db()?;
            for f in &faces[..n] {
                let r = &f.record;
                let bbox = [r.bbox.x0, r.bbox.y0, r.bbox.x1, r.bbox.y1].map(f64::from);
                let confidence = f64::from(r.confidence);
                let nonce = &f.sealed.nonce[..];
                let params: [&(dyn ToSql + Sync); 15] = [
                    &tenant,
                    &group_id,
                    &r.face_id,
                    &r.image_id,
                    &r.external_image_id,
                    &bbox[0],
                    &bbox[1],
                    &bbox[2],
                    &bbox[3],
                    &confidence,
                    &r.created_at.0,
                    &r.model_version,
                    &f.sealed.key_id,
                    &nonce,
                    &f.sealed.ciphertext,
                ];
                tx.execute(&stmt, &params).db()?;
            }
            tx.execute(
                "UPDATE groups SET face_count = face_count + $3 WHERE tenant = $1 AND group_id = $2",
                &[&tenant, &group_id, &to_i64(n as u64)],
            )
            .db()?;
            notify(tx, tenant, group_id)?;
            Ok(n)
        })
    }

    fn get_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<Option<StoredFace>> {
        self.read(|c| {
            let mut tx = read_tx(c)?;
            if !group_exists(&mut tx, tenant, group_id)? {
                return Err(StoreError::GroupNotFound);
            }
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM faces
                         WHERE tenant = $1 AND group_id = $2 AND face_id = $3"
                    ),
                    &[&tenant, &group_id, &face_id],
                )
                .db()?;
            row.as_ref().map(stored_face).transpose()
        })
    }

    fn list_faces(
        &self,
        tenant: &str,
        group_id: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>> {
        let limit = to_i64(limit as u64);
        let rows = self.read(|c| {
            let mut tx = read_tx(c)?;
            if !group_exists(&mut tx, tenant, group_id)? {
                return Err(StoreError::GroupNotFound);
            }
            match after {
                None => tx.query(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = $1 AND group_id = $2
                         ORDER BY created_at_ms DESC, face_id DESC LIMIT $3"
                    ),
                    &[&tenant, &group_id, &limit],
                ),
                Some(cur) => tx.query(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = $1 AND group_id = $2
                         AND (created_at_ms, face_id) < ($3, $4)
                         ORDER BY created_at_ms DESC, face_id DESC LIMIT $5"
                    ),
                    &[&tenant, &group_id, &cur.created_at.0, &cur.id, &limit],
                ),
            }
            .db()
        })?;
        rows.iter()
            .map(|r| stored_face(r).map(|s| s.record))
            .collect()
    }

    fn for_each_face(
        &self,
        tenant: &str,
        group_id: &str,
        f: &mut dyn FnMut(StoredFace) -> Result<()>,
    ) -> Result<()> {
        // Not retried: `f` may already have seen rows. Streamed through a
        // portal so a large group is never held in memory twice.
        let mut client = self.checkout()?;
        let result = (|| {
            let mut tx = read_tx(&mut client)?;
            let portal = tx
                .bind(
                    &format!(
                        "SELECT {FACE_COLUMNS} FROM faces WHERE tenant = $1 AND group_id = $2"
                    ),
                    &[&tenant, &group_id],
                )
                .db()?;
            loop {
                let rows = tx.query_portal(&portal, STREAM_BATCH).db()?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    f(stored_face(r)?)?;
                }
            }
            tx.commit().db()
        })();
        self.give_back(client);
        result
    }

    fn delete_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<bool> {
        self.write_tx(|tx| {
            if lock_group(tx, tenant, group_id)?.is_none() {
                return Err(StoreError::GroupNotFound);
            }
            let n = tx
                .execute(
                    "DELETE FROM faces WHERE tenant = $1 AND group_id = $2 AND face_id = $3",
                    &[&tenant, &group_id, &face_id],
                )
                .db()?;
            if n == 0 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE groups SET face_count = face_count - $3 WHERE tenant = $1 AND group_id = $2",
                &[&tenant, &group_id, &to_i64(n)],
            )
            .db()?;
            notify(tx, tenant, group_id)?;
            Ok(true)
        })
    }

    fn records_not_under_key(
        &self,
        key_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<RekeyItem>> {
        let limit = to_i64(limit as u64);
        let rows = self.read(|c| {
            c.query(
                "SELECT seq, tenant, group_id, face_id, key_id, nonce, ciphertext FROM faces
                 WHERE seq > $1 AND key_id <> $2 ORDER BY seq LIMIT $3",
                &[&after_seq, &key_id, &limit],
            )
            .db()
        })?;
        rows.iter()
            .map(|r| {
                Ok(RekeyItem {
                    seq: r.try_get(0).db()?,
                    tenant: r.try_get(1).db()?,
                    group_id: r.try_get(2).db()?,
                    face_id: r.try_get(3).db()?,
                    sealed: sealed_from(
                        r.try_get(4).db()?,
                        r.try_get(5).db()?,
                        r.try_get(6).db()?,
                    )?,
                })
            })
            .collect()
    }

    fn replace_sealed(&self, updates: &[(RekeyItem, SealedEmbedding)]) -> Result<usize> {
        // No notification: the vectors, hence the indexes, do not change.
        self.write_tx(|tx| {
            let stmt = tx
                .prepare(
                    "UPDATE faces SET key_id = $1, nonce = $2, ciphertext = $3
                     WHERE seq = $4 AND key_id = $5 AND nonce = $6",
                )
                .db()?;
            let mut done = 0;
            for (item, new) in updates {
                let new_nonce = &new.nonce[..];
                let old_nonce = &item.sealed.nonce[..];
                done += tx
                    .execute(
                        &stmt,
                        &[
                            &new.key_id,
                            &new_nonce,
                            &new.ciphertext,
                            &item.seq,
                            &item.sealed.key_id,
                            &old_nonce,
                        ],
                    )
                    .db()?;
            }
            Ok(usize::try_from(done).unwrap_or(usize::MAX))
        })
    }

    fn count_not_under_key(&self, key_id: &str) -> Result<u64> {
        let n: i64 = self.read(|c| {
            c.query_one("SELECT COUNT(*) FROM faces WHERE key_id <> $1", &[&key_id])
                .db()?
                .try_get(0)
                .db()
        })?;
        Ok(n.max(0) as u64)
    }
}

/// What another process (or this one) changed, as announced on
/// [`CHANGE_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// The group or its faces changed (it may also have been created or
    /// deleted).
    Group {
        /// Tenant of the group.
        tenant: String,
        /// The group id.
        group_id: String,
    },
    /// Changes may have been missed (the listening connection was lost):
    /// reload everything.
    All,
}

/// How long one wait for notifications lasts before the stop flag and the
/// connection are checked again.
const POLL: Duration = Duration::from_millis(100);
/// How often an idle listening connection is pinged, so a silently dead
/// connection is noticed and replaced.
const PING_EVERY: Duration = Duration::from_secs(2);
/// Reconnect delays grow from the first to the second value.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Notifications handled per batch; a burst beyond it is handled next round.
const MAX_BATCH: usize = 10_000;

/// A connection `LISTEN`ing on [`CHANGE_CHANNEL`], not yet reporting.
///
/// Connect it before loading the indexes and [`ChangeListener::spawn`] it
/// afterwards: notifications of changes committed in between are queued on
/// the connection, so none is missed.
pub struct ChangeListener {
    config: Config,
    client: Client,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeListener")
            .field("database", &describe(&self.config))
            .finish_non_exhaustive()
    }
}

fn listen(config: &Config) -> Result<Client> {
    let mut client = config.connect(NoTls).db()?;
    client
        .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
        .db()?;
    Ok(client)
}

/// Parses a notification payload `<tenant>/<group>`.
fn parse_payload(payload: &str) -> Option<Change> {
    let (tenant, group_id) = payload.rsplit_once('/')?;
    if tenant.is_empty() || group_id.is_empty() {
        return None;
    }
    Some(Change::Group {
        tenant: tenant.to_string(),
        group_id: group_id.to_string(),
    })
}

impl ChangeListener {
    /// Opens the listening connection to the database at `url`.
    pub fn connect(url: &str) -> Result<Self> {
        let config = parse_config(url, "facegate-listener")?;
        let client = listen(&config)?;
        Ok(ChangeListener { config, client })
    }

    /// Starts the background thread, which calls `on_change` for every
    /// change (each group at most once per batch of notifications, in no
    /// particular order) until the returned handle is dropped.
    pub fn spawn(self, on_change: impl FnMut(Change) + Send + 'static) -> Result<ListenerHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let connected = Arc::new(AtomicBool::new(true));
        let thread = std::thread::Builder::new()
            .name("facegate-pg-listen".into())
            .spawn({
                let stop = stop.clone();
                let connected = connected.clone();
                move || self.run(&stop, &connected, on_change)
            })
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        Ok(ListenerHandle {
            stop,
            connected,
            thread: Some(thread),
        })
    }

    fn run(self, stop: &AtomicBool, connected: &AtomicBool, mut on_change: impl FnMut(Change)) {
        let ChangeListener { config, client } = self;
        let mut client = Some(client);
        let mut backoff = BACKOFF.0;
        let mut last_ping = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let Some(c) = client.as_mut() else {
                match listen(&config) {
                    Ok(c) => {
                        tracing::info!("change listener reconnected; reloading every index");
                        client = Some(c);
                        connected.store(true, Ordering::SeqCst);
                        backoff = BACKOFF.0;
                        last_ping = Instant::now();
                        // Whatever was announced while disconnected is lost.
                        on_change(Change::All);
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            retry_in_ms = backoff.as_millis() as u64,
                            "change listener cannot reconnect; other nodes' changes are not seen"
                        );
                        sleep_unless_stopped(backoff, stop);
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                }
                continue;
            };
            let (changes, mut lost) = next_batch(c);
            if !lost && last_ping.elapsed() >= PING_EVERY {
                lost = c.is_valid(Duration::from_secs(2)).is_err();
                last_ping = Instant::now();
            }
            for change in changes {
                on_change(change);
            }
            if lost || c.is_closed() {
                tracing::warn!("change listener lost its connection; reconnecting");
                connected.store(false, Ordering::SeqCst);
                client = None;
            }
        }
    }
}

/// Waits up to [`POLL`] for notifications and takes all that are queued.
/// The flag is true when the connection failed.
fn next_batch(client: &mut Client) -> (std::collections::BTreeSet<Change>, bool) {
    let mut changes = std::collections::BTreeSet::new();
    let mut notifications = client.notifications();
    let mut iter = notifications.timeout_iter(POLL);
    loop {
        match iter.next() {
            Ok(Some(n)) => {
                if n.channel() == CHANGE_CHANNEL {
                    if let Some(c) = parse_payload(n.payload()) {
                        changes.insert(c);
                    }
                }
                if changes.len() >= MAX_BATCH {
                    return (changes, false);
                }
            }
            Ok(None) => return (changes, false),
            Err(_) => return (changes, true),
        }
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(POLL));
    }
}

/// Owns the listener thread; dropping it stops the thread (within about
/// 100 ms, the poll interval) and waits for it.
#[derive(Debug)]
pub struct ListenerHandle {
    stop: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ListenerHandle {
    /// Whether the listener holds a working connection (false from a lost
    /// connection until it is back).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }
}

impl Drop for ListenerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Never join from the listener thread itself (a callback could
            // drop the last gallery reference).
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(
            parse_payload("app/key/g-1"),
            Some(Change::Group {
                tenant: "app/key".into(),
                group_id: "g-1".into()
            })
        );
        assert_eq!(parse_payload("nogroup"), None);
        assert_eq!(parse_payload("t/"), None);
    }

    #[test]
    fn bad_urls_do_not_echo_passwords() {
        let e = parse_config("postgres://u:secret@h:notaport/db", "x").unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}
