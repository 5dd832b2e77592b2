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
