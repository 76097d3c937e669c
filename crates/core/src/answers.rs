//! The answers file: the agent's configuration plus the secrets one run needs (service-account
//! password, connect key), each given inline, as a `*_file` path or as a `*_env` variable name.
//!
//! Owns the schema (version 1), loading with errors that name the file, the field and the fix,
//! and resolving secrets into `Secret`s. Relative paths are taken from the answers file's folder,
//! so an answers file and its password file can travel together. Checking values against the
//! domain controller is `preflight`'s job, not this module's.

use crate::directory::Security;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const SUPPORTED_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub version: u32,
    pub server: Server,
    #[serde(default)]
    pub ldap: Ldap,
    pub directory: Directory,
    pub service_account: ServiceAccount,
    #[serde(default)]
    pub cloud: Option<Cloud>,
    #[serde(default)]
    pub sync: Sync,
    /// What AD sends to the cloud when `[sync] direction` has AD as a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Which AD attribute fills each cloud field (`[mapping.user]`, `[mapping.group]`,
    /// `[mapping.contact]`); absent rows keep the default map (`mapping::ROWS`).
    #[serde(default, skip_serializing_if = "is_default_mapping")]
    pub mapping: crate::mapping::Config,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Install>,
    /// The folder relative paths are resolved against (the answers file's own).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

fn is_default_mapping(m: &crate::mapping::Config) -> bool {
    *m == crate::mapping::Config::default()
}

/// Which way identities travel between this domain and the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The cloud is the source; AD mirrors it (the only direction before AD could be a source,
    /// so the default of every existing config).
    #[default]
    CloudToAd,
    /// AD is the source; the cloud mirrors the `[source]` scope. Nothing is written to AD.
    AdToCloud,
    /// Both: each object has one authority, where it was created (an account the agent
    /// manages for a cloud user is never exported; a user that came from AD is read-only in
    /// the cloud).
    Both,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::CloudToAd, Direction::AdToCloud, Direction::Both];

    /// The cloud's changes are written to AD.
    pub fn to_ad(self) -> bool {
        matches!(self, Direction::CloudToAd | Direction::Both)
    }

    /// AD's changes are sent to the cloud.
    pub fn from_ad(self) -> bool {
        matches!(self, Direction::AdToCloud | Direction::Both)
    }

    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::CloudToAd => "cloud-to-ad",
            Direction::AdToCloud => "ad-to-cloud",
            Direction::Both => "both",
        }
    }
}

/// `[source]`: the part of AD that is sent to the cloud when AD is a source. Protected and
/// privileged accounts, computers, the service account, krbtgt and built-ins are never sent
/// (`source_scope::decide`), whatever is written here, except protected accounts named in
/// `named`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Users inside any of these containers (default: the Root User container).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// When given, only members of one of these security groups, directly or nested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// When given, only users that match this LDAP filter, e.g. `(department=Sales)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Protected or privileged accounts sent all the same, by sAMAccountName, one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named: Vec<String>,
    /// How AD's changes are read: DirSync (the default; `uSNChanged` where the DC refuses it),
    /// or always `uSNChanged`.
    #[serde(default, skip_serializing_if = "ChangeDetection::is_default")]
    pub change_detection: ChangeDetection,
}

/// `[source] change_detection`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeDetection {
    /// The DirSync control; where the DC refuses it, `uSNChanged` (the export says so).
    #[default]
    Dirsync,
    /// Always `uSNChanged` (a DC, or something in front of it, that must not be asked for
    /// DirSync).
    Usn,
}

impl ChangeDetection {
    fn is_default(&self) -> bool {
        *self == ChangeDetection::Dirsync
    }
}

/// Where the wizard's Destination folder page puts the program files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    pub dir: PathBuf,
}

impl Server {
    /// The DC host name to connect to. On a DC install with no `dc_host`, this host's own name,
    /// completed with `domain` when the system gives a short name.
    pub fn host(&self, domain: Option<&str>) -> String {
        match &self.dc_host {
            Some(h) => h.clone(),
            None => this_host(domain),
        }
    }
}

/// This machine's name, completed with `domain` when the system gives a short name.
pub fn this_host(domain: Option<&str>) -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    match domain {
        Some(d) if !name.contains('.') => format!("{name}.{d}"),
        _ => name,
    }
}

/// What a DC host name must look like, as the fix for one that does not.
pub const HOST_NAME_RULE: &str =
    "give the DC's FQDN, e.g. dc1.example.com, without ldap:// or a port";

/// A bare host name or address: no scheme, path, port or spaces (an IPv6 address may have `:`).
pub fn is_host_name(host: &str) -> bool {
    host.trim() == host
        && !host.contains(['/', '\\', ' '])
        && (!host.contains(':') || host.parse::<std::net::Ipv6Addr>().is_ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerType {
    /// This host is the domain controller.
    Dc,
    /// A member server that connects to `dc_host`.
    Member,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(rename = "type")]
    pub kind: ServerType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dc_host: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ldap {
    #[serde(default = "default_security")]
    pub security: Security,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// When the LDAPS port refuses connections outright, use StartTLS on 389 (verified as
    /// LDAPS is). The name is the historical one: nothing is ever sent without TLS, and the
    /// service account never binds over plain LDAP.
    #[serde(default)]
    pub allow_insecure_fallback: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Seconds allowed for connecting and for each LDAP operation.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
}

fn default_security() -> Security {
    Security::Ldaps
}

fn default_timeout() -> u32 {
    5
}

impl Default for Ldap {
    fn default() -> Self {
        Ldap {
            security: default_security(),
            port: None,
            allow_insecure_fallback: false,
            ca_file: None,
            timeout_seconds: default_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    pub root_user_dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_group_dn: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    pub username: String,
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cloud {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    pub connect_key: Option<Secret>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_key_file: Option<PathBuf>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_key_env: Option<String>,
    /// Seconds allowed for each request to the cloud (connect and TLS included).
    #[serde(default = "default_cloud_timeout")]
    pub timeout_seconds: u32,
    /// The forward proxy the cloud is reached through (`http://proxy.corp.example:3128`), by the
    /// wizard's checks and by the installed service alike. Absent: the cloud is reached directly
    /// (a proxy in the installing session's environment is not used: the service would not have
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The proxy's user name, when it asks for one (Basic authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_username: Option<String>,
    /// The proxy's password: kept in the secret store, never in the config.
    #[serde(default, skip_serializing)]
    pub proxy_password: Option<Secret>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
    // Where the secret comes from is not itself secret: kept when answers are written out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_env: Option<String>,
}

fn default_cloud_timeout() -> u32 {
    10
}

impl Cloud {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.timeout_seconds))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupDisconnection {
    Remove,
    Retain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserDisconnection {
    Remove,
    Retain,
    Disable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipSyncType {
    Minimal,
    Match,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    #[serde(default = "retain")]
    pub group_disconnection_action: GroupDisconnection,
    #[serde(default = "disable")]
    pub user_disconnection_action: UserDisconnection,
    #[serde(default = "remove")]
    pub membership_disconnection_action: GroupDisconnection,
    #[serde(default = "minimal")]
    pub group_membership_sync_type: MembershipSyncType,
    #[serde(default)]
    pub sync_account_locked_out_status: bool,
    /// A cloud user whose username is an existing, unmanaged AD account's sAMAccountName (under
    /// the Root User container) takes that account over instead of colliding with it. Protected,
    /// privileged and out-of-container accounts are never taken over.
    #[serde(default)]
    pub adopt_existing_users: bool,
    /// The same for a cloud group and an existing security group of that name in the managed
    /// groups' container; the members AD gave it stay.
    #[serde(default)]
    pub adopt_existing_groups: bool,
    /// Which way identities travel (`cloud-to-ad`, `ad-to-cloud`, `both`).
    #[serde(default, skip_serializing_if = "is_default_direction")]
    pub direction: Direction,
    /// At most this many disconnections within the window (below); more are held until an
    /// administrator approves them.
    #[serde(
        default = "default_deletion_threshold",
        skip_serializing_if = "is_default_threshold"
    )]
    pub deletion_threshold: u32,
    /// ... or more than this percentage of the objects the agent manages (the smaller wins).
    #[serde(
        default = "default_deletion_percent",
        skip_serializing_if = "is_default_percent"
    )]
    pub deletion_threshold_percent: u32,
    /// The window (hours) the two limits above count over: every disconnection (delete,
    /// disable, release) and suspension made within it counts, not only this run's.
    #[serde(
        default = "default_deletion_window",
        skip_serializing_if = "is_default_window"
    )]
    pub deletion_window_hours: u32,
}

fn is_default_direction(d: &Direction) -> bool {
    *d == Direction::default()
}
fn default_deletion_threshold() -> u32 {
    500
}
fn default_deletion_percent() -> u32 {
    10
}
fn default_deletion_window() -> u32 {
    24
}
fn is_default_window(v: &u32) -> bool {
    *v == default_deletion_window()
}
fn is_default_threshold(v: &u32) -> bool {
    *v == default_deletion_threshold()
}
fn is_default_percent(v: &u32) -> bool {
    *v == default_deletion_percent()
}

fn retain() -> GroupDisconnection {
    GroupDisconnection::Retain
}
fn remove() -> GroupDisconnection {
    GroupDisconnection::Remove
}
fn disable() -> UserDisconnection {
    UserDisconnection::Disable
}
fn minimal() -> MembershipSyncType {
    MembershipSyncType::Minimal
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            group_disconnection_action: retain(),
            user_disconnection_action: disable(),
            membership_disconnection_action: remove(),
            group_membership_sync_type: minimal(),
            sync_account_locked_out_status: false,
            adopt_existing_users: false,
            adopt_existing_groups: false,
            direction: Direction::default(),
            deletion_threshold: default_deletion_threshold(),
            deletion_threshold_percent: default_deletion_percent(),
            deletion_window_hours: default_deletion_window(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An answers file: the secrets a run needs must be given.
    Answers,
    /// An installed config: secrets are in the store, never in the file.
    Config,
}

/// A problem with the answers file itself: one line naming the file, the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("answers file {file}: {message}")]
pub struct AnswersError {
    pub file: String,
    pub message: String,
}

impl Answers {
    pub fn load(path: &Path) -> Result<Answers, AnswersError> {
        Self::load_kind(path, Kind::Answers)
    }

    fn load_kind(path: &Path, kind: Kind) -> Result<Answers, AnswersError> {
        let err = |message: String| AnswersError {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "does not exist; check the path, or copy assets/answers.example.toml".into()
                }
                std::io::ErrorKind::PermissionDenied => {
                    "cannot be read by this user (permission denied); run as a user who can read it"
                        .into()
                }
                std::io::ErrorKind::InvalidData => "is not UTF-8 text; save it as UTF-8".into(),
                _ => format!("cannot be read: {e}"),
            })
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse_kind(&text, base_dir, kind).map_err(err)
    }

    /// Parses answers text; errors are without the file name (the caller adds it).
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Answers, String> {
        Self::parse_kind(text, base_dir, Kind::Answers)
    }

    /// Parses installed-config text (no secrets required).
    pub fn parse_config(text: &str, base_dir: PathBuf) -> Result<Answers, String> {
        Self::parse_kind(text, base_dir, Kind::Config)
    }

    fn parse_kind(text: &str, base_dir: PathBuf, kind: Kind) -> Result<Answers, String> {
        // Look at the version first, so an answers file from a newer release gets that message
        // rather than a complaint about fields this release does not know.
        if let Ok(v) = toml::from_str::<toml::Table>(text)
            && let Some(version) = v.get("version")
            && version.as_integer() != Some(i64::from(SUPPORTED_VERSION))
        {
            return Err(format!(
                "version = {version} is not supported; this release reads version = {SUPPORTED_VERSION}"
            ));
        }
        let mut answers: Answers = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        answers.base_dir = base_dir;
        answers.validate(kind)?;
        Ok(answers)
    }

    fn validate(&self, kind: Kind) -> Result<(), String> {
        if self.server.kind == ServerType::Member
            && self
                .server
                .dc_host
                .as_deref()
                .is_none_or(|h| h.trim().is_empty())
        {
            return Err(
                "[server] dc_host is missing: a member server connects to a domain \
                        controller by name; add dc_host = \"dc1.example.com\" (the DC's FQDN)"
                    .into(),
            );
        }
        if let Some(host) = &self.server.dc_host
            && !is_host_name(host)
        {
            return Err(format!(
                "[server] dc_host `{host}` is not a host name; {HOST_NAME_RULE}"
            ));
        }
        if self.ldap.port == Some(0) {
            return Err("[ldap] port = 0 is not a port; remove it to use the default (636 for ldaps, 389 for starttls)".into());
        }
        if self.ldap.timeout_seconds == 0 || self.ldap.timeout_seconds > 300 {
            return Err("[ldap] timeout_seconds must be between 1 and 300".into());
        }
        if self.directory.root_user_dn.trim().is_empty() {
            return Err("[directory] root_user_dn is empty; give the Root User container, e.g. CN=Users;DC=example;DC=com".into());
        }
        let sa = &self.service_account;
        one_source(
            "[service_account] password",
            sa.password.is_some(),
            sa.password_file.is_some(),
            sa.password_env.is_some(),
            kind == Kind::Answers,
        )?;
        if let Some(c) = &self.cloud {
            if c.timeout_seconds == 0 || c.timeout_seconds > 300 {
                return Err("[cloud] timeout_seconds must be between 1 and 300".into());
            }
            one_source(
                "[cloud] connect_key",
                c.connect_key.is_some(),
                c.connect_key_file.is_some(),
                c.connect_key_env.is_some(),
                false,
            )?;
            let password = c.proxy_password.is_some()
                || c.proxy_password_file.is_some()
                || c.proxy_password_env.is_some();
            one_source(
                "[cloud] proxy_password",
                c.proxy_password.is_some(),
                c.proxy_password_file.is_some(),
                c.proxy_password_env.is_some(),
                // Not required: an upgrade uses the stored one, and a missing login is the
                // proxy's refusal, which the cloud checks name.
                false,
            )?;
            match &c.proxy {
                Some(url) => crate::cloud::client::check_proxy_url(url)
                    .map_err(|why| format!("[cloud] proxy `{url}`: {why}"))?,
                None if c.proxy_username.is_some() || password => {
                    return Err("[cloud] proxy_username and proxy_password are given without [cloud] proxy; add proxy = \"http://host:port\", or remove them".into());
                }
                None => {}
            }
            if password && c.proxy_username.is_none() {
                return Err("[cloud] proxy_password is given without proxy_username; add the proxy's user name".into());
            }
        }
        if self.source.is_some() && !self.sync.direction.from_ad() {
            return Err(format!(
                "[source] is given but [sync] direction = \"{}\" sends nothing from AD; set direction = \"ad-to-cloud\" or \"both\", or remove [source]",
                self.sync.direction.as_str()
            ));
        }
        crate::mapping::Mapping::from_config(&self.mapping)?;
        // The scope's DNs and filter, read as the agent will (the service account is the
        // agent's to find). Only when `[source]` is given: without it the scope is the Root
        // User container, whose problems are `dn.root`'s to report, not a reason to refuse
        // the whole file.
        if self.source.is_some() {
            self.source_scope(None)?;
        }
        Ok(())
    }

    /// The export scope `[source]` gives (the Root User container when it names none), with
    /// the agent's service account (its objectGUID) left out. `Err` names the key and the fix.
    pub fn source_scope(
        &self,
        service_account: Option<Vec<u8>>,
    ) -> Result<crate::source_scope::Scope, String> {
        let source = self.source.clone().unwrap_or_default();
        let dns = |key: &str, texts: &[String]| -> Result<Vec<crate::dn::Dn>, String> {
            texts
                .iter()
                .map(|t| {
                    crate::dn::Dn::parse(t).map(|p| p.dn).map_err(|e| {
                        format!(
                            "[source] {key}: `{t}` is not a DN ({}); pick it in ADUC (Attribute Editor, distinguishedName) and copy it",
                            e.message
                        )
                    })
                })
                .collect()
        };
        let containers = if source.containers.is_empty() {
            dns(
                "containers",
                std::slice::from_ref(&self.directory.root_user_dn),
            )?
        } else {
            dns("containers", &source.containers)?
        };
        let scope = crate::source_scope::Scope {
            containers,
            groups: dns("groups", &source.groups)?,
            filter: source
                .filter
                .as_deref()
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string),
            named: source.named.clone(),
            service_account,
            // Checked where it is used (dn.sync_group): a malformed one is that check's failure.
            sync_group: self
                .directory
                .sync_group_dn
                .as_deref()
                .and_then(|t| crate::dn::Dn::parse(t).ok())
                .map(|p| p.dn),
        };
        if let Some(f) = &scope.filter {
            crate::source_scope::check_filter(f).map_err(|why| format!("[source] filter {why}"))?;
        }
        for n in &scope.named {
            if n.trim().is_empty() || n.contains(['\\', '@', '=']) {
                return Err(format!(
                    "[source] named: `{n}` is not a sAMAccountName; write the account's logon name alone, like jsmith"
                ));
            }
        }
        Ok(scope)
    }

    /// The proxy's password, when the answers give one (`Ok(None)` when they do not).
    pub fn proxy_password(&self) -> Result<Option<Secret>, String> {
        let Some(c) = &self.cloud else {
            return Ok(None);
        };
        self.resolve_secret(
            "[cloud] proxy_password",
            c.proxy_password.as_ref(),
            c.proxy_password_file.as_deref(),
            c.proxy_password_env.as_deref(),
        )
    }

    /// The route to the cloud these answers give: the configured proxy (with `password`, from
    /// the answers or from the store), or directly.
    pub fn cloud_route(&self, password: Option<Secret>) -> crate::cloud::client::Route {
        match self.cloud.as_ref().and_then(|c| c.proxy.clone()) {
            Some(url) => crate::cloud::client::Route::Proxy {
                url,
                username: self.cloud.as_ref().and_then(|c| c.proxy_username.clone()),
                password,
            },
            None => crate::cloud::client::Route::Direct,
        }
    }

    /// `cloud_route` with the password the answers give (an unreadable one is left out: the
    /// answers' own check names it).
    pub fn cloud_route_from_answers(&self) -> crate::cloud::client::Route {
        self.cloud_route(self.proxy_password().ok().flatten())
    }

    /// The DC host name to connect to (see `Server::host`).
    pub fn dc_host(&self, domain: Option<&str>) -> String {
        self.server.host(domain)
    }

    /// How to connect to the DC, as `[server]` and `[ldap]` say (`domain`: the DNS domain, for
    /// a DC install's own host name). The checks and the agent connect the same way.
    pub fn connect_options(&self, domain: Option<&str>) -> crate::directory::ConnectOptions {
        let timeout = std::time::Duration::from_secs(u64::from(self.ldap.timeout_seconds.max(1)));
        crate::directory::ConnectOptions {
            host: self.dc_host(domain),
            security: self.ldap.security,
            port: self.ldap.port,
            ca_file: self.ldap.ca_file.as_deref().map(|p| self.path(p)),
            allow_insecure_fallback: self.ldap.allow_insecure_fallback,
            connect_timeout: timeout,
            op_timeout: timeout,
        }
    }

    pub fn password(&self) -> Result<Secret, String> {
        let sa = &self.service_account;
        let field = "[service_account] password";
        self.resolve_secret(
            field,
            sa.password.as_ref(),
            sa.password_file.as_deref(),
            sa.password_env.as_deref(),
        )?
        .ok_or_else(|| not_given(field))
    }

    /// The connect key's text, when the answers give one (`Ok(None)` when they do not).
    pub fn connect_key(&self) -> Result<Option<Secret>, String> {
        let Some(c) = &self.cloud else {
            return Ok(None);
        };
        self.resolve_secret(
            "[cloud] connect_key",
            c.connect_key.as_ref(),
            c.connect_key_file.as_deref(),
            c.connect_key_env.as_deref(),
        )
    }

    /// A path from the answers file, relative to the answers file's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn resolve_secret(
        &self,
        field: &str,
        inline: Option<&Secret>,
        file: Option<&Path>,
        env: Option<&str>,
    ) -> Result<Option<Secret>, String> {
        let value = if let Some(s) = inline {
            s.clone()
        } else if let Some(f) = file {
            let path = self.path(f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "{field}_file {}: cannot be read ({e}); check the path and its permissions",
                    path.display()
                )
            })?;
            Secret::new(text.trim_end_matches(['\r', '\n']))
        } else if let Some(var) = env {
            match std::env::var(var) {
                Ok(v) => Secret::new(v),
                Err(std::env::VarError::NotPresent) => {
                    return Err(format!(
                        "{field}_env names the environment variable {var}, which is not set; set it before running"
                    ));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(format!("{field}_env: the variable {var} is not valid text"));
                }
            }
        } else {
            return Ok(None);
        };
        if value.is_empty() {
            return Err(format!(
                "{field} is empty; put the secret in it (a *_file must hold it on its first line)"
            ));
        }
        Ok(Some(value))
    }
}

/// "[section] key is not given", with the three ways to give it.
fn not_given(field: &str) -> String {
    let key = field.rsplit(' ').next().unwrap_or(field);
    format!(
        "{field} is not given; add {key} = \"...\", {key}_file = \"path\" or {key}_env = \"VARIABLE\""
    )
}

fn one_source(field: &str, a: bool, b: bool, c: bool, required: bool) -> Result<(), String> {
    let key = field.rsplit(' ').next().unwrap_or(field);
    match [a, b, c].iter().filter(|x| **x).count() {
        0 if required => Err(not_given(field)),
        0 | 1 => Ok(()),
        _ => Err(format!(
            "{field} is given more than once; keep one of {key}, {key}_file and {key}_env"
        )),
    }
}

/// toml's message on one line with the line and column, without the quoted source line (which
/// could hold a secret).
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    let position = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(" at line {line}, column {col}")
        })
        .unwrap_or_default();
    format!("{msg}{position}; fix that line (see assets/answers.example.toml)")
}

#[cfg(test)]
mod tests {

    /// `assets/answers.example.toml` names every key the loader accepts, section by section
    /// (set or commented out). What the loader accepts is read from the loader itself: an
    /// unknown key in a section makes serde list the section's keys.
    #[test]
    fn the_example_documents_every_key_the_loader_accepts() {
        let example = include_str!("../../../assets/answers.example.toml");
        let mut documented = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in example.lines() {
            let l = line.trim_start_matches('#').trim();
            if l.starts_with('[') && l.ends_with(']') {
                section = l.trim_matches(['[', ']']).to_string();
                documented.insert((String::new(), section.clone()));
                // `[mapping.user]` documents the key `user` of `[mapping]`.
                if let Some((outer, inner)) = section.split_once('.') {
                    documented.insert((String::new(), outer.to_string()));
                    documented.insert((outer.to_string(), inner.to_string()));
                }
            } else if let Some((key, _)) = l.split_once(" = ")
                && !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                documented.insert((section.clone(), key.to_string()));
            }
        }
        let sections = [
            "",
            "server",
            "ldap",
            "directory",
            "service_account",
            "cloud",
            "sync",
            "source",
            "mapping",
            "install",
        ];
        for name in sections {
            // The example with an unknown key in `name` (and an [install] section to hold it).
            let mut text = String::new();
            if name.is_empty() {
                text.push_str("zz_unknown = 1\n");
            }
            for line in example.lines() {
                text.push_str(line);
                text.push('\n');
                if !name.is_empty() && line.trim() == format!("[{name}]") {
                    text.push_str("zz_unknown = 1\n");
                }
            }
            if name == "install" {
                text.push_str("[install]\ndir = \"/x\"\nzz_unknown = 1\n");
            }
            if name == "source" || name == "mapping" {
                text.push_str(&format!("[{name}]\nzz_unknown = 1\n"));
            }
            let err = match toml::from_str::<Answers>(&text) {
                Ok(_) => panic!("[{name}]: an unknown key was accepted"),
                Err(e) => e.to_string(),
            };
            let expected = err
                .split_once("expected ")
                .map(|(_, rest)| rest)
                .unwrap_or_else(|| panic!("[{name}]: {err}"));
            let keys: Vec<&str> = expected
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|k| !k.is_empty())
                .collect();
            assert!(!keys.is_empty(), "[{name}]: {err}");
            for key in keys {
                assert!(
                    documented.contains(&(name.to_string(), key.to_string())),
                    "assets/answers.example.toml does not document [{name}] {key}"
                );
            }
        }
    }
    use super::*;

    const MINIMAL: &str = r#"
version = 1
[server]
type = "member"
dc_host = "dc1.example.com"
[directory]
root_user_dn = "CN=Users;DC=example;DC=com"
[service_account]
username = 'EXAMPLE\svc-sync'
password = "Pw-distinct-7781"
"#;

    fn parse(text: &str) -> Result<Answers, String> {
        Answers::parse(text, PathBuf::from("/tmp"))
    }

    #[test]
    fn the_direction_defaults_to_cloud_to_ad_and_a_source_needs_ad_as_a_source() {
        let a = parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.sync.direction, Direction::CloudToAd);
        assert!(a.sync.direction.to_ad() && !a.sync.direction.from_ad());
        // An existing config keeps its text: the default direction is not written.
        assert!(
            !toml::to_string(&a)
                .unwrap_or_default()
                .contains("direction")
        );
        // The default scope is the Root User container.
        let scope = a.source_scope(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scope.containers.len(), 1);
        assert_eq!(
            scope.containers[0].to_comma_form(),
            "CN=Users,DC=example,DC=com"
        );
        for (direction, to_ad, from_ad) in [
            ("cloud-to-ad", true, false),
            ("ad-to-cloud", false, true),
            ("both", true, true),
        ] {
            let a = parse(&format!("{MINIMAL}[sync]\ndirection = \"{direction}\"\n"))
                .unwrap_or_else(|e| panic!("{direction}: {e}"));
            assert_eq!(a.sync.direction.as_str(), direction);
            assert_eq!(
                (a.sync.direction.to_ad(), a.sync.direction.from_ad()),
                (to_ad, from_ad)
            );
        }
        let source = "[source]\ncontainers = [\"OU=Staff;DC=example;DC=com\"]\n";
        let e = parse(&format!("{MINIMAL}{source}"))
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("[source] is given but [sync] direction = \"cloud-to-ad\""),
            "{e}"
        );
        let both = format!("{MINIMAL}[sync]\ndirection = \"both\"\n");
        let a = parse(&format!("{both}{source}filter = \"(department=Sales)\"\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let scope = a
            .source_scope(Some(vec![7; 16]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            scope.containers[0].to_comma_form(),
            "OU=Staff,DC=example,DC=com"
        );
        assert_eq!(scope.filter.as_deref(), Some("(department=Sales)"));
        assert_eq!(scope.service_account, Some(vec![7; 16]));
        // Each wrong value names its key and the fix.
        for (extra, says) in [
            (
                "containers = [\"Staff\"]\n",
                "[source] containers: `Staff` is not a DN",
            ),
            ("groups = [\"OU=\"]\n", "[source] groups: `OU=` is not a DN"),
            (
                "filter = \"department=Sales\"\n",
                "[source] filter `department=Sales` is not an LDAP filter",
            ),
            (
                "named = [\"EXAMPLE\\\\admin\"]\n",
                "[source] named: `EXAMPLE\\admin` is not a sAMAccountName",
            ),
            ("zone = 1\n", "unknown field `zone`"),
        ] {
            let e = parse(&format!("{both}[source]\n{extra}"))
                .err()
                .unwrap_or_default();
            assert!(e.contains(says), "{extra}: {e}");
        }
        let e = parse(&format!("{MINIMAL}[sync]\ndirection = \"sideways\"\n"))
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("cloud-to-ad") && e.contains("ad-to-cloud"),
            "{e}"
        );
    }

    /// A malformed Root User container is `dn.root`'s failure to report, never a refusal of
    /// the whole file because the scope's default reads it (a CI run found that).
    #[test]
    fn a_malformed_root_container_does_not_stop_the_file_from_loading() {
        let text = MINIMAL.replace("CN=Users;DC=example;DC=com", "OU=Staff; DC=example;DC=com");
        parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let both = format!("{text}[sync]\ndirection = \"both\"\n");
        parse(&both).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_mapping_is_checked_when_the_answers_are_read() {
        let a = parse(&format!(
            "{MINIMAL}[mapping.user]\ntitle = false\nemployee_id = \"employeeNumber\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let m = crate::mapping::Mapping::from_config(&a.mapping).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            m.rows(crate::mapping::Kind::User)
                .any(|(r, a)| r.field == "title" && a.is_none())
        );
        for (lines, says) in [
            (
                "[mapping.user]\ncolour = \"x\"\n",
                "[mapping.user] colour: there is no such field",
            ),
            (
                "[mapping.user]\ntitle = \"unicodePwd\"\n",
                "a secret attribute is never read",
            ),
            ("[mapping.team]\nx = false\n", "unknown field `team`"),
        ] {
            let e = parse(&format!("{MINIMAL}{lines}"))
                .err()
                .unwrap_or_default();
            assert!(e.contains(says), "{lines}: {e}");
        }
    }

    #[test]
    fn a_proxy_is_a_url_without_a_login_and_its_password_needs_a_user() {
        let cloud = |lines: &str| {
            parse(&format!(
                "{MINIMAL}[cloud]\nurl = \"https://cloud.example.com\"\n{lines}"
            ))
            .map(|a| a.cloud_route_from_answers())
        };
        for (lines, want) in [
            ("", Ok("direct")),
            ("proxy = \"http://p.corp:3128\"", Ok("proxy")),
            (
                "proxy = \"http://p.corp:3128\"\nproxy_username = \"u\"\nproxy_password = \"Pw-proxy-1\"",
                Ok("proxy+login"),
            ),
            (
                "proxy = \"http://u:pw@p.corp:3128\"",
                Err("must not hold a user name or password"),
            ),
            (
                "proxy = \"socks5://p.corp:1080\"",
                Err("socks5:// is not supported"),
            ),
            (
                "proxy = \"http://p.corp:3128/x\"",
                Err("must not have a path"),
            ),
            // No password: an upgrade takes the stored one; a fresh install's checks then
            // meet the proxy's refusal, which names the login.
            (
                "proxy = \"http://p.corp:3128\"\nproxy_username = \"u\"",
                Ok("proxy"),
            ),
            (
                "proxy_username = \"u\"\nproxy_password = \"x\"",
                Err("without [cloud] proxy"),
            ),
            (
                "proxy = \"http://p.corp:3128\"\nproxy_password = \"x\"",
                Err("without proxy_username"),
            ),
        ] {
            let got = cloud(lines).map(|r| match r {
                crate::cloud::client::Route::Direct => "direct",
                crate::cloud::client::Route::Proxy {
                    password: Some(_), ..
                } => "proxy+login",
                crate::cloud::client::Route::Proxy { .. } => "proxy",
                crate::cloud::client::Route::Environment => "environment",
            });
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{lines}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{lines}: {e}"),
                (g, w) => panic!("{lines}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn applies_documented_defaults() {
        let a = parse(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.ldap.security, Security::Ldaps);
        assert!(!a.ldap.allow_insecure_fallback);
        assert_eq!(
            a.sync.group_disconnection_action,
            GroupDisconnection::Retain
        );
        assert_eq!(a.sync.user_disconnection_action, UserDisconnection::Disable);
        assert_eq!(
            a.sync.membership_disconnection_action,
            GroupDisconnection::Remove
        );
        assert_eq!(
            a.sync.group_membership_sync_type,
            MembershipSyncType::Minimal
        );
        assert!(!a.sync.sync_account_locked_out_status);
        // Configs written before adoption existed read as adoption off.
        assert!(!a.sync.adopt_existing_users && !a.sync.adopt_existing_groups);
        assert_eq!(
            a.password().map(|p| p.expose().to_string()),
            Ok("Pw-distinct-7781".into())
        );
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../assets/answers.example.toml");
        let a = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.server.kind, ServerType::Member);
        // Its commented-out AD-as-a-source example, uncommented, is a valid config too.
        let mut on = String::new();
        let mut inside = false;
        for line in text.lines() {
            let l = line.trim_start_matches("# ");
            inside |= l == "[source]";
            let setting =
                l.starts_with('[') || l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' '));
            if inside && setting {
                on.push_str(l);
            } else if l.starts_with("direction = ") {
                on.push_str("direction = \"both\"");
            } else {
                on.push_str(line);
            }
            on.push('\n');
        }
        let a = parse(&on).unwrap_or_else(|e| panic!("{e}\n{on}"));
        assert_eq!(a.sync.direction, Direction::Both);
        assert_eq!(a.source.as_ref().map(|s| s.named.len()), Some(1));
        assert!(
            !a.mapping.user.is_empty()
                && !a.mapping.group.is_empty()
                && !a.mapping.contact.is_empty()
        );
    }

    #[test]
    fn errors_name_the_field_and_never_echo_a_secret() {
        let cases = [
            (
                MINIMAL.replace("dc_host = \"dc1.example.com\"\n", ""),
                "dc_host is missing",
            ),
            (
                MINIMAL.replace("version = 1", "version = 2"),
                "version = 2 is not supported",
            ),
            (
                MINIMAL.replace("\"member\"", "\"workstation\""),
                "unknown variant `workstation`",
            ),
            (
                MINIMAL.replace("[directory]", "[directory]\nroot_dn = \"x\""),
                "unknown field `root_dn`",
            ),
            (
                MINIMAL.replace("password = ", "password_env = \"X\"\npassword = "),
                "given more than once",
            ),
            (
                MINIMAL.replace("password = \"Pw-distinct-7781\"", ""),
                "password is not given",
            ),
            (
                MINIMAL.replace(
                    "password = \"Pw-distinct-7781\"",
                    "password = \"Pw-distinct-7781",
                ),
                "at line 10",
            ),
        ];
        for (text, want) in cases {
            let e = match parse(&text) {
                Ok(_) => panic!("accepted: {text}"),
                Err(e) => e,
            };
            assert!(e.contains(want), "want {want:?} in {e:?}");
            assert!(!e.contains("Pw-distinct-7781"), "secret echoed: {e}");
        }
    }

    #[test]
    fn a_dc_install_connects_to_this_host_by_its_name() {
        let text = MINIMAL
            .replace("type = \"member\"", "type = \"dc\"")
            .replace("dc_host = \"dc1.example.com\"\n", "");
        let a = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let name = gethostname::gethostname().to_string_lossy().into_owned();
        let host = a.dc_host(Some("example.com"));
        assert!(host.starts_with(&name), "{host} vs {name}");
        if !name.contains('.') {
            assert_eq!(host, format!("{name}.example.com"));
        }
    }

    #[test]
    fn dc_host_must_be_a_bare_host_name() {
        for bad in [
            "ldaps://dc1.example.com",
            "dc1.example.com:636",
            " dc1",
            r"EXAMPLE\\dc1",
        ] {
            let text = MINIMAL.replace("dc1.example.com", bad);
            assert!(
                parse(&text).is_err_and(|e| e.contains("is not a host name")),
                "{bad} accepted"
            );
        }
        for good in [
            "dc1.example.com",
            "10.0.0.5",
            "fe80::1",
            "2001:db8:0:0:1:0:0:1",
        ] {
            let text = MINIMAL.replace("dc1.example.com", good);
            assert!(parse(&text).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn resolves_secrets_from_file_and_env() {
        let dir = std::env::temp_dir().join(format!("ad-sync-answers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("pw.txt"), "from-file-secret\n").ok();
        let text = MINIMAL.replace(
            "password = \"Pw-distinct-7781\"",
            "password_file = \"pw.txt\"",
        );
        let a = Answers::parse(&text, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            a.password().map(|p| p.expose().to_string()),
            Ok("from-file-secret".into())
        );
        let text = MINIMAL.replace(
            "password = \"Pw-distinct-7781\"",
            "password_env = \"AD_SYNC_TEST_UNSET_VARIABLE_X\"",
        );
        let a = Answers::parse(&text, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            a.password()
                .is_err_and(|e| e.contains("AD_SYNC_TEST_UNSET_VARIABLE_X"))
        );
        let text = MINIMAL.replace(
            "password = \"Pw-distinct-7781\"",
            "password_file = \"missing.txt\"",
        );
        let a = Answers::parse(&text, dir.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.password().is_err_and(|e| e.contains("missing.txt")));
        std::fs::remove_dir_all(&dir).ok();
    }
}
