//! End-to-end: data across restarts, encryption at rest, key rotation while
//! serving, and groups keeping their model across a change of default.

use facegate_test_support::server as common;

use common::*;
use serde_json::json;

#[test]
fn restart_keeps_data_and_embeddings_are_encrypted() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        s.create_group("keep").await;
        let t1 = image_bytes(&asset("t1.jpg"));
        let v = s
            .post("/groups/keep", json!({"image": t1, "limit": 20}))
            .await;
        assert_code(&v, 0);
        let search = json!({"image": t1});
        let before = s
            .post("/groups/keep/search?limit=10&threshold=50", search.clone())
            .await;
        assert_code(&before, 0);
        s.stop().await;

        // The database holds no plaintext float32 embedding.
        let engine = engine();
        let img = image::load_from_memory(&asset("t1.jpg")).unwrap().to_rgb8();
        let faces = engine
            .analyze(
                &img,
                &facegate_server::analyzer::AnalyzeRequest {
                    embedding: Some(engine.models()[0].clone()),
                    orientation: false,
                    mask: false,
                    spoofing: None,
                    quality_gate: false,
                    max_faces: None,
                    max_embeddings: None,
                    lane: 0,
                },
            )
            .unwrap();
        let stored = s.stored_bytes();
        assert!(stored.len() > faces.len() * 512, "{} bytes", stored.len());
        for f in &faces {
            let e = f.embedding.as_ref().unwrap();
            let le: Vec<u8> = e[..8].iter().flat_map(|x| x.to_le_bytes()).collect();
            let be: Vec<u8> = e[..8].iter().flat_map(|x| x.to_be_bytes()).collect();
            assert!(!stored.windows(le.len()).any(|w| w == le.as_slice()));
            assert!(!stored.windows(be.len()).any(|w| w == be.as_slice()));
        }

        s.restart().await;
        assert_eq!(
            s.get("/groups/keep").await["data"]["groups"][0]["faceCount"],
            6
        );
        let after = s
            .post("/groups/keep/search?limit=10&threshold=50", search)
            .await;
        assert_eq!(before["data"]["matchFaces"], after["data"]["matchFaces"]);
        s.stop().await;
    });
}

#[test]
fn key_rotation_while_serving_keeps_reads_and_writes_working() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        s.create_group("rot").await;
        let v = s
            .post(
                "/groups/rot",
                json!({"image": image_bytes(&asset("t1.jpg")), "limit": 20}),
            )
            .await;
        let mut ids = face_ids(&v);
        assert_eq!(ids.len(), 6);
        let key_file = s.config.master_key_file();
        let old_key = std::fs::read(&key_file).unwrap();

        let config = s.config.clone();
        let rotation = tokio::task::spawn_blocking(move || facegate_server::rotate_keys(&config));
        // Reads (search by face id decrypts the stored embedding) and
        // registrations go on throughout: before the servers switch, while
        // records are re-encrypted, and after the new key is installed.
        let (mut reads, mut writes, mut person) = (0, 0, 1);
        while !rotation.is_finished() {
            for id in &ids {
                let v = s
                    .get(&format!("/groups/rot/faces/{id}?limit=5&threshold=1"))
                    .await;
                assert_code(&v, 0);
                reads += 1;
            }
            if person <= 40 {
                let v = s
                    .post(
                        "/groups/rot",
                        json!({"image": image_bytes(&orl(person, 1)), "limit": 1}),
                    )
                    .await;
                assert_code(&v, 0);
                ids.extend(face_ids(&v));
                writes += 1;
                person += 1;
            }
        }
        let report = rotation.await.unwrap().unwrap();
        assert_eq!(report.remaining, 0);
        assert!(reads > 0 && writes > 0, "reads {reads}, writes {writes}");
        assert_ne!(std::fs::read(&key_file).unwrap(), old_key);
        assert!(!facegate_server::keys::next_key_path(&key_file).exists());
        for id in &ids {
            assert_code(
                &s.get(&format!("/groups/rot/faces/{id}?limit=1&threshold=1"))
                    .await,
                0,
            );
        }

        // A restart knows only the new key: every record, including those
        // registered during the rotation, must open under it.
        s.restart().await;
        assert_eq!(
            s.get("/groups/rot").await["data"]["groups"][0]["faceCount"],
            ids.len()
        );
        for id in &ids {
            assert_code(
                &s.get(&format!("/groups/rot/faces/{id}?limit=1&threshold=1"))
                    .await,
                0,
            );
        }
        s.stop().await;
    });
}

/// Groups keep the embedding model they were created with: a dlib group
/// made before the switch to SFace keeps registering, searching and
/// verifying with dlib, new groups use SFace, and a server that does not
/// run a group's model refuses its requests with the documented error.
#[test]
fn groups_keep_their_model_across_a_change_of_default() {
    rt().block_on(async {
        const DLIB: &str = "dlib-resnet-v1";
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup::default();
        let mut config = config_in(dir.path(), &setup);
        config.default_model = facegate_server::Embedder::Dlib;
        let db = on_postgres().then(PgDatabase::create);
        if let Some(db) = &db {
            config.database_url = Some(db.url.clone());
        }
        let options = facegate_server::StartOptions {
            analyzer: Some(engine()),
            ..facegate_server::StartOptions::default()
        };
        let mut s = TestServer::start_with(config.clone(), options.clone(), db.clone()).await;
        let t1 = image_bytes(&asset("t1.jpg"));
        s.create_group("old").await;
        let v = s
            .post("/groups/old", json!({"image": t1, "limit": 2}))
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["modelVersion"], DLIB);
        s.stop().await;

        // The default moves to SFace; the dlib group keeps answering.
        config.default_model = facegate_server::Embedder::Sface;
        let mut s = TestServer::start_with(config.clone(), options, db.clone()).await;
        assert_eq!(
            s.get("/groups/old").await["data"]["groups"][0]["modelVersion"],
            DLIB
        );
        s.create_group("new").await;
        let sface = s.get("/groups/new").await["data"]["groups"][0]["modelVersion"]
            .as_str()
            .unwrap()
            .to_string();
        assert_ne!(sface, DLIB);
        for (group, model) in [("old", DLIB), ("new", sface.as_str())] {
            let v = s
                .post(
                    &format!("/groups/{group}"),
                    json!({"image": t1, "limit": 1}),
                )
                .await;
            assert_code(&v, 0);
            assert_eq!(v["data"]["modelVersion"], model, "{group}");
            // The same photo finds its own face near 100 on the group's scale.
            let v = s
                .post(
                    &format!("/groups/{group}/search?limit=5&threshold=80"),
                    json!({"image": t1}),
                )
                .await;
            assert_code(&v, 0);
            assert_eq!(v["data"]["modelVersion"], model, "{group}");
            let best = v["data"]["matchFaces"][0]["similarity"].as_f64().unwrap();
            assert!(best >= 95.0, "{group}: {best}");
        }
        s.stop().await;

        // A server without dlib cannot embed for the old group: refused,
        // nothing stored; the SFace group works.
        let sface_only = facegate_server::engine::load_engine(
            &model_dir(),
            facegate_server::config::RuntimeKind::Auto,
            &[facegate_server::Embedder::Sface],
            Default::default(),
        )
        .unwrap();
        let options = facegate_server::StartOptions {
            analyzer: Some(sface_only),
            ..facegate_server::StartOptions::default()
        };
        let mut s = TestServer::start_with(config, options, db).await;
        let v = s
            .post("/groups/old", json!({"image": t1, "limit": 1}))
            .await;
        assert_error(&v, -40000, "InvalidParam");
        assert_eq!(
            v["header"]["detail"],
            format!("group old holds faces of model {DLIB}, which this server does not run")
        );
        let v = s
            .post(
                "/groups/old/search?limit=5&threshold=80",
                json!({"image": t1}),
            )
            .await;
        assert_error(&v, -40000, "InvalidParam");
        assert_eq!(
            s.get("/groups/old").await["data"]["groups"][0]["faceCount"],
            3
        );
        assert_code(
            &s.post(
                "/groups/new/search?limit=5&threshold=80",
                json!({"image": t1}),
            )
            .await,
            0,
        );
        s.stop().await;
    });
}
