//! The router, shared state, request logging, health endpoints, and
//! starting/stopping the server.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use facegate_image::{FetchPolicy, Limits};
use facegate_store::{DatabaseUrl, Gallery, GalleryOptions, StoreError};
use facegate_vision::Embedder;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::analyzer::FaceAnalyzer;
use crate::config::Config;
use crate::connections::{self, Admission};
use crate::error::{ServerError, ServiceError};
use crate::service::{Service, ServiceOptions};
use crate::surfaces::{argos, nhn_common, nhn_liveness, nhn_reco};
use crate::tenants::Tenants;

/// Body limit of requests carrying one image: a 3,000,000-byte image is
/// 4,000,000 Base64 characters; the rest is JSON and line breaks.
pub const BODY_LIMIT: usize = 4_300_000;
/// Body limit of compare, which carries two images.
pub const COMPARE_BODY_LIMIT: usize = 2 * BODY_LIMIT;

/// Where start-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Opening the store and loading models.
    Loading,
    /// Serving.
    Ready,
    /// Start-up failed; the text says why.
    Failed(String),
}

struct Shared {
    tenants: Tenants,
    service: OnceLock<Arc<Service>>,
    readiness: watch::Sender<Readiness>,
}

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

impl AppState {
    /// State with these tenants, not yet ready.
    pub fn new(tenants: Tenants) -> Self {
        AppState {
            shared: Arc::new(Shared {
                tenants,
                service: OnceLock::new(),
                readiness: watch::Sender::new(Readiness::Loading),
            }),
        }
    }

    /// State that is ready at once with `service` (tests).
    pub fn with_service(tenants: Tenants, service: Arc<Service>) -> Self {
        let st = Self::new(tenants);
        st.set_ready(service);
        st
    }

    /// The tenants.
    pub fn tenants(&self) -> &Tenants {
        &self.shared.tenants
    }

    /// The service once models are loaded.
    pub fn service(&self) -> Result<Arc<Service>, ServiceError> {
        self.shared
            .service
            .get()
            .cloned()
            .ok_or(ServiceError::NotReady)
    }

    fn set_ready(&self, service: Arc<Service>) {
        let _ = self.shared.service.set(service);
        self.shared.readiness.send_replace(Readiness::Ready);
    }

    fn set_failed(&self, why: String) {
        self.shared.readiness.send_replace(Readiness::Failed(why));
    }

    /// Current readiness.
    pub fn readiness(&self) -> Readiness {
        self.shared.readiness.borrow().clone()
    }

    /// Waits until start-up finished, successfully or not.
    pub async fn wait_ready(&self) -> Result<(), ServerError> {
        let mut rx = self.shared.readiness.subscribe();
        let r = rx
            .wait_for(|r| *r != Readiness::Loading)
            .await
            .map_err(|_| ServerError::Internal("readiness channel closed".into()))?
            .clone();
        match r {
            Readiness::Failed(why) => Err(ServerError::Internal(why)),
            _ => Ok(()),
        }
    }
}

/// A random lower-case base-36 id of `len` characters (request and
/// transaction ids).
pub fn new_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut raw = vec![0u8; len];
    // An id is not a secret; if the OS generator fails, a time-derived
    // value is still unique enough for log correlation.
    if getrandom::fill(&mut raw).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    raw.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Longest request target accepted; longer ones are answered in the
/// surface's format (hyper itself cuts targets over 64 KiB with a bare 414).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Most header bytes (names and values) and header lines accepted; hyper
/// cuts heads over about 400 KB with a bare 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 100;

/// The body limit of a route (by path): compare carries two images.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/nhn-face-reco/") && path.ends_with("/compare") {
        COMPARE_BODY_LIMIT
    } else {
        BODY_LIMIT
    }
}

/// The error a request gets before any handler runs, in its surface's
/// format: `None` when the path belongs to no surface.
pub fn surface_error(path: &str, err: ServiceError) -> Option<Response> {
    if path.starts_with("/nhn-face-reco/") {
        Some(nhn_reco::to_wire(&err))
    } else if path.starts_with("/v1.0/") {
        Some(nhn_liveness::to_wire(&err))
    } else if path.starts_with("/modules/") {
        Some(argos::to_wire(
            &argos::ArgosError::Service(err),
            &new_id(13),
        ))
    } else {
        None
    }
}

/// What a request is refused for before it reaches a handler: limits on its
/// head and declared body size, and the health-only reserve connections.
fn refuse_early(req: &Request) -> Option<(StatusCode, ServiceError)> {
    let path = req.uri().path();
    if req.extensions().get::<Admission>() == Some(&Admission::Reserve)
        && path != "/healthz"
        && path != "/readyz"
    {
        return Some((StatusCode::SERVICE_UNAVAILABLE, ServiceError::Overloaded));
    }
    let target_len = req.uri().path().len() + req.uri().query().map_or(0, |q| q.len() + 1);
    if target_len > MAX_URI_LEN {
        return Some((
            StatusCode::URI_TOO_LONG,
            ServiceError::invalid("request target is too long"),
        ));
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ServiceError::invalid("request headers are too large"),
        ));
    }
    // Refused from the header alone, so a client that waits for
    // `100 Continue` never sends the body.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit(path) as u64) {
        return Some((
            StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::Image {
                role: crate::error::ImageRole::Image,
                source: facegate_image::ImageError::TooLarge {
                    max_bytes: Limits::default().max_bytes,
                },
            },
        ));
    }
    None
}

/// Request id, one structured log line per request (method, route, status,
/// latency; never headers or bodies, which carry keys and images).
///
/// The route logged is the matched template (`.../appkeys/{app_key}/...`),
/// never the raw path: a raw path can smuggle an appKey past any pattern
/// (`/appkeys/x/../KEY/...`). Unmatched paths are logged as such.
async fn request_context(req: Request, next: Next) -> Response {
    let id = new_id(16);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str)
        .to_string();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        route = %route,
    );
    let started = Instant::now();
    let early = refuse_early(&req).map(|(status, err)| {
        let message = err.to_string();
        let mut resp = surface_error(req.uri().path(), err).unwrap_or_else(|| {
            (status, Json(serde_json::json!({ "message": message }))).into_response()
        });
        // The body was not read: the connection cannot be reused.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        resp
    });
    let mut resp = match early {
        Some(resp) => resp,
        None => next.run(req).instrument(span.clone()).await,
    };
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "handled"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Unknown routes and methods get each surface's error format, not the
/// framework's plain-text 404/405.
async fn fallback(uri: Uri) -> Response {
    surface_error(uri.path(), ServiceError::invalid("no such route")).unwrap_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "message": "Not Found" })),
        )
            .into_response()
    })
}

/// What a panic said (its payload is a `String` or `&str` almost always).
fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)")
}

/// A panic as the service error the surfaces already know: an internal
/// error, whose text goes to the log and never to the client.
fn panicked(payload: &(dyn Any + Send)) -> ServiceError {
    ServiceError::Internal(format!("handler panicked: {}", panic_text(payload)))
}

/// A handler of surface 1 panicked: the envelope with -50000.
fn nhn_reco_panic(payload: Box<dyn Any + Send>) -> Response {
    nhn_reco::to_wire(&panicked(&*payload))
}

/// A handler of surface 2 panicked: the envelope with -50000.
fn nhn_liveness_panic(payload: Box<dyn Any + Send>) -> Response {
    nhn_liveness::to_wire(&panicked(&*payload))
}

/// A handler of surface 3 panicked: Argos's 500 with a transaction id.
fn argos_panic(payload: Box<dyn Any + Send>) -> Response {
    argos::to_wire(
        &argos::ArgosError::Service(panicked(&*payload)),
        &new_id(13),
    )
}

/// Anything else panicked (health, fallback): a plain JSON 500.
fn plain_panic(payload: Box<dyn Any + Send>) -> Response {
    tracing::error!(panic = %panic_text(&*payload), "handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "message": "Internal Server Error" })),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    match st.readiness() {
        Readiness::Ready => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Readiness::Loading => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "loading" })),
        )
            .into_response(),
        Readiness::Failed(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "failed" })),
        )
            .into_response(),
    }
}

/// The whole HTTP application over `state`.
///
/// A panic in a handler does not drop the connection: each surface answers
/// it in its own error format (an internal error; the panic's text goes to
/// the log only), everything else with a plain JSON 500.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .nest(
            "/nhn-face-reco/v1.0/appkeys/{app_key}",
            nhn_reco::router().layer(CatchPanicLayer::custom(nhn_reco_panic)),
        )
        .merge(nhn_liveness::router().layer(CatchPanicLayer::custom(nhn_liveness_panic)))
        .merge(argos::router().layer(CatchPanicLayer::custom(argos_panic)))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .layer(CatchPanicLayer::custom(plain_panic))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

/// Knobs that are not in the config file (tests shorten them).
#[derive(Clone)]
pub struct StartOptions {
    /// Use this analyzer instead of loading the engine from the model
    /// directory (tests share one loaded engine).
    pub analyzer: Option<Arc<dyn FaceAnalyzer>>,
    /// Paging token lifetime.
    pub token_ttl: Duration,
    /// Image download time limit.
    pub fetch_timeout: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            analyzer: None,
            token_ttl: GalleryOptions::default().token_ttl,
            fetch_timeout: FetchPolicy::default().timeout,
        }
    }
}

/// A server started by [`start`].
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until models are loaded (or start-up failed).
    pub async fn wait_ready(&self) -> Result<(), ServerError> {
        self.state.wait_ready().await
    }

    /// Stops accepting, finishes in-flight requests, and returns.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task)
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))?
            .map_err(|e| ServerError::Io {
                context: "serving".into(),
                source: e,
            })
    }
}

/// Loads the models and opens the store side by side: both are CPU-bound
/// and independent (decrypting and indexing a large gallery takes about as
/// long as loading the models), so a cold start costs the longer of the two.
fn open_service(config: &Config, options: &StartOptions) -> Result<Service, ServerError> {
    let default = config.default_model;
    let (analyzer, gallery) = std::thread::scope(|s| {
        let analyzer = s.spawn(|| match options.analyzer.clone() {
            Some(a) => Ok(a),
            None => load_analyzer(config, &[default]),
        });
        let gallery = open_gallery(config, options);
        let analyzer = analyzer
            .join()
            .map_err(|_| ServerError::Internal("model loading panicked".into()));
        (analyzer, gallery)
    });
    let (mut analyzer, gallery) = (analyzer??, gallery?);
    // Groups keep the model they were created with: load the embedders
    // of existing groups too (only when some group needs one).
    let mut needed = vec![default];
    for version in gallery.model_versions() {
        match Embedder::from_version(&version) {
            Some(e) if !needed.contains(&e) => needed.push(e),
            Some(_) => {}
            None => tracing::warn!(
                model = %version,
                "groups of an unknown embedding model cannot be searched or added to"
            ),
        }
    }
    // An analyzer handed in (tests) is taken as it is.
    if options.analyzer.is_none() {
        let loaded = analyzer.models();
        if needed
            .iter()
            .any(|e| !loaded.iter().any(|v| v == e.version()))
        {
            analyzer = load_analyzer(config, &needed)?;
        }
    }
    if options.analyzer.is_none() && !analyzer.models().iter().any(|v| v == default.version()) {
        return Err(ServerError::Internal(format!(
            "default_model {} is not loaded",
            default.version()
        )));
    }
    Ok(Service::new(
        analyzer,
        gallery,
        ServiceOptions {
            default_model: Some(default.version().to_string()),
            limits: Limits {
                max_pixels: config.max_image_pixels,
                ..Limits::default()
            },
            fetch: FetchPolicy {
                allow_private: config.allow_private_urls,
                timeout: options.fetch_timeout,
                ..FetchPolicy::default()
            },
            max_faces_per_group: config.max_faces_per_group,
            decode_budget: config.decode_memory_budget(),
            ..ServiceOptions::default()
        },
    ))
}

/// Opens the gallery (creating the data dir and key on first start) and
/// starts watching the key files.
///
/// Key file and database must agree: a key without a database (deleted or
/// emptied) or a database without its key means the data directory lost
/// something, and starting "fresh" would hide that, so start-up refuses
/// and says what to restore. A key is only ever created together with a
/// new, empty database.
fn open_gallery(config: &Config, options: &StartOptions) -> Result<Arc<Gallery>, ServerError> {
    let data_dir = &config.data_dir;
    facegate_store::files::create_private_dir(data_dir).map_err(|e| ServerError::Io {
        context: format!("creating {}", data_dir.display()),
        source: e,
    })?;
    for (path, mode) in facegate_store::files::readable_by_others(data_dir) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            "readable by other users; it holds tenant and face metadata (chmod go-rwx)"
        );
    }
    let key_file = config.master_key_file();
    let database = DatabaseUrl::parse(&config.database_url())?;
    let key_existed = key_file.exists() || crate::keys::next_key_path(&key_file).exists();
    let holds_data = database.holds_data()?;
    let lost_database = || {
        ServerError::DataDir(format!(
            "the database {} is missing or empty, but the master key file {} exists, so this \
             data directory held a database before; restore the database (or its backup). To \
             start an empty store on purpose, move {} away first.",
            database.describe(),
            key_file.display(),
            key_file.display()
        ))
    };
    if !key_existed && holds_data {
        return Err(ServerError::DataDir(format!(
            "the master key file {} is missing, but the database {} holds data encrypted under \
             it; restore that key file. facegate never creates a new key for existing data.",
            key_file.display(),
            database.describe()
        )));
    }
    if key_existed && !holds_data && matches!(database, DatabaseUrl::Sqlite(_)) {
        return Err(lost_database());
    }
    let keys = crate::keys::load_key_ring(&key_file)?;
    let gallery = Gallery::open(
        &config.database_url(),
        keys,
        GalleryOptions {
            token_ttl: options.token_ttl,
            store_timeout: Duration::from_secs(config.store_timeout_secs),
            create_if_empty: !key_existed,
            ..GalleryOptions::default()
        },
    )
    .map_err(|e| match e {
        StoreError::Uninitialised => lost_database(),
        e @ StoreError::KeyMismatch { .. } => ServerError::DataDir(format!(
            "{e} (key file {}, database {})",
            key_file.display(),
            database.describe()
        )),
        e => e.into(),
    })?;
    let gallery = Arc::new(gallery);
    crate::keys::watch_key_files(&gallery, key_file);
    Ok(gallery)
}

fn load_analyzer(
    config: &Config,
    embedders: &[Embedder],
) -> Result<Arc<dyn FaceAnalyzer>, ServerError> {
    Ok(crate::engine::load_engine(
        &config.model_dir(),
        config.runtime,
        embedders,
    )?)
}

/// Binds `config.listen`, starts serving at once (`/healthz` answers, the
/// APIs say "not ready"), then opens the store and loads the models in
/// the background; `/readyz` turns 200 when done.
pub async fn start(config: Config, options: StartOptions) -> Result<RunningServer, ServerError> {
    config.validate()?;
    let limits = config.connection_limits();
    if config.tenants.is_empty() {
        tracing::warn!("no tenants configured: every API request will be refused");
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| ServerError::Io {
            context: format!("binding {}", config.listen),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Io {
        context: "reading the bound address".into(),
        source: e,
    })?;
    let state = AppState::new(Tenants::new(config.tenants.clone()));
    let init_state = state.clone();
    tokio::spawn(async move {
        let result = tokio::task::spawn_blocking(move || open_service(&config, &options)).await;
        match result {
            Ok(Ok(service)) => {
                tracing::info!("ready");
                init_state.set_ready(Arc::new(service));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "start-up failed");
                init_state.set_failed(e.to_string());
            }
            Err(e) => init_state.set_failed(format!("start-up task failed: {e}")),
        }
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state.clone());
    let task = tokio::spawn(connections::serve(listener, app, limits, async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, "listening");
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the server until SIGINT/SIGTERM, or until start-up fails.
pub async fn serve(config: Config) -> Result<(), ServerError> {
    let server = start(config, StartOptions::default()).await?;
    let state = server.state.clone();
    tokio::select! {
        r = state.wait_ready() => {
            if let Err(e) = r {
                let _ = server.shutdown().await;
                return Err(e);
            }
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            return server.shutdown().await;
        }
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await
}

/// Exposes the NHN code table for tests and docs.
pub use nhn_common::NhnCode;

#[cfg(test)]
mod panic_tests {
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> Response {
        panic!("boom: secret at /var/lib/facegate/master.key")
    }

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let req = axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        (status, serde_json::from_str(&text).expect("a JSON body"))
    }

    #[tokio::test]
    async fn a_panic_answers_in_the_surfaces_format() {
        let app = Router::new()
            .route(
                "/reco",
                get(boom).layer(CatchPanicLayer::custom(nhn_reco_panic)),
            )
            .route(
                "/live",
                get(boom).layer(CatchPanicLayer::custom(nhn_liveness_panic)),
            )
            .route(
                "/argos",
                get(boom).layer(CatchPanicLayer::custom(argos_panic)),
            )
            .route("/other", get(boom))
            .layer(CatchPanicLayer::custom(plain_panic));
        for path in ["/reco", "/live"] {
            let (status, v) = call(app.clone(), path).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                v,
                serde_json::json!({"header": {"isSuccessful": false, "resultCode": -50000,
                                              "resultMessage": "InternalServerError"}})
            );
        }
        let (status, v) = call(app.clone(), "/argos").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(v["transactionId"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(v["message"], "internal server error");
        let (status, v) = call(app, "/other").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(v, serde_json::json!({"message": "Internal Server Error"}));
    }
}
