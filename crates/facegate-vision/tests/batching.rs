//! Cross-request micro-batching on the real networks: a batch gives each
//! input the numbers it gets alone, and concurrent analyses share batches.

mod common;

use std::time::Duration;

use facegate_vision::batch::Batching;
use facegate_vision::files;
use facegate_vision::pipeline::{AnalyzeOptions, Engine, FaceSelection};
use facegate_vision::spoof::SpoofCondition;
use facegate_vision::Embedder;

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Four different inputs of `len` values, 0..255.
fn inputs(len: usize) -> Vec<Vec<f32>> {
    (0..4)
        .map(|k| {
            (0..len)
                .map(|i| ((i * 7919 + k * 104_729) % 256) as f32)
                .collect()
        })
        .collect()
}

#[test]
fn a_batch_gives_each_input_the_numbers_it_gets_alone() {
    let runtime = common::runtimes().remove(0);
    for (file, side) in [
        (files::SFACE_EMBEDDER, 112),
        (files::EMBEDDER, 150),
        (files::SPOOF_V2, 80),
        (files::SPOOF_V1SE, 80),
    ] {
        let onnx = std::fs::read(common::model_dir().join(file)).expect("models provisioned");
        let model = runtime.load(file, &onnx, [1, 3, side, side]).unwrap();
        assert!(model.batches(), "{file} declares no batch dimension");
        let inputs = inputs(3 * side * side);
        let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let batched = model.run_batch(&refs).unwrap();
        assert_eq!(
            model.batch_stats().batches,
            0,
            "run_batch bypasses the batcher"
        );
        for (input, together) in inputs.iter().zip(&batched) {
            let alone = model.run(input).unwrap();
            assert_eq!(alone[0].shape, together[0].shape);
            let d = largest_difference(&alone[0].data, &together[0].data);
            assert!(d <= 1e-5, "{file}: {d}");
        }
        // Distinct inputs, distinct outputs: the split is not one copy.
        assert_ne!(batched[0][0].data, batched[1][0].data);
    }
    // YuNet runs whole images of any size: never batched.
    let yunet = std::fs::read(common::model_dir().join(files::DETECTOR)).unwrap();
    let detector = runtime.load("yunet", &yunet, [1, 3, 640, 640]).unwrap();
    assert!(!detector.batches());
    // tract runs one input at a time.
    let sface = std::fs::read(common::model_dir().join(files::SFACE_EMBEDDER)).unwrap();
    let on_tract = facegate_vision::runtime::Runtime::tract()
        .with_batching(Batching::DEFAULT)
        .load("sface", &sface, [1, 3, 112, 112])
        .unwrap();
    assert!(!on_tract.batches());
}

/// Six LFW photos (their largest face) analysed at once on one session per
/// network: faces queue behind the busy sessions and run in batches, and
/// every face gets the numbers a sequential analysis gives.
#[test]
fn concurrent_analyses_share_batches_and_keep_their_numbers() {
    let batching = Batching {
        max_batch: 8,
        window: Duration::from_millis(200),
    };
    let engine = Engine::load_with(
        common::runtimes().remove(0).with_batching(batching),
        &common::model_dir(),
        Default::default(),
        &[Embedder::Sface],
    )
    .expect("models provisioned");
    let lfw = common::workspace_root().join("../shared/datasets/lfw_dev/images");
    let photos: Vec<image::RgbImage> = [
        "Aaron_Eckhart/Aaron_Eckhart_0001.jpg",
        "AJ_Lamas/AJ_Lamas_0001.jpg",
        "Aaron_Guiel/Aaron_Guiel_0001.jpg",
        "Aaron_Patterson/Aaron_Patterson_0001.jpg",
        "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
        "Aaron_Sorkin/Aaron_Sorkin_0001.jpg",
    ]
    .iter()
    .map(|name| image::open(lfw.join(name)).unwrap().to_rgb8())
    .collect();
    let options = AnalyzeOptions {
        embedding: true,
        orientation: false,
        mask: false,
        spoofing: Some(SpoofCondition::Balanced),
    };
    let one_face = FaceSelection {
        faces: 1,
        embeddings: 1,
    };
    let analyze = |img: &image::RgbImage| {
        let (faces, _) = engine
            .analyze_selected(img, &options, Embedder::Sface, one_face)
            .unwrap();
        assert_eq!(faces.len(), 1);
        faces.into_iter().next().unwrap()
    };
    let sequential: Vec<_> = photos.iter().map(analyze).collect();
    let before = engine.batch_stats();
    assert_eq!(before.largest, 1, "sequential analyses never batch");

    let concurrent: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = photos
            .iter()
            .enumerate()
            .map(|(i, img)| {
                let analyze = &analyze;
                let engine = &engine;
                s.spawn(move || engine.serve(i as u64 % 2, || analyze(img)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let after = engine.batch_stats();
    // Three networks (SFace, two liveness models), six faces each.
    assert_eq!(after.inputs - before.inputs, 18);
    assert!(
        after.batches - before.batches < 18,
        "no batch formed: {after:?}"
    );
    assert!(after.largest > 1, "{after:?}");
    for (alone, together) in sequential.iter().zip(&concurrent) {
        assert_eq!(alone.bbox, together.bbox);
        let d = largest_difference(
            alone.embedding.as_ref().unwrap(),
            together.embedding.as_ref().unwrap(),
        );
        assert!(d <= 1e-5, "embedding differs by {d}");
        let (a, b) = (alone.spoof.unwrap(), together.spoof.unwrap());
        assert!((a.real_probability - b.real_probability).abs() <= 1e-5);
    }
}
