//! The vision subcommands: `models install`, `detect`, `compare`. They run
//! the service's own analysis on local files, so they find what the API
//! would find; faces print as facegate-core's JSON (geometry in fractions
//! of the image, landmarks ordered by x as the API orders them).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use facegate_core::{cosine_similarity, Face, SpoofCondition};
use facegate_models::provision::{self, InstallOptions, InstallOutcome};
use facegate_server::analyzer::FaceAnalyzer;
use facegate_server::config::Config;
use facegate_server::service::{analyze_offline, FaceOptions};
use serde_json::json;

type CmdResult = Result<(), Box<dyn std::error::Error>>;

/// `facegate models install [--dir DIR] [--mirror DIR_OR_URL] [--gpu]`.
pub fn models_install(dir: &Path, mirror: Option<String>, gpu: bool) -> CmdResult {
    let options = InstallOptions {
        dir: dir.to_path_buf(),
        mirror,
    };
    let progress = &mut |l: &str| eprintln!("models: {l}");
    let outcome = |o| match o {
        InstallOutcome::UpToDate(m) => ("already installed", m),
        InstallOutcome::Installed(m) => ("installed", m),
    };
    let (verb, manifest) = outcome(provision::install(&options, progress)?);
    eprintln!(
        "models: {} models {verb} in {}",
        manifest.models.len(),
        dir.display()
    );
    if gpu {
        let (verb, manifest) = outcome(provision::install_gpu(&options, progress)?);
        eprintln!(
            "models: GPU runtime ({} libraries) {verb} in {}; use it with runtime = \"cuda\"",
            manifest.models.len(),
            provision::gpu_runtime_dir(dir).display()
        );
    }
    Ok(())
}

/// The engine with the configured default embedding model.
fn load_engine(config: &Config) -> Result<Arc<dyn FaceAnalyzer>, Box<dyn std::error::Error>> {
    Ok(facegate_server::engine::load_engine(
        &config.model_dir(),
        config.runtime,
        &[config.default_model],
        config.engine_tuning(),
    )?)
}

fn load_image(path: &Path) -> Result<image::RgbImage, Box<dyn std::error::Error>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    facegate_image::decode(&bytes, &facegate_image::Limits::default())
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// A face as the CLI prints it: landmarks in the API's by-x order.
fn printable(mut face: Face) -> Face {
    face.landmarks = face.landmarks.ordered_by_x();
    face
}

/// `facegate detect IMAGE... [--spoofing] [--spoofing-condition C]`: one
/// JSON line per image with `faceCount` and `faces`.
pub fn detect(config: &Config, images: &[PathBuf], spoofing: Option<SpoofCondition>) -> CmdResult {
    let engine = load_engine(config)?;
    let options = FaceOptions {
        spoofing,
        ..FaceOptions::default()
    };
    let mut failed = false;
    for path in images {
        let result = load_image(path)
            .and_then(|img| Ok(analyze_offline(engine.as_ref(), &img, options, None)?));
        let line = match result {
            Ok(faces) => {
                let faces: Vec<Face> = faces.into_iter().map(printable).collect();
                json!({"image": path, "faceCount": faces.len(), "faces": faces})
            }
            Err(e) => {
                failed = true;
                json!({"image": path, "error": e.to_string()})
            }
        };
        println!("{line}");
    }
    if failed {
        Err("some images could not be analysed".into())
    } else {
        Ok(())
    }
}

/// `facegate compare A B`: the similarity (0–100) of A's largest face to
/// every face of B, largest first.
pub fn compare(config: &Config, a: &Path, b: &Path) -> CmdResult {
    let engine = load_engine(config)?;
    let model = config.default_model.version();
    let options = FaceOptions {
        orientation: false,
        mask: false,
        spoofing: None,
        ..FaceOptions::default()
    };
    let source = analyze_offline(engine.as_ref(), &load_image(a)?, options, Some(model))?;
    let source = source
        .into_iter()
        .next()
        .and_then(|f| f.embedding)
        .ok_or_else(|| format!("{}: no face found", a.display()))?;
    let targets = analyze_offline(engine.as_ref(), &load_image(b)?, options, Some(model))?;
    let rows: Vec<_> = targets
        .into_iter()
        .filter_map(|face| {
            let cosine = cosine_similarity(&source, face.embedding.as_deref()?)?;
            Some(json!({
                "similarity": engine.similarity(model, cosine),
                "face": printable(face),
            }))
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&json!({"faces": rows}))?);
    Ok(())
}
