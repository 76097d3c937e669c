//! The installed config: the answers without their secrets, written atomically (0600), the
//! previous one kept as a timestamped backup. Reading an installed config goes through
//! `migrate`, which brings an older schema to the current one, so an upgrade can read whatever
//! an earlier release wrote.

use crate::answers::{Answers, SUPPORTED_VERSION};
use crate::secret::Secret;
use std::path::{Path, PathBuf};

/// How many backups are kept beside the config (the oldest are removed).
pub const BACKUPS_KEPT: usize = 5;

/// The config text for `answers`: every value, no secret and no secret source (the secrets are
/// in the store), CA files pointing at the copies the installer keeps beside the config.
pub fn render(answers: &Answers, dc_ca: Option<&Path>, cloud_ca: Option<&Path>) -> String {
    let mut a = answers.clone();
    a.version = SUPPORTED_VERSION;
    a.service_account.password = None;
    a.service_account.password_file = None;
    a.service_account.password_env = None;
    a.ldap.ca_file = dc_ca.map(Path::to_path_buf);
    if let Some(cloud) = a.cloud.as_mut() {
        cloud.connect_key = None;
        cloud.connect_key_file = None;
        cloud.connect_key_env = None;
        cloud.proxy_password = None;
        cloud.proxy_password_file = None;
        cloud.proxy_password_env = None;
        cloud.ca_file = cloud_ca.map(Path::to_path_buf);
    }
    let body = toml::to_string(&a).unwrap_or_default();
    format!(
        "# ad-sync agent configuration, written by ad-sync-setup {}.\n\
         # No secret is in this file: the service account's password and the agent's credential\n\
         # are in the secret store (see `ad-sync-setup review`). Re-run ad-sync-setup to change it.\n\n{body}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The backup name for a config replaced at `now` (UTC, sortable).
pub fn backup_path(config: &Path, now: time::OffsetDateTime) -> PathBuf {
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "agent.toml".into());
    config.with_file_name(format!("{name}.{stamp}.bak"))
}

/// The backups beside `config`, oldest first.
pub fn backups(config: &Path) -> Vec<PathBuf> {
    let Some(dir) = config.parent() else {
        return Vec::new();
    };
    let name = config
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        let n = n.to_string_lossy();
                        n.starts_with(&format!("{name}.")) && n.ends_with(".bak")
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// An installed config, read for an upgrade.
pub struct Installed {
    pub answers: Answers,
    /// What the migration changed, in words (empty when the config was current).
    pub migrated: Vec<String>,
    /// A password a hand-edited config held inline: it moves into the store.
    pub inline_password: Option<Secret>,
}

/// One schema step: takes a config of version `from` to `from + 1`.
type Step = fn(&mut toml::Table) -> Vec<String>;

/// The migration path, one entry per schema version after 1. Empty while 1 is the only version;
/// a release that changes the schema adds its step here and bumps `SUPPORTED_VERSION`.
const STEPS: &[(u32, Step)] = &[];

/// Brings a config table to the current schema. Refuses a config from a newer release.
pub fn migrate(table: &mut toml::Table) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut version = match table.get("version") {
        None => {
            notes.push(format!(
                "no `version` line: read as version {SUPPORTED_VERSION}"
            ));
            SUPPORTED_VERSION
        }
        Some(v) => v
            .as_integer()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| format!("version = {v} is not a version number"))?,
    };
    if version > SUPPORTED_VERSION {
        return Err(format!(
            "version = {version} was written by a newer ad-sync; this release reads up to version {SUPPORTED_VERSION}. Install that release or a newer one"
        ));
    }
    while version < SUPPORTED_VERSION {
        let step = STEPS
            .iter()
            .find(|(from, _)| *from == version)
            .ok_or_else(|| {
                format!("version = {version} has no migration to {SUPPORTED_VERSION}")
            })?;
        notes.extend((step.1)(table));
        version += 1;
        notes.push(format!("schema moved to version {version}"));
    }
    table.insert("version".into(), toml::Value::Integer(i64::from(version)));
    // Secret sources have no place in a config: an inline password moves to the store (the
    // caller takes it out), file and variable names are dropped.
    for (section, keys) in [
        ("service_account", ["password_file", "password_env"]),
        ("cloud", ["connect_key_file", "connect_key_env"]),
        ("cloud", ["proxy_password_file", "proxy_password_env"]),
    ] {
        if let Some(t) = table.get_mut(section).and_then(toml::Value::as_table_mut) {
            for k in keys {
                if t.remove(k).is_some() {
                    notes.push(format!(
                        "[{section}] {k} removed (secrets are in the store)"
                    ));
                }
            }
        }
    }
    if let Some(t) = table.get_mut("cloud").and_then(toml::Value::as_table_mut)
        && t.remove("connect_key").is_some()
    {
        notes.push("[cloud] connect_key removed (the agent is enrolled; the key is used)".into());
    }
    Ok(notes)
}

/// Reads and migrates the installed config at `path` (its real path).
pub fn read_installed(path: &Path) -> Result<Installed, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("config {shown}: {e}"))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("config {shown} is not valid TOML: {e}"))?;
    let mut migrated = migrate(&mut table).map_err(|e| format!("config {shown}: {e}"))?;
    let inline_password = table
        .get_mut("service_account")
        .and_then(toml::Value::as_table_mut)
        .and_then(|t| t.remove("password"))
        .and_then(|v| v.as_str().map(Secret::new));
    if inline_password.is_some() {
        migrated.push("[service_account] password moved into the secret store".into());
    }
    let current = toml::to_string(&table).map_err(|e| format!("config {shown}: {e}"))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let answers = crate::answers::Answers::parse_config(&current, base)
        .map_err(|e| format!("config {shown}: {e}"))?;
    Ok(Installed {
        answers,
        migrated,
        inline_password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"
[server]
type = "member"
dc_host = "dc1.example.com"
[directory]
root_user_dn = "CN=Users;DC=example;DC=com"
[service_account]
username = 'EXAMPLE\svc-sync'
password = "inline-Passw0rd"
password_env = "AD_SYNC_PASSWORD"
[cloud]
url = "https://cloud.example.com"
connect_key_file = "/root/key.txt"
"#;

    #[test]
    fn a_hand_edited_config_is_migrated_and_its_secrets_leave_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, OLD).unwrap_or_else(|e| panic!("{e}"));
        let got = read_installed(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.inline_password.as_ref().map(|s| s.expose()),
            Some("inline-Passw0rd")
        );
        assert!(
            got.migrated.iter().any(|n| n.contains("no `version`")),
            "{:?}",
            got.migrated
        );
        let text = render(&got.answers, None, None);
        assert!(
            !text.contains("inline-Passw0rd")
                && !text.contains("password =")
                && !text.contains("password_"),
            "{text}"
        );
        assert!(!text.contains("connect_key"), "{text}");
        assert!(text.contains("version = 1"));
        let again = crate::answers::Answers::parse_config(&text, dir.path().to_path_buf());
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn a_config_from_a_newer_release_is_refused_with_what_to_do() {
        let mut t: toml::Table = toml::from_str("version = 7").unwrap_or_default();
        let e = migrate(&mut t).err().unwrap_or_default();
        assert!(e.contains("newer ad-sync") && e.contains("Install"), "{e}");
    }

    #[test]
    fn backups_sort_by_time() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_795_323_843)
            .unwrap_or_else(|e| panic!("{e}"));
        let p = backup_path(Path::new("/etc/ad-sync/agent.toml"), t);
        assert_eq!(
            p,
            PathBuf::from("/etc/ad-sync/agent.toml.20261122T050403Z.bak")
        );
    }
}
