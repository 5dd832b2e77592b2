//! The master key files, key rotation while serving, and
//! `facegate keys rotate`.
//!
//! Files: `<master_key_file>` holds the installed key; during a rotation
//! `<master_key_file>.next` holds the new one. Whoever has a `.next` seals
//! new records under it and still reads both. Every running server polls
//! the two files (once per [`KEY_POLL_INTERVAL`]) and switches its key ring
//! when they change, so a rotation needs no restart:
//!
//! 1. `facegate keys rotate` writes `.next` (or reuses one already there:
//!    on several nodes, the operator copies the same `.next` to each);
//! 2. it waits [`SWITCH_GRACE`] from the file's creation, by which time
//!    every server has switched to sealing under the new key;
//! 3. it re-encrypts every record still under another key, in short
//!    batches, while servers keep reading (they hold both keys);
//! 4. when nothing is left it renames `.next` over the key file. Servers
//!    keep the old key in memory (for a straggler) until they restart.
//!
//! A crash at any point leaves a readable database, and running the
//! command again resumes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use facegate_store::{Gallery, GalleryOptions, KeyRing, MasterKey, RotationReport};

use crate::config::Config;
use crate::error::ServerError;

/// How often a server looks at its key files.
pub const KEY_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a rotation waits after `.next` appears before re-encrypting:
/// several poll intervals, so every server on this key file has switched.
pub const SWITCH_GRACE: Duration = Duration::from_secs(3);

/// Where a rotation keeps the new key until it is complete.
pub fn next_key_path(master_key_file: &Path) -> PathBuf {
    let mut s = master_key_file.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// The key ring the server opens the gallery with: a pending rotation's key
/// (it seals) plus the key file's key (created, mode 0600, on first start).
pub fn load_key_ring(master_key_file: &Path) -> Result<KeyRing, ServerError> {
    let installed = MasterKey::load_or_create(master_key_file)?;
    ring_from_files(master_key_file, installed)
}

fn ring_from_files(master_key_file: &Path, installed: MasterKey) -> Result<KeyRing, ServerError> {
    let next = next_key_path(master_key_file);
    Ok(match load_if_present(&next)? {
        Some(next) => KeyRing::new(&next).with_previous(&installed),
        None => KeyRing::new(&installed),
    })
}

fn load_if_present(path: &Path) -> Result<Option<MasterKey>, ServerError> {
    match MasterKey::load(path) {
        Ok(k) => Ok(Some(k)),
        Err(facegate_store::StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Polls the key files for as long as `gallery` lives and switches its key
/// ring when a rotation starts (or a node is handed a new key). Runs on its
/// own thread: adopting a ring waits for in-flight writes.
pub fn watch_key_files(gallery: &Arc<Gallery>, master_key_file: PathBuf) {
    let gallery: Weak<Gallery> = Arc::downgrade(gallery);
    let spawned = std::thread::Builder::new()
        .name("facegate-keys".into())
        .spawn(move || {
            let mut last_error: Option<String> = None;
            loop {
                std::thread::sleep(KEY_POLL_INTERVAL);
                let Some(gallery) = gallery.upgrade() else {
                    return;
                };
                match MasterKey::load(&master_key_file)
                    .map_err(ServerError::from)
                    .and_then(|k| ring_from_files(&master_key_file, k))
                {
                    Ok(ring) => {
                        last_error = None;
                        if ring.current_key_id() != gallery.current_key_id() {
                            let id = ring.current_key_id().to_string();
                            match gallery.adopt_keys(ring) {
                                Ok(()) => tracing::info!(
                                    key_id = %id,
                                    "key files changed; sealing under the new key"
                                ),
                                // Retried at the next poll.
                                Err(e) => tracing::warn!(
                                    key_id = %id,
                                    error = %e,
                                    "could not record the new key in the database; keeping the current keys"
                                ),
                            }
                        }
                    }
                    // Reported once, not every second; the ring in memory
                    // keeps working meanwhile.
                    Err(e) => {
                        let msg = e.to_string();
                        if last_error.as_deref() != Some(msg.as_str()) {
                            tracing::warn!(error = %msg, "reading the key files failed; keeping the current keys");
                            last_error = Some(msg);
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the key-file watcher; key changes need a restart");
    }
}

/// Writes a new `.next` key unless one is there, and returns it with
/// whether it was just created.
pub fn prepare_rotation(master_key_file: &Path) -> Result<(MasterKey, bool), ServerError> {
    let next_path = next_key_path(master_key_file);
    if let Some(k) = load_if_present(&next_path)? {
        return Ok((k, false));
    }
    let k = MasterKey::generate()?;
    match k.save_new(&next_path) {
        Ok(()) => Ok((k, true)),
        // Another rotation created it a moment ago: use that one.
        Err(facegate_store::StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            Ok((MasterKey::load(&next_path)?, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Time left until servers watching `path` have surely seen it.
fn grace_left(path: &Path) -> Duration {
    let created = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    let age = SystemTime::now()
        .duration_since(created)
        .unwrap_or(Duration::ZERO);
    SWITCH_GRACE.saturating_sub(age).min(SWITCH_GRACE)
}

/// Re-encrypts every stored embedding under a new master key and installs
/// it, while servers keep serving (see the module docs). Resumes an
/// interrupted rotation.
pub fn rotate_keys(config: &Config) -> Result<RotationReport, ServerError> {
    let key_file = config.master_key_file();
    let installed = MasterKey::load(&key_file)?;
    let (next, _) = prepare_rotation(&key_file)?;
    std::thread::sleep(grace_left(&next_key_path(&key_file)));
    let ring = KeyRing::new(&next).with_previous(&installed);
    let gallery = Gallery::open(&config.database_url(), ring, GalleryOptions::default())?;
    let report = gallery.rotate_key(&next)?;
    drop(gallery);
    if report.remaining == 0 {
        std::fs::rename(next_key_path(&key_file), &key_file).map_err(|e| ServerError::Io {
            context: format!("installing the new key at {}", key_file.display()),
            source: e,
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_store::{FaceBox, NewFace, NewFaces};

    #[test]
    fn rotation_reencrypts_and_replaces_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let key_file = config.master_key_file();
        let embedding = vec![0.25f32, -0.5, 0.75, 0.1];
        let face_id = {
            let g = Gallery::open(
                &config.database_url(),
                load_key_ring(&key_file).unwrap(),
                GalleryOptions::default(),
            )
            .unwrap();
            g.create_group("t", "g", "m1").unwrap();
            let out = g
                .add_faces(
                    "t",
                    "g",
                    NewFaces {
                        external_image_id: None,
                        model_version: "m1".into(),
                        faces: vec![NewFace {
                            bbox: FaceBox {
                                x0: 0.1,
                                y0: 0.1,
                                x1: 0.5,
                                y1: 0.5,
                            },
                            confidence: 0.9,
                            embedding: embedding.clone(),
                        }],
                    },
                    10,
                )
                .unwrap();
            out.added[0].face_id.clone()
        };
        let old_key = std::fs::read(&key_file).unwrap();
        let report = rotate_keys(&config).unwrap();
        assert_eq!(report.remaining, 0);
        assert_eq!(report.reencrypted, 1);
        assert!(!next_key_path(&key_file).exists());
        assert_ne!(std::fs::read(&key_file).unwrap(), old_key);
        let g = Gallery::open(
            &config.database_url(),
            load_key_ring(&key_file).unwrap(),
            GalleryOptions::default(),
        )
        .unwrap();
        assert_eq!(g.embedding_of("t", "g", &face_id).unwrap(), embedding);
        drop(g);
        // The old key alone no longer opens the store.
        let old = MasterKey::from_bytes(old_key.try_into().unwrap());
        assert!(Gallery::open(
            &config.database_url(),
            KeyRing::new(&old),
            GalleryOptions::default()
        )
        .is_err());
    }
}
