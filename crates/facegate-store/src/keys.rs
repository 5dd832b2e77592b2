//! Master keys, the key ring, embedding encryption and token MACs.
//!
//! The master key is never used directly: HMAC-SHA256 derives one subkey per
//! purpose (embedding encryption, paging-token MAC, key id), so a leak of one
//! derived value does not expose the others.

use std::fmt;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Result, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Length of a master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;
/// Length of an AES-GCM nonce in bytes (96 bits).
pub const NONCE_LEN: usize = 12;

/// A 32-byte master key. Its bytes are never printed (`Debug` is redacted)
/// and are overwritten when it is dropped.
#[derive(Clone)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {})", self.key_id())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites key material; volatile so the compiler keeps the stores.
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

fn derive(key: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(label);
    tag_bytes(mac)
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

fn tag_bytes(mac: HmacSha256) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl MasterKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        MasterKey(bytes)
    }

    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self> {
        let mut b = [0u8; MASTER_KEY_LEN];
        getrandom::fill(&mut b).map_err(|_| StoreError::Random)?;
        Ok(MasterKey(b))
    }

    /// A short public identifier of this key (16 hex digits of an HMAC of
    /// the key), recorded with every ciphertext. It reveals nothing usable
    /// about the key.
    pub fn key_id(&self) -> String {
        let d = derive(&self.0, b"facegate/v1/key-id");
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a key file: exactly 32 raw bytes, or 64 hex digits (surrounding
    /// whitespace allowed, so `openssl rand -hex 32 > file` works).
    pub fn load(path: &Path) -> Result<Self> {
        let mut data = fs::read(path).map_err(|e| io_err(path, e))?;
        let key = Self::parse(&data).ok_or_else(|| StoreError::InvalidKeyFile {
            path: path.to_path_buf(),
            reason: "expected 32 raw bytes or 64 hex digits",
        });
        wipe(&mut data);
        key
    }

    fn parse(data: &[u8]) -> Option<Self> {
        if let Ok(raw) = <[u8; MASTER_KEY_LEN]>::try_from(data) {
            return Some(MasterKey(raw));
        }
        let text = data.trim_ascii();
        if text.len() != 2 * MASTER_KEY_LEN {
            return None;
        }
        let mut out = [0u8; MASTER_KEY_LEN];
        for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(MasterKey(out))
    }

    /// Loads the key at `path`, or creates it with 32 random bytes (file mode
    /// 0600, parent directories created) when the file does not exist.
    ///
    /// Creation is atomic and never clobbers: the key is written and synced
    /// to a temporary file, then hard-linked into place, so a crash leaves
    /// either no key file or a complete one, and two processes racing end up
    /// with the same key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match Self::load(path) {
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            other => return other,
        }
        let key = Self::generate()?;
        match key.save_new(path) {
            Ok(()) => Ok(key),
            // Someone else created it between our read and our link.
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                Self::load(path)
            }
            Err(e) => Err(e),
        }
    }

    /// The AES-256-GCM cipher of one backup file: a subkey of this key for
    /// backups, derived with the file's random `salt` (see
    /// [`crate::backup`]).
    pub(crate) fn backup_cipher(&self, salt: &[u8]) -> Aes256Gcm {
        let mut label = b"facegate/v1/backup-file\0".to_vec();
        label.extend_from_slice(salt);
        let mut k = derive(&self.0, &label);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k));
        wipe(&mut k);
        cipher
    }

    /// Writes this key as 32 raw bytes to a new file at `path` (mode 0600).
    /// Fails with an `AlreadyExists` I/O error if the file exists.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        crate::files::create_private_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let suffix = crate::files::random_suffix().map_err(|_| StoreError::Random)?;
        let tmp = dir.join(format!(".facegate-key-{suffix}.tmp"));
        let result = (|| {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(&self.0).map_err(|e| io_err(&tmp, e))?;
            f.sync_all().map_err(|e| io_err(&tmp, e))?;
            fs::hard_link(&tmp, path).map_err(|e| io_err(path, e))?;
            // Make the new directory entry durable too.
            if let Ok(d) = fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        let _ = fs::remove_file(&tmp);
        result
    }
}

/// The keys a store is opened with: the current key (used for every new
/// ciphertext and token) plus previous keys (still accepted for reading),
/// so a half-done rotation stays readable.
pub struct KeyRing {
    current: KeyEntry,
    previous: Vec<KeyEntry>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Clone)]
struct KeyEntry {
    id: String,
    cipher: Aes256Gcm,
    token_key: [u8; 32],
}

impl Drop for KeyEntry {
    fn drop(&mut self) {
        wipe(&mut self.token_key);
    }
}

impl KeyEntry {
    fn new(key: &MasterKey) -> Self {
        let mut enc = derive(&key.0, b"facegate/v1/embedding-encryption");
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&enc));
        wipe(&mut enc);
        KeyEntry {
            id: key.key_id(),
            cipher,
            token_key: derive(&key.0, b"facegate/v1/paging-token"),
        }
    }
}

/// An encrypted embedding as stored: key id, nonce, and ciphertext with the
/// 16-byte GCM tag appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEmbedding {
    /// [`MasterKey::key_id`] of the key it was sealed under.
    pub key_id: String,
    /// Random 96-bit nonce, unique per record.
    pub nonce: [u8; NONCE_LEN],
    /// AES-256-GCM ciphertext of the little-endian f32s, tag appended.
    pub ciphertext: Vec<u8>,
}

/// Associated data binding a ciphertext to its row, so a ciphertext copied
/// to another tenant, group or face fails authentication. Length prefixes
/// keep the encoding unambiguous.
fn aad(tenant: &str, group_id: &str, face_id: &str, key_id: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + tenant.len() + group_id.len() + face_id.len());
    a.extend_from_slice(b"facegate/v1/face\0");
    for part in [tenant, group_id, face_id, key_id] {
        a.extend_from_slice(&(part.len() as u32).to_be_bytes());
        a.extend_from_slice(part.as_bytes());
    }
    a
}

impl KeyRing {
    /// A ring whose current key is `current`, with no previous keys.
    pub fn new(current: &MasterKey) -> Self {
        KeyRing {
            current: KeyEntry::new(current),
            previous: Vec::new(),
        }
    }

    /// Adds a key that is accepted for reading only (ignored if already in
    /// the ring).
    pub fn with_previous(mut self, key: &MasterKey) -> Self {
        let entry = KeyEntry::new(key);
        if !self.contains(&entry.id) {
            self.previous.push(entry);
        }
        self
    }

    /// Id of the current key.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Ids of all keys, current first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .map(|k| k.id.clone())
            .collect()
    }

    fn contains(&self, id: &str) -> bool {
        self.current.id == id || self.previous.iter().any(|k| k.id == id)
    }

    /// The ring with `key` as current; the old current key becomes a
    /// previous key. Unchanged if `key` already is current.
    pub(crate) fn rotated_to(&self, key: &MasterKey) -> KeyRing {
        let entry = KeyEntry::new(key);
        if entry.id == self.current.id {
            return KeyRing {
                current: entry,
                previous: self.previous.clone(),
            };
        }
        let mut previous = vec![self.current.clone()];
        previous.extend(self.previous.iter().filter(|k| k.id != entry.id).cloned());
        KeyRing {
            current: entry,
            previous,
        }
    }

    /// This ring, with every key of `older` that it lacks kept for reading:
    /// a node that switches keys must still open records a slower peer (or
    /// an unfinished rotation) sealed under the key it is leaving.
    pub fn keeping_readable(mut self, older: &KeyRing) -> KeyRing {
        for k in std::iter::once(&older.current).chain(&older.previous) {
            if !self.contains(&k.id) {
                self.previous.push(k.clone());
            }
        }
        self
    }

    fn entry(&self, id: &str) -> Option<&KeyEntry> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
    }

    /// Encrypts `embedding` under the current key, bound to its row.
    pub(crate) fn seal(
        &self,
        tenant: &str,
        group_id: &str,
        face_id: &str,
        embedding: &[f32],
    ) -> Result<SealedEmbedding> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| StoreError::Random)?;
        let mut plain: Vec<u8> = embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        let k = &self.current;
        let aad = aad(tenant, group_id, face_id, &k.id);
        let ciphertext = k
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            // Only fails for messages beyond GCM's 64 GiB limit.
            .map_err(|_| StoreError::InvalidParam("embedding too large to encrypt".into()));
        wipe(&mut plain);
        Ok(SealedEmbedding {
            key_id: k.id.clone(),
            nonce,
            ciphertext: ciphertext?,
        })
    }

    /// Decrypts a sealed embedding of the row (tenant, group, face).
    pub(crate) fn open(
        &self,
        tenant: &str,
        group_id: &str,
        face_id: &str,
        sealed: &SealedEmbedding,
    ) -> Result<Vec<f32>> {
        let k = self
            .entry(&sealed.key_id)
            .ok_or_else(|| StoreError::UnknownKeyId {
                face_id: face_id.to_string(),
                key_id: sealed.key_id.clone(),
            })?;
        let aad = aad(tenant, group_id, face_id, &k.id);
        let mut plain = k
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::DecryptionFailed {
                face_id: face_id.to_string(),
            })?;
        if plain.len() % 4 != 0 {
            wipe(&mut plain);
            return Err(StoreError::Corrupt(format!(
                "embedding of face {face_id} has a partial float"
            )));
        }
        let v = plain
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        wipe(&mut plain);
        Ok(v)
    }

    /// HMAC-SHA256 of `msg` under the current key's token subkey.
    pub(crate) fn token_tag(&self, msg: &[u8]) -> [u8; 32] {
        Self::tag_with(&self.current, msg)
    }

    fn tag_with(k: &KeyEntry, msg: &[u8]) -> [u8; 32] {
        let mut mac = new_mac(&k.token_key);
        mac.update(msg);
        tag_bytes(mac)
    }

    /// True when `tag` is a valid token MAC of `msg` under any key in the
    /// ring (so tokens survive a rotation); compared in constant time.
    pub(crate) fn verify_token_tag(&self, msg: &[u8], tag: &[u8]) -> bool {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|k| {
                let mut mac = new_mac(&k.token_key);
                mac.update(msg);
                mac.verify_slice(tag).is_ok()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let key = MasterKey::generate().unwrap();
        let ring = KeyRing::new(&key);
        let v = vec![0.25f32, -1.5, 3.0];
        let s = ring.seal("t", "g", "f", &v).unwrap();
        assert_eq!(ring.open("t", "g", "f", &s).unwrap(), v);
        for (t, g, f) in [("u", "g", "f"), ("t", "h", "f"), ("t", "g", "e")] {
            assert!(matches!(
                ring.open(t, g, f, &s),
                Err(StoreError::DecryptionFailed { .. })
            ));
        }
        let other = KeyRing::new(&MasterKey::generate().unwrap());
        assert!(matches!(
            other.open("t", "g", "f", &s),
            Err(StoreError::UnknownKeyId { .. })
        ));
        let both = other.with_previous(&key);
        assert_eq!(both.open("t", "g", "f", &s).unwrap(), v);
    }

    #[test]
    fn parse_key_files() {
        assert!(MasterKey::parse(&[7u8; 32]).is_some());
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let k = MasterKey::parse(hex.as_bytes()).unwrap();
        assert_eq!(k.0[1], 0x11);
        assert_eq!(k.0[31], 0xff);
        assert!(MasterKey::parse(b"short").is_none());
        assert!(MasterKey::parse(&[b'g'; 64]).is_none());
        assert!(MasterKey::parse(&[0u8; 33]).is_none());
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::from_bytes([0xab; 32]);
        let s = format!("{k:?}");
        assert!(!s.contains("abab"), "{s}");
        assert!(!s.contains("171"), "{s}");
    }

    #[test]
    fn load_or_create_makes_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("master.key");
        let a = MasterKey::load_or_create(&p).unwrap();
        let b = MasterKey::load_or_create(&p).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(fs::read(&p).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        fs::write(&p, b"garbage").unwrap();
        assert!(matches!(
            MasterKey::load_or_create(&p),
            Err(StoreError::InvalidKeyFile { .. })
        ));
    }
}
