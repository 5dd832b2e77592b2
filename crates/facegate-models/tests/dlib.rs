//! dlib conversion checked against real dlib output
//! (`tests/data/dlib_reference.json`, written by `tools/dlib-reference`).
//!
//! Needs the dlib sources under `$FACEGATE_MODEL_DIR/sources/` (default
//! `<workspace>/target/test-models`) and the test photos under
//! `$FACEGATE_TEST_ASSETS` (default `<workspace>/target/test-assets`,
//! filled by `scripts/fetch-test-assets.sh`). Missing files fail loudly.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use facegate_models::dlib::{convert_resnet, read_shape_predictor, DlibError};
use facegate_onnx::Message;
use facegate_vision::align::{extract_image_chip, get_face_chip_details, rgb_nchw};
use facegate_vision::landmarks::{Rect, ShapePredictor};
use image::RgbImage;
use serde_json::Value;
use tract_onnx::prelude::*;

const REFERENCE: &str = include_str!("data/dlib_reference.json");
/// Required agreement of descriptors with dlib.
const EMBEDDING_TOLERANCE: f32 = 1e-4;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_source(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("FACEGATE_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-models"));
    let path = dir.join("sources").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "missing dlib model source {} ({e}): run the test-asset/model setup \
             (face-recognition-models==0.3.0 files into $FACEGATE_MODEL_DIR/sources)",
            path.display()
        )
    })
}

fn assets_dir() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-assets"))
}

fn test_image(name: &str) -> RgbImage {
    let path = assets_dir().join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "missing test asset {} ({e}): run the test-asset setup (scripts/fetch-test-assets.sh)",
            path.display()
        )
    });
    image::load_from_memory(&bytes)
        .unwrap_or_else(|e| panic!("cannot decode {}: {e}", path.display()))
        .to_rgb8()
}

fn reference() -> Value {
    serde_json::from_str(REFERENCE).expect("dlib_reference.json parses")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// FNV-1a over RGB bytes, as tools/dlib-reference computes it.
fn fnv(img: &RgbImage) -> String {
    let mut h: u64 = 1469598103934665603;
    for &b in img.as_raw() {
        h ^= u64::from(b);
        h = h.wrapping_mul(1099511628211);
    }
    format!("{h:016x}")
}

/// The synthetic input of tools/dlib-reference.
fn synthetic() -> RgbImage {
    RgbImage::from_fn(150, 150, |x, y| {
        image::Rgb([
            ((y * 7 + x * 3) % 256) as u8,
            ((y * 2 + x * 5 + 50) % 256) as u8,
            ((y * x / 3) % 256) as u8,
        ])
    })
}

type Runnable = Arc<TypedRunnableModel>;

fn resnet_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let src = model_source("dlib_face_recognition_resnet_model_v1.dat");
        let t = Instant::now();
        let model = convert_resnet(&src).expect("conversion succeeds");
        let convert_ms = t.elapsed().as_secs_f64() * 1e3;
        let graph = model.graph.as_ref().expect("graph");
        let ops: std::collections::BTreeMap<&str, usize> =
            graph.node.iter().fold(Default::default(), |mut m, n| {
                *m.entry(n.op_type.as_str()).or_default() += 1;
                m
            });
        let bytes = model.encode_to_vec();
        eprintln!(
            "converted dlib ResNet in {convert_ms:.0} ms: {} nodes {ops:?}, {} initializers, {} bytes ONNX",
            graph.node.len(),
            graph.initializer.len(),
            bytes.len()
        );
        bytes
    })
}

fn runnable() -> &'static Runnable {
    static MODEL: OnceLock<Runnable> = OnceLock::new();
    MODEL.get_or_init(|| {
        let bytes = resnet_bytes();
        tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .expect("tract reads the ONNX")
            .with_input_fact(0, f32::fact([1, 3, 150, 150]).into())
            .expect("input fact")
            .into_optimized()
            .expect("tract optimizes")
            .into_runnable()
            .expect("runnable")
    })
}

fn embed(img: &RgbImage) -> Vec<f32> {
    let input =
        tract_ndarray::Array4::from_shape_vec((1, 3, 150, 150), rgb_nchw(img)).expect("shape");
    let out = runnable()
        .run(tvec!(Tensor::from(input).into_tvalue()))
        .expect("inference");
    out[0]
        .to_plain_array_view::<f32>()
        .expect("f32 output")
        .iter()
        .copied()
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn resnet_onnx_contract() {
    let model = facegate_onnx::decode(resnet_bytes()).expect("decodes");
    let graph = model.graph.expect("graph");
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name, "input");
    assert_eq!(graph.output.len(), 1);
    assert_eq!(graph.output[0].name, "embedding");
}

#[test]
fn resnet_matches_dlib_on_synthetic_input() {
    let reference = reference();
    let syn = synthetic();
    assert_eq!(fnv(&syn), reference["synthetic"]["hash"].as_str().unwrap());
    let want = floats(&reference["synthetic"]["embedding"]);
    let t = Instant::now();
    let got = embed(&syn);
    eprintln!(
        "first inference (incl. tract load/optimise) {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let _ = embed(&syn);
    eprintln!("inference {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let diff = max_abs_diff(&got, &want);
    eprintln!("synthetic input: max |onnx - dlib| = {diff:e}");
    assert!(diff <= EMBEDDING_TOLERANCE, "max diff {diff}");
}

/// Every face dlib found, with the image it came from.
fn faces() -> Vec<(RgbImage, Value)> {
    let reference = reference();
    let mut out = Vec::new();
    for entry in reference["images"].as_array().unwrap() {
        let img = test_image(entry["file"].as_str().unwrap());
        assert_eq!(
            fnv(&img),
            entry["hash"].as_str().unwrap(),
            "{}: decoded pixels differ from dlib's decoder",
            entry["file"]
        );
        for face in entry["faces"].as_array().unwrap() {
            out.push((img.clone(), face.clone()));
        }
    }
    assert_eq!(
        out.len(),
        7,
        "reference has 6 faces in t1.jpg and 1 in Tom_Hanks_54745.png"
    );
    out
}

fn rect(face: &Value) -> Rect {
    let r = floats(&face["rect"]);
    Rect {
        left: r[0],
        top: r[1],
        right: r[2],
        bottom: r[3],
    }
}

fn dlib_parts(face: &Value) -> Vec<(f32, f32)> {
    face["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let p = floats(p);
            (p[0], p[1])
        })
        .collect()
}

#[test]
fn shape_predictor_matches_dlib() {
    let sp = read_shape_predictor(&model_source("shape_predictor_5_face_landmarks.dat"))
        .expect("parses");
    assert_eq!(sp.num_parts(), 5);
    let mut worst = 0.0f64;
    for (img, face) in faces() {
        let r = rect(&face);
        let got = sp.predict_f64(&img, r);
        for (g, want) in got.iter().zip(face["parts_f"].as_array().unwrap()) {
            let w = [want[0].as_f64().unwrap(), want[1].as_f64().unwrap()];
            worst = worst.max((g.0 - w[0]).abs()).max((g.1 - w[1]).abs());
        }
        let rounded: Vec<(f32, f32)> = sp
            .predict_rounded(&img, r)
            .into_iter()
            .map(|(x, y)| (x as f32, y as f32))
            .collect();
        assert_eq!(rounded, dlib_parts(&face), "integer landmarks for {r:?}");
    }
    eprintln!("landmarks: max |rust - dlib| = {worst:e} px");
    assert!(worst <= 1e-3, "landmarks differ by {worst} px");
}

#[test]
fn chips_and_descriptors_match_dlib() {
    let mut worst_embedding = 0.0f32;
    let mut mismatched_pixels = 0usize;
    let mut max_pixel_diff = 0i32;
    for (img, face) in faces() {
        let details = get_face_chip_details(&dlib_parts(&face), 150, 0.25).expect("5 points");
        assert!(!details.needs_pyramid());
        let want_rect = floats(&face["chip_rect"]);
        let got_rect = [
            details.rect.left,
            details.rect.top,
            details.rect.right,
            details.rect.bottom,
        ];
        for (g, w) in got_rect.iter().zip(&want_rect) {
            assert!(
                (*g as f32 - w).abs() < 1e-3,
                "chip rect {got_rect:?} vs {want_rect:?}"
            );
        }
        let angle = face["chip_angle"].as_f64().unwrap();
        assert!((details.angle - angle).abs() < 1e-9);
        let chip = extract_image_chip(&img, &details);
        for s in face["chip_samples"].as_array().unwrap() {
            let s: Vec<i64> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let p = chip.get_pixel(s[1] as u32, s[0] as u32);
            for k in 0..3 {
                let d = (i32::from(p[k]) - s[2 + k] as i32).abs();
                max_pixel_diff = max_pixel_diff.max(d);
                mismatched_pixels += usize::from(d != 0);
            }
        }
        let chip_exact = fnv(&chip) == face["chip_hash"].as_str().unwrap();
        let got = embed(&chip);
        let diff = max_abs_diff(&got, &floats(&face["embedding"]));
        eprintln!(
            "face {:?}: chip identical to dlib: {chip_exact}, descriptor max diff {diff:e}",
            rect(&face)
        );
        worst_embedding = worst_embedding.max(diff);
    }
    eprintln!(
        "chips: {mismatched_pixels} sampled channel values differ (max {max_pixel_diff}); \
         descriptors: max |onnx - dlib| = {worst_embedding:e}"
    );
    assert!(
        max_pixel_diff <= 1,
        "chip pixels differ by {max_pixel_diff}"
    );
    assert!(
        worst_embedding <= EMBEDDING_TOLERANCE,
        "descriptor diff {worst_embedding}"
    );
}

#[test]
fn shape_predictor_round_trips_through_facegate_format() {
    let src = model_source("shape_predictor_5_face_landmarks.dat");
    let sp = read_shape_predictor(&src).expect("parses");
    let bytes = sp.to_bytes();
    eprintln!(
        "shape predictor: dlib {} bytes → facegate {} bytes",
        src.len(),
        bytes.len()
    );
    assert_eq!(ShapePredictor::from_bytes(&bytes).expect("reads back"), sp);
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn corrupt_dlib_files_are_typed_errors() {
    let sp = model_source("shape_predictor_5_face_landmarks.dat");
    let net = model_source("dlib_face_recognition_resnet_model_v1.dat");
    for cut in [0, 1, 2, 7, 100, 4097, sp.len() / 3, sp.len() - 1] {
        let e = read_shape_predictor(&sp[..cut]).expect_err("truncated shape predictor");
        assert!(
            matches!(
                e,
                DlibError::UnexpectedEof { .. } | DlibError::TooLarge { .. }
            ),
            "cut {cut}: {e}"
        );
    }
    for cut in [0, 1, 5, 64, 300, 10_000, net.len() / 2, net.len() - 1] {
        let e = convert_resnet(&net[..cut]).expect_err("truncated network");
        assert!(
            matches!(
                e,
                DlibError::UnexpectedEof { .. } | DlibError::TooLarge { .. }
            ),
            "cut {cut}: {e}"
        );
    }
    // Flipped bytes anywhere in the headers: an error or (for weight
    // bytes) a successful parse, never a panic.
    for i in (0..4096).step_by(37) {
        let mut bad = sp.clone();
        bad[i] ^= 0xa5;
        let _ = read_shape_predictor(&bad);
        let mut bad = net[..net.len().min(1 << 16)].to_vec();
        bad[i] ^= 0x5a;
        assert!(convert_resnet(&bad).is_err());
    }
    // Flips spread over the whole file (trees, leaves, anchors, deltas), in
    // dlib's format and in facegate's.
    let ours = read_shape_predictor(&sp).unwrap().to_bytes();
    for k in 0..24usize {
        let mut bad = sp.clone();
        let i = k * (sp.len() / 24) + 3;
        bad[i] ^= 0xff;
        let _ = read_shape_predictor(&bad);
        let mut bad = ours.clone();
        let i = k * (ours.len() / 24) + 5;
        bad[i] ^= 0xff;
        let _ = ShapePredictor::from_bytes(&bad);
        assert!(ShapePredictor::from_bytes(&ours[..i]).is_err());
    }
    // Trailing garbage is rejected.
    let mut long = sp.clone();
    long.push(0);
    assert!(matches!(
        read_shape_predictor(&long),
        Err(DlibError::TrailingBytes(1))
    ));
    for seed in 0..200 {
        let data = noise(seed, 64 + (seed as usize * 97) % 4000);
        assert!(read_shape_predictor(&data).is_err());
        assert!(convert_resnet(&data).is_err());
        assert!(ShapePredictor::from_bytes(&data).is_err());
    }
}

/// Writes the test photos as decoded by the `image` crate to
/// `<assets>/decoded/<name>.png`, the lossless input of tools/dlib-reference
/// (libjpeg and the `image` crate's JPEG decoder differ by a few levels, and
/// the reference must describe the pixels these tests see).
#[test]
#[ignore = "helper for regenerating tests/data/dlib_reference.json"]
fn export_decoded_test_images() {
    let out = assets_dir().join("decoded");
    std::fs::create_dir_all(&out).unwrap();
    for name in ["t1.jpg", "Tom_Hanks_54745.png"] {
        let path = out.join(format!("{name}.png"));
        test_image(name).save(&path).unwrap();
        eprintln!("wrote {}", path.display());
    }
}
