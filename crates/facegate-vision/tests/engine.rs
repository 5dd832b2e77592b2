//! The whole pipeline on real photos with the real, provisioned models.

mod common;

use std::sync::OnceLock;

use facegate_vision::calibration::{cosine, similarity};
use facegate_vision::pipeline::{AnalyzeOptions, Engine, FaceAnalysis};
use facegate_vision::runtime::Runtime;
use facegate_vision::spoof::SpoofCondition;
use image::RgbImage;

const ALL: AnalyzeOptions = AnalyzeOptions {
    embedding: true,
    orientation: true,
    mask: true,
    spoofing: Some(SpoofCondition::Balanced),
};

fn load(runtime: Runtime) -> Engine {
    Engine::load_on(runtime, &common::model_dir(), Default::default()).expect("models provisioned")
}

/// The ONNX Runtime engine, shared by the tests of this binary.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| load(common::runtimes().remove(0)))
}

fn embeddings(faces: &[FaceAnalysis]) -> Vec<Vec<f32>> {
    faces.iter().map(|f| f.embedding.clone().unwrap()).collect()
}

/// Mirror image, JPEG re-compression at quality 70, half size.
fn altered_copy(img: &RgbImage) -> RgbImage {
    let flipped = image::imageops::flip_horizontal(img);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 70)
        .encode_image(&flipped)
        .unwrap();
    let decoded = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let (w, h) = decoded.dimensions();
    image::imageops::resize(
        &decoded,
        w / 2,
        h / 2,
        image::imageops::FilterType::Triangle,
    )
}

#[test]
fn each_t1_face_matches_its_altered_copy_and_no_other_person() {
    let img = common::load_rgb("t1.jpg");
    let original = engine().analyze(&img, &ALL).unwrap();
    assert_eq!(original.len(), 6);
    let copy = altered_copy(&img);
    let altered = engine().analyze(&copy, &ALL).unwrap();
    assert_eq!(altered.len(), 6);
    let w = img.width() as f32;
    for (i, face) in original.iter().enumerate() {
        // Where this face went: mirrored, then halved.
        let (cx, cy) = face.bbox.center();
        let (ex, ey) = ((w - cx) / 2.0, cy / 2.0);
        let twin = altered
            .iter()
            .position(|a| {
                let (ax, ay) = a.bbox.center();
                (ax - ex).abs() < 10.0 && (ay - ey).abs() < 10.0
            })
            .expect("the face is found in the copy");
        let e = face.embedding.as_ref().unwrap();
        for (j, other) in altered.iter().enumerate() {
            let s = similarity(cosine(e, other.embedding.as_ref().unwrap()));
            println!("t1 face {i} vs copy face {j}: similarity {s:.1}");
            if j == twin {
                assert!(s >= 90.0, "face {i} vs its own copy: {s}");
            } else {
                assert!(s < 80.0, "face {i} vs another person: {s}");
            }
        }
    }
}

#[test]
fn both_runtimes_give_the_same_embeddings() {
    let img = common::load_rgb("t1.jpg");
    let tract = load(Runtime::tract());
    let a = embeddings(&engine().analyze(&img, &ALL).unwrap());
    let b = embeddings(&tract.analyze(&img, &ALL).unwrap());
    let max_diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    println!("max |onnxruntime - tract| over 6x128 embedding values: {max_diff:e}");
    assert!(max_diff < 2e-5, "{max_diff}");
}

#[test]
fn orl_identities_separate() {
    let orl = common::workspace_root().join("../shared/datasets/orl_faces/images");
    let options = AnalyzeOptions {
        embedding: true,
        orientation: false,
        mask: false,
        spoofing: None,
    };
    let mut people = Vec::new();
    for person in 1..=40 {
        for shot in 1..=10 {
            let path = orl.join(format!("s{person}/{shot}.png"));
            let img = image::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .to_rgb8();
            let face = engine().analyze(&img, &options).unwrap();
            let face = face.first().expect("every ORL photo has a face");
            people.push((person, face.embedding.clone().unwrap()));
        }
    }
    let (mut wins, mut pairs) = (0u64, 0u64);
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (i, a) in people.iter().enumerate() {
        for b in &people[i + 1..] {
            let c = cosine(&a.1, &b.1);
            if a.0 == b.0 {
                genuine.push(c)
            } else {
                impostor.push(c)
            }
        }
    }
    for g in &genuine {
        for m in &impostor {
            pairs += 1;
            wins += (g > m) as u64;
        }
    }
    let auc = wins as f64 / pairs as f64;
    println!(
        "ORL ROC AUC {auc:.6} over {} genuine / {} impostor pairs",
        genuine.len(),
        impostor.len()
    );
    assert!(auc > 0.999, "{auc}");
}

/// Rotates about the centre by `degrees` (clockwise on screen), bilinear,
/// grey outside.
fn rotate(img: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let (sx, sy) = (c * dx + s * dy + cx, -s * dx + c * dy + cy);
        let (x0, y0) = (sx.floor(), sy.floor());
        if x0 < 0.0 || y0 < 0.0 || x0 + 1.0 >= w as f32 || y0 + 1.0 >= h as f32 {
            return image::Rgb([128, 128, 128]);
        }
        let (fx, fy) = (sx - x0, sy - y0);
        let p = |xx: f32, yy: f32| img.get_pixel(xx as u32, yy as u32).0.map(f32::from);
        let (a, b, cc, d) = (
            p(x0, y0),
            p(x0 + 1.0, y0),
            p(x0, y0 + 1.0),
            p(x0 + 1.0, y0 + 1.0),
        );
        image::Rgb(std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = cc[k] + (d[k] - cc[k]) * fx;
            (top + (bottom - top) * fy).round() as u8
        }))
    })
}

#[test]
fn rotating_the_photo_changes_roll_by_the_rotation() {
    let img = common::load_rgb("t1.jpg");
    let base = engine().analyze(&img, &ALL).unwrap();
    let (w, h) = (img.width() as f32, img.height() as f32);
    for degrees in [-20.0f32, -10.0, 10.0, 20.0] {
        let rotated = engine().analyze(&rotate(&img, degrees), &ALL).unwrap();
        let (s, c) = degrees.to_radians().sin_cos();
        let mut deltas = Vec::new();
        for face in &base {
            // Where the face centre moved to under the rotation.
            let (fx, fy) = face.bbox.center();
            let (dx, dy) = (fx - w / 2.0, fy - h / 2.0);
            let (ex, ey) = (c * dx - s * dy + w / 2.0, s * dx + c * dy + h / 2.0);
            let Some(moved) = rotated.iter().find(|r| {
                let (rx, ry) = r.bbox.center();
                (rx - ex).abs() < 15.0 && (ry - ey).abs() < 15.0
            }) else {
                continue;
            };
            let (before, after) = (face.pose.unwrap(), moved.pose.unwrap());
            deltas.push(after.roll - before.roll);
        }
        println!("rotated {degrees}°: roll changes {deltas:.2?}");
        assert!(deltas.len() >= 3, "faces lost after rotating by {degrees}");
        for delta in deltas {
            assert!(
                (delta - degrees).abs() < 2.5,
                "rotation {degrees}: roll changed by {delta}"
            );
        }
    }
}

#[test]
fn liveness_is_a_probability_and_conditions_are_ordered() {
    let img = common::load_rgb("Tom_Hanks_54745.png");
    for condition in [
        SpoofCondition::Weak,
        SpoofCondition::Balanced,
        SpoofCondition::Strict,
    ] {
        let options = AnalyzeOptions {
            spoofing: Some(condition),
            ..ALL
        };
        let face = engine().analyze(&img, &options).unwrap().remove(0);
        let verdict = face.spoof.unwrap();
        println!(
            "{condition:?}: real probability {:.4} spoof {}",
            verdict.real_probability, verdict.is_spoof
        );
        assert!((0.0..=1.0).contains(&verdict.real_probability));
    }
    // The people of t1.jpg are live, photographed in context.
    let group = common::load_rgb("t1.jpg");
    for face in engine().analyze(&group, &ALL).unwrap() {
        let verdict = face.spoof.unwrap();
        println!("t1 face: real probability {:.4}", verdict.real_probability);
        assert!(!verdict.is_spoof, "{verdict:?}");
    }
    let crop = image::imageops::resize(&img, 224, 224, image::imageops::FilterType::Triangle);
    let aligned = engine()
        .spoof_aligned(&crop, SpoofCondition::Balanced)
        .unwrap();
    assert!((0.0..=1.0).contains(&aligned.real_probability));
}

#[test]
fn degenerate_images_never_panic() {
    for (w, h) in [(1, 1), (3, 700), (700, 2), (80, 80)] {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 13 % 256) as u8, 99])
        });
        let faces = engine().analyze(&img, &ALL).unwrap();
        assert!(faces.len() <= 20);
    }
    let mut seed = 0x9e3779b9u32;
    let noise = RgbImage::from_fn(640, 480, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
    });
    assert!(engine().analyze(&noise, &ALL).unwrap().len() <= 20);
}
