//! The operator's configuration file (API.md, "Operator interface").
//!
//! TOML with a fixed set of keys; an unknown key is an error at start-up so
//! a typo never silently falls back to a default. Every top-level scalar key
//! may be overridden by an environment variable `FACEGATE_<KEY>` (upper
//! case), which wins over the file. Likewise an unknown `FACEGATE_*`
//! variable is an error ([`check_env_names`]): `FACEGATE_LISTN=...` must
//! not silently do nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use facegate_vision::batch::Batching;
use facegate_vision::Embedder;
use serde::{Deserialize, Serialize};

use crate::connections::ConnectionLimits;
use crate::engine::EngineTuning;
use crate::error::ConfigError;

/// Name of the config file created in the data directory on first start.
pub const DEFAULT_CONFIG_FILE_NAME: &str = "facegate.toml";
/// Default `data_dir`.
pub const DEFAULT_DATA_DIR: &str = "./facegate-data";
/// Default `listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `max_faces_per_group` (the vendor's documented quota).
pub const DEFAULT_MAX_FACES_PER_GROUP: u64 = 100_000;

/// Top-level keys that are scalars and so can come from the environment.
const SCALAR_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "model_dir",
    "database_url",
    "master_key_file",
    "runtime",
    "allow_private_urls",
    "register_quality_gate",
    "lone_request_threads",
    "batch_max",
    "batch_window_ms",
    "console",
    "max_faces_per_group",
    "max_image_pixels",
    "header_timeout_secs",
    "body_timeout_secs",
    "idle_timeout_secs",
    "shutdown_timeout_secs",
    "max_connections",
    "store_timeout_secs",
    "decode_memory_bytes",
    "default_model",
    "metrics_listen",
    "log_format",
];

/// `FACEGATE_*` variables that are not config keys but are read by the
/// binary (`FACEGATE_CONFIG`, `FACEGATE_LOG`, `FACEGATE_API_KEY` of
/// `facegate enroll` and `search-dir`) or by the scripts that run it
/// (`FACEGATE_MODEL_MIRROR`, scripts/test.sh).
pub const OTHER_ENV_VARS: &[&str] = &[
    "FACEGATE_CONFIG",
    "FACEGATE_LOG",
    "FACEGATE_MODEL_MIRROR",
    "FACEGATE_API_KEY",
];

/// Prefix of the test suites' variables (`FACEGATE_TEST_ASSETS`,
/// `FACEGATE_TEST_BACKEND`, `FACEGATE_TEST_POSTGRES_URL`, ...), which the
/// binary may inherit when tests run it.
pub const TEST_ENV_PREFIX: &str = "FACEGATE_TEST_";

/// Which inference runtime to use (`runtime = "auto"`).
pub use facegate_core::RuntimeKind;

/// How `facegate serve` writes its log to stderr (`log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    fn is_text(&self) -> bool {
        *self == LogFormat::Text
    }
}

/// One tenant: an appKey and the three API keys that authenticate it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The appKey in the URL paths; also the tenant's id in the store.
    pub app_key: String,
    /// `x-nhn-apikey` of NHN Face Recognition Plus.
    pub face_api_key: String,
    /// `Authorization` of NHN Face Liveness.
    pub liveness_secret_key: String,
    /// `x-api-key` of Argos Face Liveness.
    pub argos_api_key: String,
}

// Keys must never reach a log line, not even through `{:?}`.
impl fmt::Debug for TenantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantConfig")
            .field("app_key", &self.app_key)
            .finish_non_exhaustive()
    }
}

impl TenantConfig {
    /// A tenant with fresh random keys; `app_key` random too when `None`.
    pub fn generate(app_key: Option<String>) -> Result<Self, ConfigError> {
        Ok(TenantConfig {
            app_key: match app_key {
                Some(k) => k,
                None => format!("app-{}", random_hex(6)?),
            },
            face_api_key: random_hex(24)?,
            liveness_secret_key: random_hex(24)?,
            argos_api_key: random_hex(24)?,
        })
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Socket address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where the database, key and models live by default.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Model directory; `<data_dir>/models` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// `sqlite://...` (or `postgres://...`); `<data_dir>/facegate.db` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Master key file; `<data_dir>/master.key` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key_file: Option<PathBuf>,
    /// Inference runtime.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// Embedding model of new groups (`sface` or `dlib`); groups keep the
    /// model they were created with.
    #[serde(default = "default_model")]
    pub default_model: Embedder,
    /// Allow image URLs that resolve to private/loopback addresses.
    #[serde(default)]
    pub allow_private_urls: bool,
    /// Registration refuses faces that liveness could not judge (too
    /// small, turned, blurred, badly exposed); they are reported in
    /// `notAddedFaces` with a `reason`. Off: the vendor API's behaviour.
    #[serde(default)]
    pub register_quality_gate: bool,
    /// Threads a request's networks may use while no other inference
    /// runs (ONNX Runtime on CPU); 0: every core, 1: always one thread.
    #[serde(default)]
    pub lone_request_threads: u64,
    /// Most faces of concurrent requests one network run may batch; 0: the
    /// runtime's default (8 on CPU, 32 on CUDA), 1: no batching.
    #[serde(default)]
    pub batch_max: u64,
    /// Milliseconds a free network may wait for more faces when more
    /// requests are in flight than it has sessions; 0: never waits.
    #[serde(default = "default_batch_window_ms")]
    pub batch_window_ms: u64,
    /// Face quota of one group.
    #[serde(default = "default_max_faces")]
    pub max_faces_per_group: u64,
    /// Images whose header declares more pixels are refused before decoding.
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    /// Seconds a client has to send a complete request head.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Longest pause, in seconds, while a request body is read or a
    /// response written.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may sit idle between requests.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    /// Client connections open at once; 0 derives it from the open-file
    /// limit.
    #[serde(default)]
    pub max_connections: u64,
    /// Seconds one store operation may wait (a lock, a stuck database).
    #[serde(default = "default_store_timeout")]
    pub store_timeout_secs: u64,
    /// Bytes all images being decoded at once may occupy; 0 derives it
    /// from available memory.
    #[serde(default)]
    pub decode_memory_bytes: u64,
    /// Serve `/metrics` on this address only (not on `listen`); unset: on
    /// `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// `text` or `json` lines on stderr.
    #[serde(default, skip_serializing_if = "LogFormat::is_text")]
    pub log_format: LogFormat,
    /// Serve the web console at `/console/` (it calls the public APIs
    /// with keys the user types, so it adds no privileged route).
    #[serde(default = "default_console")]
    pub console: bool,
    /// The tenants.
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
}

fn default_max_image_pixels() -> u64 {
    facegate_image::Limits::default().max_pixels
}
fn default_batch_window_ms() -> u64 {
    2
}

fn default_header_timeout() -> u64 {
    ConnectionLimits::default().header_timeout.as_secs()
}
fn default_body_timeout() -> u64 {
    ConnectionLimits::default().body_timeout.as_secs()
}
fn default_idle_timeout() -> u64 {
    ConnectionLimits::default().idle_timeout.as_secs()
}
fn default_shutdown_timeout() -> u64 {
    ConnectionLimits::default().shutdown_timeout.as_secs()
}
fn default_console() -> bool {
    true
}

fn default_store_timeout() -> u64 {
    facegate_store::GalleryOptions::default()
        .store_timeout
        .as_secs()
}
fn default_model() -> Embedder {
    Embedder::ALL[0]
}
fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}
fn default_max_faces() -> u64 {
    DEFAULT_MAX_FACES_PER_GROUP
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            data_dir: default_data_dir(),
            model_dir: None,
            database_url: None,
            master_key_file: None,
            runtime: RuntimeKind::Auto,
            default_model: default_model(),
            allow_private_urls: false,
            register_quality_gate: false,
            lone_request_threads: 0,
            batch_max: 0,
            batch_window_ms: default_batch_window_ms(),
            max_faces_per_group: DEFAULT_MAX_FACES_PER_GROUP,
            max_image_pixels: default_max_image_pixels(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            shutdown_timeout_secs: default_shutdown_timeout(),
            max_connections: 0,
            store_timeout_secs: default_store_timeout(),
            decode_memory_bytes: 0,
            metrics_listen: None,
            log_format: LogFormat::Text,
            console: default_console(),
            tenants: Vec::new(),
        }
    }
}

impl Config {
    /// `lone_request_threads`, `batch_max` and `batch_window_ms` as the
    /// engine takes them.
    pub fn engine_tuning(&self) -> EngineTuning {
        let default = match self.runtime {
            RuntimeKind::Cuda => Batching::GPU,
            _ => Batching::DEFAULT,
        };
        EngineTuning {
            lone_run_threads: usize::try_from(self.lone_request_threads).unwrap_or(usize::MAX),
            batching: Some(Batching {
                max_batch: match self.batch_max {
                    0 => default.max_batch,
                    n => usize::try_from(n).unwrap_or(usize::MAX),
                },
                window: Duration::from_millis(self.batch_window_ms),
            }),
        }
    }

    /// Parses TOML text and applies `FACEGATE_<KEY>` overrides looked up
    /// through `env`, then validates.
    pub fn from_toml_str(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.message().to_string()))?;
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a config file, with overrides from the process environment
    /// (whose `FACEGATE_*` names must all be known, [`check_env_names`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_process_toml(&text)
    }

    /// Parses a config file's text with this process's environment
    /// overrides, as [`Config::load`] does.
    pub fn from_process_toml(text: &str) -> Result<Self, ConfigError> {
        check_process_env()?;
        Self::from_toml_str(text, &process_env)
    }

    /// The model directory in force.
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("facegate.db").display()))
    }

    /// The master key file in force.
    pub fn master_key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The connection timeouts and cap in force.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            body_timeout: Duration::from_secs(self.body_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            max_connections: match self.max_connections {
                0 => crate::connections::default_max_connections(),
                n => usize::try_from(n).unwrap_or(usize::MAX),
            },
        }
    }

    /// The decode memory budget in force, in bytes.
    pub fn decode_memory_budget(&self) -> u64 {
        match self.decode_memory_bytes {
            0 => facegate_image::default_decode_budget(),
            n => n,
        }
    }

    /// Checks what serde cannot: a parseable listen address, sane quota,
    /// non-empty and unique tenant keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listen = self.listen.parse::<std::net::SocketAddr>().map_err(|_| {
            ConfigError::Invalid(format!("listen {:?} is not ip:port", self.listen))
        })?;
        if let Some(metrics) = &self.metrics_listen {
            let addr = metrics.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::Invalid(format!("metrics_listen {metrics:?} is not ip:port"))
            })?;
            if addr == listen && addr.port() != 0 {
                return Err(ConfigError::Invalid(
                    "metrics_listen must differ from listen".into(),
                ));
            }
        }
        if self.max_image_pixels == 0 {
            return Err(ConfigError::Invalid(
                "max_image_pixels must be at least 1".into(),
            ));
        }
        for (name, secs) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("store_timeout_secs", self.store_timeout_secs),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1")));
            }
        }
        if self.max_faces_per_group == 0 {
            return Err(ConfigError::Invalid(
                "max_faces_per_group must be at least 1".into(),
            ));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            if !facegate_store::is_valid_external_image_id(&t.app_key) {
                return Err(ConfigError::Invalid(format!(
                    "tenant #{}: app_key must match [a-zA-Z0-9_.:-]{{1,255}}",
                    i + 1
                )));
            }
            for (name, key) in [
                ("face_api_key", &t.face_api_key),
                ("liveness_secret_key", &t.liveness_secret_key),
                ("argos_api_key", &t.argos_api_key),
            ] {
                if key.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "tenant {}: {name} is empty",
                        t.app_key
                    )));
                }
            }
            if self.tenants[..i].iter().any(|o| o.app_key == t.app_key) {
                return Err(ConfigError::Invalid(format!(
                    "tenant {} is configured twice",
                    t.app_key
                )));
            }
            // Argos requests carry only the key, so it must name one tenant.
            if self.tenants[..i]
                .iter()
                .any(|o| o.argos_api_key == t.argos_api_key)
            {
                return Err(ConfigError::Invalid(format!(
                    "tenant {}: argos_api_key is shared with another tenant",
                    t.app_key
                )));
            }
        }
        Ok(())
    }

    /// TOML text of this configuration.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Invalid(e.to_string()))
    }
}

/// The process environment as an override source.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Refuses environment variables named `FACEGATE_*` that nothing reads, the
/// way unknown keys in the file are refused: a misspelt override must not
/// silently leave the default in force. Known are `FACEGATE_<KEY>` for each
/// scalar config key, [`OTHER_ENV_VARS`] and the test suites'
/// `FACEGATE_TEST_*`. Only the prefix `FACEGATE_` in upper case is
/// checked (overrides are upper case).
pub fn check_env_names<I, S>(names: I) -> Result<(), ConfigError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let overrides: Vec<String> = SCALAR_KEYS
        .iter()
        .map(|k| format!("FACEGATE_{}", k.to_ascii_uppercase()))
        .collect();
    for name in names {
        let name = name.as_ref().to_string_lossy();
        if !name.starts_with("FACEGATE_")
            || name.starts_with(TEST_ENV_PREFIX)
            || OTHER_ENV_VARS.contains(&name.as_ref())
            || overrides.iter().any(|o| *o == name)
        {
            continue;
        }
        if name == "FACEGATE_TENANTS" {
            return Err(ConfigError::Invalid(
                "environment variable FACEGATE_TENANTS: tenants cannot come from the \
                 environment; use [[tenants]] in the config file or `facegate tenants add`"
                    .into(),
            ));
        }
        return Err(ConfigError::Invalid(format!(
            "unknown environment variable {name}; known are {} and {}",
            overrides.join(", "),
            OTHER_ENV_VARS.join(", ")
        )));
    }
    Ok(())
}

/// [`check_env_names`] on this process's environment.
pub fn check_process_env() -> Result<(), ConfigError> {
    check_env_names(std::env::vars_os().map(|(name, _)| name))
}

fn apply_env(
    table: &mut toml::Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    // A key's type is that of its default: an integer key takes integers.
    let defaults = toml::Value::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults: {e}")))?;
    for key in SCALAR_KEYS {
        let var = format!("FACEGATE_{}", key.to_ascii_uppercase());
        let Some(raw) = env(&var) else { continue };
        let value = match defaults.get(*key) {
            Some(toml::Value::Boolean(_)) => toml::Value::Boolean(match raw.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(ConfigError::Invalid(format!("{var} must be true or false"))),
            }),
            Some(toml::Value::Integer(_)) => {
                let n: i64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::Invalid(format!("{var} must be an integer")))?;
                toml::Value::Integer(n)
            }
            _ => toml::Value::String(raw),
        };
        table.insert((*key).to_string(), value);
    }
    Ok(())
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(n: usize) -> Result<String, ConfigError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|_| ConfigError::Random)?;
    Ok(hex::encode(b))
}

/// `<data_dir>/facegate.toml`, `data_dir` from `FACEGATE_DATA_DIR` or the
/// default: where the config lives when no `--config` is given.
pub fn default_config_path() -> PathBuf {
    process_env("FACEGATE_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(default_data_dir)
        .join(DEFAULT_CONFIG_FILE_NAME)
}

/// The configuration in force without creating anything: `explicit` or
/// `FACEGATE_CONFIG` (must exist), else the default config file if present,
/// else the defaults with environment overrides.
pub fn resolve(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    check_process_env()?;
    let from_env = std::env::var_os("FACEGATE_CONFIG").map(PathBuf::from);
    if let Some(path) = explicit.or(from_env.as_deref()) {
        return Config::load(path);
    }
    let path = default_config_path();
    if path.exists() {
        Config::load(&path)
    } else {
        Config::from_toml_str("", &process_env)
    }
}

/// Outcome of [`load_or_init`].
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// The file it came from (or was written to).
    pub path: PathBuf,
    /// The tenant generated on first start; its keys are shown once by the
    /// caller and never again.
    pub created_tenant: Option<TenantConfig>,
}

/// Finds the configuration: `explicit` (which must exist) or else
/// `<data_dir>/facegate.toml`, `data_dir` from `FACEGATE_DATA_DIR` or the
/// default. With no file at all (first start) it creates the data
/// directory and a config file (mode 0600) holding one tenant with random
/// keys, so a restart keeps them.
pub fn load_or_init(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    load_or_init_at(explicit, &default_config_path())
}

/// [`load_or_init`] with the default config path given.
pub fn load_or_init_at(
    explicit: Option<&Path>,
    default_path: &Path,
) -> Result<LoadedConfig, ConfigError> {
    // Before anything is created: a first start with a misspelt variable
    // must not write a config (and keys) the operator did not intend.
    check_process_env()?;
    if let Some(path) = explicit {
        return Ok(LoadedConfig {
            config: Config::load(path)?,
            path: path.to_path_buf(),
            created_tenant: None,
        });
    }
    let path = default_path.to_path_buf();
    let data_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if path.exists() {
        return Ok(LoadedConfig {
            config: Config::load(&path)?,
            path,
            created_tenant: None,
        });
    }
    let tenant = TenantConfig::generate(Some("default".into()))?;
    let file = Config {
        data_dir: data_dir.clone(),
        tenants: vec![tenant.clone()],
        ..Config::default()
    };
    facegate_store::files::create_private_dir(&data_dir).map_err(|e| ConfigError::Io {
        path: data_dir.clone(),
        source: e,
    })?;
    write_private(&path, &file.to_toml_string()?)?;
    Ok(LoadedConfig {
        config: Config::load(&path)?,
        path,
        created_tenant: Some(tenant),
    })
}

/// Writes `text` to `path` atomically (temp file + rename), mode 0600 since
/// config files hold API keys.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ConfigError::Io { path: p, source: e }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".facegate-config-{}.tmp", random_hex(8)?));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const FULL: &str = r#"
listen = "127.0.0.1:9090"
data_dir = "/tmp/fg"
model_dir = "/tmp/fg/m"
database_url = "sqlite:///tmp/fg/x.db"
master_key_file = "/tmp/fg/k"
runtime = "tract"
allow_private_urls = true
max_faces_per_group = 5

[[tenants]]
app_key = "demo-app"
face_api_key = "a"
liveness_secret_key = "b"
argos_api_key = "c"
"#;

    #[test]
    fn parses_every_documented_key() {
        let c = Config::from_toml_str(FULL, &no_env).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9090");
        assert_eq!(c.model_dir(), PathBuf::from("/tmp/fg/m"));
        assert_eq!(c.database_url(), "sqlite:///tmp/fg/x.db");
        assert_eq!(c.master_key_file(), PathBuf::from("/tmp/fg/k"));
        assert_eq!(c.runtime, RuntimeKind::Tract);
        assert!(c.allow_private_urls);
        assert_eq!(c.max_faces_per_group, 5);
        assert_eq!(c.tenants.len(), 1);
        assert_eq!(c.tenants[0].app_key, "demo-app");
    }

    #[test]
    fn defaults_derive_from_data_dir() {
        let c = Config::from_toml_str("data_dir = \"/d\"", &no_env).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.model_dir(), PathBuf::from("/d/models"));
        assert_eq!(c.database_url(), "sqlite:///d/facegate.db");
        assert_eq!(c.master_key_file(), PathBuf::from("/d/master.key"));
        assert_eq!(c.max_faces_per_group, DEFAULT_MAX_FACES_PER_GROUP);
        assert!(!c.allow_private_urls);
    }

    #[test]
    fn unknown_top_level_key_is_rejected() {
        let e = Config::from_toml_str("listn = \"127.0.0.1:1\"", &no_env).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn unknown_tenant_key_is_rejected() {
        let text = FULL.replace("argos_api_key = \"c\"", "argos_api_key = \"c\"\nextra = 1");
        assert!(Config::from_toml_str(&text, &no_env).is_err());
    }

    #[test]
    fn bad_runtime_is_rejected() {
        assert!(Config::from_toml_str("runtime = \"gpu\"", &no_env).is_err());
    }

    #[test]
    fn env_overrides_file() {
        let env = |k: &str| match k {
            "FACEGATE_LISTEN" => Some("0.0.0.0:1234".to_string()),
            "FACEGATE_ALLOW_PRIVATE_URLS" => Some("false".to_string()),
            "FACEGATE_MAX_FACES_PER_GROUP" => Some("7".to_string()),
            "FACEGATE_RUNTIME" => Some("onnxruntime".to_string()),
            "FACEGATE_MODEL_DIR" => Some("/elsewhere".to_string()),
            "FACEGATE_HEADER_TIMEOUT_SECS" => Some("4".to_string()),
            "FACEGATE_DECODE_MEMORY_BYTES" => Some("1000000".to_string()),
            _ => None,
        };
        let c = Config::from_toml_str(FULL, &env).unwrap();
        assert_eq!(c.connection_limits().header_timeout, Duration::from_secs(4));
        assert_eq!(c.decode_memory_budget(), 1_000_000);
        assert_eq!(c.listen, "0.0.0.0:1234");
        assert!(!c.allow_private_urls);
        assert_eq!(c.max_faces_per_group, 7);
        assert_eq!(c.runtime, RuntimeKind::OnnxRuntime);
        assert_eq!(c.model_dir(), PathBuf::from("/elsewhere"));
    }

    #[test]
    fn bad_env_value_is_an_error() {
        let env = |k: &str| (k == "FACEGATE_ALLOW_PRIVATE_URLS").then(|| "maybe".to_string());
        assert!(Config::from_toml_str("", &env).is_err());
        let env = |k: &str| (k == "FACEGATE_LISTEN").then(|| "nowhere".to_string());
        assert!(Config::from_toml_str("", &env).is_err());
        let env = |k: &str| (k == "FACEGATE_STORE_TIMEOUT_SECS").then(|| "soon".to_string());
        assert!(Config::from_toml_str("", &env).is_err());
        assert!(Config::from_toml_str("header_timeout_secs = 0", &no_env).is_err());
    }

    #[test]
    fn unknown_facegate_env_vars_are_errors_naming_them() {
        // Everything this repository sets or reads is accepted.
        check_env_names([
            "FACEGATE_CONFIG",
            "FACEGATE_LOG",
            "FACEGATE_MODEL_MIRROR",
            "FACEGATE_MODEL_DIR",
            "FACEGATE_DATA_DIR",
            "FACEGATE_LISTEN",
            "FACEGATE_DATABASE_URL",
            "FACEGATE_MASTER_KEY_FILE",
            "FACEGATE_RUNTIME",
            "FACEGATE_ALLOW_PRIVATE_URLS",
            "FACEGATE_MAX_FACES_PER_GROUP",
            "FACEGATE_MAX_IMAGE_PIXELS",
            "FACEGATE_TEST_ASSETS",
            "FACEGATE_TEST_BACKEND",
            "FACEGATE_TEST_POSTGRES_URL",
            "PATH",
            "facegate_listn",
            "FACEGATEX",
        ])
        .unwrap();
        for bad in [
            "FACEGATE_LISTN",
            "FACEGATE_",
            "FACEGATE_MODELDIR",
            "FACEGATE_TENANTS",
        ] {
            let e = check_env_names(["HOME", bad]).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
        // Every scalar key's override is known; no other config key is.
        for key in SCALAR_KEYS {
            check_env_names([format!("FACEGATE_{}", key.to_ascii_uppercase())]).unwrap();
        }
    }

    #[test]
    fn batching_follows_the_runtime_unless_configured() {
        let tuning = |text: &str| {
            Config::from_toml_str(text, &no_env)
                .unwrap()
                .engine_tuning()
        };
        let cpu = tuning("").batching.unwrap();
        assert_eq!(cpu, Batching::DEFAULT);
        assert_eq!(
            tuning("runtime = \"cuda\"").batching.unwrap(),
            Batching::GPU
        );
        let off = tuning("batch_max = 1\nbatch_window_ms = 0")
            .batching
            .unwrap();
        assert_eq!((off.max_batch, off.window), (1, Duration::ZERO));
        let env = |k: &str| (k == "FACEGATE_BATCH_MAX").then(|| "16".to_string());
        let from_env = Config::from_toml_str("", &env).unwrap().engine_tuning();
        assert_eq!(from_env.batching.unwrap().max_batch, 16);
    }

    #[test]
    fn duplicate_tenants_are_rejected() {
        let text = format!("{FULL}\n{}", &FULL[FULL.find("[[tenants]]").unwrap()..]);
        assert!(Config::from_toml_str(&text, &no_env).is_err());
    }

    #[test]
    fn debug_hides_keys() {
        let t = TenantConfig::generate(Some("x".into())).unwrap();
        let s = format!("{t:?}");
        assert!(!s.contains(&t.face_api_key));
        assert!(!s.contains(&t.argos_api_key));
    }

    #[test]
    fn first_start_creates_a_private_config_with_one_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(DEFAULT_CONFIG_FILE_NAME);
        let first = load_or_init_at(None, &path).unwrap();
        let tenant = first.created_tenant.expect("a tenant is created");
        assert_eq!(first.config.tenants, vec![tenant.clone()]);
        assert_eq!(first.config.data_dir, dir.path().join("data"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_init_at(None, &path).unwrap();
        assert!(again.created_tenant.is_none(), "keys are shown once");
        assert_eq!(again.config.tenants, vec![tenant]);
        assert!(load_or_init_at(Some(&dir.path().join("missing.toml")), &path).is_err());
    }

    #[test]
    fn metrics_listen_and_log_format() {
        let c = Config::from_toml_str("", &no_env).unwrap();
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.log_format, LogFormat::Text);
        let text = "metrics_listen = \"127.0.0.1:9100\"\nlog_format = \"json\"";
        let c = Config::from_toml_str(text, &no_env).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(c.log_format, LogFormat::Json);
        let back = Config::from_toml_str(&c.to_toml_string().unwrap(), &no_env).unwrap();
        assert_eq!(c, back);
        let env = |k: &str| match k {
            "FACEGATE_METRICS_LISTEN" => Some("0.0.0.0:9200".to_string()),
            "FACEGATE_LOG_FORMAT" => Some("text".to_string()),
            _ => None,
        };
        let c = Config::from_toml_str(text, &env).unwrap();
        assert_eq!(c.metrics_listen.as_deref(), Some("0.0.0.0:9200"));
        assert_eq!(c.log_format, LogFormat::Text);
        for bad in [
            "log_format = \"xml\"",
            "metrics_listen = \"metrics\"",
            "listen = \"127.0.0.1:9100\"\nmetrics_listen = \"127.0.0.1:9100\"",
        ] {
            assert!(Config::from_toml_str(bad, &no_env).is_err(), "{bad}");
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config::from_toml_str(FULL, &no_env).unwrap();
        let back = Config::from_toml_str(&c.to_toml_string().unwrap(), &no_env).unwrap();
        assert_eq!(c, back);
    }
}
