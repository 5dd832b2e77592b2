//! End-to-end: NHN Face Recognition Plus (groups, paging, detect, register,
//! search, compare, verify, quota) over real HTTP with the real engine and
//! real photos.

use facegate_test_support::server as common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[test]
fn groups_paging_and_tokens() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(
            dir.path(),
            Setup {
                token_ttl: Duration::from_secs(1),
                ..Setup::default()
            },
        )
        .await;
        for g in ["g-one", "g-two", "g-three"] {
            s.create_group(g).await;
        }
        let v = s.post("/groups", json!({"groupId": "g-one"})).await;
        assert_error(&v, -40020, "DuplicatedGroupID");
        let v = s.post("/groups", json!({"groupId": "Bad_Id"})).await;
        assert_error(&v, -40010, "InvalidGroupID");
        let v = s.post("/groups", json!({"groupId": 5})).await;
        assert_error(&v, -40000, "InvalidParam");
        let v = s.post("/groups", json!({})).await;
        assert_error(&v, -40000, "InvalidParam");

        let detail = s.get("/groups/g-two").await;
        assert_code(&detail, 0);
        let g = &detail["data"]["groups"][0];
        assert_eq!(detail["data"]["groupCount"], 1);
        assert_eq!(g["groupId"], "g-two");
        assert_eq!(g["faceCount"], 0);
        assert!(g["modelVersion"].as_str().is_some_and(|m| !m.is_empty()));
        let ct = g["createTime"].as_str().unwrap();
        assert_eq!(ct.len(), 19, "{ct}");
        assert_eq!(&ct[10..11], "T");

        // Paging: limit 2, then the token (a different limit is ignored).
        let p1 = s.get("/groups?limit=2").await;
        assert_code(&p1, 0);
        assert_eq!(p1["data"]["groupCount"], 2);
        let token = p1["data"]["nextToken"].as_str().unwrap().to_string();
        assert!(!token.is_empty());
        // Any limit beside a token is ignored, even one that does not parse
        // or is out of range: the token fixes the limit.
        for bad in ["abc", "", "0", "-3", "201", "1.5"] {
            let v = s
                .get(&format!("/groups?limit={bad}&next-token={token}"))
                .await;
            assert_code(&v, 0);
            assert_eq!(v["data"]["groupCount"], 1, "limit={bad}");
        }
        // Beside a bad token, the token's error, not the limit's.
        let v = s.get("/groups?limit=abc&next-token=garbage").await;
        assert_error(&v, -40040, "InvalidTokenError");
        let p2 = s.get(&format!("/groups?limit=1&next-token={token}")).await;
        assert_code(&p2, 0);
        assert_eq!(p2["data"]["groupCount"], 1);
        assert_eq!(p2["data"]["nextToken"], "");
        let mut all: Vec<String> = p1["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .chain(p2["data"]["groups"].as_array().unwrap())
            .map(|g| g["groupId"].as_str().unwrap().to_string())
            .collect();
        all.sort();
        assert_eq!(all, ["g-one", "g-three", "g-two"]);

        // Forged token.
        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let v = s.get(&format!("/groups?limit=2&next-token={forged}")).await;
        assert_error(&v, -40040, "InvalidTokenError");
        let v = s.get("/groups?limit=2&next-token=garbage").await;
        assert_error(&v, -40040, "InvalidTokenError");
        // Expired token.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let v = s.get(&format!("/groups?limit=2&next-token={token}")).await;
        assert_error(&v, -40040, "InvalidTokenError");

        // limit rules.
        for q in ["", "?limit=0", "?limit=201", "?limit=abc"] {
            let v = s.get(&format!("/groups{q}")).await;
            assert_error(&v, -40000, "InvalidParam");
        }

        // Tenant isolation: app-b sees nothing of app-a.
        let url = format!(
            "{}/nhn-face-reco/v1.0/appkeys/{APP_B}/groups?limit=10",
            s.base
        );
        let v = send("GET", &url, &[("x-nhn-apikey", FACE_KEY_B)], None)
            .await
            .json();
        assert_code(&v, 0);
        assert_eq!(v["data"]["groupCount"], 0);
        let url = format!("{}/nhn-face-reco/v1.0/appkeys/{APP_B}/groups/g-one", s.base);
        let v = send("GET", &url, &[("x-nhn-apikey", FACE_KEY_B)], None)
            .await
            .json();
        assert_error(&v, -40030, "NotFoundGroupError");

        assert_code(&s.delete("/groups/g-one").await, 0);
        assert_error(&s.get("/groups/g-one").await, -40030, "NotFoundGroupError");
        assert_error(
            &s.delete("/groups/g-one").await,
            -40030,
            "NotFoundGroupError",
        );
        s.stop().await;
    });
}

/// A group id that breaks the id rule is InvalidGroupID only where a group
/// is created; every other route says NotFoundGroupError, as the seed's
/// error tables list, since no such group can exist.
#[test]
fn malformed_group_ids_are_not_found_outside_create() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let v = s.post("/groups", json!({"groupId": "Bad_Id"})).await;
        assert_error(&v, -40010, "InvalidGroupID");
        let long = "a".repeat(256);
        let v = s.post("/groups", json!({ "groupId": long })).await;
        assert_error(&v, -40010, "InvalidGroupID");
        let face = "00000000-0000-4000-8000-000000000000";
        let img = image_bytes(&flat_png(100, 100));
        for g in ["Bad_Id", "UPPER", "a%20b", "%C3%A9", long.as_str()] {
            let not_found = |v: Value, what: &str| {
                assert_code(&v, -40030);
                assert_eq!(
                    v["header"]["resultMessage"], "NotFoundGroupError",
                    "{what} {g}: {v:#}"
                );
            };
            not_found(s.get(&format!("/groups/{g}")).await, "get");
            not_found(s.delete(&format!("/groups/{g}")).await, "delete");
            not_found(
                s.post(&format!("/groups/{g}"), json!({"image": img, "limit": 1}))
                    .await,
                "register",
            );
            not_found(s.get(&format!("/groups/{g}/faces?limit=5")).await, "list");
            not_found(
                s.get(&format!("/groups/{g}/faces/{face}?limit=5&threshold=50"))
                    .await,
                "search by face",
            );
            not_found(
                s.delete(&format!("/groups/{g}/faces/{face}")).await,
                "delete face",
            );
            not_found(
                s.post(
                    &format!("/groups/{g}/search?limit=5&threshold=50"),
                    json!({ "image": img }),
                )
                .await,
                "search",
            );
            not_found(
                s.post(
                    &format!("/verify/groups/{g}/faces/{face}"),
                    json!({ "compareImage": img }),
                )
                .await,
                "verify",
            );
        }
        s.stop().await;
    });
}

#[test]
fn detect_options_and_geometry() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let t1 = image_bytes(&asset("t1.jpg"));
        let v = s.post("/detect", json!({ "image": t1 })).await;
        assert_code(&v, 0);
        let faces = v["data"]["faceDetails"].as_array().unwrap();
        assert_eq!(v["data"]["faceDetailCount"], 6);
        assert_eq!(faces.len(), 6);
        let area = |f: &Value| {
            let b = &f["bbox"];
            (b["x1"].as_f64().unwrap() - b["x0"].as_f64().unwrap())
                * (b["y1"].as_f64().unwrap() - b["y0"].as_f64().unwrap())
        };
        for w in faces.windows(2) {
            assert!(area(&w[0]) >= area(&w[1]), "largest first");
        }
        for f in faces {
            for k in ["x0", "y0", "x1", "y1"] {
                let x = f["bbox"][k].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&x));
            }
            let names: Vec<&str> = f["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["type"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                ["leftEye", "rightEye", "nose", "leftLip", "rightLip"]
            );
            let lm = &f["landmarks"];
            assert!(lm[0]["x"].as_f64() <= lm[1]["x"].as_f64());
            assert!(lm[3]["x"].as_f64() <= lm[4]["x"].as_f64());
            let c = f["confidence"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&c));
            // Defaults: orientation and mask on, spoofing off.
            assert!(f["orientation"]["x"].is_number());
            assert!(f["mask"].is_boolean());
            assert!(f.get("spoofing").is_none());
        }
        let v = s
            .post(
                "/detect",
                json!({"image": t1, "orientation": false, "mask": false, "spoofing": true,
                       "spoofingCondition": "strict"}),
            )
            .await;
        assert_code(&v, 0);
        for f in v["data"]["faceDetails"].as_array().unwrap() {
            assert!(f.get("orientation").is_none());
            assert!(f.get("mask").is_none());
            assert!(f["spoofing"].is_boolean());
        }
        // An image without faces is not an error for detect.
        let v = s
            .post(
                "/detect",
                json!({"image": image_bytes(&flat_png(200, 200))}),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 0);
        s.stop().await;
    });
}

#[test]
fn register_search_compare_verify_delete_flow() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let t1_raw = asset("t1.jpg");
        let t1 = image_bytes(&t1_raw);
        s.create_group("people").await;

        // Register: limit required and bounded; externalImageId checked.
        for body in [
            json!({"image": t1}),
            json!({"image": t1, "limit": 0}),
            json!({"image": t1, "limit": 21}),
            json!({"image": t1, "limit": 2, "externalImageId": "bad id!"}),
        ] {
            assert_error(
                &s.post("/groups/people", body).await,
                -40000,
                "InvalidParam",
            );
        }
        let v = s
            .post("/groups/ghost", json!({"image": t1, "limit": 3}))
            .await;
        assert_error(&v, -40030, "NotFoundGroupError");

        // Limit 2 of 6: the two largest are added, four are not.
        let v = s
            .post(
                "/groups/people",
                json!({"image": t1, "limit": 2, "externalImageId": "t1.jpg"}),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["addedFaceCount"], 2);
        assert_eq!(v["data"]["notAddedFaceCount"], 4);
        assert_eq!(v["data"]["addedFaceDetails"].as_array().unwrap().len(), 2);
        let first_two = face_ids(&v);
        for id in &first_two {
            assert_code(&s.delete(&format!("/groups/people/faces/{id}")).await, 0);
        }

        let v = s
            .post(
                "/groups/people",
                json!({"image": t1, "limit": 20, "externalImageId": "t1.jpg"}),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["addedFaceCount"], 6);
        assert_eq!(v["data"]["notAddedFaceCount"], 0);
        assert!(v["data"]["modelVersion"].is_string());
        let ids = face_ids(&v);
        let image_id = v["data"]["addedFaces"][0]["imageId"]
            .as_str()
            .unwrap()
            .to_string();
        for f in v["data"]["addedFaces"].as_array().unwrap() {
            assert_eq!(f["imageId"], image_id.as_str());
            assert_eq!(f["externalImageId"], "t1.jpg");
        }
        let details: Vec<Value> = v["data"]["addedFaceDetails"].as_array().unwrap().clone();

        // Group detail and listing (newest first, paged).
        assert_eq!(
            s.get("/groups/people").await["data"]["groups"][0]["faceCount"],
            6
        );
        let p1 = s.get("/groups/people/faces?limit=4").await;
        assert_code(&p1, 0);
        assert_eq!(p1["data"]["faceCount"], 4);
        let tok = p1["data"]["nextToken"].as_str().unwrap().to_string();
        let p2 = s
            .get(&format!("/groups/people/faces?next-token={tok}"))
            .await;
        assert_eq!(p2["data"]["faceCount"], 2);
        let again = s
            .get(&format!("/groups/people/faces?limit=lots&next-token={tok}"))
            .await;
        assert_code(&again, 0);
        assert_eq!(again["data"]["faces"], p2["data"]["faces"]);
        assert_eq!(p2["data"]["nextToken"], "");
        let mut listed: Vec<String> = p1["data"]["faces"]
            .as_array()
            .unwrap()
            .iter()
            .chain(p2["data"]["faces"].as_array().unwrap())
            .map(|f| f["faceId"].as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);

        // Search with each face's crop finds that face first.
        for (id, d) in ids.iter().zip(&details) {
            let crop = crop_face(&t1_raw, &d["bbox"], 0.6);
            let v = s
                .post(
                    "/groups/people/search?limit=3&threshold=60",
                    json!({"image": image_bytes(&crop)}),
                )
                .await;
            assert_code(&v, 0);
            assert_eq!(
                v["data"]["matchFaces"][0]["face"]["faceId"],
                id.as_str(),
                "{v:#}"
            );
            let sim = v["data"]["matchFaces"][0]["similarity"].as_f64().unwrap();
            assert!(sim >= 80.0, "crop of the registered face scores {sim}");
            assert!(v["data"]["sourceFace"]["bbox"].is_object());
        }
        // Search with the whole image: the largest face, found with ~100.
        let v = s
            .post(
                "/groups/people/search?limit=10&threshold=90",
                json!({"image": t1}),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(
            v["data"]["matchFaces"][0]["face"]["faceId"],
            ids[0].as_str()
        );
        assert!(v["data"]["matchFaces"][0]["similarity"].as_f64().unwrap() > 95.0);
        let sims: Vec<f64> = v["data"]["matchFaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["similarity"].as_f64().unwrap())
            .collect();
        assert!(sims.iter().all(|&x| x >= 90.0));
        // Search parameter rules and missing face.
        for q in [
            "?threshold=80",
            "?limit=5",
            "?limit=0&threshold=80",
            "?limit=4097&threshold=80",
            "?limit=5&threshold=0",
            "?limit=5&threshold=101",
        ] {
            let v = s
                .post(&format!("/groups/people/search{q}"), json!({"image": t1}))
                .await;
            assert_error(&v, -40000, "InvalidParam");
        }
        let v = s
            .post(
                "/groups/people/search?limit=5&threshold=80",
                json!({"image": image_bytes(&flat_png(200, 200))}),
            )
            .await;
        assert_error(&v, -40000, "InvalidParam");
        assert!(v["header"]["detail"].as_str().unwrap().contains("no face"));

        // Search by face id: the query face is excluded.
        let v = s
            .get(&format!(
                "/groups/people/faces/{}?limit=10&threshold=1",
                ids[0]
            ))
            .await;
        assert_code(&v, 0);
        let found: Vec<&str> = v["data"]["matchFaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["face"]["faceId"].as_str().unwrap())
            .collect();
        assert!(!found.contains(&ids[0].as_str()));
        assert_eq!(v["data"]["matchFaceCount"], found.len());
        let v = s
            .get("/groups/people/faces/00000000-0000-4000-8000-000000000000?limit=10&threshold=50")
            .await;
        assert_error(&v, -40050, "NotFoundFaceIDError");

        // Verify: the same photo scores high against its own face.
        let v = s
            .post(
                &format!("/verify/groups/people/faces/{}", ids[0]),
                json!({"compareImage": t1}),
            )
            .await;
        assert_code(&v, 0);
        assert!(v["data"]["similarity"].as_f64().unwrap() > 95.0);
        assert_eq!(v["data"]["face"]["faceId"], ids[0].as_str());
        assert!(v["data"]["sourceFace"]["landmarks"].is_array());
        let v = s
            .post(
                &format!("/verify/groups/people/faces/{}", ids[1]),
                json!({"compareImage": t1}),
            )
            .await;
        assert!(v["data"]["similarity"].as_f64().unwrap() < 80.0, "{v:#}");
        let v = s
            .post(
                &format!("/verify/groups/people/faces/{}", ids[0]),
                json!({"compareImage": image_bytes(&flat_png(200, 200))}),
            )
            .await;
        assert_error(&v, -40000, "InvalidParam");

        // Compare: largest source face vs all target faces.
        let v = s
            .post(
                "/compare?threshold=90",
                json!({"sourceImage": t1, "targetImage": t1}),
            )
            .await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["matchedFaceDetailCount"], 1);
        assert_eq!(v["data"]["unmatchedFaceDetailCount"], 5);
        let un: Vec<f64> = v["data"]["unmatchedFaceDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["similarity"].as_f64().unwrap())
            .collect();
        assert!(un.windows(2).all(|w| w[0] >= w[1]), "descending");
        let v = s
            .post("/compare", json!({"sourceImage": t1, "targetImage": t1}))
            .await;
        assert_error(&v, -40000, "InvalidParam");
        let v = s
            .post(
                "/compare?threshold=90",
                json!({"sourceImage": image_bytes(&flat_png(200, 200)), "targetImage": t1}),
            )
            .await;
        assert_error(&v, -40000, "InvalidParam");

        // Delete a face.
        assert_code(
            &s.delete(&format!("/groups/people/faces/{}", ids[0])).await,
            0,
        );
        let v = s.delete(&format!("/groups/people/faces/{}", ids[0])).await;
        assert_error(&v, -40050, "NotFoundFaceIDError");
        assert_eq!(
            s.get("/groups/people").await["data"]["groups"][0]["faceCount"],
            5
        );
        s.stop().await;
    });
}

#[test]
fn quota_partial_and_full() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(
            dir.path(),
            Setup {
                max_faces_per_group: 4,
                ..Setup::default()
            },
        )
        .await;
        s.create_group("small").await;
        let t1 = image_bytes(&asset("t1.jpg"));
        let v = s
            .post("/groups/small", json!({"image": t1, "limit": 3}))
            .await;
        assert_code(&v, 0);
        let v = s
            .post("/groups/small", json!({"image": t1, "limit": 3}))
            .await;
        assert_error(&v, 40070, "ServiceQuotaExceededPartialSuccessException");
        assert_eq!(v["data"]["addedFaceCount"], 1);
        assert_eq!(v["data"]["notAddedFaceCount"], 5);
        let v = s
            .post("/groups/small", json!({"image": t1, "limit": 3}))
            .await;
        assert_error(&v, -40070, "ServiceQuotaExceededException");
        assert_eq!(
            s.get("/groups/small").await["data"]["groups"][0]["faceCount"],
            4
        );
        s.stop().await;
    });
}

/// All 40 ORL people: a second photo of the same person, and photos of two
/// other people. Same person must score above 80, different people below
/// the strict point 90, and at most a tenth of them reach the balanced
/// point 80 (measured: a handful of pairs score 80-84 on these small grey
/// photos).
#[test]
fn orl_same_person_scores_high_different_people_low() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let best = |v: &Value| -> f64 {
            let d = &v["data"];
            d["matchedFaceDetails"]
                .as_array()
                .unwrap()
                .iter()
                .chain(d["unmatchedFaceDetails"].as_array().unwrap())
                .map(|m| m["similarity"].as_f64().unwrap())
                .fold(0.0, f64::max)
        };
        let mut same = Vec::new();
        let mut diff = Vec::new();
        for p in 1..=40u32 {
            for (other, shot) in [(p, 2u32), (p % 40 + 1, 1), ((p + 6) % 40 + 1, 3)] {
                let v = s
                    .post(
                        "/compare?threshold=90",
                        json!({"sourceImage": image_bytes(&orl(p, 1)),
                               "targetImage": image_bytes(&orl(other, shot))}),
                    )
                    .await;
                assert_code(&v, 0);
                let sim = best(&v);
                if other == p {
                    same.push((p, sim));
                } else {
                    diff.push((p, other, sim));
                }
            }
        }
        let bad_same: Vec<_> = same.iter().filter(|x| x.1 <= 80.0).collect();
        let strict_fa: Vec<_> = diff.iter().filter(|x| x.2 >= 90.0).collect();
        let balanced_fa: Vec<_> = diff.iter().filter(|x| x.2 >= 80.0).collect();
        assert!(
            bad_same.is_empty(),
            "same person at or below 80: {bad_same:?}"
        );
        assert!(
            strict_fa.is_empty(),
            "different people at or above 90: {strict_fa:?}"
        );
        // ORL's 92x112 grey photos are far from the calibration data: allow
        // a few false accepts at the balanced point, but not many.
        assert!(
            balanced_fa.len() * 10 <= diff.len(),
            "different people at or above 80: {balanced_fa:?}"
        );
        eprintln!(
            "ORL: lowest same {:?}; different >= 80: {balanced_fa:?}",
            same.iter().map(|x| x.1).fold(f64::MAX, f64::min)
        );
        s.stop().await;
    });
}
