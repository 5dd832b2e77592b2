//! The domain API: groups and faces in the store, kept in step with the
//! in-memory search indexes.
//!
//! Locking, outermost first:
//! * `keys` (read by every write that encrypts, written only when rotation
//!   switches keys), so no record is sealed under a key that rotation has
//!   already moved past;
//! * a group's `write` mutex, held across the database write and the index
//!   update of one mutation, so the store and the index change together and
//!   a group deleted (and perhaps re-created) meanwhile is noticed;
//! * a group's index `RwLock`, write-held only for the in-memory change, so
//!   searches are never blocked behind a disk sync.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use crate::error::{Result, StoreError};
use crate::index::{normalize, GroupIndex, SearchHit};
use crate::keys::{KeyRing, MasterKey};
use crate::postgres::{Change, ChangeListener, ListenerHandle, PostgresStore};
use crate::sqlite::SqliteStore;
use crate::store::{Cursor, FaceBox, FaceRecord, FaceStore, GroupInfo, StoredFace};
use crate::time::{Clock, SystemClock, UtcMillis};
use crate::token::{self, Scope};
use crate::validate::{
    new_uuid_v4, parse_uuid, validate_external_image_id, validate_group_id, validate_tenant,
};

/// Largest `limit` of a group or face listing page.
pub const MAX_PAGE_LIMIT: usize = 200;
/// Largest `limit` of a search.
pub const MAX_SEARCH_LIMIT: usize = 4096;
/// Longest model version string accepted.
pub const MAX_MODEL_VERSION_LEN: usize = 255;

/// Where the database lives, parsed from the `database_url` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (plain connection, no TLS yet).
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite://./rel/file.db`, `sqlite:///abs/file.db`,
    /// `sqlite:file.db`, `postgres://...` / `postgresql://...`, or a plain
    /// file path.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| StoreError::InvalidDatabaseUrl(why.to_string());
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        let path = if let Some(rest) = url.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            rest
        } else if url.contains("://") {
            return Err(bad("unknown scheme (expected sqlite:// or postgres://)"));
        } else {
            url
        };
        if path.is_empty() {
            return Err(bad("no file path"));
        }
        if path == ":memory:" || path.contains('?') {
            return Err(bad("only a plain SQLite file path is supported"));
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    }

    /// Whether the database exists and holds anything, found without
    /// creating or changing it: for SQLite a non-empty file (or WAL), for
    /// PostgreSQL facegate's tables with a row in them.
    pub fn holds_data(&self) -> Result<bool> {
        match self {
            DatabaseUrl::Sqlite(path) => {
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                let non_empty = |p: &std::path::Path| {
                    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0)
                };
                Ok(non_empty(path) || non_empty(std::path::Path::new(&wal)))
            }
            DatabaseUrl::Postgres(url) => PostgresStore::holds_data(url),
        }
    }

    /// Where the database is, for messages: the file, or host and database
    /// name (never credentials).
    pub fn describe(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => path.display().to_string(),
            DatabaseUrl::Postgres(url) => crate::postgres::describe_url(url),
        }
    }
}

/// Checks that `keys` belong to the database behind `store`, and
/// initialises a new database under them.
///
/// A database records every key it was initialised or rotated under. One
/// that records none is new (or predates that record: then its faces'
/// keys were recorded by the migration, and a store with groups but no
/// faces is accepted as is). A database whose keys include none of the
/// ring's was written under another key: opening it would seal new records
/// under a key the old ones do not share, so it is refused.
fn check_keys(
    store: &dyn FaceStore,
    keys: &KeyRing,
    has_groups: bool,
    options: &GalleryOptions,
) -> Result<()> {
    let known = store.known_key_ids()?;
    let now = options.clock.now();
    if known.is_empty() {
        if !has_groups && !options.create_if_empty {
            return Err(StoreError::Uninitialised);
        }
        return store.record_key_id(keys.current_key_id(), now);
    }
    let ring = keys.key_ids();
    if !ring.iter().any(|id| known.contains(id)) {
        return Err(StoreError::KeyMismatch {
            key_id: keys.current_key_id().to_string(),
            known: known.join(", "),
        });
    }
    if !known.iter().any(|k| k == keys.current_key_id()) {
        // A rotation's new key, met for the first time.
        store.record_key_id(keys.current_key_id(), now)?;
    }
    Ok(())
}

/// Settings of a [`Gallery`].
#[derive(Clone)]
pub struct GalleryOptions {
    /// How long a paging token stays valid (default one hour).
    pub token_ttl: Duration,
    /// Time source (default the system clock); tests inject their own.
    pub clock: Arc<dyn Clock>,
    /// Records re-encrypted per transaction during key rotation (default
    /// 500), which bounds how long one rotation step holds the write lock.
    pub rotation_batch_size: usize,
    /// How long one database operation may wait for a lock or a stuck
    /// server before failing with [`StoreError::Timeout`] (default 10 s).
    pub store_timeout: Duration,
    /// Whether opening a new, empty database initialises it under the key
    /// ring's key (default true). The server passes false when its key file
    /// already existed: a database that is then empty was lost, not new.
    pub create_if_empty: bool,
}

/// Default of [`GalleryOptions::store_timeout`].
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for GalleryOptions {
    fn default() -> Self {
        GalleryOptions {
            token_ttl: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
            rotation_batch_size: 500,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            create_if_empty: true,
        }
    }
}

impl std::fmt::Debug for GalleryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GalleryOptions")
            .field("token_ttl", &self.token_ttl)
            .field("rotation_batch_size", &self.rotation_batch_size)
            .field("store_timeout", &self.store_timeout)
            .field("create_if_empty", &self.create_if_empty)
            .finish_non_exhaustive()
    }
}

/// Which page of a listing to return: the first, of a given size, or the
/// one after a page whose `next_token` is given (a token fixes the page
/// size it was issued with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRequest {
    /// The first page, of this many items (1-200).
    First(usize),
    /// The page after the one that issued this token.
    Next(String),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Token for the next page; empty when there are no more items.
    pub next_token: String,
}

/// A face to register. Its `Debug` output omits the embedding's values.
#[derive(Clone, PartialEq)]
pub struct NewFace {
    /// Where the face is in the image (fractions; must be finite).
    pub bbox: FaceBox,
    /// Detection confidence (must be finite).
    pub confidence: f32,
    /// The embedding, any non-zero finite vector; stored as given
    /// (encrypted), normalised only inside the index.
    pub embedding: Vec<f32>,
}

impl std::fmt::Debug for NewFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewFace")
            .field("bbox", &self.bbox)
            .field("confidence", &self.confidence)
            .field("embedding_len", &self.embedding.len())
            .finish()
    }
}

/// The faces of one registration request.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFaces {
    /// Label for all faces of the image (`[a-zA-Z0-9_.\-:]{1,255}`).
    pub external_image_id: Option<String>,
    /// Model that made the embeddings; must equal the group's.
    pub model_version: String,
    /// The faces, ranked (largest first): when the quota is short, the
    /// first ones are added.
    pub faces: Vec<NewFace>,
}

/// What [`Gallery::add_faces`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AddFacesOutcome {
    /// UUID shared by the faces of this request.
    pub image_id: String,
    /// The faces added, in input order (they are a prefix of the input).
    pub added: Vec<FaceRecord>,
    /// Indexes into the input of the faces not added for lack of room.
    pub not_added: Vec<usize>,
}

impl AddFacesOutcome {
    /// True when some but not all faces were added (API code 40070).
    pub fn is_partial(&self) -> bool {
        !self.not_added.is_empty()
    }
}

/// What a key rotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationReport {
    /// Records re-encrypted by this call.
    pub reencrypted: u64,
    /// Transactions used.
    pub batches: u64,
    /// Records still under an old key afterwards (0 = rotation complete).
    pub remaining: u64,
}

struct GroupSlot {
    model_version: String,
    write: Mutex<()>,
    deleted: AtomicBool,
    index: RwLock<GroupIndex>,
}

impl GroupSlot {
    fn new(model_version: String, index: GroupIndex) -> Arc<Self> {
        Arc::new(GroupSlot {
            model_version,
            write: Mutex::new(()),
            deleted: AtomicBool::new(false),
            index: RwLock::new(index),
        })
    }
}

type Slots = HashMap<String, HashMap<String, Arc<GroupSlot>>>;

// Poisoning only follows a panic elsewhere; the guarded data stays usable
// (every mutation is a single push/remove), so carry on instead of failing.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The face store plus its per-group search indexes, which callers cannot
/// update separately. All methods are blocking (call them from
/// `spawn_blocking` in async code) and safe to call from many threads.
///
/// On PostgreSQL several galleries (processes) may share the database: a
/// background listener reloads a group's index when another one announces
/// a change (see [`crate::ChangeListener`]), and a group unknown locally is
/// looked up in the database before a request fails. On SQLite a
/// background thread looks at the groups table every
/// [`SQLITE_FOLLOW_EVERY`] (when something was committed) and reloads the
/// groups another process (`facegate import`) created or deleted, or whose
/// face count or model it changed.
pub struct Gallery {
    // Shared with the listener thread, which reloads indexes.
    store: Arc<dyn FaceStore>,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    slots: Arc<RwLock<Slots>>,
    options: GalleryOptions,
    rotation: Mutex<()>,
    listener: Option<ListenerHandle>,
    /// Dropping it stops the SQLite follower thread.
    _follower: Option<std::sync::mpsc::Sender<()>>,
}

/// How often a SQLite gallery looks for other processes' changes.
pub const SQLITE_FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The parts of a [`Gallery`] that a reload needs, detached from it so the
/// listener thread can own them.
struct Mirror {
    store: Arc<dyn FaceStore>,
    keys: Arc<RwLock<Arc<KeyRing>>>,
    slots: Arc<RwLock<Slots>>,
}

/// A [`Mirror`] that does not keep the gallery alive (the follower thread's).
struct WeakMirror {
    store: std::sync::Weak<dyn FaceStore>,
    keys: std::sync::Weak<RwLock<Arc<KeyRing>>>,
    slots: std::sync::Weak<RwLock<Slots>>,
}

impl WeakMirror {
    fn upgrade(&self) -> Option<Mirror> {
        Some(Mirror {
            store: self.store.upgrade()?,
            keys: self.keys.upgrade()?,
            slots: self.slots.upgrade()?,
        })
    }
}

/// Decrypts every face of the group into a fresh index.
fn build_index(
    store: &dyn FaceStore,
    keys: &KeyRing,
    tenant: &str,
    group_id: &str,
) -> Result<GroupIndex> {
    let mut index = GroupIndex::default();
    store.for_each_face(tenant, group_id, &mut |face| {
        let v = keys.open(tenant, group_id, &face.record.face_id, &face.sealed)?;
        let n = normalize(&v).map_err(|_| {
            StoreError::Corrupt(format!(
                "face {} has an invalid vector",
                face.record.face_id
            ))
        })?;
        index.push(face.record, &n)
    })?;
    Ok(index)
}

impl Mirror {
    fn lookup(&self, tenant: &str, group_id: &str) -> Option<Arc<GroupSlot>> {
        read(&self.slots).get(tenant)?.get(group_id).cloned()
    }

    /// Forgets `slot` unless the map already holds another slot there.
    fn remove_slot(&self, tenant: &str, group_id: &str, slot: &Arc<GroupSlot>) {
        slot.deleted.store(true, Ordering::SeqCst);
        let mut slots = write(&self.slots);
        if let Some(groups) = slots.get_mut(tenant) {
            if groups.get(group_id).is_some_and(|s| Arc::ptr_eq(s, slot)) {
                groups.remove(group_id);
            }
            if groups.is_empty() {
                slots.remove(tenant);
            }
        }
    }

    /// Makes the group's index equal to the store's group: rebuilt, created
    /// or dropped.
    fn refresh_group(&self, tenant: &str, group_id: &str) -> Result<()> {
        let keys = read(&self.keys).clone();
        if let Some(slot) = self.lookup(tenant, group_id) {
            // Held across the read and the swap, so a local write of this
            // group lands either before the read or in the new index.
            let _w = lock(&slot.write);
            if !slot.deleted.load(Ordering::SeqCst) {
                match self.store.get_group(tenant, group_id)? {
                    Some(info) if info.model_version == slot.model_version => {
                        let index = build_index(&*self.store, &keys, tenant, group_id)?;
                        *write(&slot.index) = index;
                        return Ok(());
                    }
                    // Deleted, or deleted and re-created with another model.
                    _ => self.remove_slot(tenant, group_id, &slot),
                }
            }
        }
        let Some(info) = self.store.get_group(tenant, group_id)? else {
            return Ok(());
        };
        let index = build_index(&*self.store, &keys, tenant, group_id)?;
        // A slot created meanwhile (locally) is fresh too: keep it.
        write(&self.slots)
            .entry(tenant.to_string())
            .or_default()
            .entry(group_id.to_string())
            .or_insert_with(|| GroupSlot::new(info.model_version, index));
        Ok(())
    }

    /// Refreshes the groups whose existence, model or face count in the
    /// store differs from memory. A difference seen while a local write is
    /// between its commit and its index update is looked at again under
    /// the group's write lock, so local writes cost no reload.
    fn catch_up(&self) -> Result<()> {
        let stored = self.store.all_groups()?;
        let mut stale = Vec::new();
        for (tenant, info) in &stored {
            if !self.matches(tenant, info) {
                stale.push((tenant.clone(), info.group_id.clone()));
            }
        }
        let in_store: std::collections::HashSet<(&str, &str)> = stored
            .iter()
            .map(|(t, g)| (t.as_str(), g.group_id.as_str()))
            .collect();
        for (tenant, groups) in read(&self.slots).iter() {
            for group_id in groups.keys() {
                if !in_store.contains(&(tenant.as_str(), group_id.as_str())) {
                    stale.push((tenant.clone(), group_id.clone()));
                }
            }
        }
        let mut first_error = None;
        for (tenant, group_id) in stale {
            let settled = match self.lookup(&tenant, &group_id) {
                Some(slot) => {
                    let _w = lock(&slot.write);
                    match self.store.get_group(&tenant, &group_id) {
                        Ok(Some(info)) => self.matches(&tenant, &info),
                        Ok(None) => false,
                        Err(e) => {
                            first_error.get_or_insert(e);
                            continue;
                        }
                    }
                }
                None => false,
            };
            if !settled {
                if let Err(e) = self.refresh_group(&tenant, &group_id) {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether memory holds the stored group `info` as it is.
    fn matches(&self, tenant: &str, info: &GroupInfo) -> bool {
        self.lookup(tenant, &info.group_id).is_some_and(|slot| {
            !slot.deleted.load(Ordering::SeqCst)
                && slot.model_version == info.model_version
                && read(&slot.index).len() as u64 == info.face_count
        })
    }

    /// Runs [`Mirror::catch_up`] every [`SQLITE_FOLLOW_EVERY`] until `stop`'s
    /// sender is dropped or the gallery is gone.
    fn follow(weak: WeakMirror, stop: std::sync::mpsc::Receiver<()>) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut failing = false;
        let mut seen = None;
        while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(SQLITE_FOLLOW_EVERY) {
            let Some(mirror) = weak.upgrade() else {
                return;
            };
            // Nothing committed since the last look: nothing to compare.
            let counter = mirror.store.change_counter().ok().flatten();
            if counter.is_some() && counter == seen {
                continue;
            }
            match mirror.catch_up() {
                Ok(()) => {
                    failing = false;
                    seen = counter;
                }
                // Once per run of failures: the next look retries.
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        error = %e,
                        "looking for other processes' changes to the database failed; retrying"
                    );
                }
                Err(_) => {}
            }
        }
    }

    fn downgrade(&self) -> WeakMirror {
        WeakMirror {
            store: Arc::downgrade(&self.store),
            keys: Arc::downgrade(&self.keys),
            slots: Arc::downgrade(&self.slots),
        }
    }

    /// Refreshes every group in the store or in memory; carries on past a
    /// failing group and returns the first error.
    fn refresh_all(&self) -> Result<()> {
        let mut targets: std::collections::BTreeSet<(String, String)> = self
            .store
            .all_groups()?
            .into_iter()
            .map(|(t, g)| (t, g.group_id))
            .collect();
        for (tenant, groups) in read(&self.slots).iter() {
            targets.extend(groups.keys().map(|g| (tenant.clone(), g.clone())));
        }
        let mut first_error = None;
        for (tenant, group_id) in targets {
            if let Err(e) = self.refresh_group(&tenant, &group_id) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("keys", &*read(&self.keys))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn validate_limit(limit: usize, max: usize) -> Result<()> {
    if limit == 0 || limit > max {
        return Err(StoreError::InvalidParam(format!("limit must be 1-{max}")));
    }
    Ok(())
}

impl Gallery {
    /// Opens the database named by `database_url` (see [`DatabaseUrl`]),
    /// applies migrations, and builds every group's index, decrypting each
    /// vector once.
    ///
    /// Fails with [`StoreError::UnknownKeyId`] or
    /// [`StoreError::DecryptionFailed`] if any record cannot be read with
    /// `keys`: starting with the wrong key must not look like an empty or
    /// partial gallery.
    pub fn open(database_url: &str, keys: KeyRing, options: GalleryOptions) -> Result<Self> {
        match DatabaseUrl::parse(database_url)? {
            DatabaseUrl::Postgres(url) => {
                let store = PostgresStore::connect_with_timeout(&url, options.store_timeout)?;
                // Listen before loading, so no change committed while the
                // indexes are built goes unannounced.
                let listener = ChangeListener::connect(&url)?;
                let mut gallery = Self::with_store(Box::new(store), keys, options)?;
                let mirror = gallery.mirror();
                gallery.listener = Some(listener.spawn(move |change| {
                    // A failed reload keeps the old index; the next change
                    // to the group (or a reconnect) retries it.
                    let reloaded = match &change {
                        Change::Group { tenant, group_id } => {
                            mirror.refresh_group(tenant, group_id)
                        }
                        Change::All => mirror.refresh_all(),
                    };
                    if let Err(e) = reloaded {
                        // The group id only: the tenant's appKey stays out
                        // of logs.
                        let group = match &change {
                            Change::Group { group_id, .. } => group_id.as_str(),
                            Change::All => "(all)",
                        };
                        tracing::warn!(
                            error = %e,
                            group,
                            "index reload after another node's change failed; serving the \
                             previous index until the next change"
                        );
                    }
                })?);
                Ok(gallery)
            }
            DatabaseUrl::Sqlite(path) => {
                let store = SqliteStore::open_with_timeout(&path, options.store_timeout)?;
                let mut gallery = Self::with_store(Box::new(store), keys, options)?;
                let (stop, stopped) = std::sync::mpsc::channel();
                let weak = gallery.mirror().downgrade();
                std::thread::Builder::new()
                    .name("facegate-sqlite-follow".into())
                    .spawn(move || Mirror::follow(weak, stopped))
                    .map_err(|e| StoreError::Database(Box::new(e)))?;
                gallery._follower = Some(stop);
                Ok(gallery)
            }
        }
    }

    fn mirror(&self) -> Mirror {
        Mirror {
            store: self.store.clone(),
            keys: self.keys.clone(),
            slots: self.slots.clone(),
        }
    }

    /// Whether this gallery follows changes made by other processes.
    pub fn is_shared(&self) -> bool {
        self.listener.is_some()
    }

    /// Whether the change listener is connected; `None` when there is none
    /// (SQLite).
    pub fn listener_connected(&self) -> Option<bool> {
        self.listener.as_ref().map(ListenerHandle::is_connected)
    }

    /// Groups and faces held, all tenants together (from the in-memory
    /// indexes: no database round-trip).
    pub fn totals(&self) -> (u64, u64) {
        let slots = read(&self.slots);
        let mut groups = 0u64;
        let mut faces = 0u64;
        for slot in slots.values().flat_map(|g| g.values()) {
            groups += 1;
            faces += read(&slot.index).len() as u64;
        }
        (groups, faces)
    }

    /// Reloads one group's index from the store (creating or dropping it
    /// as the store says). The change listener calls this; it is public for
    /// operators and tests.
    pub fn refresh_group(&self, tenant: &str, group_id: &str) -> Result<()> {
        Self::check_ids(tenant, group_id)?;
        self.mirror().refresh_group(tenant, group_id)
    }

    /// Reloads every group's index from the store.
    pub fn refresh_all(&self) -> Result<()> {
        self.mirror().refresh_all()
    }

    /// Like [`Gallery::open`] on an already opened backend.
    pub fn with_store(
        store: Box<dyn FaceStore>,
        keys: KeyRing,
        options: GalleryOptions,
    ) -> Result<Self> {
        let groups = store.all_groups()?;
        check_keys(&*store, &keys, !groups.is_empty(), &options)?;
        let mut slots: Slots = HashMap::new();
        for (tenant, group) in groups {
            let index = build_index(&*store, &keys, &tenant, &group.group_id)?;
            slots
                .entry(tenant)
                .or_default()
                .insert(group.group_id, GroupSlot::new(group.model_version, index));
        }
        Ok(Gallery {
            store: Arc::from(store),
            keys: Arc::new(RwLock::new(Arc::new(keys))),
            slots: Arc::new(RwLock::new(slots)),
            options,
            rotation: Mutex::new(()),
            listener: None,
            _follower: None,
        })
    }

    fn keys(&self) -> Arc<KeyRing> {
        read(&self.keys).clone()
    }

    fn now(&self) -> UtcMillis {
        self.options.clock.now()
    }

    fn expiry(&self) -> UtcMillis {
        let ttl = i64::try_from(self.options.token_ttl.as_millis()).unwrap_or(i64::MAX);
        UtcMillis(self.now().0.saturating_add(ttl))
    }

    fn slot(&self, tenant: &str, group_id: &str) -> Result<Option<Arc<GroupSlot>>> {
        let found = read(&self.slots)
            .get(tenant)
            .and_then(|g| g.get(group_id))
            .cloned();
        if found.is_some() || !self.is_shared() {
            return Ok(found);
        }
        // Maybe created on another node a moment ago, before its
        // notification arrived here.
        let mirror = self.mirror();
        mirror.refresh_group(tenant, group_id)?;
        Ok(mirror.lookup(tenant, group_id))
    }

    fn check_ids(tenant: &str, group_id: &str) -> Result<()> {
        validate_tenant(tenant)?;
        validate_group_id(group_id)
    }

    /// Switches to `ring` while serving: its current key seals every record
    /// written from now on, and the keys held so far stay readable. Returns
    /// once no write is still sealing under the previous current key (writes
    /// hold the key lock across seal and commit), so a rotation started
    /// after this call sees every record the old key will ever seal.
    ///
    /// The new key is recorded in the database first (see
    /// [`Gallery::open`]); if that fails nothing changes.
    pub fn adopt_keys(&self, ring: KeyRing) -> Result<()> {
        self.store
            .record_key_id(ring.current_key_id(), self.now())?;
        let mut keys = write(&self.keys);
        *keys = Arc::new(ring.keeping_readable(&keys));
        Ok(())
    }

    /// The model versions of the groups held (each group is pinned to
    /// one), sorted; the server loads an embedder for each.
    pub fn model_versions(&self) -> Vec<String> {
        let mut versions: Vec<String> = read(&self.slots)
            .values()
            .flat_map(|groups| groups.values().map(|slot| slot.model_version.clone()))
            .collect();
        versions.sort();
        versions.dedup();
        versions
    }

    /// Id of the key new records are encrypted under.
    pub fn current_key_id(&self) -> String {
        self.keys().current_key_id().to_string()
    }

    /// Creates an empty group whose model version is fixed to
    /// `model_version`.
    pub fn create_group(
        &self,
        tenant: &str,
        group_id: &str,
        model_version: &str,
    ) -> Result<GroupInfo> {
        Self::check_ids(tenant, group_id)?;
        if model_version.is_empty() || model_version.len() > MAX_MODEL_VERSION_LEN {
            return Err(StoreError::InvalidParam(
                "model version must be 1-255 bytes".into(),
            ));
        }
        let info = GroupInfo {
            group_id: group_id.to_string(),
            created_at: self.now(),
            model_version: model_version.to_string(),
            face_count: 0,
            incarnation: new_uuid_v4()?,
        };
        self.store.create_group(tenant, &info)?;
        write(&self.slots)
            .entry(tenant.to_string())
            .or_default()
            .insert(
                group_id.to_string(),
                GroupSlot::new(model_version.to_string(), GroupIndex::default()),
            );
        Ok(info)
    }

    /// The group's details.
    pub fn get_group(&self, tenant: &str, group_id: &str) -> Result<GroupInfo> {
        Self::check_ids(tenant, group_id)?;
        self.store
            .get_group(tenant, group_id)?
            .ok_or(StoreError::GroupNotFound)
    }

    /// One page of the tenant's groups, ordered by creation time descending,
    /// then group id descending (newest first; the id only breaks ties).
    ///
    /// A first page's limit must be 1-200; a later page keeps the limit its
    /// token was issued with.
    pub fn list_groups(&self, tenant: &str, page: &PageRequest) -> Result<Page<GroupInfo>> {
        validate_tenant(tenant)?;
        let keys = self.keys();
        let (limit, after) = self.page_start(&keys, tenant, Scope::Groups, page)?;
        let mut items = self.store.list_groups(tenant, after.as_ref(), limit + 1)?;
        let next_token = self.page_end(&keys, tenant, Scope::Groups, limit, &mut items, |g| {
            Cursor {
                created_at: g.created_at,
                id: g.group_id.clone(),
            }
        });
        Ok(Page { items, next_token })
    }

    fn page_start(
        &self,
        keys: &KeyRing,
        tenant: &str,
        scope: Scope<'_>,
        page: &PageRequest,
    ) -> Result<(usize, Option<Cursor>)> {
        match page {
            PageRequest::Next(t) => {
                let st = token::verify(keys, tenant, scope, t, self.now())?;
                // Signed, so only a bug could put a bad limit here.
                validate_limit(st.limit, MAX_PAGE_LIMIT)
                    .map_err(|_| StoreError::InvalidToken("bad limit"))?;
                Ok((st.limit, Some(st.cursor)))
            }
            &PageRequest::First(limit) => {
                validate_limit(limit, MAX_PAGE_LIMIT)?;
                Ok((limit, None))
            }
        }
    }

    fn page_end<T>(
        &self,
        keys: &KeyRing,
        tenant: &str,
        scope: Scope<'_>,
        limit: usize,
        items: &mut Vec<T>,
        cursor: impl Fn(&T) -> Cursor,
    ) -> String {
        // One extra row was fetched to learn whether another page exists.
        if items.len() <= limit {
            return String::new();
        }
        items.truncate(limit);
        match items.last() {
            Some(last) => token::issue(keys, tenant, scope, limit, &cursor(last), self.expiry()),
            None => String::new(),
        }
    }

    /// Deletes the group and all its faces, permanently.
    pub fn delete_group(&self, tenant: &str, group_id: &str) -> Result<()> {
        Self::check_ids(tenant, group_id)?;
        let slot = self.slot(tenant, group_id)?;
        let _w = slot.as_ref().map(|s| lock(&s.write));
        if !self.store.delete_group(tenant, group_id)? {
            return Err(StoreError::GroupNotFound);
        }
        if let Some(slot) = &slot {
            // A group re-created meanwhile has a new slot: that one stays.
            self.mirror().remove_slot(tenant, group_id, slot);
        }
        Ok(())
    }

    /// Registers faces atomically under the group quota: as many as fit
    /// (a prefix of `faces.faces`) are added in one transaction.
    ///
    /// Errors: [`StoreError::QuotaExceeded`] when none fit (nothing added),
    /// [`StoreError::ModelVersionMismatch`], [`StoreError::DimensionMismatch`]
    /// (vectors must match each other and the group), invalid ids or
    /// vectors. An empty `faces.faces` adds nothing and succeeds.
    pub fn add_faces(
        &self,
        tenant: &str,
        group_id: &str,
        faces: NewFaces,
        max_faces_per_group: u64,
    ) -> Result<AddFacesOutcome> {
        Self::check_ids(tenant, group_id)?;
        if let Some(ext) = &faces.external_image_id {
            validate_external_image_id(ext)?;
        }
        let mut normalized = Vec::with_capacity(faces.faces.len());
        for f in &faces.faces {
            let b = f.bbox;
            if ![b.x0, b.y0, b.x1, b.y1, f.confidence]
                .iter()
                .all(|v| v.is_finite())
            {
                return Err(StoreError::InvalidParam(
                    "bbox and confidence must be finite".into(),
                ));
            }
            let n = normalize(&f.embedding)?;
            if let Some(first) = normalized.first().map(Vec::len) {
                if n.len() != first {
                    return Err(StoreError::DimensionMismatch {
                        expected: first,
                        got: n.len(),
                    });
                }
            }
            normalized.push(n);
        }
        let slot = self
            .slot(tenant, group_id)?
            .ok_or(StoreError::GroupNotFound)?;
        if faces.model_version != slot.model_version {
            return Err(StoreError::ModelVersionMismatch {
                group: slot.model_version.clone(),
                given: faces.model_version,
            });
        }
        let image_id = new_uuid_v4()?;
        if faces.faces.is_empty() {
            return Ok(AddFacesOutcome {
                image_id,
                added: Vec::new(),
                not_added: Vec::new(),
            });
        }

        let keys = read(&self.keys);
        let _w = lock(&slot.write);
        if slot.deleted.load(Ordering::SeqCst) {
            return Err(StoreError::GroupNotFound);
        }
        if let Some(dim) = read(&slot.index).dim() {
            if normalized[0].len() != dim {
                return Err(StoreError::DimensionMismatch {
                    expected: dim,
                    got: normalized[0].len(),
                });
            }
        }
        let created_at = self.now();
        let mut rows = Vec::with_capacity(faces.faces.len());
        for f in &faces.faces {
            let face_id = new_uuid_v4()?;
            let sealed = keys.seal(tenant, group_id, &face_id, &f.embedding)?;
            rows.push(StoredFace {
                record: FaceRecord {
                    face_id,
                    image_id: image_id.clone(),
                    external_image_id: faces.external_image_id.clone(),
                    bbox: f.bbox,
                    confidence: f.confidence,
                    created_at,
                    model_version: faces.model_version.clone(),
                },
                sealed,
            });
        }
        let n = self
            .store
            .insert_faces(tenant, group_id, &rows, max_faces_per_group)?;
        if n == 0 {
            return Err(StoreError::QuotaExceeded {
                max_faces_per_group,
            });
        }
        let added: Vec<FaceRecord> = rows.into_iter().take(n).map(|r| r.record).collect();
        {
            let mut index = write(&slot.index);
            for (rec, v) in added.iter().zip(&normalized) {
                index.push(rec.clone(), v)?;
            }
        }
        Ok(AddFacesOutcome {
            image_id,
            added,
            not_added: (n..faces.faces.len()).collect(),
        })
    }

    /// One face's metadata.
    pub fn get_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<FaceRecord> {
        Ok(self.stored_face(tenant, group_id, face_id)?.record)
    }

    fn stored_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<StoredFace> {
        Self::check_ids(tenant, group_id)?;
        let found = if parse_uuid(face_id).is_some() {
            self.store.get_face(tenant, group_id, face_id)?
        } else {
            // Not a face id we could have issued; still report a missing
            // group first, as for any other face.
            self.get_group(tenant, group_id)?;
            None
        };
        found.ok_or(StoreError::FaceNotFound)
    }

    /// The face's embedding as registered (decrypted from the store), for
    /// search by face id and verify.
    pub fn embedding_of(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<Vec<f32>> {
        let face = self.stored_face(tenant, group_id, face_id)?;
        self.keys().open(tenant, group_id, face_id, &face.sealed)
    }

    /// One page of the group's faces, newest first (created time descending,
    /// then face id descending). Paging as in [`Gallery::list_groups`]. Faces added after the first page was issued
    /// do not appear on later pages; faces deleted meanwhile vanish; no face
    /// is listed twice or skipped.
    pub fn list_faces(
        &self,
        tenant: &str,
        group_id: &str,
        page: &PageRequest,
    ) -> Result<Page<FaceRecord>> {
        Self::check_ids(tenant, group_id)?;
        let keys = self.keys();
        // Tokens bind the group's incarnation: one issued before the group
        // was deleted and created again does not page the new group.
        let group = match self.store.get_group(tenant, group_id)? {
            Some(g) => g,
            // No group a token could belong to.
            None if matches!(page, PageRequest::Next(_)) => {
                return Err(StoreError::InvalidToken("no such group"))
            }
            None => return Err(StoreError::GroupNotFound),
        };
        let scope = Scope::Faces {
            group_id,
            incarnation: &group.incarnation,
        };
        let (limit, after) = self.page_start(&keys, tenant, scope, page)?;
        let mut items = self
            .store
            .list_faces(tenant, group_id, after.as_ref(), limit + 1)?;
        let next_token = self.page_end(&keys, tenant, scope, limit, &mut items, |f| Cursor {
            created_at: f.created_at,
            id: f.face_id.clone(),
        });
        Ok(Page { items, next_token })
    }

    /// Deletes one face.
    pub fn delete_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<()> {
        Self::check_ids(tenant, group_id)?;
        let slot = self
            .slot(tenant, group_id)?
            .ok_or(StoreError::GroupNotFound)?;
        if parse_uuid(face_id).is_none() {
            return Err(StoreError::FaceNotFound);
        }
        let _w = lock(&slot.write);
        if slot.deleted.load(Ordering::SeqCst) {
            return Err(StoreError::GroupNotFound);
        }
        if !self.store.delete_face(tenant, group_id, face_id)? {
            return Err(StoreError::FaceNotFound);
        }
        write(&slot.index).remove(face_id);
        Ok(())
    }

    /// Exact cosine search: the top `limit` (1-4096) faces of the group with
    /// cosine similarity >= `min_score` to `query`, by score descending, ties
    /// by face id ascending, never `exclude_face_id`.
    ///
    /// `min_score` is a cosine in [-1, 1]; the caller maps its 0-100
    /// similarity threshold to it. An empty group gives no hits.
    pub fn search(
        &self,
        tenant: &str,
        group_id: &str,
        query: &[f32],
        limit: usize,
        min_score: f32,
        exclude_face_id: Option<&str>,
    ) -> Result<Vec<SearchHit>> {
        Self::check_ids(tenant, group_id)?;
        validate_limit(limit, MAX_SEARCH_LIMIT)?;
        if min_score.is_nan() {
            return Err(StoreError::InvalidParam("min_score is NaN".into()));
        }
        let q = normalize(query)?;
        let slot = self
            .slot(tenant, group_id)?
            .ok_or(StoreError::GroupNotFound)?;
        let index = read(&slot.index);
        match index.dim() {
            None => Ok(Vec::new()),
            Some(dim) if dim != q.len() => Err(StoreError::DimensionMismatch {
                expected: dim,
                got: q.len(),
            }),
            Some(_) => Ok(index.search(&q, limit, min_score, exclude_face_id.and_then(parse_uuid))),
        }
    }

    /// Makes `new_key` the current key and re-encrypts every record under
    /// it, in batches of [`GalleryOptions::rotation_batch_size`], each its
    /// own short transaction. The previous current key stays in the ring
    /// for reading. Running it again with the same key resumes an
    /// interrupted rotation.
    pub fn rotate_key(&self, new_key: &MasterKey) -> Result<RotationReport> {
        self.rotate_key_limited(new_key, u64::MAX)
    }

    /// [`Gallery::rotate_key`] stopping after at most `max_batches`
    /// transactions, to spread the work or to test an interrupted rotation;
    /// [`RotationReport::remaining`] tells whether it finished.
    pub fn rotate_key_limited(
        &self,
        new_key: &MasterKey,
        max_batches: u64,
    ) -> Result<RotationReport> {
        let _one_at_a_time = lock(&self.rotation);
        let ring = {
            let mut keys = write(&self.keys);
            *keys = Arc::new(keys.rotated_to(new_key));
            keys.clone()
        };
        let current = ring.current_key_id().to_string();
        let batch = self.options.rotation_batch_size.max(1);
        let mut report = RotationReport {
            reencrypted: 0,
            batches: 0,
            remaining: 0,
        };
        let mut after_seq = i64::MIN;
        while report.batches < max_batches {
            let items = self
                .store
                .records_not_under_key(&current, after_seq, batch)?;
            let Some(last) = items.last() else {
                break;
            };
            after_seq = last.seq;
            let mut updates = Vec::with_capacity(items.len());
            for item in items {
                let v = ring.open(&item.tenant, &item.group_id, &item.face_id, &item.sealed)?;
                let sealed = ring.seal(&item.tenant, &item.group_id, &item.face_id, &v)?;
                updates.push((item, sealed));
            }
            report.reencrypted += self.store.replace_sealed(&updates)? as u64;
            report.batches += 1;
        }
        report.remaining = self.store.count_not_under_key(&current)?;
        Ok(report)
    }

    /// Records not yet under the current key.
    pub fn pending_reencryption(&self) -> Result<u64> {
        self.store.count_not_under_key(self.keys().current_key_id())
    }
}

/// A face's metadata with its embedding in the clear, as backups move
/// them.
pub type FaceWithEmbedding = (FaceRecord, Vec<f32>);

/// Backups ([`crate::backup`]): a group's faces read out with their
/// embeddings, and a group restored with its faces as they were.
impl Gallery {
    /// The group and every face of it with its decrypted embedding, read
    /// from the database (not the index), oldest first (created time, then
    /// face id).
    pub fn faces_with_embeddings(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<(GroupInfo, Vec<FaceWithEmbedding>)> {
        Self::check_ids(tenant, group_id)?;
        let group = self.get_group(tenant, group_id)?;
        let keys = self.keys();
        let mut faces = Vec::new();
        self.store.for_each_face(tenant, group_id, &mut |face| {
            let v = keys.open(tenant, group_id, &face.record.face_id, &face.sealed)?;
            faces.push((face.record, v));
            Ok(())
        })?;
        faces.sort_by(|(a, _), (b, _)| (a.created_at, &a.face_id).cmp(&(b.created_at, &b.face_id)));
        Ok((group, faces))
    }

    /// Creates the group with `model_version` and adds `faces` to it as
    /// they were (face, image and external ids, box, confidence, creation
    /// time), each embedding sealed under the current key, in one
    /// transaction. Nothing is created when a face is invalid, the group
    /// exists ([`StoreError::DuplicatedGroupId`]) or the faces exceed
    /// `max_faces_per_group` ([`StoreError::QuotaExceeded`]); a group whose
    /// faces then fail to be written is deleted again.
    pub fn restore_group(
        &self,
        tenant: &str,
        group_id: &str,
        model_version: &str,
        faces: Vec<FaceWithEmbedding>,
        max_faces_per_group: u64,
    ) -> Result<GroupInfo> {
        Self::check_ids(tenant, group_id)?;
        let mut normalized = Vec::with_capacity(faces.len());
        let mut seen = std::collections::HashSet::with_capacity(faces.len());
        for (r, v) in &faces {
            if parse_uuid(&r.face_id).is_none() || parse_uuid(&r.image_id).is_none() {
                return Err(StoreError::InvalidParam(format!(
                    "face {:?}: face and image ids must be UUIDs",
                    r.face_id
                )));
            }
            if !seen.insert(r.face_id.as_str()) {
                return Err(StoreError::InvalidParam(format!(
                    "face {} is listed twice",
                    r.face_id
                )));
            }
            if let Some(ext) = &r.external_image_id {
                validate_external_image_id(ext)?;
            }
            if r.model_version != model_version {
                return Err(StoreError::ModelVersionMismatch {
                    group: model_version.to_string(),
                    given: r.model_version.clone(),
                });
            }
            let b = r.bbox;
            if ![b.x0, b.y0, b.x1, b.y1, r.confidence]
                .iter()
                .all(|v| v.is_finite())
            {
                return Err(StoreError::InvalidParam(
                    "bbox and confidence must be finite".into(),
                ));
            }
            let n = normalize(v)?;
            if let Some(first) = normalized.first().map(Vec::len) {
                if n.len() != first {
                    return Err(StoreError::DimensionMismatch {
                        expected: first,
                        got: n.len(),
                    });
                }
            }
            normalized.push(n);
        }
        if faces.len() as u64 > max_faces_per_group {
            return Err(StoreError::QuotaExceeded {
                max_faces_per_group,
            });
        }
        let mut info = self.create_group(tenant, group_id, model_version)?;
        if faces.is_empty() {
            return Ok(info);
        }
        let written = (|| {
            let slot = self
                .slot(tenant, group_id)?
                .ok_or(StoreError::GroupNotFound)?;
            let keys = read(&self.keys);
            let _w = lock(&slot.write);
            if slot.deleted.load(Ordering::SeqCst) {
                return Err(StoreError::GroupNotFound);
            }
            let mut rows = Vec::with_capacity(faces.len());
            for (record, v) in &faces {
                let sealed = keys.seal(tenant, group_id, &record.face_id, v)?;
                rows.push(StoredFace {
                    record: record.clone(),
                    sealed,
                });
            }
            let n = self
                .store
                .insert_faces(tenant, group_id, &rows, max_faces_per_group)?;
            if n < rows.len() {
                // Someone registered faces in the new group meanwhile.
                return Err(StoreError::QuotaExceeded {
                    max_faces_per_group,
                });
            }
            let mut index = write(&slot.index);
            for (row, v) in rows.into_iter().zip(&normalized) {
                index.push(row.record, v)?;
            }
            Ok(n)
        })();
        match written {
            Ok(n) => {
                info.face_count = n as u64;
                Ok(info)
            }
            Err(e) => {
                if let Err(cleanup) = self.delete_group(tenant, group_id) {
                    tracing::warn!(
                        error = %cleanup,
                        group = group_id,
                        "could not delete the group of a failed restore"
                    );
                }
                Err(e)
            }
        }
    }
}
