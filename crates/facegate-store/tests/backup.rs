//! Group backups (`facegate_store::backup`) on both backends: export →
//! import into another database under another master key gives the same
//! faces, embeddings and search answers; damaged, altered, foreign-key,
//! unknown-version files and existing groups are refused without creating
//! anything; the file holds no plaintext embedding.

mod common;

use common::{all_faces, check_no_plaintext, Backend, Rng, TestStore, MODEL};
use facegate_store::{
    export_group, import_group, read_backup_info, FaceBox, Gallery, MasterKey, NewFace, NewFaces,
    PageRequest, StoreError,
};
use sha2::{Digest, Sha256};

const T: &str = "tenant-a";
const DIM: usize = 64;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::common::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name(crate::common::Backend::Postgres)
                }
            )*
        }
    };
}

both_backends!(
    round_trip_into_another_database_keeps_faces_and_search_answers,
    damaged_altered_and_foreign_files_are_refused,
);

/// A group of 40 faces from 20 registrations (two faces each, one
/// registration without an externalImageId); their embeddings.
fn fill(g: &Gallery, db: &TestStore, group: &str, rng: &mut Rng) -> Vec<Vec<f32>> {
    g.create_group(T, group, MODEL).unwrap();
    let mut all = Vec::new();
    for i in 0..20 {
        db.clock.advance(3);
        let vs: Vec<Vec<f32>> = (0..2).map(|_| rng.vector(DIM)).collect();
        all.extend(vs.iter().cloned());
        let faces = vs
            .into_iter()
            .enumerate()
            .map(|(k, embedding)| NewFace {
                bbox: FaceBox {
                    x0: 0.1 + k as f32 * 0.01,
                    y0: 0.2,
                    x1: 0.6,
                    y1: 0.7 + i as f32 * 0.001,
                },
                confidence: 0.9 + i as f32 * 0.001,
                embedding,
            })
            .collect();
        let external_image_id = (i != 7).then(|| format!("person:{i}.jpg"));
        g.add_faces(
            T,
            group,
            NewFaces {
                external_image_id,
                model_version: MODEL.into(),
                faces,
            },
            1000,
        )
        .unwrap();
    }
    all
}

fn round_trip_into_another_database_keeps_faces_and_search_answers(backend: Backend) {
    let src = TestStore::new(backend);
    let dst = TestStore::new(backend);
    let mut rng = Rng(11);
    let a = src.open();
    let embeddings = fill(&a, &src, "people", &mut rng);
    let queries: Vec<Vec<f32>> = (0..8).map(|_| rng.vector(DIM)).collect();

    let (bytes, info) = export_group(&a, &src.key, T, "people").unwrap();
    assert_eq!(info.face_count, 40);
    assert_eq!(info.dimension, DIM);
    assert_eq!(info.model_version, MODEL);
    assert_eq!(info.key_id, src.key.key_id());
    assert_eq!(
        (info.tenant.as_str(), info.group_id.as_str()),
        (T, "people")
    );
    assert_eq!(read_backup_info(&bytes).unwrap(), info);
    check_no_plaintext(&bytes, &embeddings);

    // Another database under another master key, which alone cannot open
    // the file; with the exporting key it can.
    let b = dst.open();
    assert!(matches!(
        import_group(
            &b,
            std::slice::from_ref(&dst.key),
            &bytes,
            T,
            "people",
            1000
        ),
        Err(StoreError::BackupKeyUnavailable { .. })
    ));
    let keys = [dst.key.clone(), src.key.clone()];
    let (_, group) = import_group(&b, &keys, &bytes, T, "people", 1000).unwrap();
    assert_eq!(group.face_count, 40);
    assert_eq!(group.model_version, MODEL);

    let same = |g: &Gallery, group: &str| {
        assert_eq!(all_faces(g, T, group), all_faces(&a, T, "people"));
        for f in all_faces(&a, T, "people") {
            assert_eq!(
                g.embedding_of(T, group, &f.face_id).unwrap(),
                a.embedding_of(T, "people", &f.face_id).unwrap()
            );
        }
        for q in &queries {
            assert_eq!(
                g.search(T, group, q, 10, -1.0, None).unwrap(),
                a.search(T, "people", q, 10, -1.0, None).unwrap()
            );
        }
    };
    same(&b, "people");
    // Reopened: what was written is what the index held.
    drop(b);
    let b = dst.open();
    same(&b, "people");
    assert_eq!(b.get_group(T, "people").unwrap().face_count, 40);

    // Into the same database under a new group id, and under another
    // tenant: face ids may repeat across groups.
    import_group(&a, &keys, &bytes, T, "people-copy", 1000).unwrap();
    same(&a, "people-copy");
    import_group(&b, &keys, &bytes, "tenant-b", "people", 1000).unwrap();
    assert_eq!(all_faces(&b, "tenant-b", "people").len(), 40);

    // An empty group round-trips too.
    a.create_group(T, "empty", MODEL).unwrap();
    let (empty, info) = export_group(&a, &src.key, T, "empty").unwrap();
    assert_eq!((info.face_count, info.dimension), (0, 0));
    let (_, g) = import_group(&b, &keys, &empty, T, "empty", 1000).unwrap();
    assert_eq!(g.face_count, 0);
}

/// The file with its checksum recomputed after `edit`.
fn resealed(bytes: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut body = bytes[..bytes.len() - 32].to_vec();
    edit(&mut body);
    let sum = Sha256::digest(&body);
    body.extend_from_slice(&sum);
    body
}

fn damaged_altered_and_foreign_files_are_refused(backend: Backend) {
    let src = TestStore::new(backend);
    let dst = TestStore::new(backend);
    let mut rng = Rng(12);
    let a = src.open();
    fill(&a, &src, "people", &mut rng);
    let (bytes, _) = export_group(&a, &src.key, T, "people").unwrap();
    let b = dst.open();
    let keys = [src.key.clone()];
    let invalid = |data: &[u8], what: &str| match import_group(&b, &keys, data, T, "g", 1000) {
        Err(StoreError::InvalidBackup(why)) => {
            assert!(why.contains(what), "{what}: {why}");
        }
        other => panic!(
            "{what}: expected InvalidBackup, got {:?}",
            other.map(|r| r.1)
        ),
    };

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    invalid(&flipped, "checksum");
    invalid(&bytes[..bytes.len() - 1], "checksum");
    invalid(&bytes[..20], "truncated");
    invalid(b"PK\x03\x04 not a backup at all", "magic");
    let mut v2 = bytes.clone();
    v2[9] = 2;
    invalid(&v2, "unknown format version 2");
    // Edited behind the checksum: the header (the model version's last
    // byte, just before the two timestamps, dimension and count), a
    // record's metadata, a ciphertext byte, or a record dropped.
    let header_end = 8 + 2 + 16 + (2 + 16) + (2 + T.len()) + (2 + 6) + (2 + MODEL.len()) + 28;
    let model_last = header_end - 28 - 1;
    assert_eq!(
        &bytes[model_last + 1 - MODEL.len()..=model_last],
        MODEL.as_bytes()
    );
    invalid(
        &resealed(&bytes, |b| b[model_last] ^= 1),
        "failed to authenticate",
    );
    invalid(
        &resealed(&bytes, |b| b[header_end + 3] ^= 1),
        "failed to authenticate",
    );
    invalid(
        &resealed(&bytes, |b| {
            let last = b.len() - 1;
            b[last] ^= 1
        }),
        "failed to authenticate",
    );
    invalid(
        &resealed(&bytes, |b| b.truncate(b.len() - record_len())),
        "truncated",
    );

    // A key that is not the exporting one.
    let other = MasterKey::generate().unwrap();
    match import_group(&b, &[other.clone(), dst.key.clone()], &bytes, T, "g", 1000) {
        Err(StoreError::BackupKeyUnavailable { key_id, .. }) => {
            assert_eq!(key_id, src.key.key_id())
        }
        other => panic!(
            "expected BackupKeyUnavailable, got {:?}",
            other.map(|r| r.1)
        ),
    }
    // More faces than the quota.
    assert!(matches!(
        import_group(&b, &keys, &bytes, T, "g", 39),
        Err(StoreError::QuotaExceeded { .. })
    ));
    // Nothing was created by any of these.
    assert!(b
        .list_groups(T, &PageRequest::First(10))
        .unwrap()
        .items
        .is_empty());

    // A group that exists is refused and left as it was.
    b.create_group(T, "taken", MODEL).unwrap();
    assert!(matches!(
        import_group(&b, &keys, &bytes, T, "taken", 1000),
        Err(StoreError::DuplicatedGroupId)
    ));
    assert_eq!(b.get_group(T, "taken").unwrap().face_count, 0);
    assert!(matches!(
        import_group(&a, &keys, &bytes, T, "people", 1000),
        Err(StoreError::DuplicatedGroupId)
    ));
    assert_eq!(a.get_group(T, "people").unwrap().face_count, 40);
}

/// Bytes of the last record of `fill`'s backup (its externalImageId is
/// "person:19.jpg").
fn record_len() -> usize {
    // Face and image ids, flag, externalImageId, five f32, one i64, nonce,
    // ciphertext.
    (2 + 36) * 2 + 1 + 2 + "person:19.jpg".len() + 5 * 4 + 8 + 12 + DIM * 4 + 16
}
