//! The batch commands against a real `facegate serve`: `facegate enroll`
//! of the ORL photos (40 people, a folder each) adds 400 faces and a second
//! run skips them all; `facegate search-dir` finds each person first with
//! a mirrored copy of one of their photos; `facegate export` of
//! the group and `facegate import` into another data directory give a
//! second server that answers the same searches identically.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use facegate_test_support::paths::{dataset, model_dir};
use facegate_test_support::server::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");
const APP: &str = "batch-app";
const FACE_KEY: &str = "batch-face-key";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A config with one tenant in `dir` (data in `dir/data`), its port.
fn write_config(dir: &Path) -> (PathBuf, u16) {
    let port = free_port();
    let config = dir.join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmodel_dir = \"{}\"\n\
             [[tenants]]\napp_key = \"{APP}\"\nface_api_key = \"{FACE_KEY}\"\n\
             liveness_secret_key = \"l\"\nargos_api_key = \"a\"\n",
            dir.join("data").display(),
            model_dir().display()
        ),
    )
    .unwrap();
    (config, port)
}

/// `GET /readyz` answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

fn serve(config: &Path, port: u16) -> Server {
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("FACEGATE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while !ready(port) {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "server not ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// `facegate ARGS --config CONFIG` with the face API key in the
/// environment.
fn facegate(args: &[&str], config: &Path) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("FACEGATE_CONFIG")
        .env("FACEGATE_API_KEY", FACE_KEY)
        .output()
        .unwrap();
    eprintln!(
        "facegate {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shot 10 of each person, mirrored left to right (a file the group was
/// not enrolled from), as `dir/sN.png`.
fn mirrored_probes(dir: &Path, people: &[u32]) {
    std::fs::create_dir_all(dir).unwrap();
    for &p in people {
        let src = dataset("orl_faces").join(format!("images/s{p}/10.png"));
        let img = image::open(&src).unwrap().fliph();
        img.save(dir.join(format!("s{p}.png"))).unwrap();
    }
}

#[test]
fn enroll_resume_search_and_backup_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    let (config, port) = write_config(&one);
    let server = serve(&config, port);
    let photos = dataset("orl_faces").join("images");
    let photos = photos.to_str().unwrap();
    let results = tmp.path().join("enroll.csv");
    let results = results.to_str().unwrap();
    let enroll_args = [
        "enroll",
        photos,
        "--group",
        "orl",
        "--create-group",
        "--external-id-from",
        "dirname",
        "--out",
        results,
    ];

    let started = Instant::now();
    let first = facegate(&enroll_args, &config);
    eprintln!("enrolled 400 photos in {:?}", started.elapsed());
    assert!(first.status.success());
    assert!(
        stdout(&first).starts_with("400 faces added, 0 images with no face, 0 errors;"),
        "{}",
        stdout(&first)
    );
    let csv = std::fs::read_to_string(results).unwrap();
    assert_eq!(csv.lines().next(), Some("path,status,face_id,detail"));
    assert_eq!(csv.lines().filter(|l| l.contains(",added,")).count(), 400);
    assert!(csv.contains("\ns17/3.png,added,"), "{csv:.300}");

    // Resumable: a second run skips every photo.
    let second = facegate(&enroll_args, &config);
    assert!(second.status.success());
    assert!(
        stdout(&second).starts_with("0 faces added, 0 images with no face, 0 errors; 400 already"),
        "{}",
        stdout(&second)
    );
    assert_eq!(std::fs::read_to_string(results).unwrap(), csv);

    // search-dir: each person first, by a mirrored copy of a photo.
    let people = [1, 9, 17, 26, 40];
    let probes = tmp.path().join("probes");
    mirrored_probes(&probes, &people);
    let probes = probes.to_str().unwrap();
    let found = facegate(
        &["search-dir", probes, "--group", "orl", "--limit", "3"],
        &config,
    );
    assert!(found.status.success());
    let text = stdout(&found);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "path,status,face_id_1,external_image_id_1,similarity_1,face_id_2,\
         external_image_id_2,similarity_2,face_id_3,external_image_id_3,similarity_3,detail"
    );
    let mut rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), people.len());
    rows.sort_by_key(|r| {
        r[0].trim_start_matches('s')
            .trim_end_matches(".png")
            .parse::<u32>()
            .unwrap()
    });
    for (row, p) in rows.iter().zip(people) {
        assert_eq!(row[1], "ok", "{row:?}");
        assert_eq!(row[3], format!("s{p}"), "{row:?}");
    }
    let search_json = |config: &Path| {
        let out = facegate(
            &["search-dir", probes, "--group", "orl", "--format", "json"],
            config,
        );
        assert!(out.status.success());
        stdout(&out)
    };
    let answers = search_json(&config);
    assert_eq!(answers.lines().count(), people.len());
    let first: serde_json::Value = serde_json::from_str(answers.lines().next().unwrap()).unwrap();
    assert_eq!(first["path"], "s1.png");
    assert_eq!(first["matches"][0]["externalImageId"], "s1");
    assert_eq!(first["matches"].as_array().unwrap().len(), 5);

    // Export while serving; import into another data directory, which
    // needs the exporting master key; its server answers identically.
    let backup = tmp.path().join("orl.fgbackup");
    let exported = facegate(
        &[
            "export",
            "--group",
            "orl",
            "--out",
            backup.to_str().unwrap(),
        ],
        &config,
    );
    assert!(exported.status.success());
    assert!(stdout(&exported).contains("400 faces"));
    drop(server);

    let two = tmp.path().join("two");
    std::fs::create_dir_all(&two).unwrap();
    let (config2, port2) = write_config(&two);
    let refused = facegate(&["import", backup.to_str().unwrap()], &config2);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("master key id"),
        "{refused:?}"
    );
    let key = one.join("data/master.key");
    let imported = facegate(
        &[
            "import",
            backup.to_str().unwrap(),
            "--master-key",
            key.to_str().unwrap(),
        ],
        &config2,
    );
    assert!(imported.status.success());
    assert!(stdout(&imported).contains("Imported 400 faces"));
    // The group exists now: a second import is refused.
    let again = facegate(
        &[
            "import",
            backup.to_str().unwrap(),
            "--master-key",
            key.to_str().unwrap(),
        ],
        &config2,
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--group NEW"),
        "{again:?}"
    );

    let _server2 = serve(&config2, port2);
    assert_eq!(search_json(&config2), answers);
}
