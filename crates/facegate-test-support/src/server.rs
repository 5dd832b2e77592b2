//! The end-to-end harness: one real engine per test binary, real servers
//! on 127.0.0.1:0 with temp data dirs (SQLite, or a throwaway PostgreSQL
//! database with `FACEGATE_TEST_BACKEND=postgres`), a small HTTP client,
//! and loopback image servers.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use facegate_server::config::{Config, RuntimeKind, TenantConfig};
use facegate_server::{FaceAnalyzer, RunningServer, StartOptions};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const APP: &str = "app-a";
pub const FACE_KEY: &str = "face-key-a";
pub const LIVE_KEY: &str = "live-key-a";
pub const ARGOS_KEY: &str = "argos-key-a";
pub const APP_B: &str = "app-b";
pub const FACE_KEY_B: &str = "face-key-b";

/// The runtime each end-to-end test runs on.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub use crate::paths::{asset, model_dir, orl, workspace};
pub use crate::pg::PgDatabase;

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The real engine, loaded once per test binary.
pub fn engine() -> Arc<dyn FaceAnalyzer> {
    static ENGINE: OnceLock<Arc<dyn FaceAnalyzer>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            facegate_server::engine::load_engine(
                &model_dir(),
                RuntimeKind::Auto,
                &facegate_server::Embedder::ALL,
                Default::default(),
            )
            .expect("load models (run `facegate models install --dir target/test-models`)")
        })
        .clone()
}

pub fn tenants() -> Vec<TenantConfig> {
    vec![
        TenantConfig {
            app_key: APP.into(),
            face_api_key: FACE_KEY.into(),
            liveness_secret_key: LIVE_KEY.into(),
            argos_api_key: ARGOS_KEY.into(),
        },
        TenantConfig {
            app_key: APP_B.into(),
            face_api_key: FACE_KEY_B.into(),
            liveness_secret_key: "live-key-b".into(),
            argos_api_key: "argos-key-b".into(),
        },
    ]
}

pub struct Setup {
    pub allow_private_urls: bool,
    pub max_faces_per_group: u64,
    pub token_ttl: Duration,
    pub fetch_timeout: Duration,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            allow_private_urls: false,
            max_faces_per_group: 100_000,
            token_ttl: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub config: Config,
    pub options: StartOptions,
    /// The PostgreSQL database behind it, when the suite runs on PostgreSQL.
    pub db: Option<Arc<PgDatabase>>,
}

/// True when the suite runs on PostgreSQL: `FACEGATE_TEST_BACKEND=postgres`
/// (scripts/test.sh runs the suite once per backend). Each server then gets
/// a fresh database on the server at `FACEGATE_TEST_POSTGRES_URL`.
pub fn on_postgres() -> bool {
    match std::env::var("FACEGATE_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("FACEGATE_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

/// Every stored byte of the faces table of `db` (row text and raw columns).
pub fn face_table_bytes(db: &PgDatabase) -> Vec<u8> {
    let url = db.url.clone();
    crate::pg::blocking(move || {
        let mut out = Vec::new();
        for row in crate::pg::connect(&url)
            .query("SELECT nonce, ciphertext, f::text FROM faces f", &[])
            .unwrap()
        {
            out.extend_from_slice(row.get::<_, &[u8]>(0));
            out.extend_from_slice(row.get::<_, &[u8]>(1));
            out.extend_from_slice(row.get::<_, &str>(2).as_bytes());
        }
        out
    })
}

pub fn config_in(dir: &Path, setup: &Setup) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        model_dir: Some(model_dir()),
        allow_private_urls: setup.allow_private_urls,
        max_faces_per_group: setup.max_faces_per_group,
        tenants: tenants(),
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start(dir: &Path, setup: Setup) -> TestServer {
        let mut config = config_in(dir, &setup);
        let db = on_postgres().then(PgDatabase::create);
        if let Some(db) = &db {
            config.database_url = Some(db.url.clone());
        }
        let options = StartOptions {
            analyzer: Some(engine()),
            token_ttl: setup.token_ttl,
            fetch_timeout: setup.fetch_timeout,
            ..StartOptions::default()
        };
        Self::start_with(config, options, db).await
    }

    pub async fn start_with(
        config: Config,
        options: StartOptions,
        db: Option<Arc<PgDatabase>>,
    ) -> TestServer {
        let server = facegate_server::start(config.clone(), options.clone())
            .await
            .expect("start");
        server.wait_ready().await.expect("ready");
        TestServer {
            base: format!("http://{}", server.local_addr()),
            server: Some(server),
            config,
            options,
            db,
        }
    }

    /// Stops this server and starts a new one on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let next =
            Self::start_with(self.config.clone(), self.options.clone(), self.db.clone()).await;
        *self = next;
    }

    /// Every byte the store keeps about faces: the SQLite file and its WAL,
    /// or the PostgreSQL faces table.
    pub fn stored_bytes(&self) -> Vec<u8> {
        if let Some(db) = &self.db {
            return face_table_bytes(db);
        }
        let file = self.config.data_dir.join("facegate.db");
        let mut out = std::fs::read(&file).unwrap();
        let mut wal = file.into_os_string();
        wal.push("-wal");
        out.extend(std::fs::read(&wal).unwrap_or_default());
        out
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("shutdown");
        }
    }

    pub fn reco(&self, path: &str) -> String {
        format!("{}/nhn-face-reco/v1.0/appkeys/{APP}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = send("GET", &self.reco(path), &[("x-nhn-apikey", FACE_KEY)], None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    pub async fn delete(&self, path: &str) -> Value {
        let r = send(
            "DELETE",
            &self.reco(path),
            &[("x-nhn-apikey", FACE_KEY)],
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        r.json()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = send(
            "POST",
            &self.reco(path),
            &[
                ("x-nhn-apikey", FACE_KEY),
                ("content-type", "application/json"),
            ],
            Some(body.to_string().into_bytes()),
        )
        .await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    pub async fn create_group(&self, id: &str) {
        let v = self.post("/groups", json!({ "groupId": id })).await;
        assert_code(&v, 0);
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    try_send(method, url, headers, body).await.expect("request")
}

/// [`send`], with connection errors returned (a server still starting).
pub async fn try_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Resp, hyper_util::client::legacy::Error> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// The face ids of a registration's answer.
pub fn face_ids(v: &Value) -> Vec<String> {
    v["data"]["addedFaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["faceId"].as_str().unwrap().to_string())
        .collect()
}

pub fn code(v: &Value) -> i64 {
    v["header"]["resultCode"].as_i64().expect("resultCode")
}

#[track_caller]
pub fn assert_code(v: &Value, expected: i64) {
    assert_eq!(code(v), expected, "{v:#}");
    assert_eq!(
        v["header"]["isSuccessful"].as_bool(),
        Some(expected >= 0),
        "{v:#}"
    );
}

#[track_caller]
pub fn assert_error(v: &Value, expected: i64, name: &str) {
    assert_code(v, expected);
    assert_eq!(v["header"]["resultMessage"], name, "{v:#}");
}

pub fn image_bytes(bytes: &[u8]) -> Value {
    json!({ "bytes": b64(bytes) })
}

/// A PNG of a flat colour.
pub fn flat_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([128, 128, 128]));
    png(&img)
}

pub fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Crops a face (bbox in fractions, as the API reports it) with a margin.
pub fn crop_face(jpeg: &[u8], bbox: &Value, margin: f32) -> Vec<u8> {
    let img = image::load_from_memory(jpeg).unwrap().to_rgb8();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let f = |k: &str| bbox[k].as_f64().unwrap() as f32;
    let (x0, y0, x1, y1) = (f("x0") * w, f("y0") * h, f("x1") * w, f("y1") * h);
    let (mw, mh) = ((x1 - x0) * margin, (y1 - y0) * margin);
    let cx0 = (x0 - mw).max(0.0) as u32;
    let cy0 = (y0 - mh).max(0.0) as u32;
    let cx1 = ((x1 + mw).min(w)) as u32;
    let cy1 = ((y1 + mh).min(h)) as u32;
    let crop = image::imageops::crop_imm(&img, cx0, cy0, cx1 - cx0, cy1 - cy0).to_image();
    png(&crop)
}

/// A loopback port that was free a moment ago (for servers started in
/// another process, which must be told their port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Binds a loopback listener on a port in 10000-12000 (the only high
/// ports image URLs may use).
pub async fn bind_allowed_port() -> tokio::net::TcpListener {
    let start = 10000 + (std::process::id() % 1500) as u16;
    for i in 0..2000u16 {
        let port = 10000 + (start - 10000 + i * 7) % 2001;
        if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            return l;
        }
    }
    panic!("no free port in 10000-12000");
}

/// Serves `body` to every request; returns the base URL.
pub async fn serve_bytes(body: Vec<u8>) -> String {
    let listener = bind_allowed_port().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://127.0.0.1:{}", addr.port())
}

/// Accepts connections and never answers; returns the base URL.
pub async fn serve_stall() -> String {
    let listener = bind_allowed_port().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            held.push(sock);
        }
    });
    format!("http://127.0.0.1:{}", addr.port())
}
