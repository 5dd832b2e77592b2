//! Locating the real photos and models the integration tests run on.
#![allow(dead_code)]

use std::path::PathBuf;

use facegate_vision::runtime::{Runtime, RuntimeConfig, RuntimeKind, ORT_LIBRARY_NAME};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| workspace_root().join(default), PathBuf::from)
}

/// A test asset (photo); panics with the fix when it is missing.
pub fn asset(name: &str) -> PathBuf {
    let path = dir_from_env("FACEGATE_TEST_ASSETS", "target/test-assets").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/fetch-test-assets.sh (or scripts/test.sh)",
        path.display()
    );
    path
}

pub fn model_dir() -> PathBuf {
    dir_from_env("FACEGATE_MODEL_DIR", "target/test-models")
}

/// Source file provisioned under `<model dir>/sources`.
pub fn source(name: &str) -> Vec<u8> {
    let path = model_dir().join("sources").join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/test.sh (it provisions the models)",
            path.display()
        )
    })
}

pub fn load_rgb(name: &str) -> image::RgbImage {
    image::open(asset(name))
        .expect("decodable test image")
        .to_rgb8()
}

/// Both runtimes; ONNX Runtime must be provisioned for the tests to pass.
pub fn runtimes() -> Vec<Runtime> {
    let lib = model_dir().join("sources").join(ORT_LIBRARY_NAME);
    let alt = model_dir().join("onnxruntime").join(ORT_LIBRARY_NAME);
    let lib = if alt.is_file() { alt } else { lib };
    assert!(
        lib.is_file(),
        "{} missing: run scripts/test.sh",
        lib.display()
    );
    // ONNX Runtime allows one environment per process: every test of the
    // binary shares the first one.
    static ORT: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    let ort = ORT.get_or_init(|| {
        Runtime::new(&RuntimeConfig {
            kind: RuntimeKind::OnnxRuntime,
            ort_library: Some(lib),
            sessions_per_model: 1,
            lone_run_threads: 1,
        })
        .expect("ONNX Runtime loads")
    });
    vec![ort.clone(), Runtime::tract()]
}

/// The shared mask/no-mask photo set (`<workspace>/../shared/datasets/masked_faces`).
pub fn masked_faces_dir() -> PathBuf {
    let dir = workspace_root().join("../shared/datasets/masked_faces");
    assert!(
        dir.join("labels.csv").is_file(),
        "{} missing: the shared datasets are not mounted",
        dir.display()
    );
    dir
}

/// One image of the mask dataset's held-out test split.
pub struct MaskRow {
    pub path: String,
    pub mask: bool,
    pub source: String,
}

/// The held-out test split of the mask dataset, by the rule of
/// `examples/train_mask.rs`: within each (source, label) stratum, images
/// ordered by FNV-1a-64 of their path, the first 20 % (rounded). Each
/// stratum's rows keep that order.
pub fn mask_test_rows() -> Vec<MaskRow> {
    let fnv = |s: &str| {
        s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let text = std::fs::read_to_string(masked_faces_dir().join("labels.csv")).unwrap();
    let mut strata: std::collections::BTreeMap<(String, bool), Vec<String>> = Default::default();
    for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        strata
            .entry((cols[2].to_string(), cols[1] == "1"))
            .or_default()
            .push(cols[0].to_string());
    }
    let mut rows = Vec::new();
    for ((source, mask), mut paths) in strata {
        paths.sort_by_key(|p| (fnv(p), p.clone()));
        let n_test = (paths.len() as f64 * 0.2).round() as usize;
        rows.extend(paths.into_iter().take(n_test).map(|path| MaskRow {
            path,
            mask,
            source: source.clone(),
        }));
    }
    rows
}
