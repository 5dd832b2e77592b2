//! The installed manifest (`manifest.json`, written last by `facegate
//! models install`): which version of each model file is installed.
//!
//! The engine checks its embedders against it at load time, because the
//! version string is stored with every registered face and decides which
//! groups a model may search: an engine that called a different model by
//! the same name would mix incomparable vectors in one group.

use std::path::Path;

use serde::Deserialize;

use crate::embedder::Embedder;
use crate::error::{Result, VisionError};
use crate::files;

#[derive(Deserialize)]
struct Manifest {
    models: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    file: String,
    version: String,
}

/// The installed version of `embedder`'s model file in `dir`, which must
/// be the version this code computes embeddings for.
pub fn check_embedder(dir: &Path, embedder: Embedder) -> Result<String> {
    let path = dir.join(files::MANIFEST);
    let invalid = |why: String| VisionError::InvalidModel(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VisionError::MissingModel(format!(
            "{} (run `facegate models install`)",
            path.display()
        )),
        _ => VisionError::Io(e),
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("unreadable: {e}")))?;
    let installed = manifest
        .models
        .into_iter()
        .find(|m| m.file == embedder.model_file())
        .ok_or_else(|| {
            invalid(format!(
                "no entry for {}; run `facegate models install`",
                embedder.model_file()
            ))
        })?;
    if installed.version != embedder.version() {
        return Err(invalid(format!(
            "{} is installed as version {}, but this facegate embeds with {}; reinstall the \
             models with this facegate's `models install`",
            embedder.model_file(),
            installed.version,
            embedder.version()
        )));
    }
    Ok(installed.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(manifest: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(files::MANIFEST), manifest).unwrap();
        dir
    }

    #[test]
    fn the_installed_version_must_be_the_engines() {
        let entry = |version: &str| {
            format!(
                r#"{{"facegate_version":"0","models":[{{"name":"x","file":"{}","sha256":"",
                "version":"{version}","licence":"","sources":[]}}]}}"#,
                Embedder::Sface.model_file()
            )
        };
        let ok = dir_with(&entry(Embedder::Sface.version()));
        assert_eq!(
            check_embedder(ok.path(), Embedder::Sface).unwrap(),
            Embedder::Sface.version()
        );
        let other = dir_with(&entry("sface-2099"));
        let err = check_embedder(other.path(), Embedder::Sface).unwrap_err();
        assert!(err.to_string().contains("sface-2099"), "{err}");
        assert!(check_embedder(ok.path(), Embedder::Dlib).is_err());
        let none = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_embedder(none.path(), Embedder::Sface),
            Err(VisionError::MissingModel(_))
        ));
        assert!(check_embedder(dir_with("{").path(), Embedder::Sface).is_err());
    }
}
