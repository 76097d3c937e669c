//! The wizard's own checks, beside the preflight list: the destination folder
//! (`install.folder`) and, on an upgrade, that the service account is the installed one
//! (`account.unchanged`). New ids, never renamed, like the preflight ones.

use crate::directory::bind::AccountName;
use crate::preflight::CheckResult;
use std::path::Path;

pub const INSTALL_FOLDER: &str = "install.folder";
pub const ACCOUNT_UNCHANGED: &str = "account.unchanged";

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

/// On an upgrade the agent keeps its service account: `typed` must name `installed`.
pub fn account_unchanged(installed: &str, typed: &str) -> CheckResult {
    let user = |s: &str| {
        AccountName::parse(s)
            .ok()
            .map(|a| a.user().to_ascii_lowercase())
    };
    match (user(installed), user(typed)) {
        (Some(a), Some(b)) if a == b => CheckResult::pass(
            ACCOUNT_UNCHANGED,
            format!("`{typed}` is the installed service account"),
            "",
        ),
        _ => CheckResult::fail(
            ACCOUNT_UNCHANGED,
            format!("Service account `{typed}` is not the installed one (`{installed}`)"),
            "",
            format!(
                "An upgrade keeps the service account: type `{installed}`. To change it, uninstall (ad-sync-setup uninstall --keep-config) and set up again."
            ),
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
        let tmp = tempfile::tempdir().expect("tmp");
        assert_eq!(folder(tmp.path()).status, Status::Pass);
        assert_eq!(folder(&tmp.path().join("new")).status, Status::Pass);
        std::fs::write(tmp.path().join("notes.txt"), "x").expect("write");
        assert_eq!(folder(tmp.path()).status, Status::Warn);
        assert_eq!(folder(&tmp.path().join("notes.txt")).status, Status::Fail);
    }

    #[test]
    fn the_same_account_in_another_spelling_is_unchanged() {
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", "svc-sync@example.com").status,
            Status::Pass
        );
        assert_eq!(
            account_unchanged(r"EXAMPLE\svc-sync", r"EXAMPLE\other").status,
            Status::Fail
        );
    }
}
