//! A small blocking WebDriver client (W3C protocol, as ChromeDriver speaks
//! it) for the console's browser tests: start ChromeDriver and a headless
//! Chromium, find elements, type, click, run scripts, take screenshots.
//! Only what those tests use; every call panics with the driver's message
//! on failure, as a test should.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The key W3C WebDriver gives element references under.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// ChromeDriver's path: `FACEGATE_TEST_CHROMEDRIVER`, else Debian's.
pub fn chromedriver_path() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// Chromium's path: `FACEGATE_TEST_CHROMIUM`, else Debian's.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("FACEGATE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// One HTTP/1.1 exchange with the driver; the JSON body of its answer.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    // ChromeDriver keeps the connection open despite `Connection: close`,
    // so the answer is read by its declared length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the answer's head".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut payload = raw[split + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(len) => payload.len() >= len,
            None if chunked => payload.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if chunked {
        payload = dechunk(&payload);
    }
    serde_json::from_slice(&payload).map_err(|e| format!("driver answer not JSON: {e}"))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A running ChromeDriver with one headless Chromium session; both end on
/// drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// An element of the page.
#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver on `port` and a headless Chromium of
    /// `width`×`height` CSS pixels.
    pub fn start(port: u16, width: u32, height: u32) -> Browser {
        let driver_path = chromedriver_path();
        let chromium = chromium_path();
        assert!(
            driver_path.exists() && chromium.exists(),
            "the console's browser tests need Chromium and ChromeDriver ({} and {}): \
             apt-get install chromium chromium-driver (.ci/run does)",
            chromium.display(),
            driver_path.display()
        );
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while call(port, "GET", "/status", None)
            .map(|v| v["value"]["ready"] != true)
            .unwrap_or(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let v = call(port, "POST", "/session", Some(&caps)).expect("new session");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        let mut browser = Browser {
            driver,
            port,
            session,
        };
        browser.resize(width, height);
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("/session/{}{path}", self.session);
        let v = call(self.port, method, &url, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if let Some(err) = v["value"]["error"].as_str() {
            panic!("{method} {path}: {err}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    /// The viewport's size in CSS pixels (the window is grown to fit it).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
        // The window includes no chrome in headless mode, but be exact.
        let inner: Value = self.script("return [window.innerWidth, window.innerHeight];");
        let dw = width as i64 - inner[0].as_i64().unwrap_or(width as i64);
        let dh = height as i64 - inner[1].as_i64().unwrap_or(height as i64);
        if dw != 0 || dh != 0 {
            self.command(
                "POST",
                "/window/rect",
                Some(json!({ "width": width as i64 + dw, "height": height as i64 + dh })),
            );
        }
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects (panics when there is none).
    pub fn find(&self, css: &str) -> Element {
        let v = self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("{css}: {v}"))
                .to_string(),
        )
    }

    /// Clears `css`'s field and types `text` into it (for a file input: a
    /// path, or several separated by newlines).
    pub fn fill(&self, css: &str, text: &str) {
        let e = self.find(css);
        let is_file: Value = self.script_with(
            "return arguments[0].type === 'file';",
            json!([{ ELEMENT_KEY: e.0 }]),
        );
        let text = if is_file == true {
            // ChromeDriver takes canonical paths only.
            text.lines()
                .map(|p| {
                    std::fs::canonicalize(p)
                        .unwrap_or_else(|e| panic!("{p}: {e}"))
                        .to_string_lossy()
                        .into_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            self.command("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
            text.to_string()
        };
        self.command(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    /// Clicks `css`.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.command("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub fn script(&self, script: &str) -> Value {
        self.script_with(script, json!([]))
    }

    fn script_with(&self, script: &str, args: Value) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Waits until `condition` (a script expression) is truthy.
    pub fn wait_for(&self, condition: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let script = format!("return !!({condition});");
        while self.script(&script) != true {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {condition}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.command("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot"))
            .expect("screenshot Base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
