//! `facegate enroll` and `facegate search-dir`: folders of photos against a
//! running server, as an HTTP client of its NHN Face Recognition API (so
//! the server's rules, quotas and logs apply as to any client).
//!
//! The face API key comes from `FACEGATE_API_KEY` only (a command-line
//! argument would be visible to every user in the process list).

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use clap::ValueEnum;
use facegate_server::config::Config;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error>;

/// The environment variable holding the face API key (`x-nhn-apikey`).
pub const API_KEY_VAR: &str = "FACEGATE_API_KEY";

/// One request's time limit (a server busy with other work queues it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Failed images named on stderr before the rest only go to the results.
const ERRORS_SHOWN: usize = 10;

/// Where the externalImageId of an enrolled photo comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExternalIdFrom {
    /// The folder's name for photos in a sub-folder of DIR, the file's
    /// name without extension for photos directly in DIR.
    Auto,
    /// The file's name without extension.
    Filename,
    /// The name of the folder the photo is in.
    Dirname,
}

/// How `search-dir` prints its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A header, then one CSV row per image.
    Csv,
    /// One JSON object per line.
    Json,
}

/// The server, tenant and group a batch command talks to.
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The appKey.
    pub app_key: String,
    /// The face API key.
    pub api_key: String,
    /// The group id.
    pub group: String,
}

impl Target {
    /// From the command line and the config: `server` defaults to the
    /// config's `listen` (a wildcard address reached on loopback),
    /// `app_key` to the config's only tenant, the key to
    /// `FACEGATE_API_KEY`.
    pub fn resolve(
        config: &Config,
        server: Option<String>,
        app_key: Option<String>,
        group: String,
    ) -> Result<Self, BoxError> {
        let api_key = std::env::var(API_KEY_VAR)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!(
                    "set {API_KEY_VAR} to the tenant's face API key (face_api_key in the \
                     config, sent as x-nhn-apikey)"
                )
            })?;
        let app_key = match app_key {
            Some(k) => k,
            None => match config.tenants.as_slice() {
                [only] => only.app_key.clone(),
                _ => {
                    return Err(format!(
                        "the config has {} tenants; pass --app-key",
                        config.tenants.len()
                    )
                    .into())
                }
            },
        };
        Ok(Target {
            base: server_base(server.as_deref(), &config.listen),
            app_key,
            api_key,
            group,
        })
    }

    fn reco(&self, rest: &str) -> String {
        format!(
            "{}/nhn-face-reco/v1.0/appkeys/{}{rest}",
            self.base, self.app_key
        )
    }
}

/// `explicit` with `http://` added when it has no scheme, else the
/// `listen` address with a wildcard host replaced by loopback.
pub fn server_base(explicit: Option<&str>, listen: &str) -> String {
    let raw = match explicit {
        Some(s) => s.to_string(),
        None => listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:"),
    };
    let with_scheme = if raw.contains("://") {
        raw
    } else {
        format!("http://{raw}")
    };
    with_scheme.trim_end_matches('/').to_string()
}

/// One photo under the walked directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// The file.
    pub path: PathBuf,
    /// Its path relative to the directory, `/`-separated: the key of the
    /// results file.
    pub rel: String,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Every `.jpg`, `.jpeg` and `.png` file under `dir` at any depth, sorted;
/// hidden entries and symbolic links to directories are skipped.
pub fn find_images(dir: &Path) -> std::io::Result<Vec<ImageFile>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<ImageFile>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&path, &rel, out)?;
            } else if (kind.is_file() || (kind.is_symlink() && path.is_file())) && is_image(&path) {
                out.push(ImageFile { path, rel });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// `name` with every character outside `[a-zA-Z0-9_.\-:]` replaced by `_`,
/// cut to 255 characters; `None` when empty.
pub fn sanitize_external_id(name: &str) -> Option<String> {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':') {
                c
            } else {
                '_'
            }
        })
        .take(255)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// The externalImageId of `image` under `from`.
pub fn external_id(image: &ImageFile, from: ExternalIdFrom) -> Option<String> {
    let stem = || {
        image
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
    };
    let parent = || {
        image
            .path
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
    };
    let name = match from {
        ExternalIdFrom::Filename => stem(),
        ExternalIdFrom::Dirname => parent(),
        ExternalIdFrom::Auto if image.rel.contains('/') => parent(),
        ExternalIdFrom::Auto => stem(),
    };
    sanitize_external_id(&name?)
}

// ---- CSV -------------------------------------------------------------------

/// One CSV field, quoted when it needs to be (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A CSV line (with its newline) of `fields`.
pub fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// The rows of a CSV text (RFC 4180: quoted fields may hold commas,
/// doubled quotes and newlines).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

const ENROLL_HEADER: [&str; 4] = ["path", "status", "face_id", "detail"];

/// The paths a results file records as `added` (the last row of a path
/// counts).
pub fn added_paths(csv: &str) -> std::collections::HashSet<String> {
    let mut last: HashMap<String, String> = HashMap::new();
    for row in parse_csv(csv) {
        if row.len() >= 2 && row[..2] != ENROLL_HEADER[..2] {
            last.insert(row[0].clone(), row[1].clone());
        }
    }
    last.into_iter()
        .filter(|(_, status)| status == "added")
        .map(|(path, _)| path)
        .collect()
}

// ---- HTTP ------------------------------------------------------------------

#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    api_key: Arc<str>,
}

impl Http {
    fn new(api_key: &str) -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            api_key: api_key.into(),
        }
    }

    /// The JSON answer of a request; transport errors, other statuses and
    /// bodies that are not JSON are errors.
    async fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("x-nhn-apikey", &*self.api_key)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ));
            }
            serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// `resultCode` and a message (`resultMessage`, plus `detail` when given)
/// of an NHN answer.
fn nhn_result(v: &Value) -> (i64, String) {
    let h = &v["header"];
    let code = h["resultCode"].as_i64().unwrap_or(i64::MIN);
    let mut msg = h["resultMessage"]
        .as_str()
        .unwrap_or("no resultMessage")
        .to_string();
    if let Some(d) = h["detail"].as_str() {
        msg = format!("{msg}: {d}");
    }
    (code, msg)
}

const NOT_FOUND_GROUP: i64 = -40030;
const DUPLICATED_GROUP: i64 = -40020;
const INVALID_PARAM: i64 = -40000;

/// Fails unless the group exists (created first with `create`) and the
/// server accepts the appKey and key.
async fn check_group(http: &Http, target: &Target, create: bool) -> Result<(), String> {
    let url = target.reco(&format!("/groups/{}", target.group));
    let v = http
        .call("GET", &url, None)
        .await
        .map_err(|e| format!("{}: {e}", target.base))?;
    match nhn_result(&v) {
        (0, _) => Ok(()),
        (NOT_FOUND_GROUP, _) if create => {
            let v = http
                .call(
                    "POST",
                    &target.reco("/groups"),
                    Some(&json!({ "groupId": target.group })),
                )
                .await?;
            match nhn_result(&v) {
                (0 | DUPLICATED_GROUP, _) => Ok(()),
                (_, msg) => Err(format!("creating group {}: {msg}", target.group)),
            }
        }
        (NOT_FOUND_GROUP, _) => Err(format!(
            "group {} does not exist (pass --create-group to create it)",
            target.group
        )),
        (_, msg) => Err(format!("group {}: {msg}", target.group)),
    }
}

fn image_json(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading the file: {e}"))?;
    Ok(json!({ "bytes": base64::engine::general_purpose::STANDARD.encode(bytes) }))
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn progress(len: usize, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// Runs `work` on every item with `jobs` concurrent workers and hands each
/// result to `done` (on the calling task, in completion order).
async fn for_each_parallel<T, R, F, Fut>(
    items: Arc<Vec<T>>,
    jobs: usize,
    work: F,
    mut done: impl FnMut(usize, R),
) where
    T: Send + Sync + 'static,
    R: Send + 'static,
    F: Fn(Arc<Vec<T>>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = R> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..jobs.max(1).min(items.len().max(1)) {
        let (items, next, work, tx) = (items.clone(), next.clone(), work.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= items.len() {
                    return;
                }
                let r = work(items.clone(), i).await;
                if tx.send((i, r)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    while let Some((i, r)) = rx.recv().await {
        done(i, r);
    }
}

// ---- enroll ----------------------------------------------------------------

/// `facegate enroll`'s settings besides the target.
pub struct EnrollOptions {
    /// The photo folder.
    pub dir: PathBuf,
    /// Where the externalImageId comes from.
    pub external_id_from: ExternalIdFrom,
    /// Concurrent requests.
    pub jobs: usize,
    /// Create the group when missing.
    pub create_group: bool,
    /// The results file (default `<dir>/facegate-enroll.csv`).
    pub out: Option<PathBuf>,
}

/// What an enrolment did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EnrollSummary {
    /// Images whose face was added.
    pub added: usize,
    /// Images in which the server found no face.
    pub no_face: usize,
    /// Images that failed (recorded with the reason).
    pub errors: usize,
    /// Images skipped as already added by an earlier run.
    pub skipped: usize,
}

enum Enrolled {
    Added(String),
    NoFace,
    Error(String),
}

async fn enroll_one(http: &Http, url: &str, image: &ImageFile, ext: Option<String>) -> Enrolled {
    let image_value = match image_json(&image.path) {
        Ok(v) => v,
        Err(e) => return Enrolled::Error(e),
    };
    let mut body = json!({ "image": image_value, "limit": 1, "mask": false });
    if let Some(ext) = ext {
        body["externalImageId"] = Value::String(ext);
    }
    let v = match http.call("POST", url, Some(&body)).await {
        Ok(v) => v,
        Err(e) => return Enrolled::Error(e),
    };
    match nhn_result(&v) {
        (0, _) => match v["data"]["addedFaces"][0]["faceId"].as_str() {
            Some(id) => Enrolled::Added(id.to_string()),
            None => Enrolled::NoFace,
        },
        (_, msg) => Enrolled::Error(msg),
    }
}

/// Enrols every photo under `opts.dir` not yet recorded as added in the
/// results file, appending one row per photo to it.
pub fn enroll(target: Target, opts: EnrollOptions) -> Result<EnrollSummary, BoxError> {
    let images =
        find_images(&opts.dir).map_err(|e| format!("reading {}: {e}", opts.dir.display()))?;
    if images.is_empty() {
        return Err(format!("no .jpg, .jpeg or .png files under {}", opts.dir.display()).into());
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.dir.join("facegate-enroll.csv"));
    let previous = match std::fs::read_to_string(&out) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading {}: {e}", out.display()).into()),
    };
    let done = added_paths(&previous);
    let found = images.len();
    let todo: Vec<(ImageFile, Option<String>)> = images
        .into_iter()
        .filter(|i| !done.contains(&i.rel))
        .map(|i| {
            let ext = external_id(&i, opts.external_id_from);
            (i, ext)
        })
        .collect();
    let mut summary = EnrollSummary {
        skipped: found - todo.len(),
        ..EnrollSummary::default()
    };
    if todo.is_empty() {
        return Ok(summary);
    }
    let mut csv = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .map_err(|e| format!("opening {}: {e}", out.display()))?;
    if previous.is_empty() {
        csv.write_all(csv_line(&ENROLL_HEADER).as_bytes())?;
    } else if !previous.ends_with('\n') {
        csv.write_all(b"\n")?;
    }

    let http = Http::new(&target.api_key);
    let rt = runtime()?;
    rt.block_on(check_group(&http, &target, opts.create_group))?;
    let url = Arc::<str>::from(target.reco(&format!("/groups/{}", target.group)));
    let pb = progress(todo.len(), "enrolling");
    let todo = Arc::new(todo);
    let mut write_error = None;
    rt.block_on(for_each_parallel(
        todo.clone(),
        opts.jobs,
        {
            let http = http.clone();
            move |items: Arc<Vec<(ImageFile, Option<String>)>>, i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let (image, ext) = &items[i];
                    enroll_one(&http, &url, image, ext.clone()).await
                }
            }
        },
        |i, result| {
            let rel = &todo[i].0.rel;
            let row = match &result {
                Enrolled::Added(id) => {
                    summary.added += 1;
                    csv_line(&[rel.as_str(), "added", id, ""])
                }
                Enrolled::NoFace => {
                    summary.no_face += 1;
                    csv_line(&[rel.as_str(), "no_face", "", ""])
                }
                Enrolled::Error(e) => {
                    summary.errors += 1;
                    if summary.errors <= ERRORS_SHOWN {
                        pb.suspend(|| eprintln!("{rel}: {e}"));
                    }
                    csv_line(&[rel.as_str(), "error", "", e])
                }
            };
            // Written (and flushed) as each image finishes, so an
            // interrupted run resumes where it stopped.
            if let Err(e) = csv.write_all(row.as_bytes()).and_then(|()| csv.flush()) {
                write_error.get_or_insert(e);
            }
            pb.inc(1);
        },
    ));
    pb.finish_and_clear();
    if let Some(e) = write_error {
        return Err(format!("writing {}: {e}", out.display()).into());
    }
    if summary.errors > ERRORS_SHOWN {
        eprintln!(
            "... and {} more errors (see {})",
            summary.errors - ERRORS_SHOWN,
            out.display()
        );
    }
    Ok(summary)
}

// ---- search-dir ------------------------------------------------------------

/// `facegate search-dir`'s settings besides the target.
pub struct SearchOptions {
    /// The photo folder.
    pub dir: PathBuf,
    /// Matches per image (1-4096).
    pub limit: u32,
    /// Least similarity (1-100).
    pub threshold: u32,
    /// Concurrent requests.
    pub jobs: usize,
    /// Output format.
    pub format: OutputFormat,
}

/// What a directory search found, counted by image.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SearchSummary {
    /// Images with at least one match.
    pub matched: usize,
    /// Images whose face matched nothing above the threshold.
    pub unmatched: usize,
    /// Images in which the server found no face.
    pub no_face: usize,
    /// Images that failed.
    pub errors: usize,
}

enum Searched {
    Matches(Vec<Value>),
    NoFace(String),
    Error(String),
}

async fn search_one(http: &Http, url: &str, image: &ImageFile) -> Searched {
    let image_value = match image_json(&image.path) {
        Ok(v) => v,
        Err(e) => return Searched::Error(e),
    };
    let body = json!({ "image": image_value, "mask": false });
    let v = match http.call("POST", url, Some(&body)).await {
        Ok(v) => v,
        Err(e) => return Searched::Error(e),
    };
    match nhn_result(&v) {
        (0, _) => Searched::Matches(
            v["data"]["matchFaces"]
                .as_array()
                .map(|m| {
                    m.iter()
                        .map(|m| {
                            json!({
                                "faceId": m["face"]["faceId"],
                                "externalImageId": m["face"]["externalImageId"],
                                "similarity": m["similarity"],
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        (INVALID_PARAM, msg) if msg.contains("no face found") => Searched::NoFace(msg),
        (_, msg) => Searched::Error(msg),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The CSV header of `search-dir` with `limit` matches per row.
pub fn search_csv_header(limit: u32) -> String {
    let mut h = vec!["path".to_string(), "status".to_string()];
    for i in 1..=limit {
        h.push(format!("face_id_{i}"));
        h.push(format!("external_image_id_{i}"));
        h.push(format!("similarity_{i}"));
    }
    h.push("detail".to_string());
    csv_line(&h)
}

fn search_line(rel: &str, result: &Searched, limit: u32, format: OutputFormat) -> String {
    let (status, matches, detail): (&str, &[Value], &str) = match result {
        Searched::Matches(m) => ("ok", m, ""),
        Searched::NoFace(d) => ("no_face", &[], d),
        Searched::Error(d) => ("error", &[], d),
    };
    match format {
        OutputFormat::Json => {
            let mut v = json!({ "path": rel, "status": status, "matches": matches });
            if !detail.is_empty() {
                v["detail"] = Value::String(detail.to_string());
            }
            format!("{v}\n")
        }
        OutputFormat::Csv => {
            let mut fields = vec![rel.to_string(), status.to_string()];
            for i in 0..limit as usize {
                match matches.get(i) {
                    Some(m) => {
                        fields.push(text_of(&m["faceId"]));
                        fields.push(text_of(&m["externalImageId"]));
                        fields.push(text_of(&m["similarity"]));
                    }
                    None => fields.extend([String::new(), String::new(), String::new()]),
                }
            }
            fields.push(detail.to_string());
            csv_line(&fields)
        }
    }
}

/// Searches the group with the largest face of every photo under
/// `opts.dir` and prints one line per photo to `out`, in path order.
pub fn search_dir(
    target: Target,
    opts: SearchOptions,
    out: &mut dyn Write,
) -> Result<SearchSummary, BoxError> {
    let images =
        find_images(&opts.dir).map_err(|e| format!("reading {}: {e}", opts.dir.display()))?;
    if images.is_empty() {
        return Err(format!("no .jpg, .jpeg or .png files under {}", opts.dir.display()).into());
    }
    let http = Http::new(&target.api_key);
    let rt = runtime()?;
    rt.block_on(check_group(&http, &target, false))?;
    let url = Arc::<str>::from(target.reco(&format!(
        "/groups/{}/search?limit={}&threshold={}",
        target.group, opts.limit, opts.threshold
    )));
    if opts.format == OutputFormat::Csv {
        out.write_all(search_csv_header(opts.limit).as_bytes())?;
    }
    let pb = progress(images.len(), "searching");
    let images = Arc::new(images);
    let mut summary = SearchSummary::default();
    // Results arrive in completion order; lines go out in path order.
    let mut pending: BTreeMap<usize, Searched> = BTreeMap::new();
    let mut next_out = 0;
    let mut write_error = None;
    rt.block_on(for_each_parallel(
        images.clone(),
        opts.jobs,
        {
            let http = http.clone();
            move |items: Arc<Vec<ImageFile>>, i| {
                let (http, url) = (http.clone(), url.clone());
                async move { search_one(&http, &url, &items[i]).await }
            }
        },
        |i, result| {
            match &result {
                Searched::Matches(m) if m.is_empty() => summary.unmatched += 1,
                Searched::Matches(_) => summary.matched += 1,
                Searched::NoFace(_) => summary.no_face += 1,
                Searched::Error(e) => {
                    summary.errors += 1;
                    if summary.errors <= ERRORS_SHOWN {
                        pb.suspend(|| eprintln!("{}: {e}", images[i].rel));
                    }
                }
            }
            pending.insert(i, result);
            while let Some(r) = pending.remove(&next_out) {
                let line = search_line(&images[next_out].rel, &r, opts.limit, opts.format);
                if let Err(e) = out.write_all(line.as_bytes()) {
                    write_error.get_or_insert(e);
                }
                next_out += 1;
            }
            pb.inc(1);
        },
    ));
    pb.finish_and_clear();
    out.flush()?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_are_sanitised() {
        assert_eq!(sanitize_external_id("s1").as_deref(), Some("s1"));
        assert_eq!(
            sanitize_external_id("Jane Doe (2)").as_deref(),
            Some("Jane_Doe__2_")
        );
        assert_eq!(sanitize_external_id("é:x.y-z").as_deref(), Some("_:x.y-z"));
        assert_eq!(sanitize_external_id(""), None);
        assert_eq!(sanitize_external_id(&"a".repeat(300)).unwrap().len(), 255);
    }

    #[test]
    fn external_id_sources() {
        let nested = ImageFile {
            path: PathBuf::from("/photos/alice smith/IMG 1.JPG"),
            rel: "alice smith/IMG 1.JPG".into(),
        };
        let flat = ImageFile {
            path: PathBuf::from("/photos/bob.png"),
            rel: "bob.png".into(),
        };
        let id = |i: &ImageFile, f| external_id(i, f).unwrap();
        assert_eq!(id(&nested, ExternalIdFrom::Auto), "alice_smith");
        assert_eq!(id(&nested, ExternalIdFrom::Filename), "IMG_1");
        assert_eq!(id(&flat, ExternalIdFrom::Auto), "bob");
        assert_eq!(id(&flat, ExternalIdFrom::Dirname), "photos");
    }

    #[test]
    fn csv_round_trip_and_resume_set() {
        let text = [
            csv_line(&ENROLL_HEADER),
            csv_line(&["a,b.png", "error", "", "Invalid \"x\"\nline"]),
            csv_line(&["c.png", "added", "id-1", ""]),
            csv_line(&["a,b.png", "added", "id-2", ""]),
            csv_line(&["d.png", "added", "id-3", ""]),
            csv_line(&["d.png", "error", "", "later failure"]),
        ]
        .concat();
        let rows = parse_csv(&text);
        assert_eq!(rows[1], ["a,b.png", "error", "", "Invalid \"x\"\nline"]);
        let mut added: Vec<String> = added_paths(&text).into_iter().collect();
        added.sort();
        assert_eq!(added, ["a,b.png", "c.png"]);
    }

    #[test]
    fn server_defaults_to_the_listen_address() {
        assert_eq!(server_base(None, "0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(server_base(None, "[::]:9"), "http://[::1]:9");
        assert_eq!(server_base(Some("http://gate:1/"), "x"), "http://gate:1");
        assert_eq!(server_base(Some("gate:1"), "x"), "http://gate:1");
    }

    #[test]
    fn walks_nested_and_flat_folders() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("s2")).unwrap();
        std::fs::create_dir_all(p.join(".hidden")).unwrap();
        for f in [
            "s2/1.PNG",
            "s2/notes.txt",
            "a.jpeg",
            ".hidden/x.jpg",
            "b.jpg",
        ] {
            std::fs::write(p.join(f), b"x").unwrap();
        }
        let rels: Vec<String> = find_images(p).unwrap().into_iter().map(|i| i.rel).collect();
        assert_eq!(rels, ["a.jpeg", "b.jpg", "s2/1.PNG"]);
    }
}
