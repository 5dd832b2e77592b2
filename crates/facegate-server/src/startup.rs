//! Starting and stopping: bind the socket and serve at once (health
//! answers, the APIs say "not ready"), then open the store and load the
//! models in the background.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use facegate_image::{FetchPolicy, Limits};
use facegate_store::{DatabaseUrl, Gallery, GalleryOptions, StoreError};
use facegate_vision::Embedder;

use crate::analyzer::FaceAnalyzer;
use crate::config::Config;
use crate::connections;
use crate::error::ServerError;
use crate::service::{Service, ServiceOptions};
use crate::surfaces::{router_with, scrape, AppState, PublicRoutes};
use crate::tenants::Tenants;

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
    /// The config file the server was started from: its tenants are
    /// watched and put in force while serving (see [`crate::operator::reload`]).
    pub config_file: Option<PathBuf>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            analyzer: None,
            token_ttl: GalleryOptions::default().token_ttl,
            fetch_timeout: FetchPolicy::default().timeout,
            config_file: None,
        }
    }
}

/// A server started by [`start`].
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Option<MetricsListener>,
}

/// The `metrics_listen` listener, serving `/metrics` only.
struct MetricsListener {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Scrapers are few: the metrics listener's connection cap.
const METRICS_MAX_CONNECTIONS: usize = 16;

impl RunningServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address `/metrics` is served on when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr)
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
        if let Some(m) = self.metrics.take() {
            let _ = m.shutdown.send(());
            // Scrapes are short; its failure must not hide the main one's.
            if let Ok(Err(e)) = m.task.await {
                tracing::warn!(error = %e, "metrics listener failed");
            }
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
            register_quality_gate: config.register_quality_gate,
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
        config.engine_tuning(),
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
    let (listener, addr) = bind(&config.listen).await?;
    let metrics_listener = match &config.metrics_listen {
        Some(at) => Some(bind(at).await?),
        None => None,
    };
    let state = AppState::new(Tenants::new(config.tenants.clone()));
    if let Some(path) = options.config_file.clone() {
        crate::operator::reload::watch_config(state.live_tenants().clone(), path, config.clone());
    }
    let init_state = state.clone();
    let console = config.console;
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
    let app = router_with(
        state.clone(),
        PublicRoutes {
            metrics: metrics_listener.is_none(),
            console,
        },
    );
    let task = tokio::spawn(connections::serve(listener, app, limits, async {
        let _ = rx.await;
    }));
    tracing::info!(%addr, "listening");
    let metrics = metrics_listener.map(|(listener, addr)| {
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let limits = connections::ConnectionLimits {
            max_connections: limits.max_connections.min(METRICS_MAX_CONNECTIONS),
            ..limits
        };
        let app = scrape::router(state.clone());
        let task = tokio::spawn(connections::serve(listener, app, limits, async {
            let _ = rx.await;
        }));
        tracing::info!(%addr, "serving /metrics");
        MetricsListener {
            addr,
            shutdown,
            task,
        }
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
        metrics,
    })
}

/// Binds a listener on `at` and reads back its address.
async fn bind(at: &str) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| ServerError::Io {
            context: format!("binding {at}"),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| ServerError::Io {
        context: "reading the bound address".into(),
        source: e,
    })?;
    Ok((listener, addr))
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
///
/// `config_file`, the file `config` was read from, is watched: tenants
/// added or removed there take effect without a restart.
pub async fn serve(config: Config, config_file: Option<PathBuf>) -> Result<(), ServerError> {
    let options = StartOptions {
        config_file,
        ..StartOptions::default()
    };
    let server = start(config, options).await?;
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
