//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in the store, the key handling or the index.
///
/// The HTTP layer maps these onto the wire codes of API.md; variants that are
/// operator or server faults (database, key file, corruption) map to
/// InternalServerError.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A group id does not match `[a-z0-9-]{1,255}`.
    #[error("invalid group id")]
    InvalidGroupId,
    /// An externalImageId does not match `[a-zA-Z0-9_.\-:]{1,255}`.
    #[error("invalid externalImageId")]
    InvalidExternalImageId,
    /// Some other argument is out of its domain (limit, embedding, bbox, ...).
    #[error("invalid parameter: {0}")]
    InvalidParam(String),
    /// The tenant already has a group with this id.
    #[error("group already exists")]
    DuplicatedGroupId,
    /// The tenant has no group with this id.
    #[error("group not found")]
    GroupNotFound,
    /// The group has no face with this id.
    #[error("face not found")]
    FaceNotFound,
    /// A paging token was forged, altered, expired, or issued for another
    /// tenant, group or listing. The reason is for logs, not for clients.
    #[error("invalid paging token: {0}")]
    InvalidToken(&'static str),
    /// The group is full: not a single face could be added.
    #[error("group quota exceeded (at most {max_faces_per_group} faces)")]
    QuotaExceeded {
        /// The quota that was in force.
        max_faces_per_group: u64,
    },
    /// Faces made by another model than the group was created with.
    #[error("group uses model version {group}, faces were made by {given}")]
    ModelVersionMismatch {
        /// The group's model version.
        group: String,
        /// The model version given with the faces.
        given: String,
    },
    /// A vector's length differs from the vectors already in the group.
    #[error("embedding has {got} dimensions, group has {expected}")]
    DimensionMismatch {
        /// Length of the vectors in the group.
        expected: usize,
        /// Length of the vector given.
        got: usize,
    },
    /// AES-GCM authentication failed: wrong key, tampered ciphertext, or a
    /// ciphertext moved to another row (the associated data binds tenant,
    /// group and face id).
    #[error("embedding of face {face_id} failed to decrypt")]
    DecryptionFailed {
        /// The face whose record failed.
        face_id: String,
    },
    /// A record was encrypted under a key that was not supplied.
    #[error("record of face {face_id} is encrypted under key {key_id}, which is not loaded")]
    UnknownKeyId {
        /// The face whose record failed.
        face_id: String,
        /// The key id recorded with the ciphertext.
        key_id: String,
    },
    /// `postgres://` URLs are recognised but that backend is not written yet.
    #[error("postgres not yet supported")]
    PostgresNotSupported,
    /// The database URL has an unknown scheme or no path.
    #[error("invalid database url: {0}")]
    InvalidDatabaseUrl(String),
    /// The master key file exists but does not hold a key.
    #[error("invalid master key file {path}: {reason}")]
    InvalidKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The random number generator of the OS failed.
    #[error("system random number generator failed")]
    Random,
    /// The database was written by a newer facegate.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// A row in the database does not hold what this crate wrote.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A group backup file is not one this build can read: bad magic,
    /// unknown version, checksum mismatch, truncated or altered content.
    #[error("invalid backup file: {0}")]
    InvalidBackup(String),
    /// A group backup was made under a master key that was not supplied.
    #[error(
        "the backup was made under master key id {key_id}, which is not loaded (loaded: {loaded}); \
         supply the master key file of the server that exported it"
    )]
    BackupKeyUnavailable {
        /// Id of the key the backup needs.
        key_id: String,
        /// Ids of the keys offered, comma-separated.
        loaded: String,
    },
    /// The database did not answer within the store timeout (a lock held
    /// elsewhere, a stuck or unreachable server).
    #[error("the database did not answer in time")]
    Timeout,
    /// The master key file does not belong to this database.
    #[error(
        "the master key (id {key_id}) is not one this database was initialised or rotated \
         under (ids {known}); use the key file that belongs to this database"
    )]
    KeyMismatch {
        /// Id of the key offered.
        key_id: String,
        /// Ids the database knows, comma-separated.
        known: String,
    },
    /// The database is new or empty but the caller expected an initialised
    /// one (a key file exists, so a database existed before).
    #[error("the database holds no facegate data")]
    Uninitialised,
    /// The database backend failed.
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match e.sqlite_error_code() {
            // Still locked by another connection after the busy timeout.
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Timeout,
            _ => StoreError::Database(Box::new(e)),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
