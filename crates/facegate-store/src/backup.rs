//! Group backups: one group of one tenant in a versioned, checksummed file
//! whose embeddings are encrypted under a subkey of a master key, so the
//! file is useless without that master key.
//!
//! [`export_group`] reads the group's faces and embeddings through the
//! [`Gallery`] (decrypting them with the store's keys) and re-seals every
//! embedding with AES-256-GCM under a key derived (HMAC-SHA256) from the
//! master key given, the exporting server's, and a random per-file salt.
//! [`import_group`] needs a master key with the id the file names; it
//! opens every embedding and restores the group through
//! [`Gallery::restore_group`], which seals them under the importing
//! store's own keys. Face ids, image ids, external image ids, boxes,
//! confidences and creation times are kept.
//!
//! Format version 1. Integers are big-endian; a string is a `u16` byte
//! length and UTF-8 bytes.
//!
//! ```text
//! magic            8 bytes  "FGBACKUP"
//! version          u16      1
//! -- header --
//! salt             16 bytes random, per file
//! key_id           string   id of the master key the file key derives from
//! tenant           string   appKey of the exported group
//! group_id         string
//! model_version    string   the group's embedding model
//! group_created_at i64      ms since the Unix epoch (UTC)
//! exported_at      i64      ms
//! dimension        u32      length of every embedding (0 for no faces)
//! face_count       u64
//! -- face_count records, oldest first --
//! face_id          string
//! image_id         string
//! has_external_id  u8       0 or 1, then the string when 1
//! bbox             4 × f32  x0, y0, x1, y1 (IEEE bits)
//! confidence       f32
//! created_at       i64      ms
//! nonce            12 bytes
//! ciphertext       dimension × 4 + 16 bytes: AES-256-GCM of the
//!                           little-endian f32s, tag appended
//! -- trailer --
//! checksum         32 bytes SHA-256 of every byte before it
//! ```
//!
//! A record's associated data is a label, the SHA-256 of the magic,
//! version and header, the record's index and its bytes before the nonce:
//! changing the header or any metadata, or moving or dropping a record,
//! fails authentication even when the checksum (which catches accidental
//! damage, without a key) is recomputed.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

use crate::error::{Result, StoreError};
use crate::gallery::Gallery;
use crate::index::MAX_EMBEDDING_DIM;
use crate::keys::{MasterKey, NONCE_LEN};
use crate::store::{FaceBox, FaceRecord, GroupInfo};
use crate::time::{Clock, SystemClock, UtcMillis};

/// The first bytes of every backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"FGBACKUP";
/// The format version this build writes and the only one it reads.
pub const BACKUP_VERSION: u16 = 1;

const SALT_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;
const TAG_LEN: usize = 16;
const RECORD_AAD_LABEL: &[u8] = b"facegate/v1/backup-record\0";

/// What a backup file holds, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Format version.
    pub version: u16,
    /// Id ([`MasterKey::key_id`]) of the master key the file was encrypted
    /// under.
    pub key_id: String,
    /// The appKey the group was exported from.
    pub tenant: String,
    /// The exported group's id.
    pub group_id: String,
    /// The group's embedding model.
    pub model_version: String,
    /// When the exported group was created.
    pub group_created_at: UtcMillis,
    /// When the file was written.
    pub exported_at: UtcMillis,
    /// Length of every embedding (0 when there are no faces).
    pub dimension: usize,
    /// Faces in the file.
    pub face_count: u64,
}

fn bad(why: impl Into<String>) -> StoreError {
    StoreError::InvalidBackup(why.into())
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) -> Result<()> {
        let len = u16::try_from(s.len()).map_err(|_| bad("a string exceeds 65535 bytes"))?;
        self.bytes(&len.to_be_bytes());
        self.bytes(s.as_bytes());
        Ok(())
    }
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| bad("truncated"))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn str(&mut self) -> Result<String> {
        let len = self.u16()? as usize;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| bad("a string is not UTF-8"))
    }
}

fn record_aad(header_digest: &[u8], index: u64, meta: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_AAD_LABEL.len() + 40 + meta.len());
    aad.extend_from_slice(RECORD_AAD_LABEL);
    aad.extend_from_slice(header_digest);
    aad.extend_from_slice(&index.to_be_bytes());
    aad.extend_from_slice(meta);
    aad
}

fn write_meta(w: &mut Writer, r: &FaceRecord) -> Result<()> {
    w.str(&r.face_id)?;
    w.str(&r.image_id)?;
    match &r.external_image_id {
        Some(ext) => {
            w.bytes(&[1]);
            w.str(ext)?;
        }
        None => w.bytes(&[0]),
    }
    for v in [r.bbox.x0, r.bbox.y0, r.bbox.x1, r.bbox.y1, r.confidence] {
        w.bytes(&v.to_bits().to_be_bytes());
    }
    w.bytes(&r.created_at.0.to_be_bytes());
    Ok(())
}

/// Writes a backup of the tenant's group, encrypted under a subkey of
/// `key` (the master key whose holder may restore it), and returns the
/// file's bytes with its header. The group is read through `gallery`, so a
/// server may keep serving meanwhile; faces added during the export may or
/// may not be in the file.
pub fn export_group(
    gallery: &Gallery,
    key: &MasterKey,
    tenant: &str,
    group_id: &str,
) -> Result<(Vec<u8>, BackupInfo)> {
    let (group, faces) = gallery.faces_with_embeddings(tenant, group_id)?;
    let dimension = faces.first().map_or(0, |(_, v)| v.len());
    for (r, v) in &faces {
        if v.len() != dimension || r.model_version != group.model_version {
            return Err(StoreError::Corrupt(format!(
                "face {} does not match the group's model or dimension",
                r.face_id
            )));
        }
    }
    let info = BackupInfo {
        version: BACKUP_VERSION,
        key_id: key.key_id(),
        tenant: tenant.to_string(),
        group_id: group.group_id.clone(),
        model_version: group.model_version.clone(),
        group_created_at: group.created_at,
        exported_at: SystemClock.now(),
        dimension,
        face_count: faces.len() as u64,
    };
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| StoreError::Random)?;
    let mut w = Writer(Vec::with_capacity(
        256 + faces.len() * (128 + NONCE_LEN + dimension * 4 + TAG_LEN),
    ));
    w.bytes(&BACKUP_MAGIC);
    w.bytes(&BACKUP_VERSION.to_be_bytes());
    w.bytes(&salt);
    w.str(&info.key_id)?;
    w.str(&info.tenant)?;
    w.str(&info.group_id)?;
    w.str(&info.model_version)?;
    w.bytes(&info.group_created_at.0.to_be_bytes());
    w.bytes(&info.exported_at.0.to_be_bytes());
    let dim32 = u32::try_from(dimension).map_err(|_| bad("dimension too large"))?;
    w.bytes(&dim32.to_be_bytes());
    w.bytes(&info.face_count.to_be_bytes());
    let header_digest = Sha256::digest(&w.0);
    let cipher = key.backup_cipher(&salt);
    for (i, (record, v)) in faces.iter().enumerate() {
        let start = w.0.len();
        write_meta(&mut w, record)?;
        let aad = record_aad(&header_digest, i as u64, &w.0[start..]);
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| StoreError::Random)?;
        let plain: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let sealed = seal(&cipher, &nonce, &plain, &aad)?;
        w.bytes(&nonce);
        w.bytes(&sealed);
    }
    let checksum = Sha256::digest(&w.0);
    w.bytes(&checksum);
    Ok((w.0, info))
}

fn seal(cipher: &Aes256Gcm, nonce: &[u8; NONCE_LEN], plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: plain, aad })
        .map_err(|_| StoreError::InvalidParam("embedding too large to encrypt".into()))
}

struct RawRecord<'a> {
    record: FaceRecord,
    meta: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

struct Parsed<'a> {
    info: BackupInfo,
    salt: [u8; SALT_LEN],
    header_digest: [u8; 32],
    records: Vec<RawRecord<'a>>,
}

fn parse(data: &[u8]) -> Result<Parsed<'_>> {
    if data.len() < BACKUP_MAGIC.len() + 2 || data[..BACKUP_MAGIC.len()] != BACKUP_MAGIC {
        return Err(bad("not a facegate group backup (wrong magic)"));
    }
    let mut r = Reader { data, at: 8 };
    let version = r.u16()?;
    if version != BACKUP_VERSION {
        return Err(bad(format!(
            "unknown format version {version} (this build reads version {BACKUP_VERSION})"
        )));
    }
    let body_len = data
        .len()
        .checked_sub(CHECKSUM_LEN)
        .filter(|&n| n >= r.at)
        .ok_or_else(|| bad("truncated"))?;
    let (body, checksum) = data.split_at(body_len);
    if Sha256::digest(body)[..] != checksum[..] {
        return Err(bad("checksum mismatch: the file is damaged or incomplete"));
    }
    let mut r = Reader {
        data: body,
        at: r.at,
    };
    let salt = r.array::<SALT_LEN>()?;
    let key_id = r.str()?;
    let tenant = r.str()?;
    let group_id = r.str()?;
    let model_version = r.str()?;
    let group_created_at = UtcMillis(r.i64()?);
    let exported_at = UtcMillis(r.i64()?);
    let dimension = r.u32()? as usize;
    let face_count = r.u64()?;
    if dimension > MAX_EMBEDDING_DIM || (dimension == 0 && face_count > 0) {
        return Err(bad(format!("implausible embedding dimension {dimension}")));
    }
    let mut header_digest = [0u8; 32];
    header_digest.copy_from_slice(&Sha256::digest(&body[..r.at]));
    let info = BackupInfo {
        version,
        key_id,
        tenant,
        group_id,
        model_version,
        group_created_at,
        exported_at,
        dimension,
        face_count,
    };
    // No more records than the bytes left could hold.
    let min_record = 2 + 2 + 1 + 20 + 8 + NONCE_LEN + dimension * 4 + TAG_LEN;
    if face_count > ((body.len() - r.at) / min_record) as u64 {
        return Err(bad("truncated (fewer records than the header counts)"));
    }
    let mut records = Vec::with_capacity(face_count as usize);
    for _ in 0..face_count {
        let start = r.at;
        let face_id = r.str()?;
        let image_id = r.str()?;
        let external_image_id = match r.u8()? {
            0 => None,
            1 => Some(r.str()?),
            _ => return Err(bad("bad external image id flag")),
        };
        let (x0, y0, x1, y1) = (r.f32()?, r.f32()?, r.f32()?, r.f32()?);
        let confidence = r.f32()?;
        let created_at = UtcMillis(r.i64()?);
        let meta = &body[start..r.at];
        let nonce = r.take(NONCE_LEN)?;
        let ciphertext = r.take(dimension * 4 + TAG_LEN)?;
        records.push(RawRecord {
            record: FaceRecord {
                face_id,
                image_id,
                external_image_id,
                bbox: FaceBox { x0, y0, x1, y1 },
                confidence,
                created_at,
                model_version: info.model_version.clone(),
            },
            meta,
            nonce,
            ciphertext,
        });
    }
    if r.at != body.len() {
        return Err(bad("unexpected bytes after the last record"));
    }
    Ok(Parsed {
        info,
        salt,
        header_digest,
        records,
    })
}

/// The ids of `keys`, comma-separated, or "none".
pub fn key_ids(keys: &[MasterKey]) -> String {
    if keys.is_empty() {
        return "none".into();
    }
    keys.iter()
        .map(MasterKey::key_id)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a backup file's magic, version and checksum and returns its
/// header; needs no key.
pub fn read_backup_info(data: &[u8]) -> Result<BackupInfo> {
    Ok(parse(data)?.info)
}

/// Restores the backup `data` as the tenant's group `group_id` (which must
/// not exist) through [`Gallery::restore_group`]: every face as it was,
/// its embedding sealed under the gallery's current key. `keys` must hold
/// the master key the file was made under ([`BackupInfo::key_id`]).
///
/// Refuses a file with a bad checksum, an unknown version, or any record
/// that fails authentication ([`StoreError::InvalidBackup`]), a missing key
/// ([`StoreError::BackupKeyUnavailable`]), a group that exists
/// ([`StoreError::DuplicatedGroupId`]), or more faces than
/// `max_faces_per_group`. Nothing is created when it fails.
pub fn import_group(
    gallery: &Gallery,
    keys: &[MasterKey],
    data: &[u8],
    tenant: &str,
    group_id: &str,
    max_faces_per_group: u64,
) -> Result<(BackupInfo, GroupInfo)> {
    let parsed = parse(data)?;
    let info = parsed.info;
    let key = keys
        .iter()
        .find(|k| k.key_id() == info.key_id)
        .ok_or_else(|| StoreError::BackupKeyUnavailable {
            key_id: info.key_id.clone(),
            loaded: key_ids(keys),
        })?;
    let cipher = key.backup_cipher(&parsed.salt);
    let mut faces = Vec::with_capacity(parsed.records.len());
    for (i, raw) in parsed.records.into_iter().enumerate() {
        let aad = record_aad(&parsed.header_digest, i as u64, raw.meta);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(raw.nonce),
                Payload {
                    msg: raw.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                bad(format!(
                    "face {} failed to authenticate: the file was altered",
                    raw.record.face_id
                ))
            })?;
        let v: Vec<f32> = plain
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        faces.push((raw.record, v));
    }
    let group = gallery.restore_group(
        tenant,
        group_id,
        &info.model_version,
        faces,
        max_faces_per_group,
    )?;
    Ok((info, group))
}
