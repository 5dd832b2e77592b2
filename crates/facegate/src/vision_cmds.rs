//! The vision subcommands: `models install`, `detect`, `compare`.

use std::path::{Path, PathBuf};

use facegate_models::provision::{self, InstallOptions, InstallOutcome};
use facegate_vision::calibration;
use facegate_vision::pipeline::FaceAnalysis;
use facegate_vision::pipeline::{AnalyzeOptions, Engine, EngineOptions};
use facegate_vision::runtime::RuntimeKind;
use facegate_vision::spoof::SpoofCondition;
use serde_json::{json, Value};

type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// `facegate models install [--dir DIR] [--mirror DIR_OR_URL]`.
pub fn models_install(dir: &Path, mirror: Option<String>) -> CmdResult {
    let options = InstallOptions {
        dir: dir.to_path_buf(),
        mirror,
    };
    let outcome = provision::install(&options, &mut |line| eprintln!("models: {line}"))?;
    match outcome {
        InstallOutcome::UpToDate(m) => {
            eprintln!(
                "models: {} models already installed in {}",
                m.models.len(),
                dir.display()
            )
        }
        InstallOutcome::Installed(m) => {
            eprintln!(
                "models: installed {} models in {}",
                m.models.len(),
                dir.display()
            )
        }
    }
    Ok(())
}

fn load_engine(
    model_dir: &Path,
    runtime: RuntimeKind,
) -> Result<Engine, Box<dyn std::error::Error>> {
    Ok(Engine::load(&EngineOptions::new(model_dir, runtime))?)
}

fn load_image(path: &Path) -> Result<image::RgbImage, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    facegate_image::decode(&bytes, &facegate_image::Limits::default())
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// `facegate detect IMAGE... [--spoofing] [--spoofing-condition C]`: prints
/// one JSON line per image with the API's `faceDetails`.
pub fn detect(
    model_dir: &Path,
    runtime: RuntimeKind,
    images: &[PathBuf],
    spoofing: Option<SpoofCondition>,
) -> CmdResult {
    let engine = load_engine(model_dir, runtime)?;
    let options = AnalyzeOptions {
        spoofing,
        ..AnalyzeOptions::default()
    };
    let mut failed = false;
    for path in images {
        let result = load_image(path).and_then(|img| {
            let faces = engine.analyze(&img, &options)?;
            Ok(face_details(&faces, img.dimensions()))
        });
        match result {
            Ok(details) => println!(
                "{}",
                serde_json::json!({"image": path, "faceDetailCount": details.len(), "faceDetails": details})
            ),
            Err(e) => {
                failed = true;
                println!(
                    "{}",
                    serde_json::json!({"image": path, "error": e.to_string()})
                );
            }
        }
    }
    if failed {
        Err("some images could not be analysed".into())
    } else {
        Ok(())
    }
}

/// `facegate compare A B`: similarity (0–100) of A's largest face to every
/// face of B, largest first.
pub fn compare(model_dir: &Path, runtime: RuntimeKind, a: &Path, b: &Path) -> CmdResult {
    let engine = load_engine(model_dir, runtime)?;
    let options = AnalyzeOptions {
        embedding: true,
        orientation: false,
        mask: false,
        spoofing: None,
    };
    let (img_a, img_b) = (load_image(a)?, load_image(b)?);
    let source = engine.analyze(&img_a, &options)?;
    let source = source
        .first()
        .and_then(|f| f.embedding.clone())
        .ok_or_else(|| format!("{}: no face found", a.display()))?;
    let targets = engine.analyze(&img_b, &options)?;
    let details = face_details(&targets, img_b.dimensions());
    let rows: Vec<_> = targets
        .iter()
        .zip(details)
        .filter_map(|(t, detail)| {
            let e = t.embedding.as_ref()?;
            let cosine: f32 = source.iter().zip(e).map(|(x, y)| x * y).sum();
            Some(serde_json::json!({
                "similarity": calibration::similarity(cosine),
                "bbox": detail["bbox"],
            }))
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({"faces": rows}))?
    );
    Ok(())
}

/// The API's `faceDetails` entries: geometry as fractions of the image size,
/// and only the fields whose stage ran.
fn face_details(faces: &[FaceAnalysis], (width, height): (u32, u32)) -> Vec<Value> {
    let (w, h) = (width as f32, height as f32);
    let point = |p: facegate_vision::geometry::Point| json!({"x": p.x / w, "y": p.y / h});
    faces
        .iter()
        .map(|f| {
            let lm = f.landmarks.ordered_by_x();
            let mut detail = json!({
                "bbox": {"x0": f.bbox.x0 / w, "y0": f.bbox.y0 / h, "x1": f.bbox.x1 / w, "y1": f.bbox.y1 / h},
                "landmarks": [
                    {"type": "leftEye", "x": point(lm.left_eye)["x"], "y": point(lm.left_eye)["y"]},
                    {"type": "rightEye", "x": point(lm.right_eye)["x"], "y": point(lm.right_eye)["y"]},
                    {"type": "nose", "x": point(lm.nose)["x"], "y": point(lm.nose)["y"]},
                    {"type": "leftLip", "x": point(lm.left_lip)["x"], "y": point(lm.left_lip)["y"]},
                    {"type": "rightLip", "x": point(lm.right_lip)["x"], "y": point(lm.right_lip)["y"]},
                ],
                "confidence": f.confidence,
            });
            if let Some(p) = f.pose {
                detail["orientation"] = json!({"x": p.yaw, "y": p.pitch, "z": p.roll});
            }
            if let Some(m) = f.mask {
                detail["mask"] = json!(m);
            }
            if let Some(s) = f.spoof {
                detail["spoofing"] = json!(s.is_spoof);
            }
            detail
        })
        .collect()
}
