//! What the administrator typed, as text fields, and its conversion to `Answers` (the same
//! shape `ad-sync-setup check` reads) and to an exported answers file without secrets.
//!
//! Pure: no I/O. Secrets (the password, the connect key) live in zeroizing buffers, are wiped as
//! soon as they are not needed, and never reach the exported file.

use ad_sync_core::answers::{self, Answers, ServerType};
use ad_sync_core::directory::Security;
use ad_sync_core::secret::Secret;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// The environment variables the exported answers file names for its secrets.
pub const PASSWORD_ENV: &str = "AD_SYNC_PASSWORD";
pub const CONNECT_KEY_ENV: &str = "AD_SYNC_CONNECT_KEY";
pub const PROXY_PASSWORD_ENV: &str = "AD_SYNC_PROXY_PASSWORD";

#[derive(Clone)]
pub struct Form {
    pub install_dir: String,
    pub server_type: ServerType,
    pub dc_host: String,
    /// The domain whose DCs DNS SRV discovery looks up.
    pub discover_domain: String,
    pub security: Security,
    /// Empty means the default port of `security`.
    pub port: String,
    pub ldap_ca_file: String,
    pub allow_insecure_fallback: bool,
    pub root_user_dn: String,
    pub username: String,
    pub password: Zeroizing<String>,
    pub cloud_url: String,
    pub cloud_ca_file: String,
    pub connect_key: Zeroizing<String>,
    /// `[cloud] proxy`; empty: the cloud is reached directly.
    pub proxy: String,
    pub proxy_username: String,
    pub proxy_password: Zeroizing<String>,
    pub sync_group_dn: String,
    pub sync: answers::Sync,
    /// `[source]`, as the AD source page edits it (written only when the direction has AD as
    /// a source).
    pub source: SourceForm,
    /// `[mapping.user]` and `[mapping.group]`, row by row as the AD source page edits them.
    pub mapping_rows: Vec<MapRow>,
    /// `[mapping.contact]`, kept as the config has it.
    pub mapping_other: ad_sync_core::mapping::Config,
    pub ldap_timeout_seconds: u32,
    pub cloud_timeout_seconds: u32,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("dc_host", &self.dc_host)
            .field("root_user_dn", &self.root_user_dn)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("connect_key", &"[redacted]")
            .field("proxy", &self.proxy)
            .field("proxy_password", &"[redacted]")
            .finish_non_exhaustive()
    }
}

pub fn default_install_dir() -> String {
    ad_sync_core::install::layout::default_program_dir()
        .display()
        .to_string()
}

impl Default for Form {
    fn default() -> Self {
        Form {
            install_dir: default_install_dir(),
            server_type: ServerType::Member,
            dc_host: String::new(),
            discover_domain: String::new(),
            security: Security::Ldaps,
            port: String::new(),
            ldap_ca_file: String::new(),
            allow_insecure_fallback: false,
            root_user_dn: String::new(),
            username: String::new(),
            password: Zeroizing::new(String::new()),
            cloud_url: String::new(),
            cloud_ca_file: String::new(),
            connect_key: Zeroizing::new(String::new()),
            proxy: String::new(),
            proxy_username: String::new(),
            proxy_password: Zeroizing::new(String::new()),
            sync_group_dn: String::new(),
            sync: answers::Sync::default(),
            source: SourceForm::default(),
            mapping_rows: map_rows(&Default::default()),
            mapping_other: Default::default(),
            ldap_timeout_seconds: 5,
            cloud_timeout_seconds: 10,
        }
    }
}

fn opt_path(s: &str) -> Option<PathBuf> {
    let t = s.trim();
    (!t.is_empty()).then(|| PathBuf::from(t))
}

fn opt_text(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

impl Form {
    /// The form an existing config describes (its secrets are not in it).
    pub fn from_config(a: &Answers) -> Form {
        let cloud = a.cloud.as_ref();
        Form {
            install_dir: a
                .install
                .as_ref()
                .map(|i| i.dir.display().to_string())
                .unwrap_or_else(default_install_dir),
            server_type: a.server.kind,
            dc_host: a.server.dc_host.clone().unwrap_or_default(),
            security: a.ldap.security,
            port: a.ldap.port.map(|p| p.to_string()).unwrap_or_default(),
            ldap_ca_file: path_text(a, a.ldap.ca_file.as_ref()),
            allow_insecure_fallback: a.ldap.allow_insecure_fallback,
            // Accepted when the config was installed; shown again on the Connection page.
            root_user_dn: a.directory.root_user_dn.clone(),
            username: a.service_account.username.clone(),
            cloud_url: cloud.and_then(|c| c.url.clone()).unwrap_or_default(),
            cloud_ca_file: path_text(a, cloud.and_then(|c| c.ca_file.as_ref())),
            proxy: cloud.and_then(|c| c.proxy.clone()).unwrap_or_default(),
            proxy_username: cloud
                .and_then(|c| c.proxy_username.clone())
                .unwrap_or_default(),
            sync_group_dn: a.directory.sync_group_dn.clone().unwrap_or_default(),
            sync: a.sync.clone(),
            source: SourceForm::from_config(a.source.as_ref()),
            mapping_rows: map_rows(&a.mapping),
            mapping_other: ad_sync_core::mapping::Config {
                user: Default::default(),
                group: Default::default(),
                ..a.mapping.clone()
            },
            ldap_timeout_seconds: a.ldap.timeout_seconds,
            cloud_timeout_seconds: cloud.map_or(10, |c| c.timeout_seconds),
            ..Form::default()
        }
    }

    /// The port as typed; `Err` names the problem.
    pub fn port(&self) -> Result<Option<u16>, String> {
        let t = self.port.trim();
        if t.is_empty() {
            return Ok(None);
        }
        match t.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!(
                "Port `{t}` is not a port number; give 1 to 65535, or leave it empty for {}",
                self.security.default_port()
            )),
            Ok(p) => Ok(Some(p)),
        }
    }

    fn server(&self) -> answers::Server {
        answers::Server {
            kind: self.server_type,
            dc_host: match self.server_type {
                ServerType::Member => opt_text(&self.dc_host),
                ServerType::Dc => None,
            },
        }
    }

    /// The host the agent connects to, as the checks compute it (no secret is copied for it).
    pub fn dc_host(&self) -> String {
        let domain = ad_sync_core::dn::Dn::parse_container(self.root_user_dn.trim())
            .ok()
            .and_then(|p| p.dn.domain());
        self.server().host(domain.as_deref())
    }

    /// The answers these fields describe, secrets included (for the checks, never written).
    pub fn to_answers(&self) -> Answers {
        let password = (!self.password.is_empty()).then(|| Secret::new(self.password.as_str()));
        let key =
            (!self.connect_key.trim().is_empty()).then(|| Secret::new(self.connect_key.as_str()));
        let mut a = self.build(password, None, key, None);
        if let Some(c) = a.cloud.as_mut()
            && c.proxy_username.is_some()
            && !self.proxy_password.is_empty()
        {
            c.proxy_password = Some(Secret::new(self.proxy_password.as_str()));
        }
        a
    }

    /// The answers file to export: every setting, and for each secret the name of the
    /// environment variable to give it in (`key_needed` is false on an upgrade).
    pub fn export_toml(&self, key_needed: bool) -> Result<String, String> {
        let mut a = self.build(
            None,
            Some(PASSWORD_ENV.into()),
            None,
            key_needed.then(|| CONNECT_KEY_ENV.to_string()),
        );
        let proxy_login = a.cloud.as_ref().is_some_and(|c| c.proxy_username.is_some());
        if let Some(c) = a.cloud.as_mut()
            && proxy_login
        {
            c.proxy_password_env = Some(PROXY_PASSWORD_ENV.into());
        }
        let body = toml::to_string(&a).map_err(|e| format!("cannot write the answers: {e}"))?;
        let key_line = if key_needed {
            format!(
                "#   {CONNECT_KEY_ENV}  a fresh connect key from the cloud console (one-time, 7 days)\n"
            )
        } else {
            String::new()
        };
        let proxy_line = if proxy_login {
            format!("#   {PROXY_PASSWORD_ENV}  the proxy's password\n")
        } else {
            String::new()
        };
        Ok(format!(
            "# ad-sync answers file, exported by the setup wizard.\n\
             # Replay it unattended with: ad-sync-setup install --answers THIS_FILE\n\
             # It holds no secret. Give them in the environment of that command:\n\
             #   {PASSWORD_ENV}  the service account's password\n\
             {key_line}{proxy_line}\n{body}"
        ))
    }

    fn build(
        &self,
        password: Option<Secret>,
        password_env: Option<String>,
        key: Option<Secret>,
        key_env: Option<String>,
    ) -> Answers {
        let cloud_url = opt_text(&self.cloud_url);
        let cloud_ca = opt_path(&self.cloud_ca_file);
        let cloud = (cloud_url.is_some()
            || cloud_ca.is_some()
            || key.is_some()
            || key_env.is_some())
        .then(|| answers::Cloud {
            url: cloud_url,
            ca_file: cloud_ca,
            connect_key: key,
            connect_key_file: None,
            connect_key_env: key_env,
            timeout_seconds: self.cloud_timeout_seconds,
            proxy: opt_text(&self.proxy),
            proxy_username: opt_text(&self.proxy).and_then(|_| opt_text(&self.proxy_username)),
            proxy_password: None,
            proxy_password_file: None,
            proxy_password_env: None,
        });
        Answers {
            version: answers::SUPPORTED_VERSION,
            server: self.server(),
            ldap: answers::Ldap {
                security: self.security,
                port: self.port().ok().flatten(),
                allow_insecure_fallback: self.allow_insecure_fallback,
                ca_file: opt_path(&self.ldap_ca_file),
                timeout_seconds: self.ldap_timeout_seconds,
            },
            directory: answers::Directory {
                root_user_dn: self.root_user_dn.trim().to_string(),
                sync_group_dn: opt_text(&self.sync_group_dn),
            },
            service_account: answers::ServiceAccount {
                username: self.username.trim().to_string(),
                password,
                password_file: None,
                password_env,
            },
            cloud,
            sync: self.sync.clone(),
            source: self
                .sync
                .direction
                .from_ad()
                .then(|| self.source.to_source()),
            mapping: self.mapping(),
            install: opt_path(&self.install_dir).map(|dir| answers::Install { dir }),
            base_dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// The attribute map these rows and the kept sections say.
    pub fn mapping(&self) -> ad_sync_core::mapping::Config {
        use ad_sync_core::mapping::{Kind, Setting, rows};
        let mut m = self.mapping_other.clone();
        for r in &self.mapping_rows {
            let default = rows(r.kind).find(|d| d.field == r.field).map(|d| d.ad);
            let attr = r.attr.trim();
            let setting = if !r.on {
                Some(Setting::Switch(false))
            } else if Some(attr) != default && !attr.is_empty() {
                Some(Setting::Attribute(attr.to_string()))
            } else {
                None
            };
            if let Some(s) = setting {
                let section = match r.kind {
                    Kind::Group => &mut m.group,
                    Kind::Contact => &mut m.contact,
                    Kind::User => &mut m.user,
                };
                section.insert(r.field.clone(), s);
            }
        }
        m
    }

    /// Wipes the secrets (leaving the wizard, or after they were used).
    pub fn forget_secrets(&mut self) {
        self.password = Zeroizing::new(String::new());
        self.connect_key = Zeroizing::new(String::new());
        self.proxy_password = Zeroizing::new(String::new());
    }
}

/// `[source]` as the page edits it: one DN or name per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceForm {
    pub containers: String,
    pub groups: String,
    pub filter: String,
    pub named: String,
    /// Not on the page (an answers-file setting): kept as the config has it, so an upgrade
    /// in review mode does not drop it.
    pub change_detection: answers::ChangeDetection,
}

/// The DNs a list field (one per line) names, those that read as DNs; `default` when it
/// names none (what an empty list means).
pub fn listed_dns(text: &str, default: Option<&str>) -> Vec<ad_sync_core::dn::Dn> {
    let parse = |t: &str| ad_sync_core::dn::Dn::parse(t).ok().map(|p| p.dn);
    let listed: Vec<_> = lines(text).iter().filter_map(|l| parse(l)).collect();
    if listed.is_empty() && lines(text).is_empty() {
        return default.and_then(parse).into_iter().collect();
    }
    listed
}

/// A list field (one DN per line) after `dn` was chosen in its tree: taken out when a line
/// names it already (in whatever spelling it was typed), else added as the last line. The
/// other lines stay as they were typed.
pub fn toggle_dn(text: &str, dn: &str) -> String {
    let Ok(picked) = ad_sync_core::dn::Dn::parse(dn) else {
        return text.to_string();
    };
    let all = lines(text);
    let kept: Vec<String> = all
        .iter()
        .filter(|l| !ad_sync_core::dn::Dn::parse(l).is_ok_and(|p| p.dn.same_as(&picked.dn)))
        .cloned()
        .collect();
    let mut out = kept.clone();
    if kept.len() == all.len() {
        out.push(dn.to_string());
    }
    out.join("\n")
}

fn lines(t: &str) -> Vec<String> {
    t.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl SourceForm {
    pub fn from_config(s: Option<&answers::Source>) -> SourceForm {
        let Some(s) = s else {
            return SourceForm::default();
        };
        SourceForm {
            containers: s.containers.join("\n"),
            groups: s.groups.join("\n"),
            filter: s.filter.clone().unwrap_or_default(),
            named: s.named.join("\n"),
            change_detection: s.change_detection,
        }
    }

    pub fn to_source(&self) -> answers::Source {
        answers::Source {
            containers: lines(&self.containers),
            groups: lines(&self.groups),
            filter: opt_text(&self.filter),
            named: lines(&self.named),
            change_detection: self.change_detection,
        }
    }
}

/// The user rows of the attribute map as `config` sets them: (field, attribute, sent).
/// One row of the attribute map as the AD source page edits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRow {
    pub kind: ad_sync_core::mapping::Kind,
    /// The cloud field.
    pub field: String,
    /// The AD attribute it is read from.
    pub attr: String,
    /// Sent at all.
    pub on: bool,
}

/// What a row of the map is called on the page and in Review: a group's and a contact's rows
/// say whose field they are ("Group description", "Contact phone").
pub fn map_label(kind: ad_sync_core::mapping::Kind, what: &str) -> String {
    use ad_sync_core::mapping::Kind;
    let whose = match kind {
        Kind::Group => "Group",
        Kind::Contact => "Contact",
        Kind::User => return what.to_string(),
    };
    if what.starts_with(whose) {
        what.to_string()
    } else {
        let mut lower = what.chars();
        let first = lower
            .next()
            .map(|c| c.to_lowercase().to_string())
            .unwrap_or_default();
        format!("{whose} {first}{}", lower.as_str())
    }
}

/// The users', groups' and contacts' rows of the map, as `config` sets them over the default.
fn map_rows(config: &ad_sync_core::mapping::Config) -> Vec<MapRow> {
    use ad_sync_core::mapping::{Kind, Setting, rows};
    Kind::ALL
        .into_iter()
        .flat_map(|kind| {
            let section = match kind {
                Kind::Group => &config.group,
                Kind::Contact => &config.contact,
                Kind::User => &config.user,
            };
            rows(kind).map(move |r| {
                let (attr, on) = match section.get(r.field) {
                    Some(Setting::Switch(false)) => (r.ad.to_string(), false),
                    Some(Setting::Attribute(a)) => (a.clone(), true),
                    _ => (r.ad.to_string(), true),
                };
                MapRow {
                    kind,
                    field: r.field.to_string(),
                    attr,
                    on,
                }
            })
        })
        .collect()
}

fn path_text(a: &Answers, p: Option<&PathBuf>) -> String {
    p.map(|p| a.path(p).display().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> Form {
        Form {
            dc_host: "dc1.example.com".into(),
            root_user_dn: "CN=Users;DC=example;DC=com".into(),
            username: r"EXAMPLE\svc-sync".into(),
            password: Zeroizing::new("Pa55-distinct-word".into()),
            cloud_url: "https://cloud.example.com".into(),
            connect_key: Zeroizing::new("ADS1-KEY-distinct".into()),
            sync_group_dn: "CN=Cloud Groups;CN=Users;DC=example;DC=com".into(),
            ..Form::default()
        }
    }

    /// The scope's lists with their trees: a click adds a DN, a click on one listed (in any
    /// spelling) takes it out, and what was typed stays as typed.
    #[test]
    fn a_tree_click_adds_or_takes_out_one_dn_of_a_list() {
        let staff = "OU=Staff,DC=example,DC=com";
        let table = [
            // (the list, the DN clicked, the list after)
            ("", staff, staff.to_string()),
            (
                "CN=Users;DC=example;DC=com",
                staff,
                format!("CN=Users;DC=example;DC=com\n{staff}"),
            ),
            ("ou=staff;dc=EXAMPLE;dc=com", staff, String::new()),
            (
                "  OU=Sales,DC=example,DC=com \n\nou=Staff,DC=example,DC=com\n",
                staff,
                "OU=Sales,DC=example,DC=com".to_string(),
            ),
            // Not a DN: nothing changes.
            (
                "OU=Sales,DC=example,DC=com",
                "not a dn",
                "OU=Sales,DC=example,DC=com".into(),
            ),
        ];
        for (list, dn, want) in table {
            assert_eq!(toggle_dn(list, dn), want, "{list:?} + {dn}");
        }
        let names =
            |v: Vec<ad_sync_core::dn::Dn>| v.iter().map(|d| d.to_comma_form()).collect::<Vec<_>>();
        let root = Some("CN=Users;DC=example;DC=com");
        // Empty: what an empty list means is highlighted (the Root User container).
        assert_eq!(
            names(listed_dns(" \n", root)),
            ["CN=Users,DC=example,DC=com"]
        );
        assert_eq!(names(listed_dns("", None)), Vec::<String>::new());
        // Typed lines, only those that read as DNs; a list of typos is not the default.
        assert_eq!(
            names(listed_dns("OU=Staff;DC=example;DC=com\nnonsense", root)),
            ["OU=Staff,DC=example,DC=com"]
        );
        assert_eq!(names(listed_dns("nonsense", root)), Vec::<String>::new());
    }

    /// An upgrade keeps AD as a source's settings: the config's [source] and [mapping] come
    /// back out of the form as they went in; with the cloud as the only source, no [source]
    /// is written (the loader would refuse it).
    #[test]
    fn the_source_and_the_map_round_trip_and_leave_with_the_direction() {
        use ad_sync_core::mapping::Setting;
        let text = r#"
version = 1
[server]
type = "member"
dc_host = "dc1.example.com"
[directory]
root_user_dn = "OU=Staff;DC=example;DC=com"
[service_account]
username = 'EXAMPLE\svc-sync'
[sync]
direction = "both"
[source]
containers = ["OU=Staff;DC=example;DC=com", "OU=Sales;DC=example;DC=com"]
groups = ["CN=G;DC=example;DC=com"]
filter = "(department=*)"
named = ["adm1"]
[mapping.user]
title = "extensionAttribute1"
mobile = false
[mapping.group]
description = "info"
"#;
        let a =
            Answers::parse_config(text, PathBuf::from("/tmp")).unwrap_or_else(|e| panic!("{e}"));
        let form = Form::from_config(&a);
        assert_eq!(form.source.containers.lines().count(), 2);
        let back = form.to_answers();
        assert_eq!(back.source, a.source);
        assert_eq!(back.mapping, a.mapping);
        assert_eq!(
            back.mapping.user.get("mobile"),
            Some(&Setting::Switch(false))
        );
        // Back to the cloud as the only source: nothing of [source] is written.
        let mut f = form.clone();
        f.sync.direction = ad_sync_core::answers::Direction::CloudToAd;
        let back = f.to_answers();
        assert_eq!(back.source, None);
        let written = f.export_toml(true).unwrap_or_else(|e| panic!("{e}"));
        assert!(!written.contains("[source]"), "{written}");
        // A row set back to its default is not written as an override.
        let mut f = form;
        for row in f.mapping_rows.iter_mut().filter(|r| r.field == "title") {
            row.attr = "title".into();
        }
        assert!(!f.mapping().user.contains_key("title"));
        // A group row is written to [mapping.group], and read back into its row.
        for row in f
            .mapping_rows
            .iter_mut()
            .filter(|r| r.kind == ad_sync_core::mapping::Kind::Group && r.field == "description")
        {
            row.attr = "info".into();
        }
        let back = Form::from_config(&f.to_answers());
        assert!(
            back.mapping_rows
                .iter()
                .any(|r| r.field == "description" && r.attr == "info"),
            "{:?}",
            back.mapping_rows
        );
        assert!(
            !back
                .mapping_rows
                .iter()
                .any(|r| r.field == "title" && r.attr != "title"),
            "{:?}",
            back.mapping_rows
        );
    }

    #[test]
    fn export_has_no_secret_and_reads_back_as_answers() {
        let form = filled();
        let text = form
            .export_toml(true)
            .unwrap_or_else(|e| panic!("export: {e}"));
        assert!(!text.contains("Pa55-distinct-word"), "{text}");
        assert!(!text.contains("ADS1-KEY-distinct"), "{text}");
        assert!(!format!("{form:?}").contains("Pa55"));
        let back = Answers::parse(&text, PathBuf::from("."))
            .unwrap_or_else(|e| panic!("exported answers parse: {e}"));
        assert_eq!(
            back.service_account.password_env.as_deref(),
            Some(PASSWORD_ENV)
        );
        assert_eq!(
            back.cloud
                .as_ref()
                .and_then(|c| c.connect_key_env.as_deref()),
            Some(CONNECT_KEY_ENV)
        );
        let again = Form::from_config(&back);
        assert_eq!(again.dc_host, form.dc_host);
        assert_eq!(again.sync_group_dn, form.sync_group_dn);
        assert_eq!(again.install_dir, form.install_dir);
    }

    #[test]
    fn upgrade_export_names_no_connect_key() {
        let text = filled()
            .export_toml(false)
            .unwrap_or_else(|e| panic!("export: {e}"));
        assert!(!text.contains(CONNECT_KEY_ENV), "{text}");
    }

    #[test]
    fn bad_port_is_named() {
        let mut form = filled();
        form.port = "70000".into();
        assert!(form.port().is_err_and(|e| e.contains("70000")));
        form.port = "3269".into();
        assert_eq!(form.port(), Ok(Some(3269)));
    }

    #[test]
    fn forgetting_secrets_empties_them() {
        let mut form = filled();
        form.forget_secrets();
        assert!(form.password.is_empty() && form.connect_key.is_empty());
        assert!(form.to_answers().service_account.password.is_none());
    }
}
