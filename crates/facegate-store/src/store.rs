//! The storage trait that SQLite and PostgreSQL implement, and the
//! records it moves.
//!
//! The trait is synchronous on purpose: SQLite's API is blocking anyway, the
//! server calls the [`crate::Gallery`] through `spawn_blocking`, and a
//! blocking trait keeps this crate free of an async runtime. A PostgreSQL
//! backend can use a blocking client (or block on an async one) behind the
//! same trait.
//!
//! Backends hold no business logic beyond what must be atomic in the
//! database (the quota check in [`FaceStore::insert_faces`]); validation,
//! encryption and indexing live in the gallery, so every backend behaves the
//! same.

use crate::error::Result;
use crate::keys::SealedEmbedding;
use crate::time::UtcMillis;

pub use facegate_core::FaceBox;

/// A group as listed and detailed by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group id (`[a-z0-9-]{1,255}`).
    pub group_id: String,
    /// Creation time; the wire form is [`UtcMillis::to_wire_seconds`].
    pub created_at: UtcMillis,
    /// Model version fixed at creation.
    pub model_version: String,
    /// Faces currently in the group.
    pub face_count: u64,
    /// Random id of this creation of the group: a group deleted and created
    /// again under the same id is another incarnation, so paging tokens of
    /// the old one do not page the new one. Empty for groups created before
    /// schema version 2.
    pub incarnation: String,
}

/// A registered face's metadata (everything but the embedding).
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// UUID v4 of this face.
    pub face_id: String,
    /// UUID shared by the faces registered from one image.
    pub image_id: String,
    /// Client label given at registration.
    pub external_image_id: Option<String>,
    /// Where the face was in the registered image, as fractions of its
    /// width and height.
    pub bbox: FaceBox,
    /// Detection confidence, a fraction in [0, 1].
    pub confidence: f32,
    /// Registration time (UTC, ms precision).
    pub created_at: UtcMillis,
    /// The embedding model that made the vector.
    pub model_version: String,
}

/// A face row with its encrypted embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFace {
    /// Metadata.
    pub record: FaceRecord,
    /// Encrypted embedding.
    pub sealed: SealedEmbedding,
}

/// Keyset position: the last item of a page, in (created_at desc, id desc)
/// order. The next page holds items strictly after it in that order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at` of the last item returned.
    pub created_at: UtcMillis,
    /// Face id or group id of the last item returned.
    pub id: String,
}

/// One record to re-encrypt during key rotation.
#[derive(Debug, Clone)]
pub struct RekeyItem {
    /// Monotonic row sequence number; rotation walks it upwards.
    pub seq: i64,
    /// Tenant of the row.
    pub tenant: String,
    /// Group of the row.
    pub group_id: String,
    /// Face of the row.
    pub face_id: String,
    /// The ciphertext as found.
    pub sealed: SealedEmbedding,
}

/// Storage of groups and faces, keyed by tenant everywhere.
///
/// Synchronous by design (see the module docs); implementations must be
/// safe to call from many threads.
pub trait FaceStore: Send + Sync {
    /// Inserts a group with `face_count` 0. `Err(DuplicatedGroupId)` if the
    /// tenant already has it.
    fn create_group(&self, tenant: &str, group: &GroupInfo) -> Result<()>;

    /// The group, or `None`.
    fn get_group(&self, tenant: &str, group_id: &str) -> Result<Option<GroupInfo>>;

    /// Up to `limit` groups of the tenant in (created_at desc, group_id desc)
    /// order, strictly after `after` when given.
    fn list_groups(
        &self,
        tenant: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<GroupInfo>>;

    /// Ids of the master keys this store was initialised or rotated under
    /// (see [`FaceStore::record_key_id`]); empty for a new store.
    fn known_key_ids(&self) -> Result<Vec<String>>;

    /// Records that records may be sealed under `key_id` (idempotent).
    fn record_key_id(&self, key_id: &str, at: UtcMillis) -> Result<()>;

    /// Every group of every tenant, as (tenant, group); used at start-up.
    fn all_groups(&self) -> Result<Vec<(String, GroupInfo)>>;

    /// A number that changes whenever a commit may have changed the data
    /// (SQLite: `PRAGMA data_version` of the reading connection, which
    /// counts every other connection's commits); `None` where the backend
    /// cannot tell.
    fn change_counter(&self) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Deletes the group and all its faces. `false` if it did not exist.
    fn delete_group(&self, tenant: &str, group_id: &str) -> Result<bool>;

    /// In one transaction: reads the group's face count and inserts the
    /// longest prefix of `faces` that keeps it at most `max_faces_per_group`.
    /// Returns how many were inserted (possibly 0). `Err(GroupNotFound)` if
    /// the group does not exist.
    fn insert_faces(
        &self,
        tenant: &str,
        group_id: &str,
        faces: &[StoredFace],
        max_faces_per_group: u64,
    ) -> Result<usize>;

    /// One face with its ciphertext. `Err(GroupNotFound)` if the group does
    /// not exist, `Ok(None)` if the face does not.
    fn get_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<Option<StoredFace>>;

    /// Up to `limit` faces of the group in (created_at desc, face_id desc)
    /// order, strictly after `after` when given. `Err(GroupNotFound)` if the
    /// group does not exist.
    fn list_faces(
        &self,
        tenant: &str,
        group_id: &str,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>>;

    /// Calls `f` with every face of the group (with ciphertext), in no
    /// particular order; used to build the search index.
    fn for_each_face(
        &self,
        tenant: &str,
        group_id: &str,
        f: &mut dyn FnMut(StoredFace) -> Result<()>,
    ) -> Result<()>;

    /// Deletes one face. `Err(GroupNotFound)` if the group does not exist,
    /// `Ok(false)` if the face does not.
    fn delete_face(&self, tenant: &str, group_id: &str, face_id: &str) -> Result<bool>;

    /// Up to `limit` records with `seq > after_seq` whose key id is not
    /// `key_id`, in seq order.
    fn records_not_under_key(
        &self,
        key_id: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<RekeyItem>>;

    /// In one short transaction, replaces each `(item, new)` ciphertext,
    /// but only where the row still holds `item.sealed` (a row deleted or
    /// changed meanwhile is skipped). Returns how many rows were replaced.
    fn replace_sealed(&self, updates: &[(RekeyItem, SealedEmbedding)]) -> Result<usize>;

    /// How many records are not under `key_id`.
    fn count_not_under_key(&self, key_id: &str) -> Result<u64>;
}
