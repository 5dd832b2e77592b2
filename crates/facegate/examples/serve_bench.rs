//! Scale benchmark of a whole `facegate serve` process over a big group:
//!
//! * cold start: time from spawning `facegate serve` to `/readyz` = 200,
//!   with `--faces` stored faces, against an empty database in the same run
//!   (both load the same models, so the difference is the store);
//! * registration throughput into that group: through the store alone (one
//!   transaction per face, as the API does, minus the vision), and over
//!   HTTP with real photos, each against an empty group in the same run.
//!
//! ```sh
//! cargo build --release -p facegate --bins --examples
//! ./target/release/examples/serve_bench --faces 100000
//! ./target/release/examples/serve_bench --faces 100000 --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! With `--soak SECS` it runs the soak instead: one `facegate serve`, 64
//! client threads mixing detect, register, search and list on their own
//! connections, and 200 idle kept-alive sockets (reopened whenever the
//! server closes them) for SECS seconds; it prints throughput, p50/p99 per
//! operation, errors and the server's RSS at start and end:
//!
//! ```sh
//! ./target/release/examples/serve_bench --soak 300
//! ```
//!
//! With `--load SECS` it runs the client-scaling load instead: one `facegate
//! serve` on the chosen runtime, then for each operation (register, detect
//! with spoofing, search by image) and each client count, that many client
//! threads send requests back to back for SECS seconds; it prints faces/s,
//! p50/p99 latency and errors per cell, and each count's throughput against
//! one client's:
//!
//! ```sh
//! ./target/release/examples/serve_bench --load 15 --clients 1,2,8,32 --runtime onnxruntime
//! ./target/release/examples/serve_bench --load 15 --clients 1,2,8,32 --runtime tract
//! ```
//!
//! `--photos DIR` (../shared/datasets/spoof_dev/nuaa/live: 640×480 webcam
//! frames, one face each) are the images, read recursively (the first 240).
//!
//! Options: `--faces N` (100000), `--starts N` cold starts per case (5),
//! `--registrations N` store-level registrations per case (1000),
//! `--http-registrations N` photos registered over HTTP per case (200),
//! `--models DIR` (target/test-models), `--orl DIR`
//! (../shared/datasets/orl_faces/images), `--postgres ADMIN_URL` to run on
//! a fresh PostgreSQL database created (and dropped) under that server
//! instead of SQLite.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// The end-to-end harness: PostgreSQL test databases, free ports.
use facegate_test_support::server as common;
use facegate_test_support::stats::{self, percentile};

use base64::Engine as _;
use common::{free_port, PgDatabase};
use facegate_store::{FaceBox, Gallery, GalleryOptions, KeyRing, MasterKey, NewFace, NewFaces};

const APP: &str = "bench-app";
const FACE_KEY: &str = "bench-face-key";
const BIG: &str = "big";
const EMPTY: &str = "empty";
const DIM: usize = 128;

struct Args {
    faces: usize,
    starts: usize,
    registrations: usize,
    http_registrations: usize,
    models: PathBuf,
    orl: PathBuf,
    postgres: Option<String>,
    soak: Option<u64>,
    load: Option<u64>,
    clients: Vec<usize>,
    runtime: String,
    photos: PathBuf,
}

fn parse_args() -> Args {
    let mut a = Args {
        faces: 100_000,
        starts: 5,
        registrations: 1000,
        http_registrations: 200,
        models: PathBuf::from("target/test-models"),
        orl: PathBuf::from("../shared/datasets/orl_faces/images"),
        postgres: None,
        soak: None,
        load: None,
        clients: vec![1, 2, 8, 32],
        runtime: "onnxruntime".into(),
        photos: PathBuf::from("../shared/datasets/spoof_dev/nuaa/live"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || value.parse::<usize>().expect("a number");
        match flag.as_str() {
            "--faces" => a.faces = num(),
            "--starts" => a.starts = num(),
            "--registrations" => a.registrations = num(),
            "--http-registrations" => a.http_registrations = num(),
            "--models" => a.models = PathBuf::from(value),
            "--orl" => a.orl = PathBuf::from(value),
            "--postgres" => a.postgres = Some(value),
            "--soak" => a.soak = Some(num() as u64),
            "--load" => a.load = Some(num() as u64),
            "--clients" => {
                a.clients = stats::counts(&flag, &value).unwrap_or_else(|e| panic!("{e}"))
            }
            "--runtime" => a.runtime = value,
            "--photos" => a.photos = PathBuf::from(value),
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// SplitMix64, for reproducible embeddings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn face(&mut self) -> NewFace {
        let embedding = (0..DIM)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        NewFace {
            bbox: FaceBox {
                x0: 0.2,
                y0: 0.2,
                x1: 0.6,
                y1: 0.7,
            },
            confidence: 0.99,
            embedding,
        }
    }
}

fn summary(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, min {:.1}, max {:.1} (n = {})",
        percentile(&xs, 0.5),
        xs[0],
        xs[xs.len() - 1],
        xs.len()
    )
}

/// Minimal blocking HTTP/1.1 exchange (one request per connection).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-nhn-apikey: {FACE_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP head"))?;
    let status = std::str::from_utf8(&out[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, out[split + 4..].to_vec()))
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn facegate_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("facegate"))
        .filter(|p| p.is_file())
        .expect("build the binary too: cargo build --release -p facegate --bins --examples")
}

/// Spawns `facegate serve` and returns it with the time until `/readyz`.
fn start_server(config: &Path, addr: &str) -> (Server, Duration) {
    let t0 = Instant::now();
    let child = Command::new(facegate_binary())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("FACEGATE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        addr: addr.to_string(),
    };
    loop {
        if let Ok((200, _)) = http(addr, "GET", "/readyz", b"") {
            return (server, t0.elapsed());
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "never ready");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes a config for one server; `extra` holds more top-level keys.
fn write_config(dir: &Path, addr: &str, database_url: &str, models: &Path, extra: &str) -> PathBuf {
    let path = dir.join("facegate.toml");
    std::fs::write(
        &path,
        format!(
            "listen = {addr:?}\ndata_dir = {data:?}\nmodel_dir = {models:?}\n\
             database_url = {database_url:?}\nmax_faces_per_group = 10000000\n{extra}\n\
             [[tenants]]\napp_key = {APP:?}\nface_api_key = {FACE_KEY:?}\n\
             liveness_secret_key = \"bench-live\"\nargos_api_key = \"bench-argos\"\n",
            data = dir.display().to_string(),
            models = std::fs::canonicalize(models).unwrap().display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn face_count(addr: &str, group: &str) -> u64 {
    let (status, body) = http(
        addr,
        "GET",
        &format!("/nhn-face-reco/v1.0/appkeys/{APP}/groups/{group}"),
        b"",
    )
    .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"]["groups"][0]["faceCount"].as_u64().unwrap()
}

/// Registers `n` ORL photos (limit 1) into `group` from two client threads;
/// returns faces per second.
fn http_registrations(addr: &str, group: &str, orl: &Path, n: usize) -> f64 {
    let bodies: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let p = orl.join(format!("s{}/{}.png", i % 40 + 1, i / 40 % 10 + 1));
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            serde_json::json!({"image": {"bytes": b64}, "limit": 1})
                .to_string()
                .into_bytes()
        })
        .collect();
    let path = format!("/nhn-face-reco/v1.0/appkeys/{APP}/groups/{group}");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for half in bodies.chunks(n.div_ceil(2)) {
            let path = &path;
            s.spawn(move || {
                for body in half {
                    let (status, resp) = http(addr, "POST", path, body).unwrap();
                    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
                    assert!(status == 200 && v["header"]["resultCode"] == 0, "{v}");
                }
            });
        }
    });
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Single-face registrations through the store, one transaction each.
fn store_registrations(
    gallery: &Gallery,
    group: &str,
    model: &str,
    n: usize,
    rng: &mut Rng,
) -> (f64, Vec<f64>) {
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let out = gallery
            .add_faces(
                APP,
                group,
                NewFaces {
                    external_image_id: None,
                    model_version: model.to_string(),
                    faces: vec![rng.face()],
                },
                u64::MAX,
            )
            .unwrap();
        assert_eq!(out.added.len(), 1);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (n as f64 / t0.elapsed().as_secs_f64(), lat)
}

/// Resident and peak resident memory of a process, MiB.
fn rss_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Keeps `n` kept-alive connections idle (one `/healthz` each, then
/// silence) until `deadline`, reopening those the server closes; returns
/// how many were reopened.
fn idle_sockets(addr: &str, n: usize, deadline: Instant) -> usize {
    let open = || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .ok()?;
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
    let mut reopened = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        for slot in socks.iter_mut() {
            let mut buf = [0u8; 64];
            let closed = match slot {
                Some(s) => {
                    matches!(s.read(&mut buf), Ok(0))
                        || matches!(&s.read(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
                }
                None => true,
            };
            if closed {
                *slot = open();
                reopened += 1;
            }
        }
    }
    reopened
}

/// The soak: mixed load plus idle sockets for `secs` seconds.
fn soak(args: &Args, secs: u64) {
    const CLIENTS: usize = 64;
    const IDLE: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let database_url = format!("sqlite://{}", dir.path().join("facegate.db").display());
    let config = write_config(dir.path(), &addr, &database_url, &args.models, "");
    let (server, _) = start_server(&config, &addr);
    let pid = server.child.id();
    let reco = |path: &str| format!("/nhn-face-reco/v1.0/appkeys/{APP}{path}");
    let (status, _) = http(&addr, "POST", &reco("/groups"), br#"{"groupId":"soak"}"#).unwrap();
    assert_eq!(status, 200);
    let image = |i: usize| {
        let p = args
            .orl
            .join(format!("s{}/{}.png", i % 40 + 1, i / 40 % 10 + 1));
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&p).unwrap());
        serde_json::json!({"bytes": b64})
    };
    // Something to search from the start.
    for i in 0..40 {
        let body = serde_json::json!({"image": image(i), "limit": 1}).to_string();
        http(&addr, "POST", &reco("/groups/soak"), body.as_bytes()).unwrap();
    }
    let (rss_start, _) = rss_mib(pid);
    let deadline = Instant::now() + Duration::from_secs(secs);
    const OPS: [&str; 4] = ["detect", "register", "search", "list"];
    let started = Instant::now();
    let (results, reopened) = std::thread::scope(|s| {
        let idle = s.spawn(|| idle_sockets(&addr, IDLE, deadline));
        let workers: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, reco, image) = (&addr, &reco, &image);
                s.spawn(move || {
                    let mut out: Vec<(usize, f64, bool)> = Vec::new();
                    let mut i = c;
                    while Instant::now() < deadline {
                        let op = i % OPS.len();
                        let (method, path, body) = match op {
                            0 => (
                                "POST",
                                reco("/detect"),
                                serde_json::json!({"image": image(i)}).to_string(),
                            ),
                            1 => (
                                "POST",
                                reco("/groups/soak"),
                                serde_json::json!({"image": image(i), "limit": 1}).to_string(),
                            ),
                            2 => (
                                "POST",
                                reco("/groups/soak/search?limit=10&threshold=50"),
                                serde_json::json!({"image": image(i)}).to_string(),
                            ),
                            _ => ("GET", reco("/groups/soak/faces?limit=20"), String::new()),
                        };
                        let t = Instant::now();
                        let ok = match http(addr, method, &path, body.as_bytes()) {
                            Ok((200, resp)) => serde_json::from_slice::<serde_json::Value>(&resp)
                                .is_ok_and(|v| v["header"]["resultCode"].as_i64() == Some(0)),
                            _ => false,
                        };
                        out.push((op, t.elapsed().as_secs_f64() * 1e3, ok));
                        i += CLIENTS + 1;
                    }
                    out
                })
            })
            .collect();
        let results: Vec<(usize, f64, bool)> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        (results, idle.join().unwrap())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (rss_end, peak) = rss_mib(pid);
    let errors = results.iter().filter(|r| !r.2).count();
    let p = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        format!(
            "p50 {:.1} ms, p99 {:.1} ms",
            percentile(&xs, 0.5),
            percentile(&xs, 0.99)
        )
    };
    println!(
        "soak {secs} s: {CLIENTS} clients + {IDLE} idle sockets; {} requests, {:.1} req/s, {}, errors {errors}",
        results.len(),
        results.len() as f64 / elapsed,
        p(results.iter().map(|r| r.1).collect())
    );
    for (k, name) in OPS.iter().enumerate() {
        let xs: Vec<f64> = results.iter().filter(|r| r.0 == k).map(|r| r.1).collect();
        println!("  {name:8} n {:6}  {}", xs.len(), p(xs));
    }
    println!("  idle sockets reopened after the server closed them: {reopened}");
    println!("  server RSS: start {rss_start} MiB, end {rss_end} MiB, peak {peak} MiB");
    drop(server);
}

/// One load cell's requests: (latency ms, faces answered, success).
type Samples = Vec<(f64, u64, bool)>;

/// `clients` threads send `bodies` (round robin) to `path` for `secs`
/// seconds; `faces` reads how many faces a successful answer covered.
fn load_cell(
    addr: &str,
    path: &str,
    bodies: &[Vec<u8>],
    clients: usize,
    secs: u64,
    faces: fn(&serde_json::Value) -> u64,
) -> (Samples, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let samples: Samples = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut i = c;
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let answer = http(addr, "POST", path, &bodies[i % bodies.len()]);
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let v = answer
                            .ok()
                            .filter(|(status, _)| *status == 200)
                            .and_then(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).ok())
                            .filter(|v| v["header"]["resultCode"].as_i64() == Some(0));
                        out.push((ms, v.as_ref().map_or(0, faces), v.is_some()));
                        i += clients;
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    (samples, started.elapsed().as_secs_f64())
}

/// The client-scaling load: register, detect with spoofing and search at
/// each client count, on one server.
fn load(args: &Args, secs: u64) {
    let mut photos = facegate_test_support::paths::image_files(&args.photos);
    assert!(
        !photos.is_empty(),
        "no photos under {}",
        args.photos.display()
    );
    // Enough to vary the requests; a big folder is not loaded whole.
    photos.truncate(240);
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let database_url = format!("sqlite://{}", dir.path().join("facegate.db").display());
    let extra = format!("runtime = {:?}", args.runtime);
    let config = write_config(dir.path(), &addr, &database_url, &args.models, &extra);
    let (_server, ready) = start_server(&config, &addr);
    let reco = |path: &str| format!("/nhn-face-reco/v1.0/appkeys/{APP}{path}");
    let (status, _) = http(&addr, "POST", &reco("/groups"), br#"{"groupId":"load"}"#).unwrap();
    assert_eq!(status, 200);
    let images: Vec<serde_json::Value> = photos
        .iter()
        .map(|p| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap());
            serde_json::json!({"bytes": b64})
        })
        .collect();
    let bodies = |extra: serde_json::Value| -> Vec<Vec<u8>> {
        images
            .iter()
            .map(|image| {
                let mut body = extra.clone();
                body["image"] = image.clone();
                body.to_string().into_bytes()
            })
            .collect()
    };
    let register = bodies(serde_json::json!({"limit": 1}));
    let detect = bodies(serde_json::json!({"spoofing": true}));
    let search = bodies(serde_json::json!({}));
    // Warm-up: every photo once, so each detection canvas is loaded.
    for body in &detect {
        http(&addr, "POST", &reco("/detect"), body).unwrap();
    }
    println!(
        "runtime {}, {} photos from {}, ready in {:.1} s, {secs} s per cell, clients and server share this machine's {} cores",
        args.runtime,
        photos.len(),
        args.photos.display(),
        ready.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    type Faces = fn(&serde_json::Value) -> u64;
    let ops: [(&str, String, &[Vec<u8>], Faces); 3] = [
        ("register", reco("/groups/load"), &register, |v| {
            v["data"]["addedFaces"]
                .as_array()
                .map_or(0, |a| a.len() as u64)
        }),
        ("detect + spoofing", reco("/detect"), &detect, |v| {
            v["data"]["faceDetailCount"].as_u64().unwrap_or(0)
        }),
        (
            "search by image",
            reco("/groups/load/search?limit=10&threshold=50"),
            &search,
            |_| 1,
        ),
    ];
    println!(
        "| operation | clients | requests | faces/s | vs first count | p50 ms | p99 ms | errors |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, path, bodies, faces) in ops {
        let mut one_client = None;
        for &clients in &args.clients {
            let (samples, elapsed) = load_cell(&addr, &path, bodies, clients, secs, faces);
            let rate = samples.iter().map(|s| s.1).sum::<u64>() as f64 / elapsed;
            let base = *one_client.get_or_insert(rate);
            let mut ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
            ms.sort_by(f64::total_cmp);
            let errors = samples.iter().filter(|s| !s.2).count();
            println!(
                "| {name} | {clients} | {} | {rate:.1} | {:.2}× | {:.1} | {:.1} | {errors} |",
                samples.len(),
                rate / base,
                percentile(&ms, 0.5),
                percentile(&ms, 0.99),
            );
        }
    }
}

fn main() {
    let args = parse_args();
    if let Some(secs) = args.load {
        load(&args, secs);
        return;
    }
    if let Some(secs) = args.soak {
        soak(&args, secs);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = args.postgres.as_deref().map(PgDatabase::create_on);
    let database_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dir.path().join("facegate.db").display()),
    };
    let backend = if pg.is_some() { "PostgreSQL" } else { "SQLite" };
    // The server's default model: the bulk-loaded faces must match it.
    let model = facegate_server::config::Config::default()
        .default_model
        .version()
        .to_string();
    let key = MasterKey::load_or_create(&dir.path().join("master.key")).unwrap();
    println!(
        "backend {backend}, {} faces of dim {DIM}, model {model}",
        args.faces
    );

    // Empty-database baseline first: same models, nothing to load.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty_pg = args.postgres.as_deref().map(PgDatabase::create_on);
    let empty_url = match &empty_pg {
        Some(db) => db.url.clone(),
        None => format!(
            "sqlite://{}",
            empty_dir.path().join("facegate.db").display()
        ),
    };

    let mut rng = Rng(0x5eed);
    let gallery =
        Gallery::open(&database_url, KeyRing::new(&key), GalleryOptions::default()).unwrap();
    gallery.create_group(APP, BIG, &model).unwrap();
    gallery.create_group(APP, EMPTY, &model).unwrap();
    let t0 = Instant::now();
    let batch = 1000;
    let mut stored = 0;
    while stored < args.faces {
        let n = batch.min(args.faces - stored);
        let faces = (0..n).map(|_| rng.face()).collect();
        gallery
            .add_faces(
                APP,
                BIG,
                NewFaces {
                    external_image_id: None,
                    model_version: model.clone(),
                    faces,
                },
                u64::MAX,
            )
            .unwrap();
        stored += n;
    }
    let seed = t0.elapsed();
    println!(
        "seeded {} faces in {:.1} s ({:.0} faces/s, {batch} per transaction)",
        args.faces,
        seed.as_secs_f64(),
        args.faces as f64 / seed.as_secs_f64()
    );

    let t0 = Instant::now();
    drop(gallery);
    let gallery =
        Gallery::open(&database_url, KeyRing::new(&key), GalleryOptions::default()).unwrap();
    println!(
        "store open (decrypt + index {} faces) in process: {:.0} ms",
        args.faces,
        t0.elapsed().as_secs_f64() * 1e3
    );

    // Store-level registration throughput: empty group, then the big one.
    for group in [EMPTY, BIG] {
        let (rate, lat) =
            store_registrations(&gallery, group, &model, args.registrations, &mut rng);
        println!(
            "store registrations into {group:5} group: {rate:.0} faces/s, latency {}",
            summary(lat)
        );
    }
    drop(gallery);
    let big_count = (args.faces + args.registrations) as u64;

    // Cold starts.
    let empty_addr = format!("127.0.0.1:{}", free_port());
    let empty_config = write_config(empty_dir.path(), &empty_addr, &empty_url, &args.models, "");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = write_config(dir.path(), &addr, &database_url, &args.models, "");
    let (mut empty_times, mut full_times) = (Vec::new(), Vec::new());
    for _ in 0..args.starts {
        let (s, t) = start_server(&empty_config, &empty_addr);
        empty_times.push(t.as_secs_f64() * 1e3);
        drop(s);
        let (s, t) = start_server(&config, &addr);
        full_times.push(t.as_secs_f64() * 1e3);
        assert_eq!(face_count(&s.addr, BIG), big_count);
        drop(s);
    }
    println!("cold start, empty database: {}", summary(empty_times));
    println!(
        "cold start, {} faces:       {}",
        big_count,
        summary(full_times)
    );

    // HTTP registrations with real photos.
    if args.http_registrations > 0 {
        let (s, _) = start_server(&config, &addr);
        for group in [EMPTY, BIG] {
            let rate = http_registrations(&s.addr, group, &args.orl, args.http_registrations);
            println!(
                "HTTP registrations (ORL photos, 2 clients) into {group:5} group: {rate:.1} faces/s"
            );
        }
    }
}
