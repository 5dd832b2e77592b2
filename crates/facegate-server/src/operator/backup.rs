//! `facegate export` and `facegate import`: one group of one tenant to a
//! backup file and back (the format is facegate-store's
//! [`facegate_store::backup`]).
//!
//! Both open the store named by the config directly, as `facegate keys
//! rotate` does, through the gallery's normal API, so a server may keep
//! running. The file's embeddings are encrypted under a key derived from
//! the master key the server seals under when the export runs (the key
//! file, or `<master_key_file>.next` during a rotation); importing needs
//! that master key: the importing config's key files, or a key file given
//! explicitly. After a key rotation, keep the old key file as long as
//! backups made under it are kept.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use facegate_store::{
    BackupInfo, DatabaseUrl, Gallery, GalleryOptions, GroupInfo, MasterKey, StoreError,
};

use crate::config::Config;
use crate::error::{ConfigError, ServerError};
use crate::keys::{load_key_ring, next_key_path};
use crate::Embedder;

/// What [`import_group`] restored.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The file's header.
    pub info: BackupInfo,
    /// The appKey the group was restored under.
    pub tenant: String,
    /// The new group.
    pub group: GroupInfo,
}

/// The appKey an export or import acts on: `explicit`, else the config's
/// only tenant.
pub fn default_tenant(config: &Config, explicit: Option<&str>) -> Result<String, ServerError> {
    if let Some(t) = explicit {
        return Ok(t.to_string());
    }
    match config.tenants.as_slice() {
        [only] => Ok(only.app_key.clone()),
        [] => Err(ConfigError::Invalid("the config has no tenant; pass --app-key".into()).into()),
        _ => Err(ConfigError::Invalid(format!(
            "the config has {} tenants; pass --app-key",
            config.tenants.len()
        ))
        .into()),
    }
}

fn store_options(config: &Config, create_if_empty: bool) -> GalleryOptions {
    GalleryOptions {
        store_timeout: Duration::from_secs(config.store_timeout_secs),
        create_if_empty,
        ..GalleryOptions::default()
    }
}

fn load_key(path: &Path) -> Result<Option<MasterKey>, ServerError> {
    match MasterKey::load(path) {
        Ok(k) => Ok(Some(k)),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a backup of the tenant's group to `out` (replaced atomically,
/// mode 0600), encrypted under the master key the store seals under now.
pub fn export_group(
    config: &Config,
    tenant: &str,
    group_id: &str,
    out: &Path,
) -> Result<BackupInfo, ServerError> {
    let key_file = config.master_key_file();
    let key = match load_key(&next_key_path(&key_file))? {
        Some(next) => next,
        None => load_key(&key_file)?.ok_or_else(|| {
            ServerError::DataDir(format!(
                "no master key file at {}: nothing to export (is this the config of the server \
                 that holds the group?)",
                key_file.display()
            ))
        })?,
    };
    let gallery = Gallery::open(
        &config.database_url(),
        load_key_ring(&key_file)?,
        store_options(config, false),
    )
    .map_err(|e| match e {
        StoreError::Uninitialised => ServerError::DataDir(format!(
            "the database {} holds no facegate data",
            describe(config)
        )),
        e => e.into(),
    })?;
    let (bytes, info) = facegate_store::export_group(&gallery, &key, tenant, group_id)?;
    drop(gallery);
    write_private(out, &bytes)?;
    Ok(info)
}

fn describe(config: &Config) -> String {
    DatabaseUrl::parse(&config.database_url())
        .map(|d| d.describe())
        .unwrap_or_else(|_| config.database_url())
}

/// Writes `bytes` to a temporary file (mode 0600) next to `path`, syncs it
/// and renames it over `path`.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let io = |context: String| move |source| ServerError::Io { context, source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| ServerError::Io {
        context: format!("writing {}", path.display()),
        source: std::io::Error::other("not a file name"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .map_err(io(format!("creating {}", tmp.display())))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io(format!("writing {}", path.display())))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Checks that this facegate runs the file's model and that the file's
/// faces are that model's embeddings.
fn check_model(info: &BackupInfo) -> Result<(), ServerError> {
    let Some(embedder) = Embedder::from_version(&info.model_version) else {
        let known: Vec<&str> = Embedder::ALL.iter().map(|e| e.version()).collect();
        return Err(StoreError::InvalidBackup(format!(
            "its faces were made by model {:?}, which this facegate does not run (it runs {})",
            info.model_version,
            known.join(", ")
        ))
        .into());
    };
    if info.face_count > 0 && info.dimension != embedder.dimension() {
        return Err(StoreError::InvalidBackup(format!(
            "its faces have {} dimensions, but model {} makes {}",
            info.dimension,
            info.model_version,
            embedder.dimension()
        ))
        .into());
    }
    Ok(())
}

/// Restores the backup at `file` as group `group_id` (default: the
/// exported group's id) of `tenant` (default: the exported group's
/// appKey, which must be a tenant of `config`). The master key the file
/// needs is looked for among the config's key files and `key_files`.
///
/// Refuses a damaged or altered file, an unknown format version, a model
/// this facegate does not run (or faces that are not its embeddings), and
/// a group that exists; nothing is created then.
pub fn import_group(
    config: &Config,
    file: &Path,
    tenant: Option<&str>,
    group_id: Option<&str>,
    key_files: &[PathBuf],
) -> Result<ImportReport, ServerError> {
    let data = std::fs::read(file).map_err(|source| ServerError::Io {
        context: format!("reading {}", file.display()),
        source,
    })?;
    let info = facegate_store::read_backup_info(&data)?;
    check_model(&info)?;
    let tenant = match tenant {
        Some(t) => t.to_string(),
        None => {
            if !config.tenants.iter().any(|t| t.app_key == info.tenant) {
                return Err(ConfigError::Invalid(format!(
                    "the backup's appKey {} is not a tenant of this config; pass --app-key",
                    info.tenant
                ))
                .into());
            }
            info.tenant.clone()
        }
    };
    let group_id = group_id.unwrap_or(&info.group_id).to_string();
    let mut keys = Vec::new();
    for path in key_files {
        keys.push(MasterKey::load(path)?);
    }

    // As at start-up: a key is only created together with a new database,
    // never for a database that holds data.
    let key_file = config.master_key_file();
    let key_existed = key_file.exists() || next_key_path(&key_file).exists();
    if !key_existed && DatabaseUrl::parse(&config.database_url())?.holds_data()? {
        return Err(ServerError::DataDir(format!(
            "the master key file {} is missing, but the database {} holds data encrypted under \
             it; restore that key file",
            key_file.display(),
            describe(config)
        )));
    }
    for path in [next_key_path(&key_file), key_file.clone()] {
        if let Some(k) = load_key(&path)? {
            keys.push(k);
        }
    }
    // Refused before anything is created.
    if !keys.iter().any(|k| k.key_id() == info.key_id) {
        return Err(StoreError::BackupKeyUnavailable {
            key_id: info.key_id.clone(),
            loaded: facegate_store::backup::key_ids(&keys),
        }
        .into());
    }
    facegate_store::files::create_private_dir(&config.data_dir).map_err(|source| {
        ServerError::Io {
            context: format!("creating {}", config.data_dir.display()),
            source,
        }
    })?;
    let ring = load_key_ring(&key_file)?;
    let gallery = Gallery::open(&config.database_url(), ring, store_options(config, true))?;
    let (info, group) = facegate_store::import_group(
        &gallery,
        &keys,
        &data,
        &tenant,
        &group_id,
        config.max_faces_per_group,
    )?;
    Ok(ImportReport {
        info,
        tenant,
        group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_store::{FaceBox, NewFace, NewFaces};

    fn config_in(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            tenants: vec![crate::config::TenantConfig::generate(Some("app".into())).unwrap()],
            ..Config::default()
        }
    }

    #[test]
    fn export_import_between_data_dirs_with_the_source_key() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (a, b) = (config_in(src.path()), config_in(dst.path()));
        let model = Embedder::Sface.version();
        {
            let g = Gallery::open(
                &a.database_url(),
                load_key_ring(&a.master_key_file()).unwrap(),
                GalleryOptions::default(),
            )
            .unwrap();
            g.create_group("app", "g", model).unwrap();
            let mut e = vec![0.0f32; 128];
            e[3] = 1.0;
            g.add_faces(
                "app",
                "g",
                NewFaces {
                    external_image_id: Some("x".into()),
                    model_version: model.into(),
                    faces: vec![NewFace {
                        bbox: FaceBox {
                            x0: 0.1,
                            y0: 0.1,
                            x1: 0.5,
                            y1: 0.5,
                        },
                        confidence: 0.9,
                        embedding: e,
                    }],
                },
                10,
            )
            .unwrap();
        }
        let file = src.path().join("g.fgbackup");
        let info = export_group(&a, "app", "g", &file).unwrap();
        assert_eq!((info.face_count, info.dimension), (1, 128));
        // The destination's own key cannot open it; the source's can.
        assert!(matches!(
            import_group(&b, &file, None, None, &[]),
            Err(ServerError::Store(StoreError::BackupKeyUnavailable { .. }))
        ));
        let report = import_group(&b, &file, None, Some("h"), &[a.master_key_file()]).unwrap();
        assert_eq!(report.group.face_count, 1);
        // The group exists now.
        assert!(matches!(
            import_group(&b, &file, None, Some("h"), &[a.master_key_file()]),
            Err(ServerError::Store(StoreError::DuplicatedGroupId))
        ));

        // A group of a model this facegate does not run is refused.
        {
            let g = Gallery::open(
                &a.database_url(),
                load_key_ring(&a.master_key_file()).unwrap(),
                GalleryOptions::default(),
            )
            .unwrap();
            g.create_group("app", "old", "some-old-model").unwrap();
        }
        let old = src.path().join("old.fgbackup");
        export_group(&a, "app", "old", &old).unwrap();
        match import_group(&b, &old, None, None, &[a.master_key_file()]) {
            Err(ServerError::Store(StoreError::InvalidBackup(why))) => {
                assert!(why.contains("does not run"), "{why}")
            }
            other => panic!("expected InvalidBackup, got {other:?}"),
        }
    }
}
