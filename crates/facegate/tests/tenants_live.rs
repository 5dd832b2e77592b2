//! Tenants edited while `facegate serve` runs: `facegate tenants add` and
//! `remove` take effect within 2 s, requests keep succeeding meanwhile, an
//! invalid file keeps the old tenants, SIGHUP reloads at once, and
//! `facegate tenants list` says whether the file's tenants are in force.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_test_support::paths::model_dir;
use facegate_test_support::server::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_facegate");

/// `GET /nhn-face-reco/.../groups?limit=1` as `app_key` with `key`: the
/// NHN resultCode, or `None` when the server did not answer.
fn list_groups(port: u16, app_key: &str, key: &str) -> Option<i64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /nhn-face-reco/v1.0/appkeys/{app_key}/groups?limit=1 HTTP/1.1\r\nHost: x\r\n\
         x-nhn-apikey: {key}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["header"]["resultCode"].as_i64()
}

fn facegate(args: &[&str], config: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("FACEGATE_CONFIG")
        .output()
        .unwrap()
}

/// The face API key `facegate tenants add` printed for the new tenant.
fn printed_face_key(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("face_api_key"))
        .unwrap_or_else(|| panic!("no face_api_key in: {text}"));
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// Waits until `check` holds, at most `max`; how long it took.
fn within(max: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < max {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tenants_change_while_serving_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmodel_dir = \"{}\"\n\
             [[tenants]]\napp_key = \"app-a\"\nface_api_key = \"face-a\"\n\
             liveness_secret_key = \"live-a\"\nargos_api_key = \"argos-a\"\n",
            dir.path().join("data").display(),
            model_dir().display()
        ),
    )
    .unwrap();
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("FACEGATE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    within(Duration::from_secs(120), || {
        list_groups(port, "app-a", "face-a") == Some(0)
    })
    .expect("server ready");

    // Tenant A's requests run throughout; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let background = {
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match list_groups(port, "app-a", "face-a") {
                    Some(0) => done.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };

    let added = facegate(&["tenants", "add", "app-b"], &config);
    assert!(added.status.success(), "{added:?}");
    let key_b = printed_face_key(&added);
    let took = within(Duration::from_secs(2), || {
        list_groups(port, "app-b", &key_b) == Some(0)
    })
    .expect("an added tenant authenticates within 2 s");
    eprintln!("added tenant in force after {took:?}");
    let listed = facegate(&["tenants", "list"], &config);
    let status = String::from_utf8_lossy(&listed.stderr);
    assert!(status.contains("in force"), "{status}");
    assert!(!status.contains("different"), "{status}");

    // An invalid file is refused; the tenants in force stay.
    let valid = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{valid}\nnot toml [")).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(list_groups(port, "app-b", &key_b), Some(0));
    std::fs::write(&config, &valid).unwrap();

    let removed = facegate(&["tenants", "remove", "app-b"], &config);
    assert!(removed.status.success(), "{removed:?}");
    within(Duration::from_secs(2), || {
        list_groups(port, "app-b", &key_b) == Some(-41000)
    })
    .expect("a removed tenant is refused within 2 s");

    // SIGHUP reloads at once (the poll would take up to a second).
    let readded = facegate(&["tenants", "add", "app-c"], &config);
    let key_c = printed_face_key(&readded);
    let ok = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    within(Duration::from_secs(2), || {
        list_groups(port, "app-c", &key_c) == Some(0)
    })
    .expect("SIGHUP reload");

    stop.store(true, Ordering::SeqCst);
    background.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(done.load(Ordering::SeqCst) > 10);
}
