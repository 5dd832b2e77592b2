//! Fetch tests against throw-away HTTP servers on 127.0.0.1. Every server
//! task dies with its test's runtime; nothing leaves the loopback interface.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

enum Reply {
    Raw(Vec<u8>),
    /// Send these bytes, then go silent without closing.
    Stall(Vec<u8>),
}

fn ok(body: &[u8]) -> Reply {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    Reply::Raw(r)
}

fn ok_until_close(body: &[u8]) -> Reply {
    let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
    r.extend_from_slice(body);
    Reply::Raw(r)
}

fn redirect(location: &str) -> Reply {
    Reply::Raw(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes(),
    )
}

fn status(code: u16) -> Reply {
    Reply::Raw(
        format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// Binds 127.0.0.1 on a free port inside the allowed 10000-12000 range.
/// Parallel tests start at different offsets and skip ports in use.
fn bind_in_range() -> TcpListener {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % 2001) as u16;
    for _ in 0..2001 {
        let n = NEXT.fetch_add(37, Ordering::Relaxed);
        let port = 10_000 + (start.wrapping_add(n) % 2001);
        if let Ok(l) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            l.set_nonblocking(true).unwrap();
            return TcpListener::from_std(l).unwrap();
        }
    }
    panic!("no free port in 10000-12000");
}

/// A free port in range with nothing listening on it.
fn unused_port_in_range() -> u16 {
    let l = bind_in_range();
    l.local_addr().unwrap().port()
}

/// Starts a server answering `GET path` with `handler(path, port)`.
fn serve(handler: impl Fn(&str, u16) -> Reply + Send + Sync + 'static) -> u16 {
    let listener = bind_in_range();
    let port = listener.local_addr().unwrap().port();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut chunk = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n")
                    && req.len() < 16 * 1024
                    && req.first() != Some(&0x16)
                {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&chunk[..n]),
                    }
                }
                if req.first() == Some(&0x16) {
                    // A TLS ClientHello: answer in plain text so the client fails fast.
                    let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    return;
                }
                let text = String::from_utf8_lossy(&req);
                let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
                match handler(&path, port) {
                    Reply::Raw(bytes) => {
                        let _ = sock.write_all(&bytes).await;
                        let _ = sock.shutdown().await;
                    }
                    Reply::Stall(bytes) => {
                        let _ = sock.write_all(&bytes).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                }
            });
        }
    });
    port
}

fn test_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn private_ok() -> FetchPolicy {
    FetchPolicy {
        allow_private: true,
        timeout: Duration::from_secs(5),
        ..FetchPolicy::default()
    }
}

fn url_err(r: Result<Vec<u8>, ImageError>) -> UrlError {
    match r {
        Err(ImageError::InvalidUrl(e)) => e,
        other => panic!("expected InvalidUrl, got {:?}", other.map(|b| b.len())),
    }
}

/// The standard image server used by most tests.
fn image_server() -> (u16, Vec<u8>) {
    let png = test_png(100, 90);
    let body = png.clone();
    let port = serve(move |path, port| match path {
        "/img.png" => ok(&body),
        "/404" => status(404),
        "/500" => status(500),
        "/to-relative" => redirect("img.png"),
        "/to-absolute-path" => redirect("/img.png"),
        "/to-self" => redirect(&format!("http://127.0.0.1:{port}/img.png")),
        "/to-127.0.0.2" => redirect(&format!("http://127.0.0.2:{port}/img.png")),
        "/to-mapped" => redirect(&format!("http://[::ffff:127.0.0.1]:{port}/img.png")),
        "/to-bad-port" => redirect("http://127.0.0.1:9999/img.png"),
        "/to-ftp" => redirect("ftp://127.0.0.1/img.png"),
        "/to-file" => redirect("file:///etc/passwd"),
        "/no-location" => status(302),
        p if p.starts_with("/r/") => match p[3..].parse::<u32>() {
            Ok(0) => redirect("/img.png"),
            Ok(n) => redirect(&format!("/r/{}", n - 1)),
            Err(_) => status(400),
        },
        _ => status(404),
    });
    (port, png)
}

#[tokio::test]
async fn fetches_png_when_private_allowed() {
    let (port, png) = image_server();
    let url = format!("http://127.0.0.1:{port}/img.png");
    let body = fetch(&url, &private_ok()).await.unwrap();
    assert_eq!(body, png);
    let img = crate::decode(&body, &crate::Limits::default()).unwrap();
    assert_eq!(img.dimensions(), (100, 90));
    // localhost and fragments work too.
    let url = format!("http://localhost:{port}/img.png#frag");
    let r = fetch(&url, &private_ok()).await;
    // localhost may also resolve to ::1 where nothing listens; 127.0.0.1 is
    // tried in turn, so this must still succeed.
    assert_eq!(r.unwrap(), png);
}

#[tokio::test]
async fn same_url_refused_when_private_not_allowed() {
    let (port, _) = image_server();
    let strict = FetchPolicy::default();
    let e = url_err(fetch(&format!("http://127.0.0.1:{port}/img.png"), &strict).await);
    assert!(matches!(e, UrlError::ForbiddenAddress(ip) if ip == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let e = url_err(fetch(&format!("http://localhost:{port}/img.png"), &strict).await);
    assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{e:?}");
    let e = url_err(fetch(&format!("http://[::ffff:127.0.0.1]:{port}/"), &strict).await);
    assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{e:?}");
    let e = url_err(fetch(&format!("http://[::1]:{port}/"), &strict).await);
    assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{e:?}");
    // 2130706433 == 127.0.0.1: the resolved address is what gets checked.
    let e = url_err(fetch(&format!("http://2130706433:{port}/"), &strict).await);
    assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{e:?}");
}

#[tokio::test]
async fn private_literals_refused_without_connecting() {
    // Refused before any packet is sent, so these addresses are never touched.
    let strict = FetchPolicy::default();
    for url in [
        "http://10.0.0.1/",
        "http://192.168.1.1/x.png",
        "http://172.16.0.1:10000/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "https://127.0.0.1/",
        "https://[::ffff:10.0.0.1]:443/",
    ] {
        let e = url_err(fetch(url, &strict).await);
        assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{url}: {e:?}");
    }
    // Never-unicast addresses stay refused even when private ones are allowed.
    for url in [
        "http://0.0.0.0:10000/",
        "http://[::]:10000/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
    ] {
        let e = url_err(fetch(url, &private_ok()).await);
        assert!(matches!(e, UrlError::ForbiddenAddress(_)), "{url}: {e:?}");
    }
}

#[tokio::test]
async fn redirects_are_followed_and_revalidated() {
    let (port, png) = image_server();
    let base = format!("http://127.0.0.1:{port}");
    for path in ["/to-relative", "/to-absolute-path", "/to-self"] {
        assert_eq!(
            fetch(&format!("{base}{path}"), &private_ok())
                .await
                .unwrap(),
            png,
            "{path}"
        );
    }
    // A check that admits only 127.0.0.1 stands in for "the first hop is
    // public": the redirect to another (unchecked) address must be refused.
    let only_first = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST);
    let policy = private_ok();
    assert_eq!(
        fetch_checked(&format!("{base}/to-self"), &policy, &only_first)
            .await
            .unwrap(),
        png
    );
    let e = url_err(fetch_checked(&format!("{base}/to-127.0.0.2"), &policy, &only_first).await);
    assert!(
        matches!(e, UrlError::ForbiddenAddress(ip) if ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
    );
    let e = url_err(fetch_checked(&format!("{base}/to-mapped"), &policy, &only_first).await);
    assert!(
        matches!(e, UrlError::ForbiddenAddress(IpAddr::V6(_))),
        "{e:?}"
    );
    // Port and scheme of every hop are checked too.
    let e = url_err(fetch(&format!("{base}/to-bad-port"), &policy).await);
    assert!(matches!(e, UrlError::Port(9999)), "{e:?}");
    let e = url_err(fetch(&format!("{base}/to-ftp"), &policy).await);
    assert!(matches!(e, UrlError::Scheme), "{e:?}");
    let e = url_err(fetch(&format!("{base}/to-file"), &policy).await);
    assert!(matches!(e, UrlError::Scheme), "{e:?}");
    let e = url_err(fetch(&format!("{base}/no-location"), &policy).await);
    assert!(matches!(e, UrlError::BadRedirect), "{e:?}");
}

#[tokio::test]
async fn at_most_three_redirects() {
    let (port, png) = image_server();
    let policy = private_ok();
    // /r/2 -> /r/1 -> /r/0 -> /img.png: three redirects.
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{port}/r/2"), &policy)
            .await
            .unwrap(),
        png
    );
    let e = url_err(fetch(&format!("http://127.0.0.1:{port}/r/3"), &policy).await);
    assert!(matches!(e, UrlError::TooManyRedirects(3)), "{e:?}");
    let e = url_err(fetch(&format!("http://127.0.0.1:{port}/r/50"), &policy).await);
    assert!(matches!(e, UrlError::TooManyRedirects(3)), "{e:?}");
}

#[tokio::test]
async fn non_2xx_and_unreachable_are_invalid_url() {
    let (port, _) = image_server();
    let policy = private_ok();
    let e = url_err(fetch(&format!("http://127.0.0.1:{port}/404"), &policy).await);
    assert!(matches!(e, UrlError::Status(404)), "{e:?}");
    let e = url_err(fetch(&format!("http://127.0.0.1:{port}/500"), &policy).await);
    assert!(matches!(e, UrlError::Status(500)), "{e:?}");
    let free = unused_port_in_range();
    let e = url_err(fetch(&format!("http://127.0.0.1:{free}/"), &policy).await);
    assert!(matches!(e, UrlError::Connect), "{e:?}");
}

#[tokio::test]
async fn body_over_cap_is_too_large() {
    let cap = 1000;
    let port = serve(move |path, _| match path {
        "/exact" => ok(&vec![1; cap]),
        "/declared" => ok(&vec![1; cap + 1]),
        "/undeclared" => ok_until_close(&vec![1; 50 * cap]),
        // Claims a small body but keeps sending: hyper stops at the length.
        _ => status(404),
    });
    let policy = FetchPolicy {
        max_bytes: cap,
        ..private_ok()
    };
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        fetch(&format!("{base}/exact"), &policy)
            .await
            .unwrap()
            .len(),
        cap
    );
    for path in ["/declared", "/undeclared"] {
        let r = fetch(&format!("{base}{path}"), &policy).await;
        assert!(
            matches!(r, Err(ImageError::TooLarge { max_bytes: 1000 })),
            "{path}"
        );
    }
}

#[tokio::test]
async fn stalled_server_times_out() {
    let port = serve(|path, _| match path {
        "/headers" => Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nabc".to_vec()),
        _ => Reply::Stall(Vec::new()),
    });
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..private_ok()
    };
    for path in ["/silent", "/headers"] {
        let start = Instant::now();
        let r = fetch(&format!("http://127.0.0.1:{port}{path}"), &policy).await;
        let took = start.elapsed();
        assert!(matches!(r, Err(ImageError::Timeout)), "{path}");
        assert!(took >= Duration::from_millis(290), "{path}: {took:?}");
        assert!(took < Duration::from_secs(2), "{path}: {took:?}");
    }
}

#[tokio::test]
async fn bad_schemes_ports_and_shapes_refused() {
    let policy = private_ok();
    for url in [
        "ftp://127.0.0.1/img.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_GET",
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "HTTPX://127.0.0.1/",
    ] {
        let e = url_err(fetch(url, &policy).await);
        assert!(matches!(e, UrlError::Scheme), "{url}: {e:?}");
    }
    for (url, port) in [
        ("http://127.0.0.1:22/", 22),
        ("http://127.0.0.1:8080/", 8080),
        ("http://127.0.0.1:9999/", 9999),
        ("http://127.0.0.1:12001/", 12001),
        ("https://example.invalid:8443/", 8443),
        ("http://127.0.0.1:0/", 0),
    ] {
        let e = url_err(fetch(url, &policy).await);
        assert!(matches!(e, UrlError::Port(p) if p == port), "{url}: {e:?}");
    }
    for url in [
        "",
        "   ",
        "/img.png",
        "//127.0.0.1/img.png",
        "http://",
        "http:///x",
        "127.0.0.1:10000",
    ] {
        let e = url_err(fetch(url, &policy).await);
        assert!(
            matches!(e, UrlError::Malformed | UrlError::Scheme),
            "{url:?}: {e:?}"
        );
    }
    let e = url_err(fetch("http://user:pw@127.0.0.1:10000/", &policy).await);
    assert!(matches!(e, UrlError::Userinfo), "{e:?}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_fails_tls() {
    let (port, _) = image_server();
    let e = url_err(fetch(&format!("https://127.0.0.1:{port}/img.png"), &private_ok()).await);
    assert!(matches!(e, UrlError::Tls(_)), "{e:?}");
    let e = url_err(fetch(&format!("https://localhost:{port}/img.png"), &private_ok()).await);
    assert!(matches!(e, UrlError::Tls(_) | UrlError::Connect), "{e:?}");
}

#[test]
fn location_joining() {
    let t = Target::parse("https://h.example:10001/a/b/c.png?x=1").unwrap();
    assert_eq!(t.join("d.png"), "https://h.example:10001/a/b/d.png");
    assert_eq!(t.join("/d.png"), "https://h.example:10001/d.png");
    assert_eq!(t.join("?y=2"), "https://h.example:10001/a/b/c.png?y=2");
    assert_eq!(t.join("//other.example/x"), "https://other.example/x");
    assert_eq!(t.join("http://z.example/q"), "http://z.example/q");
    let t = Target::parse("http://[::1]").unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path_and_query.as_str()),
        ("::1", 80, "/")
    );
    assert_eq!(Target::parse("https://x.example").unwrap().port, 443);
    assert_eq!(Target::parse("HTTP://x.example:11000").unwrap().port, 11000);
}

#[test]
fn futures_are_send() {
    // axum handlers need Send futures.
    fn assert_send<T: Send>(_: &T) {}
    let policy = FetchPolicy::default();
    assert_send(&fetch("http://x.example/", &policy));
}
