//! End-to-end: liveness on NHN Face Recognition Plus, NHN Face Liveness and
//! Argos over real HTTP with the real engine.

use facegate_test_support::server as common;

use common::*;
use serde_json::json;

#[test]
fn spoofing_endpoints() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let t1_raw = asset("t1.jpg");
        let v = s.post("/spoofing", json!({"image": image_bytes(&t1_raw)})).await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 6);
        for f in v["data"]["faceDetails"].as_array().unwrap() {
            assert!(f["spoofing"].is_boolean());
            assert!(f.get("orientation").is_none());
            assert_eq!(f["landmarks"].as_array().unwrap().len(), 5);
        }
        // Aligned: a 224x224 crop, no detection.
        let img = image::load_from_memory(&t1_raw).unwrap().to_rgb8();
        let crop = image::imageops::crop_imm(&img, 450, 250, 224, 224).to_image();
        let v = s
            .post(
                "/spoofing",
                json!({"image": image_bytes(&png(&crop)), "aligned": true, "spoofingCondition": "weak"}),
            )
            .await;
        assert_code(&v, 0);
        let f = &v["data"]["faceDetails"][0];
        assert_eq!(v["data"]["faceDetailCount"], 1);
        assert_eq!(f["bbox"], json!({"x0": 0.0, "y0": 0.0, "x1": 0.0, "y1": 0.0}));
        assert_eq!(f["landmarks"], json!([]));
        assert_eq!(f["confidence"], 0.0);
        assert!(f["spoofing"].is_boolean());
        let v = s
            .post(
                "/spoofing",
                json!({"image": image_bytes(&flat_png(225, 224)), "aligned": true}),
            )
            .await;
        assert_error(&v, -45070, "InvalidImageSizeException");
        let v = s
            .post(
                "/spoofing",
                json!({"image": image_bytes(&t1_raw), "spoofingCondition": "STRICT"}),
            )
            .await;
        assert_error(&v, -40000, "InvalidParam");

        // NHN Face Liveness, JSON and multipart.
        let url = format!("{}/v1.0/appkeys/{APP}/spoofing", s.base);
        let body = json!({"image": image_bytes(&t1_raw), "spoofingCondition": "balanced"});
        let r = send(
            "POST",
            &url,
            &[("authorization", LIVE_KEY), ("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await;
        let v = r.json();
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 6);
        assert!(v["data"]["faceDetails"][0]["spoofing"].is_boolean());
        let boundary = "XfacegateBoundaryX";
        let mut mp = Vec::new();
        mp.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"imageFile\"; filename=\"t1.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        mp.extend_from_slice(&t1_raw);
        mp.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"spoofingCondition\"\r\n\r\nstrict\r\n--{boundary}--\r\n"
            )
            .as_bytes(),
        );
        let ct = format!("multipart/form-data; boundary={boundary}");
        let r = send("POST", &url, &[("authorization", LIVE_KEY), ("content-type", &ct)], Some(mp)).await;
        let v = r.json();
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 6);
        // A part given twice is refused, not silently resolved.
        let part = |name: &str, data: &[u8]| {
            let mut p = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            )
            .into_bytes();
            p.extend_from_slice(data);
            p.extend_from_slice(b"\r\n");
            p
        };
        let small = flat_png(100, 100);
        for parts in [
            vec![part("imageFile", &small), part("imageFile", &t1_raw)],
            vec![
                part("imageFile", &small),
                part("spoofingCondition", b"weak"),
                part("spoofingCondition", b"strict"),
            ],
        ] {
            let mut body = parts.concat();
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let r = send("POST", &url, &[("authorization", LIVE_KEY), ("content-type", &ct)], Some(body)).await;
            assert_eq!(r.status, 200);
            let v = r.json();
            assert_error(&v, -40000, "InvalidParam");
            assert!(v["header"]["detail"].as_str().unwrap().contains("more than once"), "{v:#}");
        }
        // Liveness image errors use the same codes.
        let body = json!({"image": {"bytes": "***"}});
        let r = send(
            "POST",
            &url,
            &[("authorization", LIVE_KEY), ("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_error(&r.json(), -45030, "InvalidImageParameterException");

        // Argos.
        let url = format!("{}/modules/liveness", s.base);
        let post = |body: String| {
            let url = url.clone();
            async move {
                send(
                    "POST",
                    &url,
                    &[("x-api-key", ARGOS_KEY), ("content-type", "application/json")],
                    Some(body.into_bytes()),
                )
                .await
            }
        };
        let r = post(json!({"faceImage": b64(&asset("Tom_Hanks_54745.png"))}).to_string()).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["apiType"], "id_live_face");
        let score = v["result"]["liveness_score"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&score));
        let tx1 = v["transactionId"].as_str().unwrap().to_string();
        let r2 = post(json!({"faceImage": b64(&t1_raw)}).to_string()).await;
        assert_eq!(r2.status, 200);
        assert_ne!(r2.json()["transactionId"].as_str().unwrap(), tx1);
        for body in ["{}".to_string(), json!({"faceImage": ""}).to_string(), "nonsense".into()] {
            let r = post(body).await;
            assert_eq!(r.status, 400);
            let v = r.json();
            assert_eq!(v["errorCode"], 1016);
            assert!(v["transactionId"].is_string() && v["message"].is_string());
        }
        // 1017 messages are fixed words of ours, never a decoder's.
        for (img, message) in [
            (b64(b"not an image"), "faceImage: image is neither PNG nor JPEG"),
            (
                b64(&t1_raw[..t1_raw.len() / 3]),
                "faceImage: image could not be decoded (corrupt or truncated)",
            ),
            ("@@@@".to_string(), "faceImage: image data is not valid Base64"),
            (b64(&flat_png(200, 200)), "no face found in faceImage"),
        ] {
            let r = post(json!({ "faceImage": img }).to_string()).await;
            assert_eq!(r.status, 400);
            let v = r.json();
            assert_eq!(v["errorCode"], 1017);
            assert_eq!(v["message"], message);
        }
        s.stop().await;
    });
}
