//! File-system steps that cannot leave a torn file: every write goes to a temporary file in the
//! destination folder, is flushed to disk and then renamed over the target (atomic on one file
//! system), and the folder is flushed so the rename survives a power cut.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` atomically with Unix `mode` (ignored on Windows, where the folder's
/// ACL decides). The temporary file is created private (0600) and only then given `mode`, so a
/// secret is never readable by others, not even for a moment.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".ad-sync-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    set_mode(tmp.path(), mode)?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

/// Copies a file atomically (for program files: a running copy is never half-overwritten).
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".ad-sync-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let (file, tmp_path) = tmp.into_parts();
    drop(file);
    std::fs::copy(from, &tmp_path)?;
    // Opened for writing: Windows flushes (FlushFileBuffers) only through a handle with write
    // access, and refuses a read-only one with "Access denied".
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp_path)?
        .sync_all()?;
    set_mode(&tmp_path, mode)?;
    tmp_path.persist(to).map_err(|e| e.error)?;
    sync_dir(dir);
    Ok(())
}

#[cfg(unix)]
pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
pub fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
pub fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// Creates `dir` and any missing parents with `mode`; returns the folders it created, deepest
/// last, so a rollback can remove exactly those.
pub fn create_dirs(dir: &Path, mode: u32) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    let mut created = Vec::new();
    for d in missing {
        match std::fs::create_dir(&d) {
            Ok(()) => {
                set_mode(&d, mode)?;
                created.push(d);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

fn sync_dir(dir: &Path) {
    // Flushing a folder is a Unix idea; on Windows the rename is already durable.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        // Ignored on purpose: some filesystems refuse to flush a folder (EINVAL); the file
        // itself was flushed before the rename.
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_private_then_gives_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let path = dir.path().join("agent.toml");
        write_atomic(&path, b"one", 0o600).unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&path, b"two", 0o644).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"two");
        #[cfg(unix)]
        assert_eq!(mode_of(&path), Some(0o644));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .map(|r| r.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn creates_missing_folders_and_says_which() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let deep = dir.path().join("a/b/c");
        let made = create_dirs(&deep, 0o700).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(made.len(), 3);
        assert!(deep.is_dir());
        assert!(create_dirs(&deep, 0o700).unwrap_or_default().is_empty());
    }
}
