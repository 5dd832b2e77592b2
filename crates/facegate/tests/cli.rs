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
fn detect_prints_the_faces_the_api_finds() {
    let (ok, stdout, stderr) = facegate(&["detect", "--spoofing", &asset("t1.jpg")]);
    assert!(ok, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(line["faceCount"], 6);
    let face = &line["faces"][0];
    for key in [
        "bbox",
        "landmarks",
        "pose",
        "mask",
        "liveness",
        "confidence",
    ] {
        assert!(!face[key].is_null(), "{key} missing in {face}");
    }
    assert!(face.get("embedding").is_none());
    let points = face["landmarks"].as_object().unwrap();
    for name in ["leftEye", "rightEye", "nose", "leftLip", "rightLip"] {
        let x = points[name]["x"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{name} in fractions: {x}");
    }
    // The API's order: the left eye is the one with the smaller x.
    assert!(points["leftEye"]["x"].as_f64() < points["rightEye"]["x"].as_f64());
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

/// `facegate serve` with no config file (a first start) under systemd or
/// with output captured: the keys must not reach the captured output.
#[test]
fn first_start_without_a_terminal_prints_the_config_path_not_the_keys() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("serve")
        .env_remove("FACEGATE_CONFIG")
        .env("FACEGATE_DATA_DIR", &data)
        .env("FACEGATE_LISTEN", "127.0.0.1:0")
        .env(
            "FACEGATE_MODEL_DIR",
            dir_from_env("FACEGATE_MODEL_DIR", "target/test-models"),
        )
        .env("FACEGATE_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The announcement comes before anything slow (models, store).
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let printed = format!("{first}{rest}{stderr}");

    let config_file = data.join("facegate.toml");
    assert!(first.starts_with("First start"), "{printed}");
    assert!(
        first.contains(&config_file.display().to_string()),
        "{printed}"
    );
    let config: toml_keys::Keys = toml_keys::read(&config_file);
    assert_eq!(config.len(), 3, "three keys in the config file");
    for key in config {
        assert!(!printed.contains(&key), "a key was printed: {printed}");
    }
}

/// A misspelt override is an error naming it, before anything is created.
#[test]
fn unknown_facegate_environment_variables_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .arg("serve")
        .env_remove("FACEGATE_CONFIG")
        .env("FACEGATE_DATA_DIR", &data)
        .env("FACEGATE_LISTN", "0.0.0.0:9999")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("FACEGATE_LISTN"), "{stderr}");
    assert!(!data.join("facegate.toml").exists());
}

/// The three API keys of a config file, read without a TOML parser (this
/// crate's tests have none): the values of `*_key = "..."` lines.
mod toml_keys {
    pub type Keys = Vec<String>;

    pub fn read(path: &std::path::Path) -> Keys {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('=')?;
                let k = k.trim();
                (k.ends_with("_api_key") || k == "liveness_secret_key")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
            .collect()
    }
}
