//! `facegate export` and `facegate import`: printing around
//! facegate-server's [`facegate_server::operator::backup`].

use std::path::{Path, PathBuf};

use facegate_server::config::Config;
use facegate_server::operator::backup;
use facegate_server::ServerError;
use facegate_server::StoreError;

type CmdResult = Result<(), Box<dyn std::error::Error>>;

pub fn export(config: &Config, group: &str, out: &Path, app_key: Option<&str>) -> CmdResult {
    let tenant = backup::default_tenant(config, app_key)?;
    let info = backup::export_group(config, &tenant, group, out)?;
    println!(
        "Exported group {} of appKey {}: {} faces (model {}) to {}.",
        info.group_id,
        info.tenant,
        info.face_count,
        info.model_version,
        out.display()
    );
    println!(
        "It is encrypted under master key id {} ({}); importing it needs that key.",
        info.key_id,
        config.master_key_file().display()
    );
    Ok(())
}

pub fn import(
    config: &Config,
    file: &Path,
    group: Option<&str>,
    app_key: Option<&str>,
    master_keys: &[PathBuf],
) -> CmdResult {
    let report =
        backup::import_group(config, file, app_key, group, master_keys).map_err(|e| match e {
            ServerError::Store(StoreError::DuplicatedGroupId) => {
                format!("{e}; import it under another id with --group NEW").into()
            }
            e => Box::<dyn std::error::Error>::from(e),
        })?;
    println!(
        "Imported {} faces (model {}) into group {} of appKey {}.",
        report.group.face_count, report.info.model_version, report.group.group_id, report.tenant
    );
    Ok(())
}
