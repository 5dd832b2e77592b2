//! End-to-end: engine failures and panics reach clients as the contract
//! says.

use facegate_test_support::server as common;

use common::*;
use serde_json::{json, Value};

/// An engine that fails in each way the real one can: a face it cannot
/// analyse (100 px wide images), an engine failure (other images), and a
/// panic (in `models`, which group handlers call on the async side).
struct FaultyEngine;

impl facegate_server::FaceAnalyzer for FaultyEngine {
    fn analyze(
        &self,
        image: &facegate_image::RgbImage,
        _: &facegate_server::analyzer::AnalyzeRequest,
    ) -> Result<Vec<facegate_server::analyzer::Face>, facegate_server::analyzer::AnalyzerError>
    {
        use facegate_server::analyzer::AnalyzerError;
        if image.width() == 100 {
            Err(AnalyzerError::Face(
                "mask: non-finite landmark in /srv/secret".into(),
            ))
        } else {
            Err(AnalyzerError::Engine(
                "runtime /srv/secret/model.onnx failed".into(),
            ))
        }
    }
    fn spoof_aligned(
        &self,
        _: &facegate_image::RgbImage,
        _: facegate_server::analyzer::SpoofCondition,
        _: u64,
    ) -> Result<facegate_server::analyzer::Liveness, facegate_server::analyzer::AnalyzerError> {
        Err(facegate_server::analyzer::AnalyzerError::Engine(
            "/srv/secret".into(),
        ))
    }
    fn models(&self) -> Vec<String> {
        panic!("model registry at /srv/secret is gone")
    }
    fn similarity(&self, _: &str, cosine: f32) -> f32 {
        cosine * 100.0
    }
    fn cosine_for_similarity(&self, _: &str, similarity: f32) -> f32 {
        similarity / 100.0
    }
}

#[test]
fn engine_failures_and_panics_reach_clients_as_the_contract_says() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(dir.path(), &Setup::default());
        let db = on_postgres().then(PgDatabase::create);
        if let Some(db) = &db {
            config.database_url = Some(db.url.clone());
        }
        let options = facegate_server::StartOptions {
            analyzer: Some(std::sync::Arc::new(FaultyEngine)),
            ..facegate_server::StartOptions::default()
        };
        let mut s = TestServer::start_with(config, options, db).await;
        let unusable = image_bytes(&flat_png(100, 100));
        let failing = image_bytes(&flat_png(120, 120));
        let no_secret = |v: &Value| assert!(!v.to_string().contains("secret"), "{v:#}");

        // A face the engine cannot analyse is the request's fault.
        let v = s.post("/detect", json!({ "image": unusable })).await;
        assert_error(&v, -40000, "InvalidParam");
        no_secret(&v);
        // The engine failing is the server's.
        let v = s.post("/detect", json!({ "image": failing })).await;
        assert_error(&v, -50000, "InternalServerError");
        no_secret(&v);
        let v = s
            .post(
                "/spoofing",
                json!({"image": image_bytes(&flat_png(224, 224)), "aligned": true}),
            )
            .await;
        assert_error(&v, -50000, "InternalServerError");

        let url = format!("{}/v1.0/appkeys/{APP}/spoofing", s.base);
        for (img, code) in [(&unusable, -40000), (&failing, -50000)] {
            let r = send(
                "POST",
                &url,
                &[
                    ("authorization", LIVE_KEY),
                    ("content-type", "application/json"),
                ],
                Some(json!({ "image": img }).to_string().into_bytes()),
            )
            .await;
            let v = r.json();
            assert_code(&v, code);
            no_secret(&v);
        }

        let url = format!("{}/modules/liveness", s.base);
        for (img, status) in [(&unusable, 400), (&failing, 500)] {
            let r = send(
                "POST",
                &url,
                &[
                    ("x-api-key", ARGOS_KEY),
                    ("content-type", "application/json"),
                ],
                Some(
                    json!({ "faceImage": img["bytes"] })
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
            assert_eq!(r.status, status, "{}", r.text());
            let v = r.json();
            if status == 400 {
                assert_eq!(v["errorCode"], 1017);
            }
            assert!(v["transactionId"].is_string() && v["message"].is_string());
            no_secret(&v);
        }

        // A panic in a handler: the surface's internal error, no trace,
        // and the server goes on serving.
        s.create_group("g").await;
        for _ in 0..2 {
            let r = send(
                "POST",
                &s.reco("/groups/g"),
                &[
                    ("x-nhn-apikey", FACE_KEY),
                    ("content-type", "application/json"),
                ],
                Some(
                    json!({"image": failing, "limit": 1})
                        .to_string()
                        .into_bytes(),
                ),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.headers.contains_key("x-request-id"));
            let v = r.json();
            assert_error(&v, -50000, "InternalServerError");
            no_secret(&v);
            assert!(!r.text().contains("panicked"));
        }
        let r = send("GET", &format!("{}/healthz", s.base), &[], None).await;
        assert_eq!(r.status, 200);
        s.stop().await;
    });
}
