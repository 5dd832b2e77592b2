//! The server under hostile or unlucky conditions, over real sockets:
//! slow and silent clients, a full connection table, broken bodies and
//! oversized heads, paging tokens of a re-created group, a stuck database.

use facegate_test_support::server as common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server with short timeouts, so the tests wait seconds, not minutes.
async fn start_tight(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut facegate_server::Config),
) -> TestServer {
    let setup = Setup::default();
    let mut config = config_in(dir, &setup);
    config.header_timeout_secs = 1;
    config.body_timeout_secs = 1;
    config.idle_timeout_secs = 3;
    tweak(&mut config);
    let db = on_postgres().then(PgDatabase::create);
    if let Some(db) = &db {
        config.database_url = Some(db.url.clone());
    }
    let options = facegate_server::StartOptions {
        analyzer: Some(engine()),
        token_ttl: setup.token_ttl,
        fetch_timeout: setup.fetch_timeout,
        ..facegate_server::StartOptions::default()
    };
    TestServer::start_with(config, options, db).await
}

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// How long until the server closes `sock` (reads return 0 or fail),
/// waiting at most `max`; `None` if it stayed open.
async fn time_to_close(sock: &mut TcpStream, max: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(max.saturating_sub(started.elapsed()), sock.read(&mut buf)).await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// Reads one whole HTTP/1.1 response with a Content-Length body: status
/// line and the JSON body.
async fn read_response(sock: &mut TcpStream) -> (String, Value) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = &text[..head_end];
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .expect("content-length");
        if data.len() >= head_end + 4 + len {
            let status = head.lines().next().unwrap().to_string();
            let body = serde_json::from_slice(&data[head_end + 4..head_end + 4 + len])
                .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            return (status, body);
        }
    }
}

fn reco_path(path: &str) -> String {
    format!("/nhn-face-reco/v1.0/appkeys/{APP}{path}")
}

#[test]
fn silent_partial_idle_and_slow_connections_are_closed_in_time() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_tight(dir.path(), |_| {}).await;
        let a = addr(&s);

        // A socket that never sends a byte: the header timeout (1 s).
        let mut silent = TcpStream::connect(&a).await.unwrap();
        // A request head that never ends.
        let mut partial = TcpStream::connect(&a).await.unwrap();
        partial
            .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n", reco_path("/groups")).as_bytes())
            .await
            .unwrap();
        // A kept-alive connection after one request: the idle timeout (3 s).
        let mut idle = TcpStream::connect(&a).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_response(&mut idle).await;
        assert!(status.contains("200"), "{status}");

        for (name, sock) in [("silent", &mut silent), ("partial header", &mut partial)] {
            let t = time_to_close(sock, Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("{name} connection still open after 5 s"));
            assert!(
                t < Duration::from_millis(2500),
                "{name}: closed after {t:?}"
            );
        }
        // Still open past the header timeout: idle is not a slow header.
        assert_eq!(
            time_to_close(&mut idle, Duration::from_millis(800)).await,
            None
        );
        let t = time_to_close(&mut idle, Duration::from_secs(5))
            .await
            .expect("idle connection closed");
        assert!(t < Duration::from_secs(4), "idle closed after {t:?} more");

        // A body that stops arriving: the handler answers "malformed
        // request" once the body timeout (1 s) passes.
        let mut slow = TcpStream::connect(&a).await.unwrap();
        slow.write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nx-nhn-apikey: {FACE_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"image\":",
                reco_path("/detect")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let started = Instant::now();
        let (_, v) = read_response(&mut slow).await;
        assert_error(&v, -40000, "InvalidParam");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        s.stop().await;
    });
}

#[test]
fn a_full_connection_table_still_answers_health_checks_and_busy_requests_finish() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_tight(dir.path(), |c| {
            c.max_connections = 20;
            c.header_timeout_secs = 30;
        })
        .await;
        let a = addr(&s);
        // A request in flight whose body is still coming: it must not be
        // the connection given up when the table is full.
        let body = serde_json::to_vec(&json!({"image": image_bytes(&asset("t1.jpg"))})).unwrap();
        let mut busy = TcpStream::connect(&a).await.unwrap();
        busy.write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nx-nhn-apikey: {FACE_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                reco_path("/detect"),
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        busy.write_all(&body[..body.len() / 2]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut silent = Vec::new();
        for _ in 0..40 {
            silent.push(TcpStream::connect(&a).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let r = send("GET", &format!("{}/healthz", s.base), &[], None).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The oldest silent sockets made room and were closed.
        let mut closed = 0;
        for sock in silent.iter_mut().take(20) {
            if time_to_close(sock, Duration::from_millis(50))
                .await
                .is_some()
            {
                closed += 1;
            }
        }
        assert!(
            closed >= 15,
            "only {closed} of the oldest 20 silent sockets closed"
        );

        busy.write_all(&body[body.len() / 2..]).await.unwrap();
        let (_, v) = read_response(&mut busy).await;
        assert_code(&v, 0);
        assert_eq!(v["data"]["faceDetailCount"], 6);
        s.stop().await;
    });
}

#[test]
fn broken_bodies_oversized_heads_and_declared_sizes_get_the_surface_envelope() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_tight(dir.path(), |_| {}).await;
        let a = addr(&s);
        let head = |extra: &str| {
            format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nx-nhn-apikey: {FACE_KEY}\r\n\
                 Content-Type: application/json\r\n{extra}\r\n",
                reco_path("/detect")
            )
        };

        // Broken chunked encoding: a malformed request, not "too large".
        let mut sock = TcpStream::connect(&a).await.unwrap();
        sock.write_all(
            format!(
                "{}zz\r\nnot a chunk\r\n",
                head("Transfer-Encoding: chunked\r\n")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (_, v) = read_response(&mut sock).await;
        assert_error(&v, -40000, "InvalidParam");

        // A body shorter than its Content-Length (the client gives up).
        let mut sock = TcpStream::connect(&a).await.unwrap();
        sock.write_all(format!("{}{{\"image\"", head("Content-Length: 500\r\n")).as_bytes())
            .await
            .unwrap();
        sock.shutdown().await.unwrap();
        let (_, v) = read_response(&mut sock).await;
        assert_error(&v, -40000, "InvalidParam");

        // Over the route's limit by Content-Length alone: refused at once,
        // without `100 Continue`, as ImageTooLarge.
        let mut sock = TcpStream::connect(&a).await.unwrap();
        sock.write_all(head("Content-Length: 50000000\r\nExpect: 100-continue\r\n").as_bytes())
            .await
            .unwrap();
        let (status, v) = read_response(&mut sock).await;
        assert!(!status.contains("100"), "{status}");
        assert_error(&v, -45020, "ImageTooLargeException");
        // Compare allows two images' worth.
        let r = send(
            "POST",
            &format!("{}{}", s.base, reco_path("/compare")),
            &[("x-nhn-apikey", FACE_KEY)],
            Some(vec![b' '; 5_000_000]),
        )
        .await;
        assert_error(&r.json(), -40000, "InvalidParam");

        // A long target and a large head, on each surface's own format.
        let long = format!("{}?x={}", reco_path("/groups"), "a".repeat(9000));
        let r = send(
            "GET",
            &format!("{}{long}", s.base),
            &[("x-nhn-apikey", FACE_KEY)],
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_error(&r.json(), -40000, "InvalidParam");
        let big = "b".repeat(20_000);
        let r = send(
            "GET",
            &format!("{}{}", s.base, reco_path("/groups?limit=1")),
            &[("x-nhn-apikey", FACE_KEY), ("x-padding", &big)],
            None,
        )
        .await;
        assert_error(&r.json(), -40000, "InvalidParam");
        let r = send(
            "POST",
            &format!("{}/modules/liveness", s.base),
            &[("x-api-key", ARGOS_KEY), ("x-padding", &big)],
            Some(b"{}".to_vec()),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.json()["transactionId"].is_string());
        let mut many: Vec<(String, String)> = Vec::new();
        for i in 0..150 {
            many.push((format!("x-h{i}"), "v".into()));
        }
        let mut headers: Vec<(&str, &str)> =
            many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("x-nhn-apikey", FACE_KEY));
        let r = send(
            "GET",
            &format!("{}{}", s.base, reco_path("/groups?limit=1")),
            &headers,
            None,
        )
        .await;
        assert_error(&r.json(), -40000, "InvalidParam");
        s.stop().await;
    });
}

#[test]
fn a_paging_token_does_not_survive_its_group_being_recreated() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TestServer::start(dir.path(), Setup::default()).await;
        let t1 = image_bytes(&asset("t1.jpg"));
        s.create_group("g").await;
        assert_code(
            &s.post("/groups/g", json!({"image": t1, "limit": 3})).await,
            0,
        );
        let v = s.get("/groups/g/faces?limit=1").await;
        let token = v["data"]["nextToken"].as_str().unwrap().to_string();
        assert!(!token.is_empty());
        // The token works while its group lives.
        assert_code(
            &s.get(&format!("/groups/g/faces?limit=1&next-token={token}"))
                .await,
            0,
        );
        assert_code(&s.delete("/groups/g").await, 0);
        s.create_group("g").await;
        assert_code(
            &s.post("/groups/g", json!({"image": t1, "limit": 3})).await,
            0,
        );
        let v = s
            .get(&format!("/groups/g/faces?limit=1&next-token={token}"))
            .await;
        assert_error(&v, -40040, "InvalidTokenError");
        s.stop().await;
    });
}

/// Holds a write lock on the store from outside the server until dropped.
enum ExternalLock {
    Sqlite(rusqlite::Connection),
    Postgres(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl ExternalLock {
    fn take(s: &TestServer) -> ExternalLock {
        match &s.db {
            Some(db) => {
                let url = db.url.clone();
                let (locked_tx, locked_rx) = std::sync::mpsc::channel();
                let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
                let handle = std::thread::spawn(move || {
                    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    let mut tx = c.transaction().unwrap();
                    tx.batch_execute("LOCK TABLE groups IN ACCESS EXCLUSIVE MODE")
                        .unwrap();
                    locked_tx.send(()).unwrap();
                    let _ = release_rx.recv();
                    tx.rollback().unwrap();
                });
                locked_rx.recv().unwrap();
                ExternalLock::Postgres(release_tx, handle)
            }
            None => {
                let c = rusqlite::Connection::open(s.config.data_dir.join("facegate.db")).unwrap();
                c.execute_batch("BEGIN EXCLUSIVE").unwrap();
                ExternalLock::Sqlite(c)
            }
        }
    }

    fn release(self) {
        match self {
            ExternalLock::Sqlite(c) => c.execute_batch("ROLLBACK").unwrap(),
            ExternalLock::Postgres(tx, handle) => {
                tx.send(()).unwrap();
                handle.join().unwrap();
            }
        }
    }
}

#[test]
fn a_stuck_database_fails_requests_at_the_store_deadline_and_recovers() {
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut s = start_tight(dir.path(), |c| c.store_timeout_secs = 1).await;
        s.create_group("before").await;
        let lock = ExternalLock::take(&s);
        let started = Instant::now();
        let v = s.post("/groups", json!({"groupId": "during"})).await;
        let waited = started.elapsed();
        assert_error(&v, -50000, "InternalServerError");
        assert_eq!(v["header"]["detail"], "the database did not answer in time");
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        lock.release();
        s.create_group("after").await;
        assert_code(&s.get("/groups/before").await, 0);
        s.stop().await;
    });
}
