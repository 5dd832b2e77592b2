//! State shared by every handler: the tenants, the service once it is
//! loaded, and where start-up stands.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use crate::error::{ServerError, ServiceError};
use crate::service::Service;
use crate::tenants::{LiveTenants, Tenants};

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
    tenants: Arc<LiveTenants>,
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
                tenants: Arc::new(LiveTenants::new(tenants)),
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

    /// The tenants in force.
    pub fn tenants(&self) -> Arc<Tenants> {
        self.shared.tenants.current()
    }

    /// The live tenant set, which the config watcher replaces.
    pub fn live_tenants(&self) -> &Arc<LiveTenants> {
        &self.shared.tenants
    }

    /// The generation of the tenant set in force (1 at start).
    pub fn tenants_generation(&self) -> u64 {
        self.shared.tenants.generation()
    }

    /// The service once models are loaded.
    pub fn service(&self) -> Result<Arc<Service>, ServiceError> {
        self.shared
            .service
            .get()
            .cloned()
            .ok_or(ServiceError::NotReady)
    }

    pub(crate) fn set_ready(&self, service: Arc<Service>) {
        let _ = self.shared.service.set(service);
        self.shared.readiness.send_replace(Readiness::Ready);
    }

    pub(crate) fn set_failed(&self, why: String) {
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
            Readiness::Failed(why) => Err(ServerError::StartUp(why)),
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
