//! The web console in a real browser: a real `facegate serve` process with
//! the real models, driven through ChromeDriver in headless Chromium.
//! Screenshots of every view at 1280×800 and 390×844 are written under
//! `target/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use facegate_test_support::paths::{model_dir, workspace};
use facegate_test_support::server::{free_port, send};
use facegate_test_support::webdriver::Browser;

const APP: &str = "console-app";
const FACE_KEY: &str = "console-face-key";
const LIVE_KEY: &str = "console-live-key";
const ARGOS_KEY: &str = "console-argos-key";
const VIEWS: [&str; 4] = ["analyse", "groups", "enrol", "search"];
const WAIT: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `facegate serve` on a free port with one tenant and `extra` config lines.
fn serve(dir: &Path, extra: &str) -> Server {
    let port = free_port();
    let config = dir.join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nmodel_dir = \"{}\"\n{extra}\n\
             [[tenants]]\napp_key = \"{APP}\"\nface_api_key = \"{FACE_KEY}\"\n\
             liveness_secret_key = \"{LIVE_KEY}\"\nargos_api_key = \"{ARGOS_KEY}\"\n",
            dir.join("data").display(),
            model_dir().display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("FACEGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = rt.block_on(facegate_test_support::server::try_send(
            "GET",
            &format!("{}/readyz", server.base),
            &[],
            None,
        ));
        if ready.is_ok_and(|r| r.status == 200) {
            return server;
        }
        assert!(Instant::now() < deadline, "server not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get(url: &str) -> facegate_test_support::server::Resp {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(send("GET", url, &[], None))
}

fn screenshots() -> PathBuf {
    workspace().join("target/console-screenshots")
}

/// ORL photos as PNG files named for their person (`s1.png`, ...), so the
/// console derives each external id from the file name.
fn orl_file(dir: &Path, person: u32, shot: u32, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, facegate_test_support::paths::orl(person, shot)).unwrap();
    path
}

fn show(b: &Browser, view: &str) {
    b.click(&format!("[data-view='{view}']"));
    b.wait_for(
        &format!("!document.getElementById('view-{view}').hidden"),
        WAIT,
    );
}

/// Clicks `button` and waits for every request it started to end.
fn run(b: &Browser, button: &str) {
    b.script("document.body.dataset.busy = 'pending'; return null;");
    b.click(button);
    b.wait_for("document.body.dataset.busy === '0'", WAIT);
}

fn text(b: &Browser, css: &str) -> String {
    b.script(&format!(
        "return document.querySelector({css:?}).textContent;"
    ))
    .as_str()
    .unwrap_or_default()
    .to_string()
}

#[test]
fn the_console_analyses_enrols_searches_and_shows_errors_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "");

    // Served with a strict policy, from /console/ only.
    let page = get(&format!("{}/console/", server.base));
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    let redirect = get(&format!("{}/console", server.base));
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.headers["location"], "/console/");

    let mut b = Browser::start(free_port(), 1280, 800);
    b.goto(&format!("{}/console/", server.base));
    b.wait_for("document.body.dataset.ready === '1'", WAIT);

    // Every control is labelled and reachable by keyboard (native
    // controls, none taken out of the tab order).
    let unlabelled = b.script(
        "return [...document.querySelectorAll('input, select, textarea')]\
         .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) \
                 && !e.getAttribute('aria-label')).map(e => e.id);",
    );
    assert_eq!(unlabelled, serde_json::json!([]));
    let untabbable = b.script(
        "return [...document.querySelectorAll('button, input, select, a[href]')]\
         .filter(e => e.tabIndex < 0).map(e => e.id || e.textContent);",
    );
    assert_eq!(untabbable, serde_json::json!([]));

    // Keys, kept in this tab's sessionStorage only.
    b.fill("#key-app", APP);
    b.fill("#key-face", FACE_KEY);
    b.fill("#key-liveness", LIVE_KEY);
    b.fill("#key-argos", ARGOS_KEY);
    b.click("#keys-save");
    let stored = b.script(
        "return [JSON.stringify(sessionStorage).includes('console-face-key'), \
         JSON.stringify(localStorage).includes('console-face-key'), document.cookie];",
    );
    assert_eq!(stored, serde_json::json!([true, false, ""]));

    // Analyse: six faces drawn, the raw answer beside them, liveness on.
    show(&b, "analyse");
    let t1 = facegate_test_support::paths::asset_path("t1.jpg");
    b.fill("#analyse-file", t1.to_str().unwrap());
    b.click("#analyse-liveness");
    run(&b, "#analyse-run");
    b.wait_for(
        "document.getElementById('analyse-canvas').dataset.faces !== undefined",
        WAIT,
    );
    assert_eq!(
        b.script("return document.getElementById('analyse-canvas').dataset.faces;"),
        "6"
    );
    assert!(text(&b, "#analyse-json").contains("\"faceDetailCount\": 6"));
    assert_eq!(
        b.script("return document.querySelectorAll('#analyse-faces tbody tr').length;"),
        6
    );
    assert!(text(&b, "#analyse-argos")
        .chars()
        .any(|c| c.is_ascii_digit()));
    b.script("document.getElementById('analyse-status').scrollIntoView(); return null;");
    b.screenshot(&screenshots().join("analysed-1280x800.png"));

    // Groups: create one.
    show(&b, "groups");
    b.fill("#group-id", "console-demo");
    run(&b, "#group-create");
    run(&b, "#groups-refresh");
    b.wait_for(
        "document.querySelector(\"#group-list [data-group-id='console-demo']\")",
        WAIT,
    );

    // Enrol two ORL people, named by their files.
    let photos = tempfile::tempdir().unwrap();
    let s1 = orl_file(photos.path(), 1, 1, "s1.png");
    let s2 = orl_file(photos.path(), 2, 1, "s2.png");
    show(&b, "enrol");
    b.fill("#enrol-group", "console-demo");
    b.fill(
        "#enrol-files",
        &format!("{}\n{}", s1.display(), s2.display()),
    );
    run(&b, "#enrol-run");
    assert_eq!(
        b.script(
            "return [...document.querySelectorAll('#enrol-results tbody tr')]\
             .map(r => r.dataset.status);"
        ),
        serde_json::json!(["ok", "ok"])
    );

    // Search with a third photo of person 1: person 1 ranks first.
    let probe = orl_file(photos.path(), 1, 3, "probe.png");
    show(&b, "search");
    b.fill("#search-group", "console-demo");
    b.fill("#search-file", probe.to_str().unwrap());
    run(&b, "#search-run");
    let ranked = b.script(
        "return [...document.querySelectorAll('#search-results li')]\
         .map(li => li.dataset.externalImageId);",
    );
    assert_eq!(ranked[0], "s1", "ranking: {ranked}");

    // Screenshots of every view, at desktop and phone sizes.
    for (w, h) in [(1280, 800), (390, 844)] {
        b.resize(w, h);
        for view in VIEWS {
            show(&b, view);
            b.script(&format!(
                "document.getElementById('view-{view}').scrollIntoView(); return null;"
            ));
            b.screenshot(&screenshots().join(format!("{view}-{w}x{h}.png")));
        }
        // Nothing wider than the viewport on a phone.
        let overflow = b.script("return document.documentElement.scrollWidth - window.innerWidth;");
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{w}px: overflows by {overflow}"
        );
    }
    b.resize(1280, 800);

    // An error shows the API's code: a group id with a space.
    show(&b, "groups");
    b.fill("#group-id", "bad group");
    run(&b, "#group-create");
    b.wait_for("document.getElementById('error').dataset.code", WAIT);
    b.script("document.getElementById('error').scrollIntoView(); return null;");
    assert_eq!(
        b.script("return document.getElementById('error').dataset.code;"),
        "-40010"
    );
    assert!(text(&b, "#error").contains("InvalidGroupID"));
    b.screenshot(&screenshots().join("error-1280x800.png"));

    // Every request the page made went to facegate and nowhere else.
    let origins = b.script(
        "return [...new Set(performance.getEntriesByType('resource')\
         .map(e => new URL(e.name).origin))];",
    );
    assert_eq!(origins, serde_json::json!([server.base]));
    assert!(
        b.script("return performance.getEntriesByType('resource').length;")
            .as_u64()
            .unwrap()
            >= 8
    );
}

#[test]
fn console_false_serves_no_console() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "console = false");
    for path in ["/console/", "/console/console.js", "/console"] {
        assert_eq!(get(&format!("{}{path}", server.base)).status, 404, "{path}");
    }
}
