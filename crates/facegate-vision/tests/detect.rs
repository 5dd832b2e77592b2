mod common;

use facegate_vision::detect::{Detector, DetectorOptions};

#[test]
fn finds_all_six_faces_of_t1_with_ordered_landmarks_on_both_runtimes() {
    let image = common::load_rgb("t1.jpg");
    let onnx = common::source("face_detection_yunet_2023mar.onnx");
    let mut per_runtime = Vec::new();
    for runtime in common::runtimes() {
        let detector = Detector::load(&runtime, &onnx, DetectorOptions::default()).unwrap();
        let faces = detector.detect(&image).unwrap();
        println!("{:?}: {} faces", runtime.backend(), faces.len());
        for f in &faces {
            println!("  {:?} score {:.4}", f.bbox, f.score);
        }
        assert_eq!(faces.len(), 6, "t1.jpg has six people");
        for pair in faces.windows(2) {
            assert!(pair[0].bbox.area() >= pair[1].bbox.area(), "largest first");
        }
        for f in &faces {
            assert!((0.0..=1.0).contains(&f.score) && f.score > 0.6);
            let lm = f.landmarks;
            for p in lm.as_array() {
                assert!(f.bbox.contains(p), "landmark {p:?} outside {:?}", f.bbox);
            }
            // Anatomical order in an upright photo: eyes above nose above lips.
            assert!(lm.left_eye.x < lm.right_eye.x && lm.left_lip.x < lm.right_lip.x);
            assert!(lm.left_eye.y < lm.nose.y && lm.right_eye.y < lm.nose.y);
            assert!(lm.nose.y < lm.left_lip.y && lm.nose.y < lm.right_lip.y);
            assert!(lm.nose.x > lm.left_eye.x && lm.nose.x < lm.right_eye.x);
        }
        per_runtime.push(faces);
    }
    // Both runtimes agree to a fraction of a pixel.
    for (a, b) in per_runtime[0].iter().zip(&per_runtime[1]) {
        assert!((a.bbox.x0 - b.bbox.x0).abs() < 0.5 && (a.bbox.y1 - b.bbox.y1).abs() < 0.5);
        assert!((a.score - b.score).abs() < 1e-3);
    }
}

#[test]
fn blank_image_has_no_faces() {
    let runtime = facegate_vision::runtime::Runtime::tract();
    let onnx = common::source("face_detection_yunet_2023mar.onnx");
    let detector = Detector::load(&runtime, &onnx, DetectorOptions::default()).unwrap();
    let blank = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    assert!(detector.detect(&blank).unwrap().is_empty());
}

#[test]
fn the_fitted_canvas_finds_what_the_full_canvas_finds() {
    let t1 = common::load_rgb("t1.jpg");
    let crop = image::imageops::crop_imm(&t1, t1.width() - 640, 0, 640, 480).to_image();
    let small = image::imageops::resize(&t1, 400, 277, image::imageops::FilterType::Triangle);
    let orl: Vec<image::RgbImage> = [(1, 1), (7, 3), (23, 5)]
        .into_iter()
        .map(|(p, s)| {
            image::load_from_memory(&facegate_test_support::paths::orl(p, s))
                .unwrap()
                .to_rgb8()
        })
        .collect();
    let onnx = common::source("face_detection_yunet_2023mar.onnx");
    for runtime in common::runtimes() {
        let load = |canvas_margin| {
            let options = DetectorOptions {
                canvas_margin,
                ..DetectorOptions::default()
            };
            Detector::load(&runtime, &onnx, options).unwrap()
        };
        let (full, fitted) = (load(None), load(Some(128)));
        for image in [&t1, &crop, &small].into_iter().chain(&orl) {
            let (a, b) = (full.detect(image).unwrap(), fitted.detect(image).unwrap());
            assert_eq!(a.len(), b.len(), "{:?}", image.dimensions());
            assert!(!a.is_empty());
            for (x, y) in a.iter().zip(&b) {
                let corners = [
                    (x.bbox.x0, y.bbox.x0),
                    (x.bbox.y0, y.bbox.y0),
                    (x.bbox.x1, y.bbox.x1),
                    (x.bbox.y1, y.bbox.y1),
                ];
                let points = x
                    .landmarks
                    .as_array()
                    .into_iter()
                    .zip(y.landmarks.as_array());
                let moved = corners
                    .into_iter()
                    .chain(points.flat_map(|(p, q)| [(p.x, q.x), (p.y, q.y)]))
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                assert!(moved < 1.0, "{:?}: moved {moved} px", image.dimensions());
                assert!((x.score - y.score).abs() < 0.01);
            }
        }
    }
}

#[test]
fn a_canvas_graph_declares_its_size_and_keeps_the_weights() {
    let onnx = common::source("face_detection_yunet_2023mar.onnx");
    let graph = facegate_vision::detect::graph_for_canvas(&onnx, 384, 256).unwrap();
    let runtime = facegate_vision::runtime::Runtime::tract();
    let model = runtime
        .load("yunet-384x256", &graph, [1, 3, 256, 384])
        .unwrap();
    let out = model.run(&vec![0.0; 3 * 256 * 384]).unwrap();
    // cls_8 has one value per cell of the stride-8 grid.
    let cls8 = model.output_index("cls_8").unwrap();
    assert_eq!(out[cls8].data.len(), (384 / 8) * (256 / 8));
    // Everything but the declared shapes is the published graph's.
    assert!(graph.len() > onnx.len() * 9 / 10);
}
