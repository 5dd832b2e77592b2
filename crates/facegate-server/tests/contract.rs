//! End-to-end: what every surface answers alike (health, auth, malformed
//! requests, image errors), over real HTTP with the real engine.

use facegate_test_support::server as common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn health_and_readiness() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let r = send("GET", &format!("{}/healthz", s.base), &[], None).await;
        assert_eq!(r.status, 200);
        let r = send("GET", &format!("{}/readyz", s.base), &[], None).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.contains_key("x-request-id"));
        s.stop().await;
    });
}

#[test]
fn auth_errors_on_every_surface() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        // Reco: wrong key, missing key, key of another tenant, unknown appKey.
        for (app, key) in [
            (APP, Some("nope")),
            (APP, None),
            (APP, Some(FACE_KEY_B)),
            ("ghost", Some(FACE_KEY)),
        ] {
            let url = format!(
                "{}/nhn-face-reco/v1.0/appkeys/{app}/groups?limit=10",
                s.base
            );
            let headers: Vec<(&str, &str)> = key.map(|k| ("x-nhn-apikey", k)).into_iter().collect();
            let v = send("GET", &url, &headers, None).await;
            assert_eq!(v.status, 200);
            assert_error(&v.json(), -41000, "UnauthorizedAppKey");
        }
        // Liveness.
        let url = format!("{}/v1.0/appkeys/{APP}/spoofing", s.base);
        let body = json!({"image": image_bytes(&asset("t1.jpg"))}).to_string();
        for key in ["wrong", FACE_KEY] {
            let v = send(
                "POST",
                &url,
                &[("authorization", key), ("content-type", "application/json")],
                Some(body.clone().into_bytes()),
            )
            .await;
            assert_error(&v.json(), -41005, "UnauthorizedAppKeyOrSecretKey");
        }
        // Argos.
        let url = format!("{}/modules/liveness", s.base);
        for headers in [vec![], vec![("x-api-key", "wrong")]] {
            let r = send("POST", &url, &headers, Some(b"{}".to_vec())).await;
            assert_eq!(r.status, 401);
            assert!(r.json()["message"].is_string());
        }
        s.stop().await;
    });
}

#[test]
fn contract_errors_for_malformed_requests() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        // Malformed JSON, wrong types, neither/both image fields.
        for body in [
            "{not json".to_string(),
            json!({"image": {"bytes": 12}}).to_string(),
            json!({"image": {}}).to_string(),
            json!({"image": {"url": "http://x", "bytes": "AAAA"}}).to_string(),
            json!({"image": image_bytes(&asset("t1.jpg")), "orientation": "yes"}).to_string(),
            json!({"image": image_bytes(&asset("t1.jpg")), "spoofingCondition": "paranoid"})
                .to_string(),
        ] {
            let r = send(
                "POST",
                &s.reco("/detect"),
                &[
                    ("x-nhn-apikey", FACE_KEY),
                    ("content-type", "application/json"),
                ],
                Some(body.into_bytes()),
            )
            .await;
            assert_eq!(r.status, 200);
            assert_error(&r.json(), -40000, "InvalidParam");
        }
        // Unknown route and method under the NHN prefix: envelope, not 404.
        let r = send("GET", &s.reco("/nope"), &[("x-nhn-apikey", FACE_KEY)], None).await;
        assert_eq!(r.status, 200);
        assert_error(&r.json(), -40000, "InvalidParam");
        let r = send(
            "PUT",
            &s.reco("/groups"),
            &[("x-nhn-apikey", FACE_KEY)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_error(&r.json(), -40000, "InvalidParam");
        // A body over the request limit is an oversized image.
        let huge = format!("{{\"image\":{{\"bytes\":\"{}\"}}}}", "A".repeat(5_000_000));
        let r = send(
            "POST",
            &s.reco("/detect"),
            &[
                ("x-nhn-apikey", FACE_KEY),
                ("content-type", "application/json"),
            ],
            Some(huge.into_bytes()),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_error(&r.json(), -45020, "ImageTooLargeException");
        // Verify against a missing group / face.
        let t1 = json!({"compareImage": image_bytes(&asset("t1.jpg"))});
        let face = "00000000-0000-4000-8000-000000000000";
        let v = s
            .post(&format!("/verify/groups/nobody/faces/{face}"), t1.clone())
            .await;
        assert_error(&v, -40030, "NotFoundGroupError");
        s.create_group("somebody").await;
        let v = s
            .post(&format!("/verify/groups/somebody/faces/{face}"), t1)
            .await;
        assert_error(&v, -40050, "NotFoundFaceIDError");
        let v = s
            .get("/groups/somebody/faces?limit=5&next-token=forged")
            .await;
        assert_error(&v, -40040, "InvalidTokenError");
        let r = send("GET", &format!("{}/elsewhere", s.base), &[], None).await;
        assert_eq!(r.status, 404);
        assert!(r.json()["message"].is_string());
        s.stop().await;
    });
}

#[test]
fn image_errors() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(
            dir.path(),
            Setup {
                fetch_timeout: Duration::from_secs(1),
                ..Setup::default()
            },
        )
        .await;
        let detect = |img: Value| json!({ "image": img });
        // Too large: 3,000,001 bytes.
        let mut big = asset("t1.jpg");
        big.resize(3_000_001, 0);
        let v = s.post("/detect", detect(image_bytes(&big))).await;
        assert_error(&v, -45020, "ImageTooLargeException");
        // Not PNG/JPEG.
        let v = s
            .post("/detect", detect(image_bytes(b"GIF89a-not-supported")))
            .await;
        assert_error(&v, -45040, "InvalidImageFormatException");
        // Bad Base64.
        let v = s.post("/detect", detect(json!({"bytes": "***"}))).await;
        assert_error(&v, -45030, "InvalidImageParameterException");
        // Too small.
        let v = s
            .post("/detect", detect(image_bytes(&flat_png(50, 200))))
            .await;
        assert_error(&v, -40000, "InvalidParam");
        // Bad URLs: scheme, port, private address with the default config.
        for url in [
            "ftp://example.com/a.jpg",
            "http://example.com:8080/a.jpg",
            "not a url",
        ] {
            let v = s.post("/detect", detect(json!({ "url": url }))).await;
            assert_error(&v, -45050, "InvalidImageURLException");
        }
        let served = serve_bytes(asset("t1.jpg")).await;
        let v = s
            .post(
                "/detect",
                detect(json!({ "url": format!("{served}/t1.jpg") })),
            )
            .await;
        assert_error(&v, -45050, "InvalidImageURLException");
        s.stop().await;

        // With private URLs allowed: the same URL works, a stall times out.
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(
            dir.path(),
            Setup {
                allow_private_urls: true,
                fetch_timeout: Duration::from_secs(1),
                ..Setup::default()
            },
        )
        .await;
        let v = s
            .post(
                "/detect",
                detect(json!({ "url": format!("{served}/t1.jpg") })),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 6);
        let stall = serve_stall().await;
        let v = s
            .post(
                "/detect",
                detect(json!({ "url": format!("{stall}/x.jpg") })),
            )
            .await;
        assert_error(&v, -45060, "ImageTimeoutError");
        // Compare names the failing image.
        let good = image_bytes(&asset("t1.jpg"));
        let v = s
            .post(
                "/compare?threshold=80",
                json!({"sourceImage": image_bytes(&big), "targetImage": good}),
            )
            .await;
        assert_error(&v, -45020, "ImageImageTooLargeException:Source");
        let v = s
            .post(
                "/compare?threshold=80",
                json!({"sourceImage": good, "targetImage": {"bytes": "***"}}),
            )
            .await;
        assert_error(&v, -45030, "InvalidImageParameterException:Target");
        let v = s
            .post(
                "/compare?threshold=80",
                json!({"sourceImage": good, "targetImage": image_bytes(b"nope")}),
            )
            .await;
        assert_error(&v, -45040, "ImageInvalidImageFormatException:Target");
        let v = s
            .post(
                "/compare?threshold=80",
                json!({"sourceImage": {"url": "ftp://x/y"}, "targetImage": good}),
            )
            .await;
        assert_error(&v, -45050, "ImageInvalidImageURLException:Source");
        let v = s
            .post(
                "/compare?threshold=80",
                json!({"sourceImage": good, "targetImage": {"url": format!("{stall}/y.jpg")}}),
            )
            .await;
        assert_error(&v, -45060, "ImageImageTimeoutError:Target");
        s.stop().await;
    });
}
