//! Where tests find the workspace, the models and the test data.

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `dir` from the environment variable `var`, else `default` under the
/// workspace.
fn dir_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(default))
}

/// The JPEG and PNG files under `dir`, recursively, sorted; unreadable
/// folders are skipped.
pub fn image_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if path.is_dir() {
                stack.push(path);
            } else if matches!(ext.as_deref(), Some("jpg" | "jpeg" | "png")) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The provisioned models (`FACEGATE_MODEL_DIR`, else target/test-models).
pub fn model_dir() -> PathBuf {
    dir_from_env("FACEGATE_MODEL_DIR", "target/test-models")
}

/// Where a fetched test photo is (`FACEGATE_TEST_ASSETS`, else
/// target/test-assets).
pub fn asset_path(name: &str) -> PathBuf {
    dir_from_env("FACEGATE_TEST_ASSETS", "target/test-assets").join(name)
}

/// A fetched test photo (see [`asset_path`]).
pub fn asset(name: &str) -> Vec<u8> {
    let path = asset_path(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-test-assets.sh)", path.display()))
}

/// A development dataset under ../shared/datasets.
pub fn dataset(name: &str) -> PathBuf {
    workspace().join("../shared/datasets").join(name)
}

/// Photo `shot` (1-10) of person `person` (1-40) of the ORL faces.
pub fn orl(person: u32, shot: u32) -> Vec<u8> {
    let p = dataset("orl_faces").join(format!("images/s{person}/{shot}.png"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
