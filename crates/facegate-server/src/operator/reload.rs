//! Live tenant changes: the server watches its config file and puts a
//! changed tenant list in force without a restart.
//!
//! The file is read once a second (and at once on SIGHUP); when its text
//! changed, it is parsed and validated exactly as at start-up. A valid file
//! whose tenants differ replaces the tenant set for every request that
//! starts afterwards (requests in flight keep the set they authenticated
//! with); an invalid file is refused with an error logged and the old
//! tenants kept. Only tenants take effect this way: other keys need a
//! restart, which the log says when they changed.

use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use crate::config::Config;
use crate::tenants::{LiveTenants, Tenants};

/// How often the config file is read.
pub const CONFIG_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What one look at the config file found.
#[derive(Debug, PartialEq, Eq)]
enum Reload {
    /// The text is what was last seen.
    Unchanged,
    /// Changed and valid; the tenants are those of the server already.
    SameTenants,
    /// Changed, valid, and its tenants are now in force (generation).
    Applied(u64),
    /// Changed but unusable; the old tenants stay.
    Refused,
}

/// Watches `path` and puts its tenants in force in `tenants`, for as long
/// as the runtime runs. `running` is the config the server started with.
pub fn watch_config(tenants: Arc<LiveTenants>, path: PathBuf, running: Config) {
    tokio::spawn(async move {
        let mut watcher = Watcher {
            last_text: std::fs::read_to_string(&path).ok(),
            path,
            running,
        };
        let mut hangup = hangup_signal();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CONFIG_POLL_INTERVAL) => {}
                _ = next_hangup(&mut hangup) => {
                    tracing::info!("SIGHUP: reloading the config file");
                    watcher.last_text = None;
                }
            }
            watcher.check(&tenants);
        }
    });
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    signal(SignalKind::hangup())
        .map_err(|e| tracing::warn!(error = %e, "SIGHUP cannot trigger reloads"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

struct Watcher {
    path: PathBuf,
    /// The text last acted on (`None`: act on whatever is there).
    last_text: Option<String>,
    /// The config the server started with, to tell which changes need a
    /// restart.
    running: Config,
}

impl Watcher {
    fn check(&mut self, live: &LiveTenants) -> Reload {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => {
                if self.last_text.take().is_some() {
                    tracing::error!(path = %self.path.display(), error = %e,
                        "config file unreadable; keeping the current tenants");
                }
                return Reload::Refused;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return Reload::Unchanged;
        }
        self.last_text = Some(text.clone());
        let config = match Config::from_process_toml(&text).and_then(|c| c.validate().map(|_| c)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e,
                    "config file changed but is invalid; keeping the current tenants");
                return Reload::Refused;
            }
        };
        let restart_needed = Config {
            tenants: self.running.tenants.clone(),
            ..config.clone()
        } != self.running;
        if restart_needed {
            tracing::warn!(
                "config file changed beyond its tenants; those changes take effect at the next restart"
            );
        }
        let tenants = Tenants::new(config.tenants.clone());
        if *live.current() == tenants {
            return Reload::SameTenants;
        }
        self.running.tenants = config.tenants;
        let generation = live.replace(tenants);
        tracing::info!(
            tenants = self.running.tenants.len(),
            generation,
            "tenants reloaded from the config file"
        );
        Reload::Applied(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantConfig;

    fn tenant(app_key: &str) -> TenantConfig {
        TenantConfig {
            app_key: app_key.into(),
            face_api_key: format!("{app_key}-face"),
            liveness_secret_key: format!("{app_key}-live"),
            argos_api_key: format!("{app_key}-argos"),
        }
    }

    #[test]
    fn valid_changes_apply_invalid_ones_keep_the_old_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("facegate.toml");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            tenants: vec![tenant("app-a")],
            ..Config::default()
        };
        let write = |c: &Config| std::fs::write(&path, c.to_toml_string().unwrap()).unwrap();
        write(&config);
        let state = LiveTenants::new(Tenants::new(config.tenants.clone()));
        let mut w = Watcher {
            path: path.clone(),
            last_text: std::fs::read_to_string(&path).ok(),
            running: config.clone(),
        };
        assert_eq!(w.check(&state), Reload::Unchanged);
        config.tenants.push(tenant("app-b"));
        write(&config);
        assert_eq!(w.check(&state), Reload::Applied(2));
        assert!(state
            .current()
            .by_face_api_key("app-b", "app-b-face")
            .is_some());
        std::fs::write(&path, "tenants = [ broken").unwrap();
        assert_eq!(w.check(&state), Reload::Refused);
        assert!(state
            .current()
            .by_face_api_key("app-b", "app-b-face")
            .is_some());
        assert_eq!(state.generation(), 2);
        config.tenants.remove(0);
        write(&config);
        assert_eq!(w.check(&state), Reload::Applied(3));
        assert!(state
            .current()
            .by_face_api_key("app-a", "app-a-face")
            .is_none());
        // The same tenants in a reformatted file change nothing.
        std::fs::write(&path, format!("\n{}", config.to_toml_string().unwrap())).unwrap();
        assert_eq!(w.check(&state), Reload::SameTenants);
    }
}
