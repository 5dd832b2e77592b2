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
    let ort = Runtime::new(&RuntimeConfig {
        kind: RuntimeKind::OnnxRuntime,
        ort_library: Some(lib),
        sessions_per_model: 1,
    })
    .expect("ONNX Runtime loads");
    vec![ort, Runtime::tract()]
}
