//! Tenant authentication, and the `facegate tenants` file edits.
//!
//! Every lookup compares against every tenant's keys in constant time and
//! without early exit, so response timing reveals neither which key bytes
//! matched nor which tenant a key belongs to.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{write_private, Config, TenantConfig};
use crate::error::ConfigError;

/// Constant-time equality of two byte strings. Lengths are not secret
/// (keys are fixed-length by convention), contents are.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// The configured tenants, as the request path needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenants {
    tenants: Vec<TenantConfig>,
}

impl Tenants {
    /// Wraps the configured tenants.
    pub fn new(tenants: Vec<TenantConfig>) -> Self {
        Tenants { tenants }
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// True with no tenants (then every request is refused).
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// A short fingerprint of which appKeys are configured (not of their
    /// secrets), so a client of `/readyz` can tell whether the running
    /// server has the tenant set of a config file.
    pub fn digest(&self) -> String {
        app_keys_digest(self.tenants.iter().map(|t| t.app_key.as_str()))
    }

    fn find(&self, matches: impl Fn(&TenantConfig) -> subtle::Choice) -> Option<&str> {
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, t) in self.tenants.iter().enumerate() {
            let m = matches(t);
            index = u64::conditional_select(&index, &(i as u64), m & !found);
            found |= m;
        }
        bool::from(found).then(|| self.tenants[index as usize].app_key.as_str())
    }

    fn pair(t: &TenantConfig, app_key: &str, key: &str, stored: &str) -> subtle::Choice {
        t.app_key.as_bytes().ct_eq(app_key.as_bytes()) & stored.as_bytes().ct_eq(key.as_bytes())
    }

    /// The tenant (its appKey) for a Face Recognition Plus request.
    pub fn by_face_api_key(&self, app_key: &str, api_key: &str) -> Option<&str> {
        self.find(|t| Self::pair(t, app_key, api_key, &t.face_api_key))
    }

    /// The tenant for an NHN Face Liveness request.
    pub fn by_liveness_secret(&self, app_key: &str, secret: &str) -> Option<&str> {
        self.find(|t| Self::pair(t, app_key, secret, &t.liveness_secret_key))
    }

    /// The tenant for an Argos request (the key alone names it).
    pub fn by_argos_key(&self, api_key: &str) -> Option<&str> {
        self.find(|t| t.argos_api_key.as_bytes().ct_eq(api_key.as_bytes()))
    }
}

/// The tenant set in force, swapped whole when the config file's tenants
/// change; a request keeps the snapshot it authenticated with.
#[derive(Debug)]
pub struct LiveTenants {
    current: RwLock<Arc<Tenants>>,
    /// How many tenant sets there have been (1 at start).
    generation: AtomicU64,
}

impl LiveTenants {
    /// The set in force at start (generation 1).
    pub fn new(tenants: Tenants) -> Self {
        LiveTenants {
            current: RwLock::new(Arc::new(tenants)),
            generation: AtomicU64::new(1),
        }
    }

    /// The tenants in force.
    pub fn current(&self) -> Arc<Tenants> {
        // A poisoned lock still holds a complete set (it is only ever
        // replaced whole).
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `tenants` in force for the requests that start from now on;
    /// returns the new generation.
    pub fn replace(&self, tenants: Tenants) -> u64 {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tenants);
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The generation of the set in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// The fingerprint [`Tenants::digest`] computes, from appKeys in any order.
pub fn app_keys_digest<'a>(app_keys: impl Iterator<Item = &'a str>) -> String {
    use sha2::Digest;
    let mut keys: Vec<&str> = app_keys.collect();
    keys.sort_unstable();
    let mut hash = sha2::Sha256::new();
    for k in keys {
        hash.update(k.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..8])
}

fn edit_config(
    path: &Path,
    edit: impl FnOnce(&mut Vec<TenantConfig>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    // Parse without environment overrides: they must not be baked into
    // the file.
    let mut config = Config::from_toml_str(&text, &|_| None)?;
    edit(&mut config.tenants)?;
    config.validate()?;
    let edited = with_tenants(&text, &config.tenants)?;
    // The edit touched the tenants only: the file must read back as the
    // config just validated.
    if Config::from_toml_str(&edited, &|_| None)? != config {
        return Err(ConfigError::Invalid(
            "editing the tenants would change other settings; edit the file by hand".into(),
        ));
    }
    write_private(path, &edited)
}

/// `text` with its tenant list made `tenants`: entries whose appKey stays
/// are kept as written, new ones are appended as `[[tenants]]` tables (or
/// inline tables, if the file lists tenants inline), and every other line,
/// comments included, is left as it is.
fn with_tenants(text: &str, tenants: &[TenantConfig]) -> Result<String, ConfigError> {
    use toml_edit::{value, DocumentMut, InlineTable, Item, Table, Value};

    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("{e}")))?;
    let keep = |app_key: &str| tenants.iter().any(|t| t.app_key == app_key);
    let fields = |t: &TenantConfig| {
        [
            ("app_key", t.app_key.clone()),
            ("face_api_key", t.face_api_key.clone()),
            ("liveness_secret_key", t.liveness_secret_key.clone()),
            ("argos_api_key", t.argos_api_key.clone()),
        ]
    };
    // In either layout: drop the tenants that go, append those the file
    // does not list yet.
    match doc
        .entry("tenants")
        .or_insert_with(|| Item::ArrayOfTables(Default::default()))
    {
        Item::ArrayOfTables(tables) => {
            let key_of = |t: &Table| {
                t.get("app_key")
                    .and_then(Item::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            tables.retain(|t| keep(&key_of(t)));
            let present: Vec<String> = tables.iter().map(key_of).collect();
            for t in tenants.iter().filter(|t| !present.contains(&t.app_key)) {
                let mut table = Table::new();
                for (k, v) in fields(t) {
                    table[k] = value(v);
                }
                tables.push(table);
            }
        }
        Item::Value(Value::Array(list)) => {
            let key_of = |v: &Value| {
                v.as_inline_table()
                    .and_then(|t| t.get("app_key"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            list.retain(|v| keep(&key_of(v)));
            let present: Vec<String> = list.iter().map(key_of).collect();
            for t in tenants.iter().filter(|t| !present.contains(&t.app_key)) {
                let mut table = InlineTable::new();
                for (k, v) in fields(t) {
                    table.insert(k, v.into());
                }
                list.push(table);
            }
        }
        _ => {
            return Err(ConfigError::Invalid(
                "tenants must be a list of tables".into(),
            ))
        }
    }
    Ok(doc.to_string())
}

/// Adds a tenant with random keys to the config file at `path` and returns
/// it (the caller shows the keys once). Fails if `app_key` exists.
pub fn add_tenant(path: &Path, app_key: Option<String>) -> Result<TenantConfig, ConfigError> {
    let tenant = TenantConfig::generate(app_key)?;
    let added = tenant.clone();
    edit_config(path, |tenants| {
        if tenants.iter().any(|t| t.app_key == added.app_key) {
            return Err(ConfigError::Invalid(format!(
                "tenant {} already exists",
                added.app_key
            )));
        }
        tenants.push(added);
        Ok(())
    })?;
    Ok(tenant)
}

/// The appKeys configured in the file at `path` (keys are not listed).
pub fn list_tenants(path: &Path) -> Result<Vec<String>, ConfigError> {
    let config = Config::load(path)?;
    Ok(config.tenants.into_iter().map(|t| t.app_key).collect())
}

/// Removes the tenant `app_key` from the config file. Its groups stay in
/// the database (re-adding the appKey makes them reachable again).
pub fn remove_tenant(path: &Path, app_key: &str) -> Result<(), ConfigError> {
    edit_config(path, |tenants| {
        let before = tenants.len();
        tenants.retain(|t| t.app_key != app_key);
        if tenants.len() == before {
            return Err(ConfigError::Invalid(format!("no tenant {app_key}")));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(app: &str, k: &str) -> TenantConfig {
        TenantConfig {
            app_key: app.into(),
            face_api_key: format!("{k}-face"),
            liveness_secret_key: format!("{k}-live"),
            argos_api_key: format!("{k}-argos"),
        }
    }

    #[test]
    fn lookups_need_both_app_key_and_key() {
        let ts = Tenants::new(vec![t("a", "ka"), t("b", "kb")]);
        assert_eq!(ts.by_face_api_key("a", "ka-face"), Some("a"));
        assert_eq!(ts.by_face_api_key("b", "kb-face"), Some("b"));
        assert_eq!(ts.by_face_api_key("a", "kb-face"), None);
        assert_eq!(ts.by_face_api_key("a", "ka-live"), None);
        assert_eq!(ts.by_face_api_key("c", "ka-face"), None);
        assert_eq!(ts.by_liveness_secret("b", "kb-live"), Some("b"));
        assert_eq!(ts.by_liveness_secret("b", "kb-face"), None);
        assert_eq!(ts.by_argos_key("kb-argos"), Some("b"));
        assert_eq!(ts.by_argos_key("kb-argo"), None);
        assert_eq!(ts.by_argos_key(""), None);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn editing_tenants_keeps_comments_layout_and_other_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let original = "# Our gateway.\nlisten = \"127.0.0.1:1\"  # behind nginx\n\n\
                        # Defaults, for reference:\n# max_image_pixels = 40000000\n\n\
                        # The mobile app.\n[[tenants]]\napp_key = \"mobile\"\n\
                        face_api_key = \"f\"\nliveness_secret_key = \"l\"\nargos_api_key = \"a\"\n";
        std::fs::write(&path, original).unwrap();
        let added = add_tenant(&path, Some("kiosk".into())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(original), "{text}");
        assert!(text.contains(&added.face_api_key));
        remove_tenant(&path, "kiosk").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

        // Tenants written inline stay inline.
        let inline = "# inline\ntenants = [{ app_key = \"x\", face_api_key = \"f\", \
                      liveness_secret_key = \"l\", argos_api_key = \"a\" }]\n";
        std::fs::write(&path, inline).unwrap();
        add_tenant(&path, Some("y".into())).unwrap();
        remove_tenant(&path, "x").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# inline\ntenants = ["), "{text}");
        assert!(!text.contains("[[tenants]]"), "{text}");
        assert_eq!(list_tenants(&path).unwrap(), vec!["y".to_string()]);

        // A tenants key that is not a list of tables is refused, the file untouched.
        std::fs::write(&path, "tenants = 3\n").unwrap();
        assert!(add_tenant(&path, None).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "tenants = 3\n");
    }

    #[test]
    fn add_list_remove_edit_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n").unwrap();
        let a = add_tenant(&path, Some("one".into())).unwrap();
        assert_eq!(a.app_key, "one");
        assert!(add_tenant(&path, Some("one".into())).is_err());
        let b = add_tenant(&path, None).unwrap();
        assert_eq!(
            list_tenants(&path).unwrap(),
            vec!["one".to_string(), b.app_key.clone()]
        );
        remove_tenant(&path, "one").unwrap();
        assert!(remove_tenant(&path, "one").is_err());
        let c = Config::from_toml_str(&std::fs::read_to_string(&path).unwrap(), &|_| None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.tenants, vec![b]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
