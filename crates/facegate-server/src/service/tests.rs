//! Unit tests of the service over a fake analyzer and a real SQLite gallery.

use super::*;
use crate::analyzer::AnalyzerError;
use facegate_core::{FaceBox, FivePoints, Liveness, Point, Pose};
use facegate_image::RgbImage;
use facegate_store::PageRequest;
use facegate_store::{GalleryOptions, KeyRing, MasterKey};
use faces::RegisterRequest;
use matching::SearchParams;

/// Test double: returns fixed faces for every image. Unit tests only;
/// end-to-end tests use the real engine.
struct FakeAnalyzerForUnitTests {
    faces: Vec<Face>,
    /// Fail every analysis with this (`true`: a per-face failure,
    /// `false`: an engine failure).
    fail: Option<bool>,
    /// When set, each analysis reports on the first channel that it has
    /// started, then waits for a go on the second.
    gate: Option<(
        tokio::sync::mpsc::UnboundedSender<()>,
        std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    )>,
}

impl FakeAnalyzerForUnitTests {
    fn new(faces: Vec<Face>) -> Self {
        FakeAnalyzerForUnitTests {
            faces,
            fail: None,
            gate: None,
        }
    }
}

fn fake_face(side: f32, seed: usize) -> Face {
    let mut e = vec![0.0f32; 8];
    e[seed % 8] = 1.0;
    Face {
        bbox: FaceBox {
            x0: 10.0,
            y0: 10.0,
            x1: 10.0 + side,
            y1: 10.0 + side,
        },
        landmarks: FivePoints {
            left_eye: Point { x: 20.0, y: 20.0 },
            ..FivePoints::default()
        },
        confidence: 0.9,
        pose: Some(Pose::default()),
        mask: Some(false),
        liveness: Some(Liveness {
            real_probability: 0.8,
            is_spoof: false,
            unjudgeable: None,
        }),
        quality_issue: None,
        embedding: Some(e),
    }
}

impl FaceAnalyzer for FakeAnalyzerForUnitTests {
    fn analyze(
        &self,
        _image: &RgbImage,
        request: &AnalyzeRequest,
    ) -> Result<Vec<Face>, AnalyzerError> {
        if let Some((started, go)) = &self.gate {
            started.send(()).unwrap();
            go.lock().unwrap().recv().unwrap();
        }
        match self.fail {
            Some(true) => return Err(AnalyzerError::Face("alignment: /x/y".into())),
            Some(false) => return Err(AnalyzerError::Engine("runtime: /x/y".into())),
            None => {}
        }
        // Only the stages asked for, largest first: what the port promises.
        let mut faces: Vec<Face> = self
            .faces
            .iter()
            .cloned()
            .map(|mut f| {
                if request.embedding.is_none() {
                    f.embedding = None;
                }
                if !request.orientation {
                    f.pose = None;
                }
                if !request.mask {
                    f.mask = None;
                }
                if request.spoofing.is_none() {
                    f.liveness = None;
                }
                // The test double's gate: faces under 30 px are too small.
                if request.quality_gate && f.bbox.width() < 30.0 {
                    f.quality_issue = Some(facegate_core::QualityIssue::FaceTooSmall);
                }
                f
            })
            .collect();
        facegate_core::rank_faces(&mut faces, |f| f.bbox);
        Ok(faces)
    }
    fn spoof_aligned(
        &self,
        _crop: &RgbImage,
        _c: SpoofCondition,
        _lane: u64,
    ) -> Result<Liveness, AnalyzerError> {
        Ok(Liveness {
            real_probability: 0.1,
            is_spoof: true,
            unjudgeable: None,
        })
    }
    fn models(&self) -> Vec<String> {
        vec!["fake-v1".into()]
    }
    fn similarity(&self, _: &str, cosine: f32) -> f32 {
        (cosine.clamp(0.0, 1.0)) * 100.0
    }
    fn cosine_for_similarity(&self, _: &str, s: f32) -> f32 {
        s / 100.0
    }
}

fn png(w: u32, h: u32) -> ImageInput {
    let img = RgbImage::new(w, h);
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    ImageInput::Bytes(out.into_inner())
}

fn group(id: &str) -> GroupRef {
    GroupRef {
        tenant: "t".into(),
        group_id: id.into(),
    }
}

fn face_ref(group_id: &str, face_id: &str) -> FaceRef {
    FaceRef {
        group: group(group_id),
        face_id: face_id.into(),
    }
}

fn request(limit: Option<i64>) -> RegisterRequest {
    RegisterRequest {
        image: png(100, 100),
        external_image_id: None,
        limit,
        options: FaceOptions::default(),
    }
}

fn params() -> SearchParams {
    SearchParams {
        limit: Some(5),
        threshold: Some(50.0),
    }
}

fn service(dir: &std::path::Path, faces: Vec<Face>, quota: u64) -> Service {
    service_with(dir, FakeAnalyzerForUnitTests::new(faces), quota, 1)
}

fn service_with(
    dir: &std::path::Path,
    analyzer: FakeAnalyzerForUnitTests,
    quota: u64,
    cpu_slots: usize,
) -> Service {
    // Each service has its own key, so its own database.
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let key = MasterKey::generate().unwrap();
    let gallery = Gallery::open(
        &format!("sqlite://{}", dir.join(format!("t{n}.db")).display()),
        KeyRing::new(&key),
        GalleryOptions::default(),
    )
    .unwrap();
    Service::new(
        Arc::new(analyzer),
        Arc::new(gallery),
        ServiceOptions {
            max_faces_per_group: quota,
            cpu_slots,
            ..ServiceOptions::default()
        },
    )
}

#[tokio::test]
async fn register_ranks_by_size_limits_and_reports_quota() {
    let dir = tempfile::tempdir().unwrap();
    // Engine order deliberately not by size.
    let faces = vec![fake_face(20.0, 0), fake_face(60.0, 1), fake_face(40.0, 2)];
    let svc = service(dir.path(), faces, 2);
    svc.create_group(&group("g")).await.unwrap();
    let out = svc.register(&group("g"), request(Some(1))).await.unwrap();
    assert_eq!(out.added.len(), 1);
    assert_eq!(out.not_added.len(), 2);
    assert!(!out.quota_partial);
    assert_eq!(
        out.added[0].1.bbox.x1, 0.7,
        "the largest (60 px) face first"
    );
    let out = svc.register(&group("g"), request(Some(3))).await.unwrap();
    assert!(out.quota_partial);
    assert_eq!(out.added.len(), 1);
    assert_eq!(out.not_added.len(), 2);
    let err = svc
        .register(&group("g"), request(Some(3)))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ServiceError::Store(facegate_store::StoreError::QuotaExceeded { .. })
    ));
}

#[tokio::test]
async fn paging_tokens_pass_through_and_fix_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
    for g in ["a", "b", "c"] {
        svc.create_group(&group(g)).await.unwrap();
    }
    let p1 = svc.list_groups("t", PageRequest::First(2)).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(!p1.next_token.is_empty());
    let p2 = svc
        .list_groups("t", PageRequest::Next(p1.next_token.clone()))
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_token, "");
    // A token of one listing is not valid for another.
    for _ in 0..3 {
        svc.register(&group("a"), request(Some(1))).await.unwrap();
    }
    let (version, f1) = svc
        .list_faces(&group("a"), PageRequest::First(2))
        .await
        .unwrap();
    assert_eq!(version, "fake-v1");
    assert_eq!(f1.items.len(), 2);
    let (_, f2) = svc
        .list_faces(&group("a"), PageRequest::Next(f1.next_token.clone()))
        .await
        .unwrap();
    assert_eq!(f2.items.len(), 1);
    assert!(matches!(
        svc.list_groups("t", PageRequest::Next(f1.next_token)).await,
        Err(ServiceError::Store(
            facegate_store::StoreError::InvalidToken(_)
        ))
    ));
}

#[tokio::test]
async fn options_off_omit_fields_and_missing_face_is_invalid_param() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
    let opts = FaceOptions {
        orientation: false,
        mask: false,
        spoofing: None,
        ..FaceOptions::default()
    };
    let d = svc.detect(png(100, 100), opts).await.unwrap();
    assert_eq!(d[0].pose, None);
    assert_eq!(d[0].mask, None);
    assert_eq!(d[0].liveness, None);
    let d = svc
        .detect(
            png(100, 100),
            FaceOptions {
                spoofing: Some(SpoofCondition::Strict),
                ..FaceOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(d[0].pose.is_some() && d[0].mask.is_some());
    assert_eq!(d[0].liveness.map(|l| l.is_spoof), Some(false));

    let empty = service(dir.path(), vec![], 100);
    empty.create_group(&group("g")).await.unwrap();
    let err = empty
        .search_by_image(&group("g"), png(100, 100), params(), FaceOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::NoFace("the image")));
}

#[tokio::test]
async fn aligned_spoofing_needs_224() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), vec![], 100);
    let d = svc
        .spoofing(png(224, 224), true, SpoofCondition::Balanced, Lane(0))
        .await
        .unwrap();
    assert!(matches!(d, SpoofingOutcome::Aligned(l) if l.is_spoof));
    let err = svc
        .spoofing(png(224, 225), true, SpoofCondition::Balanced, Lane(0))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::AlignedSize { .. }));
}

/// Decode and analysis share one CPU slot: while the only slot
/// analyses one image, the other requests wait with their encoded bytes
/// and have decoded nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_images_never_outnumber_cpu_slots() {
    let dir = tempfile::tempdir().unwrap();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let (go_tx, go_rx) = std::sync::mpsc::sync_channel(16);
    let analyzer = FakeAnalyzerForUnitTests {
        gate: Some((started_tx, std::sync::Mutex::new(go_rx))),
        ..FakeAnalyzerForUnitTests::new(vec![fake_face(50.0, 0)])
    };
    let svc = Arc::new(service_with(dir.path(), analyzer, 100, 1));
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.detect(png(400, 400), FaceOptions::default()).await })
        })
        .collect();
    for round in 0..4 {
        tokio::time::timeout(std::time::Duration::from_secs(10), started_rx.recv())
            .await
            .expect("an analysis starts")
            .unwrap();
        // Give the waiting requests every chance to decode early.
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert_eq!(svc.decoded_images(), 1, "round {round}");
        go_tx.send(()).unwrap();
    }
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().len(), 1);
    }
    assert_eq!(svc.decoded_images(), 0);
}

#[tokio::test]
async fn per_face_failures_are_the_clients_engine_failures_internal() {
    let dir = tempfile::tempdir().unwrap();
    for (fail, client) in [(true, true), (false, false)] {
        let analyzer = FakeAnalyzerForUnitTests {
            fail: Some(fail),
            ..FakeAnalyzerForUnitTests::new(vec![fake_face(50.0, 0)])
        };
        let svc = service_with(dir.path(), analyzer, 100, 1);
        let err = svc
            .detect(png(100, 100), FaceOptions::default())
            .await
            .unwrap_err();
        match err {
            ServiceError::Analyzer(AnalyzerError::Face(_)) => assert!(client),
            ServiceError::Analyzer(AnalyzerError::Engine(_)) => assert!(!client),
            other => panic!("{other:?}"),
        }
        assert_eq!(svc.decoded_images(), 0);
    }
}

#[tokio::test]
async fn malformed_group_ids_are_not_found_except_on_create() {
    use facegate_store::StoreError as S;
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path(), vec![fake_face(50.0, 0)], 100);
    assert!(matches!(
        svc.create_group(&group("Bad_Id")).await,
        Err(ServiceError::Store(S::InvalidGroupId))
    ));
    let face = "00000000-0000-4000-8000-000000000000";
    let long = "a".repeat(256);
    for bad in ["Bad_Id", "", long.as_str(), "a b"] {
        let not_found = |r: Result<(), ServiceError>| {
            assert!(
                matches!(r, Err(ServiceError::Store(S::GroupNotFound))),
                "{bad:?}: {r:?}"
            )
        };
        not_found(svc.get_group(&group(bad)).await.map(drop));
        not_found(svc.delete_group(&group(bad)).await);
        not_found(svc.register(&group(bad), request(Some(1))).await.map(drop));
        not_found(
            svc.list_faces(&group(bad), PageRequest::First(5))
                .await
                .map(drop),
        );
        not_found(svc.delete_face(&face_ref(bad, face)).await);
        not_found(
            svc.search_by_face(&face_ref(bad, face), params())
                .await
                .map(drop),
        );
        not_found(
            svc.search_by_image(&group(bad), png(100, 100), params(), FaceOptions::default())
                .await
                .map(drop),
        );
        not_found(
            svc.verify(&face_ref(bad, face), png(100, 100), FaceOptions::default())
                .await
                .map(drop),
        );
    }
}

#[test]
fn wire_option_defaults_and_validation() {
    let o = FaceOptions::from_wire(None, None, None, None).unwrap();
    assert_eq!(o, FaceOptions::default());
    let o = FaceOptions::from_wire(None, None, Some(true), None).unwrap();
    assert_eq!(o.spoofing, Some(SpoofCondition::Balanced));
    assert!(FaceOptions::from_wire(None, None, None, Some("Strict")).is_err());
    assert!(FaceOptions::from_wire(None, None, None, Some("")).is_err());
    assert!(ImageInput::from_fields(None, None, "image").is_err());
    assert!(ImageInput::from_fields(Some("u".into()), Some("b".into()), "image").is_err());
}

#[tokio::test]
async fn the_registration_quality_gate_is_off_by_default_and_refuses_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let faces = || vec![fake_face(20.0, 0), fake_face(60.0, 1)];
    let plain = service(dir.path(), faces(), 100);
    plain.create_group(&group("g")).await.unwrap();
    let out = plain.register(&group("g"), request(Some(2))).await.unwrap();
    assert_eq!(out.added.len(), 2, "off: every face is registered");

    let mut gated = service(dir.path(), faces(), 100);
    gated.options.register_quality_gate = true;
    gated.create_group(&group("g")).await.unwrap();
    let out = gated.register(&group("g"), request(Some(2))).await.unwrap();
    assert_eq!(out.added.len(), 1);
    assert_eq!(out.added[0].1.bbox.x1, 0.7, "the 60 px face");
    assert_eq!(out.not_added.len(), 1);
    assert_eq!(
        out.not_added[0].quality_issue,
        Some(facegate_core::QualityIssue::FaceTooSmall)
    );
    assert!(!out.quota_partial);
}
