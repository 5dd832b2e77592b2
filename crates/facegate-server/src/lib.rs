//! facegate's HTTP server: the three vendor-compatible surfaces of
//! API.md (NHN Face Recognition Plus, NHN Face Liveness, Argos Face
//! Liveness) over one vision engine and one encrypted face store.
//!
//! * [`config`]: the operator's TOML config, env overrides, first start.
//! * [`tenants`]: constant-time key lookup; `facegate tenants` edits.
//! * [`service`]: the business rules every surface shares.
//! * [`surfaces`]: thin handlers and the one error mapping per surface.
//! * [`app`]: router, logging, health, [`start`]/[`serve`].
//! * [`connections`]: accepting connections under timeouts and a cap.
//! * [`keys`]: master key files and `facegate keys rotate`.
//! * [`analyzer`]: the port to the vision engine ([`engine`] implements it).

pub mod analyzer;
pub mod app;
pub mod config;
pub mod connections;
pub mod engine;
pub mod error;
pub mod keys;
pub mod service;
pub mod surfaces;
pub mod tenants;

pub use analyzer::{FaceAnalyzer, SpoofingCondition};
pub use app::{router, serve, start, AppState, Readiness, RunningServer, StartOptions};
pub use config::{
    default_config_path, load_or_init, load_or_init_at, resolve, Config, LoadedConfig,
    RuntimeSetting, TenantConfig,
};
pub use error::{ConfigError, ServerError, ServiceError};
/// The embedding models (`default_model` in the config).
pub use facegate_vision::Embedder;
pub use keys::rotate_keys;
pub use service::{Service, ServiceOptions};
pub use tenants::{add_tenant, list_tenants, remove_tenant, Tenants};
