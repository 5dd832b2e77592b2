#![warn(missing_docs)]

//! facegate's server: the three vendor-compatible surfaces of API.md (NHN
//! Face Recognition Plus, NHN Face Liveness, Argos Face Liveness) over one
//! vision engine and one encrypted face store.
//!
//! Requests flow one way: [`connections`] accepts them under timeouts and
//! a cap, [`surfaces`] authenticates and parses them into typed requests,
//! [`service`] runs one use case each against the [`analyzer`] port (the
//! vision engine, adapted in [`engine`]) and the store, and the surface
//! formats the result. [`operator`] holds the config, tenants and keys;
//! [`startup`] wires everything together; [`telemetry`] names the metrics
//! and redacts tenants in audit lines.

pub mod analyzer;
pub mod connections;
pub mod engine;
pub mod error;
pub mod operator;
pub mod service;
pub mod startup;
pub mod surfaces;
pub mod telemetry;

pub use analyzer::FaceAnalyzer;
pub use error::{ConfigError, ServerError, ServiceError};
// `ServerError::Store` carries it.
pub use facegate_store::StoreError;
/// The embedding models (`default_model` in the config).
pub use facegate_vision::Embedder;
pub use operator::config::{
    default_config_path, load_or_init, load_or_init_at, resolve, Config, LoadedConfig, LogFormat,
    RuntimeKind, TenantConfig,
};
pub use operator::keys::rotate_keys;
pub use operator::tenants::{add_tenant, list_tenants, remove_tenant, Tenants};
pub use operator::{config, keys, tenants};
pub use service::{Service, ServiceOptions};
pub use startup::{serve, start, RunningServer, StartOptions};
pub use surfaces::nhn_common::NhnCode;
pub use surfaces::{openapi_document, router, router_with, AppState, PublicRoutes, Readiness};
