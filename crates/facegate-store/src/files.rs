//! Files that hold tenants' data: created private to their owner whatever
//! the umask, and checked for being readable by others.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Creates `dir` and any missing parents with mode 0700 (on Unix).
/// Directories that already exist keep their mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    // The mode above is masked by the umask; make it exact.
    set_mode(dir, 0o700)
}

/// Opens `path` for reading and writing, creating it with mode 0600 (on
/// Unix) when missing. An existing file keeps its mode.
pub fn open_private(path: &Path) -> io::Result<fs::File> {
    let mut opts = fs::OpenOptions::new();
    opts.read(true).write(true);
    match opts.open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    opts.create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        // Created by someone else in between: open theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::OpenOptions::new().read(true).write(true).open(path)
        }
        other => other,
    }
}

/// 16 random hex digits, for names of temporary files.
pub(crate) fn random_suffix() -> io::Result<String> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(suffix.iter().map(|b| format!("{b:02x}")).collect())
}

/// Fails with the OS's reason when no file can be created in `dir`.
pub fn check_writable_dir(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".facegate-probe-{}", random_suffix()?));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> io::Result<()> {
    Ok(())
}

/// Entries of `dir` (and `dir` itself) that users other than the owner can
/// read, with their modes; what a start-up warning should name.
pub fn readable_by_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).ok().map(|m| m.permissions().mode() & 0o777);
        let mut found = Vec::new();
        if let Some(m) = mode(dir).filter(|m| m & 0o077 != 0) {
            found.push((dir.to_path_buf(), m));
        }
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_file() {
                    if let Some(m) = mode(&p).filter(|m| m & 0o044 != 0) {
                        found.push((p, m));
                    }
                }
            }
        }
        found
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Vec::new()
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_and_dirs_ignore_a_permissive_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        let file = dir.join("f");
        open_private(&file).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert!(readable_by_others(&dir).is_empty());
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_others(&dir), vec![(file, 0o644)]);
    }

    #[test]
    fn an_unwritable_place_is_named_with_the_os_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let not_a_dir = tmp.path().join("file");
        fs::write(&not_a_dir, b"x").unwrap();
        let e = check_writable_dir(&not_a_dir).unwrap_err();
        assert!(e.to_string().contains("Not a directory"), "{e}");
    }
}
