//! The `facegate` binary itself, on real photos and hostile files.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dir_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| root().join(default), PathBuf::from)
}

/// Runs `facegate ARGS` with a config pointing at the provisioned models.
fn facegate(args: &[&str]) -> (bool, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("facegate.toml");
    let models = dir_from_env("FACEGATE_MODEL_DIR", "target/test-models");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nmodel_dir = {:?}\n",
            tmp.path().display().to_string(),
            models.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .env("FACEGATE_CONFIG", &config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn asset(name: &str) -> String {
    let path = dir_from_env("FACEGATE_TEST_ASSETS", "target/test-assets").join(name);
    assert!(
        path.is_file(),
        "{} missing: run scripts/test.sh",
        path.display()
    );
    path.display().to_string()
}

#[test]
fn detect_prints_the_api_face_details() {
    let (ok, stdout, stderr) = facegate(&["detect", "--spoofing", &asset("t1.jpg")]);
    assert!(ok, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["faceDetailCount"], 6);
    let face = &line["faceDetails"][0];
    for key in [
        "bbox",
        "landmarks",
        "orientation",
        "mask",
        "spoofing",
        "confidence",
    ] {
        assert!(!face[key].is_null(), "{key} missing in {face}");
    }
    let names: Vec<&str> = face["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["leftEye", "rightEye", "nose", "leftLip", "rightLip"]
    );
}

#[test]
fn compare_scores_the_same_photo_near_100_and_others_lower() {
    let t1 = asset("t1.jpg");
    let (ok, stdout, stderr) = facegate(&["compare", &t1, &t1]);
    assert!(ok, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let scores: Vec<f64> = out["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["similarity"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 6);
    assert!(scores[0] > 99.0, "{scores:?}");
    assert!(scores[1..].iter().all(|&s| s < 80.0), "{scores:?}");
}

#[test]
fn hostile_files_are_reported_not_crashed_on() {
    let tmp = tempfile::tempdir().unwrap();
    let t1 = std::fs::read(asset("t1.jpg")).unwrap();
    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated.jpg", t1[..t1.len() / 3].to_vec()),
        (
            "random.bin",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        ("empty.png", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (ok, stdout, stderr) = facegate(&["detect", path.to_str().unwrap()]);
        assert!(!ok, "{name} should fail");
        assert!(stdout.contains("\"error\""), "{name}: {stdout}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
