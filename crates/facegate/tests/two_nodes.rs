//! Two `facegate serve` processes on one PostgreSQL database, as in a
//! deployment behind a load balancer: what one node changes, the other
//! serves; concurrent registrations on both are counted exactly; a key
//! rotation reaches both while they serve.

use facegate_test_support::server as common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A `facegate serve` child process, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the config of one node: its own data dir and port, the shared
/// database and master key file.
fn write_config(dir: &Path, name: &str, database_url: &str, key_file: &Path) -> std::path::PathBuf {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let t = &tenants()[0];
    let config = data.join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = {data:?}\nmodel_dir = {models:?}\n\
             database_url = {database_url:?}\nmaster_key_file = {key:?}\n\n\
             [[tenants]]\napp_key = {app:?}\nface_api_key = {face:?}\n\
             liveness_secret_key = {live:?}\nargos_api_key = {argos:?}\n",
            port = free_port(),
            data = data.display().to_string(),
            models = model_dir().display().to_string(),
            key = key_file.display().to_string(),
            app = t.app_key,
            face = t.face_api_key,
            live = t.liveness_secret_key,
            argos = t.argos_api_key,
        ),
    )
    .unwrap();
    config
}

async fn start_node(config: &Path) -> Node {
    let text = std::fs::read_to_string(config).unwrap();
    let listen = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("FACEGATE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let node = Node {
        child,
        base: format!("http://{listen}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            try_send("GET", &format!("{}/readyz", node.base), &[], None),
        )
        .await;
        if matches!(ready, Ok(Ok(r)) if r.status == 200) {
            return node;
        }
        assert!(
            Instant::now() < deadline,
            "{} never became ready",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Node {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/nhn-face-reco/v1.0/appkeys/{APP}{path}", self.base);
        let r = send(
            method,
            &url,
            &[
                ("x-nhn-apikey", FACE_KEY),
                ("content-type", "application/json"),
            ],
            body.map(|b| b.to_string().into_bytes()),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    async fn register(&self, group: &str, person: u32, shot: u32) -> String {
        let v = self
            .call(
                "POST",
                &format!("/groups/{group}"),
                Some(json!({"image": image_bytes(&orl(person, shot)), "limit": 1})),
            )
            .await;
        assert_code(&v, 0);
        v["data"]["addedFaces"][0]["faceId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Face ids that match ORL photo (person, shot) at similarity ≥ 80.
    async fn matches(&self, group: &str, person: u32, shot: u32) -> Vec<String> {
        let v = self
            .call(
                "POST",
                &format!("/groups/{group}/search?limit=10&threshold=80"),
                Some(json!({"image": image_bytes(&orl(person, shot))})),
            )
            .await;
        assert_code(&v, 0);
        v["data"]["matchFaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["face"]["faceId"].as_str().unwrap().to_string())
            .collect()
    }

    async fn face_count(&self, group: &str) -> u64 {
        let v = self.call("GET", &format!("/groups/{group}"), None).await;
        v["data"]["groups"][0]["faceCount"].as_u64().unwrap()
    }

    /// Search by face id: decrypts the stored embedding on this node.
    async fn search_by_id(&self, group: &str, face_id: &str) -> Value {
        self.call(
            "GET",
            &format!("/groups/{group}/faces/{face_id}?limit=5&threshold=1"),
            None,
        )
        .await
    }
}

/// Polls `cond` until it holds; returns how long that took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn two_processes_share_one_postgres_database() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = PgDatabase::create();
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("shared-master.key");
        let config_a = write_config(dir.path(), "a", &db.url, &key_file);
        let config_b = write_config(dir.path(), "b", &db.url, &key_file);
        let a = start_node(&config_a).await;
        let b = start_node(&config_b).await;

        // A group created on A is usable on B at once.
        assert_code(
            &a.call("POST", "/groups", Some(json!({"groupId": "door"})))
                .await,
            0,
        );
        let face = a.register("door", 1, 1).await;
        let seen = eventually(
            Duration::from_secs(5),
            "A's face searchable on B",
            || async { b.matches("door", 1, 1).await.contains(&face) },
        )
        .await;
        eprintln!("registration on A searchable on B after {seen:?}");

        // Deleted on B: gone on A.
        assert_code(
            &b.call("DELETE", &format!("/groups/door/faces/{face}"), None)
                .await,
            0,
        );
        let gone = eventually(Duration::from_secs(5), "B's delete seen on A", || async {
            !a.matches("door", 1, 1).await.contains(&face)
        })
        .await;
        eprintln!("deletion on B gone on A after {gone:?}");
        assert_code(&a.search_by_id("door", &face).await, -40050);

        // Concurrent registrations on both nodes: exact counts everywhere.
        let (on_a, on_b) = tokio::join!(
            async {
                let mut ids = Vec::new();
                for p in 2..=11 {
                    ids.push(a.register("door", p, 1).await);
                }
                ids
            },
            async {
                let mut ids = Vec::new();
                for p in 12..=21 {
                    ids.push(b.register("door", p, 1).await);
                }
                ids
            }
        );
        let mut all: Vec<String> = on_a.iter().chain(&on_b).cloned().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 20);
        assert_eq!(a.face_count("door").await, 20);
        assert_eq!(b.face_count("door").await, 20);
        for node in [&a, &b] {
            eventually(
                Duration::from_secs(5),
                "every face searchable on both",
                || async {
                    node.matches("door", 2, 1).await.contains(&on_a[0])
                        && node.matches("door", 21, 1).await.contains(&on_b[9])
                },
            )
            .await;
        }

        // A key rotation while both nodes serve: both switch keys from the
        // shared key file, and every record opens under the new key.
        let rotate = Command::new(env!("CARGO_BIN_EXE_facegate"))
            .args(["keys", "rotate", "--config", config_a.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let rotation = tokio::task::spawn_blocking(move || rotate.wait_with_output().unwrap());
        let mut person = 22;
        while !rotation.is_finished() {
            for (node, id) in [(&a, &on_a[0]), (&b, &on_b[0])] {
                assert_code(&node.search_by_id("door", id).await, 0);
            }
            if person <= 40 {
                let node = if person % 2 == 0 { &a } else { &b };
                all.push(node.register("door", person, 1).await);
                person += 1;
            }
        }
        let out = rotation.await.unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for id in &all {
            assert_code(&a.search_by_id("door", id).await, 0);
            assert_code(&b.search_by_id("door", id).await, 0);
        }
        drop(a);
        drop(b);
        // Restarted, a node knows only the installed (new) key.
        let a = start_node(&config_a).await;
        assert_eq!(a.face_count("door").await, all.len() as u64);
        for id in &all {
            assert_code(&a.search_by_id("door", id).await, 0);
        }
    });
}
