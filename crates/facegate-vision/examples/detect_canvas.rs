//! YuNet on the full 640×640 canvas against the image-sized canvas, in one
//! run: milliseconds per image on each runtime, and how far the smaller
//! canvas moves detections (face count, box corners, landmarks, score)
//! from the full canvas's. Numbers in docs/benchmarks.md.
//!
//! `cargo run --release -p facegate-vision --example detect_canvas -- [--images N]`
//! (models from FACEGATE_MODEL_DIR or target/test-models; photos: the first
//! N LFW images of ../shared/datasets/lfw_dev, t1.jpg and a 640×480 crop).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use facegate_vision::detect::{Detection, Detector, DetectorOptions};
use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind, ORT_LIBRARY_NAME};
use image::RgbImage;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lfw_images(n: usize) -> Vec<PathBuf> {
    let dir = root().join("../shared/datasets/lfw_dev/images");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    people
        .iter()
        .flat_map(|p| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.into_iter().take(1)
        })
        .take(n)
        .collect()
}

/// Largest difference between matching detections, in pixels: each face
/// of `a` against the face of `b` it overlaps most (a count mismatch is
/// reported separately).
fn drift(a: &[Detection], b: &[Detection]) -> (f32, f32, f32) {
    let (mut boxes, mut points, mut score) = (0.0f32, 0.0f32, 0.0f32);
    for x in a {
        let Some(y) = b
            .iter()
            .max_by(|p, q| x.bbox.iou(&p.bbox).total_cmp(&x.bbox.iou(&q.bbox)))
        else {
            continue;
        };
        for (p, q) in [
            (x.bbox.x0, y.bbox.x0),
            (x.bbox.y0, y.bbox.y0),
            (x.bbox.x1, y.bbox.x1),
            (x.bbox.y1, y.bbox.y1),
        ] {
            boxes = boxes.max((p - q).abs());
        }
        for (p, q) in x.landmarks.as_array().iter().zip(y.landmarks.as_array()) {
            points = points.max((p.x - q.x).abs().max((p.y - q.y).abs()));
        }
        score = score.max((x.score - y.score).abs());
    }
    (boxes, points, score)
}

struct Row {
    images: usize,
    millis: f64,
    count_mismatches: usize,
    /// Images where some face moved more than 1 px.
    moved: usize,
    box_px: f32,
    landmark_px: f32,
    score: f32,
}

fn run(
    detector: &Detector,
    images: &[RgbImage],
    reference: Option<&[Vec<Detection>]>,
) -> (Row, Vec<Vec<Detection>>) {
    // One untimed pass loads every canvas size.
    let found: Vec<Vec<Detection>> = images.iter().map(|i| detector.detect(i).unwrap()).collect();
    // At least 40 timed detections, so a one-photo set is not one sample.
    let rounds = 40usize.div_ceil(images.len());
    let started = Instant::now();
    for _ in 0..rounds {
        for image in images {
            std::hint::black_box(detector.detect(image).unwrap());
        }
    }
    let elapsed: Duration = started.elapsed();
    let mut row = Row {
        images: images.len(),
        millis: elapsed.as_secs_f64() * 1000.0 / (rounds * images.len()) as f64,
        count_mismatches: 0,
        moved: 0,
        box_px: 0.0,
        landmark_px: 0.0,
        score: 0.0,
    };
    if let Some(reference) = reference {
        for (a, b) in found.iter().zip(reference) {
            if a.len() != b.len() {
                row.count_mismatches += 1;
            }
            let (bx, lm, sc) = drift(a, b);
            if bx.max(lm) > 1.0 {
                row.moved += 1;
            }
            row.box_px = row.box_px.max(bx);
            row.landmark_px = row.landmark_px.max(lm);
            row.score = row.score.max(sc);
        }
    }
    (row, found)
}

fn main() {
    let mut count = 300;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--images" => {
                count = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--images N")
            }
            other => panic!("unknown argument {other}"),
        }
    }
    let models = std::env::var_os("FACEGATE_MODEL_DIR")
        .map_or_else(|| root().join("target/test-models"), PathBuf::from);
    let onnx = std::fs::read(models.join("face_detection_yunet_2023mar.onnx")).expect("YuNet");
    let assets = std::env::var_os("FACEGATE_TEST_ASSETS")
        .map_or_else(|| root().join("target/test-assets"), PathBuf::from);
    let t1 = image::open(assets.join("t1.jpg"))
        .expect("t1.jpg")
        .to_rgb8();
    let crop =
        image::imageops::crop_imm(&t1, t1.width().saturating_sub(640), 0, 640, 480).to_image();
    let sets: Vec<(String, Vec<RgbImage>)> = vec![
        (
            format!("LFW 250×250 ({count})"),
            lfw_images(count)
                .iter()
                .map(|p| image::open(p).unwrap().to_rgb8())
                .collect(),
        ),
        ("640×480 crop of t1.jpg".into(), vec![crop]),
        (format!("t1.jpg {}×{}", t1.width(), t1.height()), vec![t1]),
    ];
    let ort = RuntimeConfig {
        kind: RuntimeKind::OnnxRuntime,
        ort_library: Some(models.join("sources").join(ORT_LIBRARY_NAME)),
        sessions_per_model: 1,
        lone_run_threads: 1,
    };
    let runtimes = [
        ("onnxruntime", Runtime::new(&ort).expect("ONNX Runtime")),
        ("tract", Runtime::tract()),
    ];
    println!("| runtime | images | canvas | ms/image | speed-up | face-count mismatches | images with a face moved > 1 px | max box Δ px | max landmark Δ px | max score Δ |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, runtime) in &runtimes {
        for (label, images) in &sets {
            let detector = |margin| {
                let options = DetectorOptions {
                    canvas_margin: margin,
                    ..DetectorOptions::default()
                };
                Detector::load(runtime, &onnx, options).unwrap()
            };
            let (full, reference) = run(&detector(None), images, None);
            println!(
                "| {name} | {label} | 640×640 | {:.2} | 1.00 | – | – | – | – | – |",
                full.millis
            );
            for margin in [128, 64, 0] {
                let (row, _) = run(&detector(Some(margin)), images, Some(&reference));
                println!(
                    "| {name} | {label} | fitted + {margin} px | {:.2} | {:.2} | {}/{} | {}/{} | {:.2} | {:.2} | {:.4} |",
                    row.millis,
                    full.millis / row.millis,
                    row.count_mismatches,
                    row.images,
                    row.moved,
                    row.images,
                    row.box_px,
                    row.landmark_px,
                    row.score
                );
            }
        }
    }
}
