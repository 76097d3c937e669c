//! `install.folder`: the destination folder the program files go into. Reported by the
//! wizard's Destination folder page, and by `check` when the answers give `[install] dir`.
//! Reads the file system only (it may block: callers run it off any UI or async thread).

use super::CheckResult;
use super::ids::INSTALL_FOLDER;
use std::path::Path;

/// Folders the program files must never go into directly.
const SYSTEM_DIRS: [&str; 12] = [
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var", "/root",
];

pub fn folder(dir: &Path) -> CheckResult {
    let shown = dir.display().to_string();
    let fail = |summary: String, fix: &str| CheckResult::fail(INSTALL_FOLDER, summary, "", fix);
    if shown.trim().is_empty() {
        return fail(
            "Destination folder is empty".into(),
            "Type the folder the program files go into, e.g. /opt/ad-sync.",
        );
    }
    if !dir.is_absolute() {
        return fail(
            format!("Destination folder `{shown}` is a relative path"),
            "Give a full path, e.g. /opt/ad-sync or C:\\Program Files\\ad-sync.",
        );
    }
    let trimmed = shown.trim_end_matches(['/', '\\']);
    let windows_root = trimmed.len() <= 2 && trimmed.ends_with(':');
    if SYSTEM_DIRS.contains(&trimmed) || trimmed.is_empty() || windows_root {
        return fail(
            format!("Destination folder `{shown}` is a system folder"),
            "Use a folder of its own, e.g. /opt/ad-sync.",
        );
    }
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => fail(
            format!("Destination folder `{shown}` is a file, not a folder"),
            "Choose another path, or move that file away.",
        ),
        Ok(_) => {
            let entries: Vec<String> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let ours = entries.iter().all(|n| n.starts_with("ad-sync"));
            if entries.is_empty() || ours {
                CheckResult::pass(
                    INSTALL_FOLDER,
                    format!(
                        "`{shown}` exists{}",
                        if entries.is_empty() {
                            " and is empty"
                        } else {
                            " and holds ad-sync (it is updated in place)"
                        }
                    ),
                    "",
                )
            } else {
                CheckResult::warn(
                    INSTALL_FOLDER,
                    format!("`{shown}` already holds {} other file(s)", entries.len()),
                    entries
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    "They are kept; ad-sync's files are added beside them. Prefer an empty folder of its own.",
                )
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => CheckResult::pass(
            INSTALL_FOLDER,
            format!("`{shown}` will be created by the install step"),
            "",
        ),
        Err(e) => fail(
            format!("Destination folder `{shown}` cannot be inspected: {e}"),
            "Choose a folder this user can see, or re-run the wizard elevated.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Status;

    #[test]
    fn folder_rules() {
        assert_eq!(folder(Path::new("relative/dir")).status, Status::Fail);
        assert_eq!(folder(Path::new("/etc")).status, Status::Fail);
        assert_eq!(folder(Path::new("/")).status, Status::Fail);
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tmp: {e}"));
        assert_eq!(folder(tmp.path()).status, Status::Pass);
        assert_eq!(folder(&tmp.path().join("new")).status, Status::Pass);
        std::fs::write(tmp.path().join("notes.txt"), "x").unwrap_or_else(|e| panic!("write: {e}"));
        assert_eq!(folder(tmp.path()).status, Status::Warn);
        assert_eq!(folder(&tmp.path().join("notes.txt")).status, Status::Fail);
    }
}
