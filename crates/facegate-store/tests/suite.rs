//! The backend-independent store suite: every test here runs once on a
//! SQLite file (`sqlite::<name>`) and once on a fresh PostgreSQL database
//! (`postgres::<name>`), through [`TestStore`]. Tests that only make sense
//! on one backend live in `sqlite.rs` and `postgres.rs`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{all_faces, check_no_plaintext, faces, Backend, Rng, TestStore, MODEL};
use facegate_store::{
    dot, normalize, Clock, DatabaseUrl, FaceRecord, Gallery, GalleryOptions, KeyRing, MasterKey,
    NewFaces, PageRequest, StoreError,
};

const T: &str = "tenant-a";

/// Instantiates each listed `fn name(backend: Backend)` as the tests
/// `sqlite::name` and `postgres::name`. A suite function left out of the
/// list is dead code, which clippy (`-D warnings`) refuses.
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
    restart_keeps_groups_faces_and_search_answers,
    stored_data_never_holds_plaintext_embeddings,
    swapped_ciphertexts_fail_to_decrypt,
    tenants_are_isolated,
    quota_partial_and_none,
    group_rules_and_errors,
    paging_tokens_reject_forgery_alteration_and_expiry,
    group_and_face_listings_page_newest_first,
    face_listing_survives_interleaved_changes,
    search_equals_brute_force,
    key_rotation_including_interrupted,
    concurrent_search_add_delete_do_not_deadlock,
    the_database_knows_its_keys,
);

/// A database records the keys it was initialised and rotated under:
/// another key is refused at open (even with no faces to fail decrypting),
/// and a new database is only initialised when the caller allows it.
fn the_database_knows_its_keys(backend: Backend) {
    let db = TestStore::new(backend);
    let strict = GalleryOptions {
        create_if_empty: false,
        ..db.options()
    };
    assert!(matches!(
        Gallery::open(db.url(), KeyRing::new(&db.key), strict.clone()),
        Err(StoreError::Uninitialised)
    ));
    let g = db.open();
    g.create_group(T, "empty", MODEL).unwrap();
    drop(g);
    let other = MasterKey::generate().unwrap();
    match Gallery::open(db.url(), KeyRing::new(&other), db.options()) {
        Err(StoreError::KeyMismatch { key_id, known }) => {
            assert_eq!(key_id, other.key_id());
            assert_eq!(known, db.key.key_id());
        }
        other => panic!("expected KeyMismatch, got {:?}", other.err()),
    }
    // A rotation's new key beside the known one is accepted and recorded,
    // so afterwards the new key alone opens the database.
    let g = Gallery::open(
        db.url(),
        KeyRing::new(&other).with_previous(&db.key),
        strict.clone(),
    )
    .unwrap();
    drop(g);
    Gallery::open(db.url(), KeyRing::new(&other), strict).unwrap();
}

fn restart_keeps_groups_faces_and_search_answers(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(1);
    let queries: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(32)).collect();
    let before = {
        let g = db.open();
        for (tenant, group) in [(T, "g1"), (T, "g2"), ("tenant-b", "g1")] {
            g.create_group(tenant, group, MODEL).unwrap();
            for _ in 0..3 {
                db.clock.advance(5);
                let vs = (0..4).map(|_| rng.vector(32)).collect();
                g.add_faces(tenant, group, faces(vs), 1000).unwrap();
            }
        }
        let f0 = all_faces(&g, T, "g1")[0].clone();
        let emb = g.embedding_of(T, "g1", &f0.face_id).unwrap();
        let searches: Vec<_> = queries
            .iter()
            .map(|q| g.search(T, "g1", q, 10, -1.0, None).unwrap())
            .collect();
        (
            g.list_groups(T, &PageRequest::First(200)).unwrap(),
            all_faces(&g, T, "g1"),
            all_faces(&g, "tenant-b", "g1"),
            f0,
            emb,
            searches,
        )
    };
    let g = db.open();
    let (groups, faces_a, faces_b, f0, emb, searches) = before;
    assert_eq!(g.list_groups(T, &PageRequest::First(200)).unwrap(), groups);
    assert_eq!(groups.items.len(), 2);
    assert_eq!(groups.items[0].face_count, 12);
    assert_eq!(all_faces(&g, T, "g1"), faces_a);
    assert_eq!(faces_a.len(), 12);
    assert_eq!(all_faces(&g, "tenant-b", "g1"), faces_b);
    assert_eq!(g.get_face(T, "g1", &f0.face_id).unwrap(), f0);
    assert_eq!(g.embedding_of(T, "g1", &f0.face_id).unwrap(), emb);
    for (q, want) in queries.iter().zip(&searches) {
        assert_eq!(&g.search(T, "g1", q, 10, -1.0, None).unwrap(), want);
    }
    // Starting with the wrong key fails instead of looking empty.
    let other = MasterKey::generate().unwrap();
    assert!(Gallery::open(db.url(), KeyRing::new(&other), db.options()).is_err());
}

/// No two consecutive floats of any embedding appear in what the backend
/// stores (see [`TestStore::stored_bytes`]): while the gallery is open, after
/// a checkpoint (SQLite: WAL moved into the main file) and after closing.
fn stored_data_never_holds_plaintext_embeddings(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(2);
    let mut stored = Vec::new();
    {
        let g = db.open();
        g.create_group(T, "g", MODEL).unwrap();
        for _ in 0..20 {
            let vs: Vec<Vec<f32>> = (0..5).map(|_| rng.vector(128)).collect();
            stored.extend(vs.clone());
            g.add_faces(T, "g", faces(vs), 100_000).unwrap();
        }
        // While open (SQLite: main file plus WAL).
        check_no_plaintext(&db.stored_bytes(), &stored);
        db.checkpoint();
        check_no_plaintext(&db.stored_bytes(), &stored);
    }
    check_no_plaintext(&db.stored_bytes(), &stored);
}

fn swapped_ciphertexts_fail_to_decrypt(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(3);
    let g = db.open();
    g.create_group(T, "g", MODEL).unwrap();
    g.create_group("tenant-b", "g", MODEL).unwrap();
    let out = g
        .add_faces(T, "g", faces(vec![rng.vector(16), rng.vector(16)]), 100)
        .unwrap();
    let other = g
        .add_faces("tenant-b", "g", faces(vec![rng.vector(16)]), 100)
        .unwrap();
    let (a, b) = (&out.added[0].face_id, &out.added[1].face_id);
    let c = &other.added[0].face_id;
    // Swap a and b; copy b's (original) ciphertext into tenant-b's c too.
    db.execute_batch(&format!(
        "CREATE TEMP TABLE s AS SELECT face_id, nonce, ciphertext FROM faces;
         UPDATE faces SET nonce = (SELECT nonce FROM s WHERE face_id = '{b}'),
                          ciphertext = (SELECT ciphertext FROM s WHERE face_id = '{b}')
           WHERE face_id IN ('{a}', '{c}');
         UPDATE faces SET nonce = (SELECT nonce FROM s WHERE face_id = '{a}'),
                          ciphertext = (SELECT ciphertext FROM s WHERE face_id = '{a}')
           WHERE face_id = '{b}';"
    ));
    for (tenant, id) in [(T, a), (T, b), ("tenant-b", c)] {
        match g.embedding_of(tenant, "g", id) {
            Err(StoreError::DecryptionFailed { face_id }) => assert_eq!(&face_id, id),
            other => panic!("expected DecryptionFailed, got {other:?}"),
        }
    }
    drop(g);
    assert!(matches!(
        Gallery::open(db.url(), KeyRing::new(&db.key), db.options()),
        Err(StoreError::DecryptionFailed { .. })
    ));
}

fn tenants_are_isolated(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(4);
    let g = db.open();
    g.create_group(T, "shared-name", MODEL).unwrap();
    let out = g
        .add_faces(T, "shared-name", faces(vec![rng.vector(8)]), 100)
        .unwrap();
    let fid = &out.added[0].face_id;
    let b = "tenant-b";
    assert!(matches!(
        g.get_group(b, "shared-name"),
        Err(StoreError::GroupNotFound)
    ));
    assert!(g
        .list_groups(b, &PageRequest::First(10))
        .unwrap()
        .items
        .is_empty());
    assert!(matches!(
        g.list_faces(b, "shared-name", &PageRequest::First(10)),
        Err(StoreError::GroupNotFound)
    ));
    assert!(matches!(
        g.get_face(b, "shared-name", fid),
        Err(StoreError::GroupNotFound)
    ));
    assert!(matches!(
        g.search(b, "shared-name", &rng.vector(8), 10, -1.0, None),
        Err(StoreError::GroupNotFound)
    ));
    assert!(matches!(
        g.delete_group(b, "shared-name"),
        Err(StoreError::GroupNotFound)
    ));
    // Same group id in another tenant is a different group.
    g.create_group(b, "shared-name", MODEL).unwrap();
    assert!(matches!(
        g.get_face(b, "shared-name", fid),
        Err(StoreError::FaceNotFound)
    ));
    assert!(matches!(
        g.embedding_of(b, "shared-name", fid),
        Err(StoreError::FaceNotFound)
    ));
    assert!(matches!(
        g.delete_face(b, "shared-name", fid),
        Err(StoreError::FaceNotFound)
    ));
    assert!(g
        .search(b, "shared-name", &rng.vector(8), 10, -1.0, None)
        .unwrap()
        .is_empty());
    g.delete_group(b, "shared-name").unwrap();
    assert_eq!(g.get_group(T, "shared-name").unwrap().face_count, 1);
    assert_eq!(
        g.search(T, "shared-name", &rng.vector(8), 10, -1.0, None)
            .unwrap()
            .len(),
        1
    );
    // A token of one tenant is refused for the other.
    g.add_faces(T, "shared-name", faces(vec![rng.vector(8)]), 100)
        .unwrap();
    g.create_group(b, "shared-name", MODEL).unwrap();
    let page = g
        .list_faces(T, "shared-name", &PageRequest::First(1))
        .unwrap();
    assert!(!page.next_token.is_empty());
    assert!(matches!(
        g.list_faces(
            b,
            "shared-name",
            &PageRequest::Next(page.next_token.clone())
        ),
        Err(StoreError::InvalidToken(_))
    ));
}

fn quota_partial_and_none(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(5);
    let g = db.open();
    g.create_group(T, "g", MODEL).unwrap();
    let vs = |rng: &mut Rng, n| (0..n).map(|_| rng.vector(8)).collect::<Vec<_>>();
    let full = g.add_faces(T, "g", faces(vs(&mut rng, 3)), 5).unwrap();
    assert!(!full.is_partial());
    assert_eq!(full.added.len(), 3);
    let input = vs(&mut rng, 4);
    let part = g.add_faces(T, "g", faces(input.clone()), 5).unwrap();
    assert!(part.is_partial());
    assert_eq!(part.added.len(), 2);
    assert_eq!(part.not_added, vec![2, 3]);
    assert!(part.added.iter().all(|f| f.image_id == part.image_id));
    assert_ne!(part.image_id, full.image_id);
    // The prefix (largest faces) was added.
    for (rec, v) in part.added.iter().zip(&input) {
        assert_eq!(&g.embedding_of(T, "g", &rec.face_id).unwrap(), v);
    }
    assert!(matches!(
        g.add_faces(T, "g", faces(vs(&mut rng, 1)), 5),
        Err(StoreError::QuotaExceeded {
            max_faces_per_group: 5
        })
    ));
    assert_eq!(g.get_group(T, "g").unwrap().face_count, 5);
    assert_eq!(all_faces(&g, T, "g").len(), 5);
    // Deleting makes room again.
    g.delete_face(T, "g", &part.added[0].face_id).unwrap();
    assert!(matches!(
        g.delete_face(T, "g", &part.added[0].face_id),
        Err(StoreError::FaceNotFound)
    ));
    let again = g.add_faces(T, "g", faces(vs(&mut rng, 2)), 5).unwrap();
    assert_eq!((again.added.len(), again.not_added.len()), (1, 1));
    assert!(matches!(
        g.create_group(T, "g", MODEL),
        Err(StoreError::DuplicatedGroupId)
    ));
    g.delete_group(T, "g").unwrap();
    assert!(matches!(
        g.get_group(T, "g"),
        Err(StoreError::GroupNotFound)
    ));

    // Racing registrations never overshoot the quota.
    g.create_group(T, "race", MODEL).unwrap();
    let g = Arc::new(g);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(100 + t);
                let mut added = 0;
                for _ in 0..5 {
                    match g.add_faces(T, "race", faces(vs(&mut rng, 3)), 20) {
                        Ok(o) => added += o.added.len(),
                        Err(StoreError::QuotaExceeded { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                added
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 20);
    assert_eq!(g.get_group(T, "race").unwrap().face_count, 20);
}

fn group_rules_and_errors(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(6);
    let g = db.open();
    assert!(matches!(
        g.create_group(T, "Bad_Id", MODEL),
        Err(StoreError::InvalidGroupId)
    ));
    let info = g.create_group(T, "g", MODEL).unwrap();
    assert_eq!(info.face_count, 0);
    assert_eq!(info.created_at, db.clock.now());
    assert!(matches!(
        g.create_group(T, "g", "other-model"),
        Err(StoreError::DuplicatedGroupId)
    ));
    let mut bad_ext = faces(vec![rng.vector(8)]);
    bad_ext.external_image_id = Some("a/b".into());
    assert!(matches!(
        g.add_faces(T, "g", bad_ext, 10),
        Err(StoreError::InvalidExternalImageId)
    ));
    let mut other_model = faces(vec![rng.vector(8)]);
    other_model.model_version = "other-model".into();
    assert!(matches!(
        g.add_faces(T, "g", other_model, 10),
        Err(StoreError::ModelVersionMismatch { .. })
    ));
    assert!(matches!(
        g.add_faces(T, "g", faces(vec![vec![0.0; 8]]), 10),
        Err(StoreError::InvalidParam(_))
    ));
    assert!(matches!(
        g.add_faces(T, "g", faces(vec![vec![f32::NAN; 8]]), 10),
        Err(StoreError::InvalidParam(_))
    ));
    assert!(matches!(
        g.add_faces(T, "g", faces(vec![rng.vector(8), rng.vector(9)]), 10),
        Err(StoreError::DimensionMismatch { .. })
    ));
    g.add_faces(T, "g", faces(vec![rng.vector(8)]), 10).unwrap();
    assert!(matches!(
        g.add_faces(T, "g", faces(vec![rng.vector(9)]), 10),
        Err(StoreError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        g.search(T, "g", &rng.vector(9), 10, 0.0, None),
        Err(StoreError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        g.search(T, "g", &rng.vector(8), 0, 0.0, None),
        Err(StoreError::InvalidParam(_))
    ));
    assert!(matches!(
        g.search(T, "g", &rng.vector(8), 4097, 0.0, None),
        Err(StoreError::InvalidParam(_))
    ));
    assert!(matches!(
        g.add_faces(T, "nope", faces(vec![rng.vector(8)]), 10),
        Err(StoreError::GroupNotFound)
    ));
    let empty = NewFaces {
        external_image_id: None,
        model_version: MODEL.into(),
        faces: vec![],
    };
    assert!(g.add_faces(T, "g", empty, 10).unwrap().added.is_empty());
    assert!(matches!(
        g.get_face(T, "g", "not-a-uuid"),
        Err(StoreError::FaceNotFound)
    ));
    assert!(matches!(
        g.get_face(T, "nope", "not-a-uuid"),
        Err(StoreError::GroupNotFound)
    ));
    assert!(matches!(
        g.list_groups(T, &PageRequest::First(0)),
        Err(StoreError::InvalidParam(_))
    ));
    assert!(matches!(
        g.list_groups(T, &PageRequest::First(201)),
        Err(StoreError::InvalidParam(_))
    ));

    // Deleting a group removes its faces for good; the id can be reused.
    let fid = all_faces(&g, T, "g")[0].face_id.clone();
    g.delete_group(T, "g").unwrap();
    assert!(matches!(
        g.get_group(T, "g"),
        Err(StoreError::GroupNotFound)
    ));
    assert!(matches!(
        g.delete_group(T, "g"),
        Err(StoreError::GroupNotFound)
    ));
    g.create_group(T, "g", "model-2").unwrap();
    assert!(matches!(
        g.get_face(T, "g", &fid),
        Err(StoreError::FaceNotFound)
    ));
    assert!(g
        .search(T, "g", &rng.vector(8), 10, -1.0, None)
        .unwrap()
        .is_empty());
    // A new model version means new vector length is fine in the new group.
    let mut v2 = faces(vec![rng.vector(4)]);
    v2.model_version = "model-2".into();
    g.add_faces(T, "g", v2, 10).unwrap();
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM faces"), 1);
}

fn paging_tokens_reject_forgery_alteration_and_expiry(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(7);
    let g = db.open();
    for id in ["a", "b", "c"] {
        db.clock.advance(1);
        g.create_group(T, id, MODEL).unwrap();
    }
    let vs = (0..5).map(|_| rng.vector(8)).collect();
    g.add_faces(T, "a", faces(vs), 100).unwrap();

    let page = g.list_faces(T, "a", &PageRequest::First(2)).unwrap();
    let tok = page.next_token.clone();
    assert_eq!(page.items.len(), 2);
    // The token fixes its limit: a different limit beside it is ignored.
    let p2 = g
        .list_faces(T, "a", &PageRequest::Next(tok.clone()))
        .unwrap();
    assert_eq!(p2.items.len(), 2);
    assert!(p2.items.iter().all(|f| !page.items.contains(f)));

    // Altered: flip each character in turn.
    for i in 0..tok.len() {
        let mut b = tok.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(b).unwrap();
        assert!(
            invalid(g.list_faces(T, "a", &PageRequest::Next(altered.clone()))),
            "pos {i}"
        );
    }
    // Forged: random bytes, truncated, extended, junk.
    for forged in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &tok[..tok.len() - 1],
        &format!("{tok}A"),
        "not a token!",
        "==",
    ] {
        assert!(
            invalid(g.list_faces(T, "a", &PageRequest::Next(forged.to_string()))),
            "{forged}"
        );
    }
    // Wrong group, wrong listing kind.
    assert!(invalid(g.list_faces(
        T,
        "b",
        &PageRequest::Next(tok.clone())
    )));
    assert!(invalid(g.list_groups(T, &PageRequest::Next(tok.clone()))));
    let gpage = g.list_groups(T, &PageRequest::First(1)).unwrap();
    assert!(invalid(g.list_faces(
        T,
        "a",
        &PageRequest::Next(gpage.next_token.clone())
    )));
    // A token from another installation (other key) is refused.
    let db2 = TestStore::new(backend);
    let g2 = db2.open();
    g2.create_group(T, "a", MODEL).unwrap();
    assert!(invalid(g2.list_faces(
        T,
        "a",
        &PageRequest::Next(tok.clone())
    )));
    // Expiry.
    db.clock.advance(3_600_000);
    assert!(g
        .list_faces(T, "a", &PageRequest::Next(tok.clone()))
        .is_ok());
    db.clock.advance(1);
    assert!(invalid(g.list_faces(
        T,
        "a",
        &PageRequest::Next(tok.clone())
    )));
    assert!(invalid(
        g.list_groups(T, &PageRequest::Next(gpage.next_token.clone()))
    ));
    // Empty token means first page.
    assert_eq!(
        g.list_faces(T, "a", &PageRequest::First(2)).unwrap().items,
        page.items
    );
}

/// Groups, then faces, page newest first; equal timestamps break ties by id
/// in byte order (PostgreSQL columns use the "C" collation, as SQLite does).
fn group_and_face_listings_page_newest_first(backend: Backend) {
    let db = TestStore::new(backend);
    let g = db.open();
    let mut ids = Vec::new();
    for i in 0..9 {
        // Pairs share a millisecond, so the id tie-break is exercised.
        if i % 2 == 0 {
            db.clock.advance(1000);
        }
        let id = format!("group-{i}");
        g.create_group(T, &id, MODEL).unwrap();
        ids.push(id);
    }
    g.create_group("other", "x", MODEL).unwrap();
    let mut seen = Vec::new();
    let mut page = g.list_groups(T, &PageRequest::First(4)).unwrap();
    loop {
        seen.extend(page.items.iter().map(|g| g.group_id.clone()));
        if page.next_token.is_empty() {
            break;
        }
        page = g
            .list_groups(T, &PageRequest::Next(page.next_token.clone()))
            .unwrap();
        assert!(page.items.len() <= 4);
    }
    ids.reverse();
    assert_eq!(seen, ids);
    assert_eq!(
        g.get_group(T, "group-0")
            .unwrap()
            .created_at
            .to_wire_seconds(),
        "2023-11-14T22:13:21"
    );
    // Faces: ids sort by bytes.
    let mut rng = Rng(9);
    g.create_group(T, "f", MODEL).unwrap();
    for _ in 0..5 {
        let vs = (0..4).map(|_| rng.vector(8)).collect();
        g.add_faces(T, "f", faces(vs), 1000).unwrap();
    }
    let listed = all_faces(&g, T, "f");
    let mut want = listed.clone();
    want.sort_by(|a, b| (b.created_at.0, &b.face_id).cmp(&(a.created_at.0, &a.face_id)));
    assert_eq!(listed.len(), 20);
    assert_eq!(listed, want);
    // A face token is refused for another (here: missing) group.
    let token = g
        .list_faces(T, "f", &PageRequest::First(3))
        .unwrap()
        .next_token;
    assert!(matches!(
        g.list_faces(T, "g", &PageRequest::Next(token.clone())),
        Err(StoreError::InvalidToken(_))
    ));
}

/// Listing while faces are added and deleted between pages: no duplicates,
/// no skipped survivors, nothing added after the first page, newest first.
fn face_listing_survives_interleaved_changes(backend: Backend) {
    let db = TestStore::new(backend);
    let g = db.open();
    let mut rng = Rng(8);
    for round in 0..6 {
        let group = format!("g{round}");
        g.create_group(T, &group, MODEL).unwrap();
        let mut live: Vec<String> = Vec::new();
        for _ in 0..(5 + rng.below(10)) {
            // Sometimes several requests land in the same millisecond.
            db.clock.advance(rng.below(3) as i64);
            let n = 1 + rng.below(4);
            let out = g
                .add_faces(
                    T,
                    &group,
                    faces((0..n).map(|_| rng.vector(4)).collect()),
                    10_000,
                )
                .unwrap();
            live.extend(out.added.into_iter().map(|f| f.face_id));
        }
        let initial: HashSet<String> = live.iter().cloned().collect();
        let mut deleted: HashSet<String> = HashSet::new();
        let mut added_later: HashSet<String> = HashSet::new();
        let mut seen: Vec<FaceRecord> = Vec::new();
        let limit = 1 + rng.below(5);
        let mut page = g.list_faces(T, &group, &PageRequest::First(limit)).unwrap();
        loop {
            seen.extend(page.items.iter().cloned());
            if page.next_token.is_empty() {
                break;
            }
            // Mutate between pages.
            for _ in 0..rng.below(3) {
                if rng.below(2) == 0 && !live.is_empty() {
                    let victim = live.swap_remove(rng.below(live.len()));
                    g.delete_face(T, &group, &victim).unwrap();
                    deleted.insert(victim);
                } else {
                    db.clock.advance(1 + rng.below(2) as i64);
                    let out = g
                        .add_faces(T, &group, faces(vec![rng.vector(4)]), 10_000)
                        .unwrap();
                    added_later.insert(out.added[0].face_id.clone());
                }
            }
            page = g
                .list_faces(T, &group, &PageRequest::Next(page.next_token.clone()))
                .unwrap();
            assert!(page.items.len() <= limit);
        }
        let ids: Vec<&String> = seen.iter().map(|f| &f.face_id).collect();
        let unique: HashSet<&String> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "duplicate in listing");
        for id in &initial {
            if !deleted.contains(id) {
                assert!(unique.contains(id), "survivor skipped");
            }
        }
        for id in &ids {
            assert!(initial.contains(*id), "face added after first page listed");
            assert!(!added_later.contains(*id));
        }
        for w in seen.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert!(
                (a.created_at, &a.face_id) > (b.created_at, &b.face_id),
                "order"
            );
        }
    }
}

fn invalid<T>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::InvalidToken(_)))
}

fn brute_force(
    vectors: &[(String, Vec<f32>)],
    query: &[f32],
    limit: usize,
    min: f32,
    exclude: Option<&str>,
) -> Vec<(String, f32)> {
    let q = normalize(query).unwrap();
    let mut all: Vec<(String, f32)> = vectors
        .iter()
        .filter(|(id, _)| Some(id.as_str()) != exclude)
        .map(|(id, v)| (id.clone(), dot(&q, &normalize(v).unwrap())))
        .filter(|(_, s)| *s >= min)
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(limit);
    all
}

fn search_equals_brute_force(backend: Backend) {
    let db = TestStore::new(backend);
    let g = db.open();
    let mut rng = Rng(9);
    g.create_group(T, "g", MODEL).unwrap();
    let mut vectors: Vec<(String, Vec<f32>)> = Vec::new();
    for _ in 0..30 {
        let mut vs: Vec<Vec<f32>> = (0..10).map(|_| rng.vector(6)).collect();
        // Exact duplicates force score ties.
        vs[9] = vs[0].clone();
        let out = g.add_faces(T, "g", faces(vs.clone()), 100_000).unwrap();
        vectors.extend(out.added.into_iter().map(|f| f.face_id).zip(vs));
    }
    // Delete some so the swap_remove path is covered.
    for _ in 0..40 {
        let (id, _) = vectors.swap_remove(rng.below(vectors.len()));
        g.delete_face(T, "g", &id).unwrap();
    }
    for round in 0..60 {
        let (query, exclude) = if round % 3 == 0 {
            let (id, v) = &vectors[rng.below(vectors.len())];
            (v.clone(), Some(id.clone()))
        } else {
            (rng.vector(6), None)
        };
        let limit = [1, 5, 17, 4096][rng.below(4)];
        let min = [-1.0, 0.0, 0.5, 0.9, 1.1][rng.below(5)];
        let got: Vec<(String, f32)> = g
            .search(T, "g", &query, limit, min, exclude.as_deref())
            .unwrap()
            .into_iter()
            .map(|h| (h.face.face_id, h.score))
            .collect();
        let want = brute_force(&vectors, &query, limit, min, exclude.as_deref());
        assert_eq!(got, want, "round {round}");
        if let Some(ex) = &exclude {
            assert!(got.iter().all(|(id, _)| id != ex));
        }
        assert!(got.len() <= limit);
        assert!(got.iter().all(|(_, s)| *s >= min));
    }
    // The query face itself would be the top hit without exclusion.
    let (id, v) = &vectors[0];
    let top = g.search(T, "g", v, 1, -1.0, None).unwrap();
    assert!((top[0].score - 1.0).abs() < 1e-5);
    let ties = vectors.iter().filter(|(_, w)| w == v).count();
    if ties == 1 {
        assert_eq!(&top[0].face.face_id, id);
    }
    // Hits carry the face's metadata.
    assert_eq!(
        top[0].face,
        g.get_face(T, "g", &top[0].face.face_id).unwrap()
    );
}

fn key_rotation_including_interrupted(backend: Backend) {
    let db = TestStore::new(backend);
    let mut rng = Rng(10);
    let old = db.key.clone();
    let new = MasterKey::generate().unwrap();
    let mut expected: Vec<(String, Vec<f32>)> = Vec::new();
    {
        let g = db.open();
        g.create_group(T, "g", MODEL).unwrap();
        g.create_group("tenant-b", "h", MODEL).unwrap();
        for i in 0..10 {
            let tenant = if i % 2 == 0 { T } else { "tenant-b" };
            let group = if i % 2 == 0 { "g" } else { "h" };
            let vs: Vec<Vec<f32>> = (0..3).map(|_| rng.vector(8)).collect();
            let out = g.add_faces(tenant, group, faces(vs.clone()), 100).unwrap();
            expected.extend(out.added.into_iter().map(|f| f.face_id).zip(vs));
        }
    }
    let opts = |batch| GalleryOptions {
        rotation_batch_size: batch,
        ..db.options()
    };
    let check = |g: &Gallery| {
        for (i, (id, v)) in expected.iter().enumerate() {
            let (tenant, group) = if (i / 3) % 2 == 0 {
                (T, "g")
            } else {
                ("tenant-b", "h")
            };
            assert_eq!(&g.embedding_of(tenant, group, id).unwrap(), v);
        }
    };
    // Interrupted half-way: two batches of 7 out of 30 records.
    {
        let g = Gallery::open(db.url(), KeyRing::new(&old), opts(7)).unwrap();
        let r = g.rotate_key_limited(&new, 2).unwrap();
        assert_eq!((r.reencrypted, r.batches, r.remaining), (14, 2, 16));
        assert_eq!(g.current_key_id(), new.key_id());
        check(&g);
    }
    let both = || KeyRing::new(&new).with_previous(&old);
    {
        let g = Gallery::open(db.url(), both(), opts(7)).unwrap();
        check(&g);
        assert_eq!(g.pending_reencryption().unwrap(), 16);
    }
    for only in [&old, &new] {
        assert!(matches!(
            Gallery::open(db.url(), KeyRing::new(only), db.options()),
            Err(StoreError::UnknownKeyId { .. })
        ));
    }
    // Resume and finish.
    {
        let g = Gallery::open(db.url(), both(), opts(7)).unwrap();
        let r = g.rotate_key(&new).unwrap();
        assert_eq!((r.reencrypted, r.remaining), (16, 0));
        // New faces after rotation are sealed under the new key.
        g.add_faces(T, "g", faces(vec![rng.vector(8)]), 100)
            .unwrap();
    }
    let g = Gallery::open(db.url(), KeyRing::new(&new), db.options()).unwrap();
    check(&g);
    assert_eq!(g.pending_reencryption().unwrap(), 0);
    drop(g);
    assert!(matches!(
        Gallery::open(db.url(), KeyRing::new(&old), db.options()),
        Err(StoreError::UnknownKeyId { .. })
    ));
    // Raw rows all carry the new key id.
    let ids = db.query_strings("SELECT DISTINCT key_id FROM faces");
    assert_eq!(ids, vec![new.key_id()]);
}

fn concurrent_search_add_delete_do_not_deadlock(backend: Backend) {
    let db = TestStore::new(backend);
    let g = Arc::new(db.open());
    g.create_group(T, "g", MODEL).unwrap();
    let mut rng = Rng(11);
    let seed: Vec<Vec<f32>> = (0..200).map(|_| rng.vector(32)).collect();
    g.add_faces(T, "g", faces(seed), 100_000).unwrap();
    let mut handles = Vec::new();
    for t in 0..3u64 {
        let g = g.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(200 + t);
            for _ in 0..200 {
                let hits = g.search(T, "g", &rng.vector(32), 10, -1.0, None).unwrap();
                assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            }
        }));
    }
    for t in 0..2u64 {
        let g = g.clone();
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng(300 + t);
            for _ in 0..15 {
                let out = g
                    .add_faces(T, "g", faces(vec![rng.vector(32), rng.vector(32)]), 100_000)
                    .unwrap();
                g.delete_face(T, "g", &out.added[0].face_id).unwrap();
                let page = g.list_faces(T, "g", &PageRequest::First(5)).unwrap();
                g.list_faces(T, "g", &PageRequest::Next(page.next_token.clone()))
                    .unwrap();
            }
        }));
    }
    {
        let g = g.clone();
        let key = MasterKey::generate().unwrap();
        handles.push(std::thread::spawn(move || {
            g.rotate_key(&key).unwrap();
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(g.get_group(T, "g").unwrap().face_count, 230);
    let idx_count = g
        .search(T, "g", &Rng(1).vector(32), 4096, -1.0, None)
        .unwrap()
        .len();
    assert_eq!(idx_count, 230);
    assert_eq!(g.pending_reencryption().unwrap(), 0);
}

/// Which backend a URL selects. Runs once: it needs no test database.
#[test]
fn database_urls() {
    assert!(matches!(
        DatabaseUrl::parse("sqlite://./data/f.db").unwrap(),
        DatabaseUrl::Sqlite(p) if p.to_str() == Some("./data/f.db")
    ));
    assert!(matches!(
        DatabaseUrl::parse("sqlite:///abs/f.db").unwrap(),
        DatabaseUrl::Sqlite(p) if p.to_str() == Some("/abs/f.db")
    ));
    assert!(matches!(
        DatabaseUrl::parse("plain/f.db").unwrap(),
        DatabaseUrl::Sqlite(p) if p.to_str() == Some("plain/f.db")
    ));
    assert!(matches!(
        DatabaseUrl::parse("postgres://u@h/db").unwrap(),
        DatabaseUrl::Postgres(_)
    ));
    for bad in ["", "sqlite://", "mysql://x/y", "sqlite://:memory:"] {
        assert!(
            matches!(
                DatabaseUrl::parse(bad),
                Err(StoreError::InvalidDatabaseUrl(_))
            ),
            "{bad}"
        );
    }
    let key = MasterKey::generate().unwrap();
    // A postgres URL selects the PostgreSQL backend (nothing listens on
    // port 1, so opening fails with a database error, not a parse error).
    assert!(matches!(
        Gallery::open(
            "postgresql://u@127.0.0.1:1/db",
            KeyRing::new(&key),
            GalleryOptions::default()
        ),
        Err(StoreError::Database(_))
    ));
    // A plain path works too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    Gallery::open(
        path.to_str().unwrap(),
        KeyRing::new(&key),
        GalleryOptions::default(),
    )
    .unwrap();
    assert!(path.exists());
}
