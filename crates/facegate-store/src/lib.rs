//! Face store and search index.
//!
//! * [`Gallery`] is the domain API the HTTP layer calls: groups, faces,
//!   registration under a quota, paging, search, key rotation. It owns a
//!   [`FaceStore`] backend and the per-group in-memory search indexes and
//!   keeps them in step.
//! * [`FaceStore`] is the storage trait; [`SqliteStore`] and
//!   [`PostgresStore`] implement it. Galleries on PostgreSQL follow each
//!   other's changes through `LISTEN`/`NOTIFY` ([`ChangeListener`]). The trait is synchronous: the
//!   server calls the gallery through `spawn_blocking`.
//! * Embeddings are encrypted at rest with AES-256-GCM under a key derived
//!   from the operator's [`MasterKey`]; the associated data binds tenant,
//!   group and face id, so a ciphertext moved to another row fails to
//!   decrypt. Keys and embeddings are never logged or printed.
//! * Paging tokens are opaque, HMAC-signed, expire (one hour by default),
//!   and carry a keyset cursor.
//! * [`backup`] writes one group to an encrypted, checksummed file and
//!   restores it.
//! * The validators of client-supplied ids are pure functions in
//!   [`validate`].
//!
//! Tenants (appKeys) are fully isolated: every query is keyed by tenant.

#![warn(missing_docs)]

pub mod backup;
mod error;
pub mod files;
mod gallery;
mod index;
mod keys;
mod postgres;
mod sqlite;
mod store;
mod time;
mod token;
pub mod validate;

pub use crate::postgres::{
    Change, ChangeListener, ListenerHandle, PostgresStore, CHANGE_CHANNEL, POSTGRES_SCHEMA_VERSION,
};
pub use backup::{export_group, import_group, read_backup_info, BackupInfo};
pub use error::{Result, StoreError};
pub use gallery::{
    AddFacesOutcome, DatabaseUrl, FaceWithEmbedding, Gallery, GalleryOptions, NewFace, NewFaces,
    Page, PageRequest, RotationReport, DEFAULT_STORE_TIMEOUT, MAX_MODEL_VERSION_LEN,
    MAX_PAGE_LIMIT, MAX_SEARCH_LIMIT, SQLITE_FOLLOW_EVERY,
};
pub use index::{cosine_similarity, dot, normalize, SearchHit, MAX_EMBEDDING_DIM};
pub use keys::{KeyRing, MasterKey, SealedEmbedding, MASTER_KEY_LEN, NONCE_LEN};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};
pub use store::{Cursor, FaceBox, FaceRecord, FaceStore, GroupInfo, RekeyItem, StoredFace};
pub use time::{Clock, SystemClock, UtcMillis};
pub use validate::{
    is_valid_external_image_id, is_valid_group_id, validate_external_image_id, validate_group_id,
};
