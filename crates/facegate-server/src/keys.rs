//! The master key files and `facegate keys rotate`.
//!
//! Files: `<master_key_file>` holds the current key. A rotation first
//! writes the new key to `<master_key_file>.next`, re-encrypts every record
//! under it (the old key stays readable meanwhile), and only when nothing
//! is left under the old key renames `.next` over the key file. A crash at
//! any point leaves a readable database: the server opens with the key
//! file as current and `.next` (if present) as an extra readable key, and
//! running the rotation again resumes it.

use std::path::{Path, PathBuf};

use facegate_store::{Gallery, GalleryOptions, KeyRing, MasterKey, RotationReport};

use crate::config::Config;
use crate::error::ServerError;

/// Where a rotation keeps the new key until it is complete.
pub fn next_key_path(master_key_file: &Path) -> PathBuf {
    let mut s = master_key_file.as_os_str().to_owned();
    s.push(".next");
    PathBuf::from(s)
}

/// The key ring the server opens the gallery with: the key file's key
/// (created, mode 0600, on first start) plus a pending rotation's key.
pub fn load_key_ring(master_key_file: &Path) -> Result<KeyRing, ServerError> {
    let current = MasterKey::load_or_create(master_key_file)?;
    let mut ring = KeyRing::new(&current);
    let next = next_key_path(master_key_file);
    if next.exists() {
        ring = ring.with_previous(&MasterKey::load(&next)?);
    }
    Ok(ring)
}

/// Re-encrypts every stored embedding under a new master key (the server
/// must be stopped: one gallery owns a database). Resumes an interrupted
/// rotation.
pub fn rotate_keys(config: &Config) -> Result<RotationReport, ServerError> {
    let key_file = config.master_key_file();
    let current = MasterKey::load(&key_file)?;
    let next_path = next_key_path(&key_file);
    let next = if next_path.exists() {
        MasterKey::load(&next_path)?
    } else {
        let k = MasterKey::generate()?;
        k.save_new(&next_path)?;
        k
    };
    let ring = KeyRing::new(&current).with_previous(&next);
    let gallery = Gallery::open(&config.database_url(), ring, GalleryOptions::default())?;
    let report = gallery.rotate_key(&next)?;
    drop(gallery);
    if report.remaining == 0 {
        std::fs::rename(&next_path, &key_file).map_err(|e| ServerError::Io {
            context: format!("installing the new key at {}", key_file.display()),
            source: e,
        })?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_store::{BBox, NewFace, NewFaces};

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
                            bbox: BBox {
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
